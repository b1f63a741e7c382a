"""`sandbox run` end to end with the real runc: each control asserted from the kernel's own state."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from sandbox.host.inspect import read_process
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.e2e

STATUS_SCRIPT = (
    "grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status;"
    " echo UIDMAP $(cat /proc/self/uid_map);"
    " for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max"
    " /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do [ -r $f ] && echo CG $f $(cat $f); done;"
    " true"
)


def sandbox(*args, audit, timeout=60, state=None, input=None):
    env = {**os.environ, "SANDBOX_STATE_DIR": state or "/run/sandbox-test"}
    env.pop("SANDBOX_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "sandbox", *args[:1], *(("--audit-log", audit) if args[0] == "run"
                                                                        else ()), *args[1:]],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, input=input)


def status_fields(out):
    fields = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+):\s+(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).split()
    return fields


def caps(hexmask):
    from sandbox.host.inspect import cap_names

    return set(cap_names(int(hexmask, 16)))


@pytest.fixture
def audit(tmp_path):
    return str(tmp_path / "audit.jsonl")


@pytest.fixture
def runc_root(tmp_path):
    return str(tmp_path / "runc-root")


def run_demo(e2e, rootfs, profile, cmd, audit, *extra):
    return sandbox("run", "--profile", profile, "--rootfs", rootfs, *extra, "--", "sh", "-c", cmd, audit=audit)


@pytest.mark.parametrize("profile,user", [("baseline", None), ("restricted", "1000:1000"), ("strict", None)])
def test_each_builtin_profile_holds_inside_the_container(e2e, demo_rootfs, audit, profile, user):
    extra = ("--user", user) if user else ()
    res = run_demo(e2e, demo_rootfs, profile, STATUS_SCRIPT, audit, *extra)
    assert res.returncode == 0, res.stderr
    f = status_fields(res.stdout)
    assert f["NoNewPrivs"] == ["1"]
    assert f["Seccomp"] == ["2"] and int(f["Seccomp_filters"][0]) >= 1
    eff = caps(f["CapEff"][0])
    bnd = caps(f["CapBnd"][0])
    if profile == "baseline":
        assert bnd == {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}  # runc spec's request ∩ Docker's set
    else:
        assert bnd <= {"CAP_NET_BIND_SERVICE"} and "CAP_SYS_ADMIN" not in eff
    if user:
        assert f["Uid"][0] == "1000" and eff == set()
    uidmap = re.search(r"UIDMAP (.*)", res.stdout).group(1).split()
    if profile == "strict":
        # a range of its own from the operator's pool (the default one here), recorded in the audit log
        resolved = next(json.loads(line) for line in open(audit) if '"profile_resolved"' in line)["data"]
        assert uidmap == ["0", *resolved["id_range"].split(":")] and uidmap[1] != "0"
        cg = dict(re.findall(r"CG (\S+) (\S+)", res.stdout))
        mem = cg.get("/sys/fs/cgroup/memory/memory.limit_in_bytes") or cg.get("/sys/fs/cgroup/memory.max")
        pids = cg.get("/sys/fs/cgroup/pids/pids.max") or cg.get("/sys/fs/cgroup/pids.max")
        assert mem == str(256 * 1024 * 1024) and pids == "128", res.stdout
    else:
        assert uidmap == ["0", "0", "4294967295"]


def test_read_only_root_and_noexec_tmp_under_strict(e2e, demo_rootfs, audit):
    res = run_demo(e2e, demo_rootfs, "strict",
                   "touch /probe; echo rc=$?; cp /bin/busybox /tmp/bb && /tmp/bb true; echo exec=$?; "
                   "echo x > /tmp/ok && echo tmp=ok", audit)
    assert "Read-only file system" in res.stderr and "rc=1" in res.stdout
    assert "exec=126" in res.stdout  # noexec tmpfs
    assert "tmp=ok" in res.stdout


def test_forbidden_syscalls_fail_with_the_documented_errno(e2e, demo_rootfs, audit):
    res = run_demo(e2e, demo_rootfs, os.path.join(FIXTURES, "valid-custom-mkdir.yaml"),
                   "mkdir /tmp/x; echo rc=$?; rmdir /nonexistent 2>&1 | head -1", audit)
    assert "Operation not permitted" in res.stderr and "rc=1" in res.stdout
    res = run_demo(e2e, demo_rootfs, "strict", "unshare -U true; echo rc=$?; unshare -m true; echo rc2=$?", audit)
    assert res.stderr.count("Operation not permitted") >= 2 and "rc=1" in res.stdout and "rc2=1" in res.stdout


def test_exit_code_and_stdin_pass_through(e2e, demo_rootfs, audit):
    res = sandbox("run", "--profile", "baseline", "--rootfs", demo_rootfs, "--", "sh", "-c", "read x; echo got $x; exit 7",
                  audit=audit, input="hello\n")
    assert res.returncode == 7 and "got hello" in res.stdout


def _bundle(tmp_path, demo_rootfs, mutate):
    from sandbox.host.bundle import spec_for_rootfs

    b = tmp_path / "bundle"
    b.mkdir()
    cfg = spec_for_rootfs(demo_rootfs, ["true"])
    mutate(cfg)
    (b / "config.json").write_text(json.dumps(cfg))
    return str(b)


@pytest.mark.parametrize("what,mutate", [
    ("host network namespace", lambda c: c["linux"]["namespaces"].__setitem__(
        slice(None), [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
        + [{"type": "network", "path": "/proc/1/ns/net"}])),
    ("/var/run/docker.sock", lambda c: c["mounts"].append(
        {"destination": "/var/run/docker.sock", "type": "bind", "source": "/var/run/docker.sock",
         "options": ["rbind"]})),
    ("hook", lambda c: c.setdefault("hooks", {}).setdefault("prestart", []).append(
        {"path": "/bin/sh", "args": ["sh", "-c", "touch /tmp/sandbox-hook-ran"]})),
])
def test_refused_bundles_never_start_and_exit_125(e2e, demo_rootfs, audit, tmp_path, what, mutate):
    bundle = _bundle(tmp_path, demo_rootfs, mutate)
    if os.path.exists("/tmp/sandbox-hook-ran"):
        os.unlink("/tmp/sandbox-hook-ran")
    res = sandbox("run", "--profile", "baseline", "--bundle", bundle, audit=audit)
    assert res.returncode == 125, res.stderr
    assert "refused by sandbox profile baseline" in res.stderr
    assert what.split()[0] in res.stderr or "hook" in res.stderr
    assert not os.path.exists("/tmp/sandbox-hook-ran")
    records = [json.loads(line) for line in open(audit)]
    assert any(r["event"] == "refused" for r in records)
    assert not any(r["event"] == "started" for r in records)


def test_verify_before_start_expects_a_non_root_users_configured_capabilities(e2e, demo_rootfs, audit, runc_root):
    """`run --verify` reads runc's init before the workload's execve: uid 1000 under restricted still holds
    CAP_NET_BIND_SERVICE there (and loses it at the execve, which the workload's own status shows)."""
    res = sandbox("run", "--profile", "restricted", "--rootfs", demo_rootfs, "--root", runc_root, "--user", "1000",
                  "--verify=enforce", "-v", "--", "grep", "CapEff", "/proc/self/status", audit=audit)
    assert res.returncode == 0, res.stderr
    assert "PASS capabilities.effective: 1 as configured: CAP_NET_BIND_SERVICE" in res.stderr, res.stderr
    assert "CapEff:\t0000000000000000" in res.stdout, res.stdout


def test_verify_passes_under_profile_and_fails_for_plain_runc(e2e, demo_rootfs, audit, runc_root, tmp_path):
    # a compliant container, started by sandbox, verified while it runs
    res = sandbox("run", "--profile", "strict", "--rootfs", demo_rootfs, "--root", runc_root, "--verify=enforce", "-v",
                  "--", "sh", "-c", "sleep 1; echo done", audit=audit)
    assert res.returncode == 0, res.stderr
    assert "FAIL" not in res.stderr and "PASS" in res.stderr
    records = [json.loads(line) for line in open(audit)]
    verified = [r for r in records if r["event"] == "verified"]
    assert verified and verified[0]["data"]["passed"] is True

    # the same workload started by plain runc without the profile fails verification
    from sandbox.host.bundle import spec_for_rootfs

    bundle = tmp_path / "plain"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec_for_rootfs(demo_rootfs, ["sleep", "30"])))
    cid = f"plain-{uuid.uuid4().hex[:8]}"
    subprocess.run(["runc", "--root", runc_root, "run", "-d", "-b", str(bundle), cid], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    try:
        res = sandbox("verify", cid, "--root", runc_root, "--profile", "strict", audit=audit)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "FAIL" in res.stdout
        state = json.loads(subprocess.check_output(["runc", "--root", runc_root, "state", cid]))
        ps = read_process(state["pid"])
        assert ps.no_new_privs  # runc spec sets it; seccomp, userns and limits are what is missing
    finally:
        subprocess.run(["runc", "--root", runc_root, "delete", "-f", cid], check=False)


def test_audit_log_verifies_and_an_edit_is_caught(e2e, demo_rootfs, audit):
    res = run_demo(e2e, demo_rootfs, "strict", "true", audit)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line)["event"] for line in open(audit)]
    for ev in ("profile_resolved", "decision", "created", "started", "exited", "deleted"):
        assert ev in events
    ok = sandbox("audit", "verify", audit, audit=audit)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = open(audit).read().splitlines()
    rec = json.loads(lines[3])
    rec["decision"]["reason"] = "nothing to see here"
    lines[3] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    with open(audit, "w") as f:
        f.write("\n".join(lines) + "\n")
    bad = sandbox("audit", "verify", audit, audit=audit)
    assert bad.returncode == 1
    assert ":4:" in bad.stdout + bad.stderr


def test_unwritable_audit_log_fails_closed(e2e, demo_rootfs, tmp_path):
    missing_dir = str(tmp_path / "no-such-dir" / "audit.jsonl")
    res = run_demo(e2e, demo_rootfs, "baseline", "touch /marker-should-not-run", missing_dir)
    assert res.returncode == 125
    assert "audit" in res.stderr.lower()


def test_missing_runc_exits_127(e2e, demo_rootfs, audit):
    res = sandbox("run", "--profile", "baseline", "--rootfs", demo_rootfs, "--runc", "/nonexistent/runc", "--", "true",
                  audit=audit)
    assert res.returncode == 127 and "runc" in res.stderr


def test_sigterm_is_forwarded_and_everything_is_cleaned_up(e2e, demo_rootfs, audit, runc_root, tmp_path):
    import signal
    import time

    state = str(tmp_path / "state")
    env = {**os.environ, "SANDBOX_STATE_DIR": state}
    env.pop("SANDBOX_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "run", "--audit-log", audit, "--profile", "strict",
                             "--rootfs", demo_rootfs, "--root", runc_root, "--name", "sigtest", "--",
                             "sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 42, err
    assert "got TERM" in out
    time.sleep(0.2)
    listed = subprocess.run(["runc", "--root", runc_root, "list", "-q"], capture_output=True, text=True)
    assert "sigtest" not in listed.stdout
    assert not os.path.exists(os.path.join(state, "sigtest"))
    events = [json.loads(line)["event"] for line in open(audit)]
    assert events[-2:] == ["exited", "deleted"]
