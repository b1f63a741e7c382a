"""The sandbox agent with the real runc and kernel (issue 17).

Each test starts its own `sandbox agent run` on a private socket, writing to the test's audit
log, and drives containers through the installed sandbox-runc as an engine would.  What they
assert is what the kernel and the workload saw: a call that succeeded or failed (and with which
errno) inside the container, and the records the agent wrote for it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from sandbox.host.bundle import spec_for_rootfs
from tests.e2e.engines import PrivateRunc, require_tool

pytestmark = pytest.mark.e2e

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.path.join(os.path.dirname(sys.executable), "sandbox")
ENOSYS, EPERM = 38, 1


@pytest.fixture(scope="module")
def probe_rootfs(demo_rootfs):
    """The demo rootfs with /bin/agent-probe (tests/e2e/agent_probe.c, static) and /mnt, in a 0755
    directory (strict's user namespace maps root to uid 100000, which must reach it)."""
    import pathlib
    import tempfile

    require_tool("gcc")
    d = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-e2e-agent-"))
    try:
        os.chmod(d, 0o755)
        root = d / "rootfs"
        shutil.copytree(demo_rootfs, root, symlinks=True)
        (root / "mnt").mkdir(exist_ok=True)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(root / "bin" / "agent-probe"),
                        os.path.join(HERE, "agent_probe.c")], check=True)
        yield str(root)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start_agent(tmp, env):
    """`sandbox agent run` on a private socket; (socket, process)."""
    from sandbox.runtime.unixsock import ping

    d = tmp / f"agent-{uuid.uuid4().hex[:6]}"
    d.mkdir(mode=0o700)
    sock = str(d / "agent.sock")
    log = open(tmp / "agent.log", "ab")
    proc = subprocess.Popen([CLI, "agent", "run", "--socket", sock, "--flush-interval", "0.5"], env=env,
                            stdout=log, stderr=log)
    for _ in range(200):
        info = ping(sock)
        if info and info.get("service") == "agent":
            return sock, proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the sandbox agent did not come up: " + (tmp / "agent.log").read_text())


def stop_agent(proc, kill=False):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Env(PrivateRunc):
    def __init__(self, tmp_path, runc, rootfs, **config):
        super().__init__(tmp_path, runc, rootfs, **config)
        self.socket, self.agent = start_agent(tmp_path, self.env)
        self.env["SANDBOX_AGENT_SOCKET"] = self.socket
        self.profiles = tmp_path / "profiles"
        self.profiles.mkdir()

    def restart_agent(self, kill=False):
        stop_agent(self.agent, kill)
        os.unlink(self.socket) if os.path.exists(self.socket) else None
        shutil.rmtree(os.path.dirname(self.socket), ignore_errors=True)
        self.socket, self.agent = start_agent(self.tmp, self.env)
        self.env["SANDBOX_AGENT_SOCKET"] = self.socket

    def profile(self, name, body):
        path = self.profiles / f"{name}.yaml"
        path.write_text(f"apiVersion: sandbox/v1\nkind: Profile\nname: {name}\n{body}")
        os.chmod(path, 0o644)
        return str(path)

    def bundle(self, args, caps=None, **changes):
        cid = f"sbx-a-{uuid.uuid4().hex[:10]}"
        d = self.tmp / cid
        d.mkdir()
        os.chmod(d, 0o755)
        cfg = spec_for_rootfs(self.rootfs, args)
        if caps is not None:
            cfg["process"]["capabilities"] = {s: list(caps) for s in ("bounding", "effective", "permitted")}
        cfg.update(changes)
        (d / "config.json").write_text(json.dumps(cfg))
        return cid, str(d)

    def run(self, args, timeout=60, **kw):
        cid, b = self.bundle(args, **kw)
        return cid, self.run_shim("run", "-b", b, cid, timeout=timeout)

    def records(self, cid=None, event=None, settle=2.0):
        """The log's records (of `cid`, of `event`), once the agent has written what it holds."""
        deadline = time.monotonic() + settle
        while True:
            recs = [r for r in super().records() if (cid is None or r["container_id"] == cid)
                    and (event is None or r["event"] == event)] if os.path.exists(self.audit) else []
            detached = any(r["event"] == "monitor" and r["data"].get("action") == "detached" for r in recs) or \
                event not in (None, "monitor", "syscall", "exec")
            if (detached and recs) or time.monotonic() > deadline:
                return recs
            time.sleep(0.1)

    def detached(self, cid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r["container_id"] == cid and r["event"] == "monitor" and r["data"].get("action") == "detached"
                   for r in (super().records() if os.path.exists(self.audit) else [])):
                return True
            time.sleep(0.1)
        return False

    def close(self):
        self.delete_all()
        stop_agent(self.agent)


@pytest.fixture
def env(e2e, probe_rootfs, tmp_path):
    os.chmod(tmp_path, 0o755)
    e = Env(tmp_path, e2e, probe_rootfs)
    yield e
    e.close()


def firsts(env, cid):
    env.detached(cid)
    return {r["data"]["syscall"]: r["data"] for r in env.records(cid, "syscall") if r["data"].get("first")}


# -- complain mode -------------------------------------------------------------------------------------

def test_complain_mode_records_mount_and_keyctl_that_strict_would_deny_and_the_workload_succeeds(env):
    env.write_config(default_profile="strict", mode="complain")
    cid, res = env.run(["sh", "-c", "agent-probe mount && agent-probe keyctl && echo ok"],
                       caps=["CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"])
    # complain mode changed nothing the workload can do: both calls ran and succeeded
    assert res.returncode == 0, res.stderr
    assert "mount=0 errno=0" in res.stdout and "ok" in res.stdout
    assert "keyctl=" in res.stdout and "keyctl=-1" not in res.stdout
    seen = firsts(env, cid)
    for name in ("mount", "keyctl"):
        assert seen[name]["answer"] == "continue" and seen[name]["would"] == "SCMP_ACT_ERRNO(EPERM)", seen[name]
        assert seen[name]["exe"] == "/bin/agent-probe" and seen[name]["mode"] == "complain"
    # pointer arguments are never read; integer ones are recorded
    args = {a["name"]: a["value"] for a in seen["mount"]["args"]}
    assert args["dev_name"] == args["dir_name"] == args["type"] == args["data"] == "unread"
    assert args["flags"] == 0
    assert {a["name"]: a["value"] for a in seen["keyctl"]["args"]}["option"] == 0
    # the routes are a decision of their own, applied, beside complain mode's unapplied ones
    [route] = [r["decision"] for r in env.records(cid, "decision") if r["decision"]["control"] == "monitor"]
    assert route["action"] == "set" and route["applied"] and route["after"] == env.socket
    # and the operator sees them
    shown = subprocess.run([CLI, "audit", "show", "--container", cid, "--event", "syscall", env.audit],
                           capture_output=True, text=True, env=env.env, timeout=60)
    assert shown.returncode == 0
    assert "mount(" in shown.stdout and "keyctl(" in shown.stdout and "enforcement: SCMP_ACT_ERRNO(EPERM)" in shown.stdout


def test_complain_mode_without_an_agent_starts_the_container_and_says_what_is_missing(env):
    env.write_config(default_profile="strict", mode="complain")
    env.env["SANDBOX_AGENT_SOCKET"] = str(env.tmp / "nowhere" / "agent.sock")
    cid, res = env.run(["agent-probe", "keyctl"])
    assert res.returncode == 0, res.stderr
    [warn] = [r["decision"] for r in env.records(cid, "decision") if r["decision"]["control"] == "monitor"]
    assert warn["action"] == "warn" and "not recorded" in warn["reason"] and "sandbox agent start" in warn["reason"]


def test_complain_mode_forks_are_not_routed_only_namespace_clones(env):
    """clone is split exactly: a plain fork never waits for the agent (nor risks EINTR), a clone with
    namespace flags is recorded."""
    env.write_config(default_profile="strict", mode="complain")
    cid, res = env.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do cat /etc/hostname | wc -c; done; unshare -U true"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") >= 8 and "Interrupted" not in res.stderr
    seen = firsts(env, cid)
    assert "clone" not in seen  # 16 forks, none notified
    assert seen["unshare"]["would"] == "SCMP_ACT_ERRNO(EPERM)"


# -- exec trail, denials, fail closed ------------------------------------------------------------------

def test_exec_trail_records_a_pipelines_programs_in_order(env):
    env.write_config(default_profile=env.profile("trail", "extends: strict\nmonitor:\n  exec_trail: true\n"))
    script = "cat /etc/passwd | grep root | wc -l; /bin/echo done"
    cid, res = env.run(["sh", "-c", script])
    assert res.returncode == 0, res.stderr
    assert env.detached(cid)
    execs = [r["data"] for r in env.records(cid, "exec")]
    argv = [(e["program"] or {}).get("argv") for e in execs]
    # in the order they happened: the shell, the pipeline's three stages (started together, so in any
    # order among themselves), then what ran after the pipeline had finished
    assert argv[-5] == ["sh", "-c", script] and argv[-1] == ["/bin/echo", "done"], argv
    assert sorted(argv[-4:-1]) == [["cat", "/etc/passwd"], ["grep", "root"], ["wc", "-l"]], argv
    assert [e["n"] for e in execs] == list(range(1, len(execs) + 1))
    assert [e["notified"] for e in execs] == sorted(e["notified"] for e in execs)
    shell = execs[-5]
    assert shell["caller"]["comm"].startswith("runc:")  # runc's init ran the container's process
    for e in execs[-4:-1]:  # each forked by the shell, which ran the program by its name
        assert e["parent"]["pid"] == shell["pid"] and e["parent"]["comm"] == "sh", e
        assert e["caller"]["comm"] == "sh" and e["caller"]["pid"] != shell["pid"], e
    last = execs[-1]  # the script's last command: the shell execs it in its own place
    assert last["caller"]["pid"] == shell["pid"] and last["caller"]["argv"] == ["sh", "-c", script]
    for e in execs[-5:]:
        assert e["program"]["exe"] == "/bin/busybox" and e["seen"] == "at the exec (traced)", e
        assert e["filename"] == "unread" and e["argv"] == "unread" and e["answer"] == "continue"


def test_denials_fail_with_the_filters_errno_and_are_recorded(env):
    env.write_config(default_profile=env.profile("deny", "extends: strict\nmonitor:\n  denials: true\n"))
    cid, res = env.run(["sh", "-c", "agent-probe keyctl; agent-probe unshare; true"])
    assert f"keyctl=-1 errno={EPERM}" in res.stdout and f"unshare=-1 errno={EPERM}" in res.stdout
    seen = firsts(env, cid)
    assert seen["keyctl"]["answer"] == "errno EPERM" and seen["unshare"]["answer"] == "errno EPERM"


def test_regression_own_listener_cannot_take_the_agents_calls(env):
    """A workload loading a filter of its own that hands a denied syscall to its own listener would
    take precedence over the agent's (the newest filter's notification wins) and could answer
    "continue". The kernel allows one listener per filter chain: the workload's gets EBUSY."""
    env.write_config(default_profile=env.profile("deny", "extends: strict\nmonitor:\n  denials: true\n"))
    cid, res = env.run(["agent-probe", "listener"])
    assert "listener=-1 errno=16" in res.stdout, res.stdout + res.stderr  # EBUSY
    assert f"keyctl=-1 errno={EPERM}" in res.stdout
    assert firsts(env, cid)["keyctl"]["answer"] == "errno EPERM"


def test_enforce_mode_refuses_a_profile_that_needs_an_absent_agent(env):
    env.write_config(default_profile=env.profile("trail", "extends: strict\nmonitor:\n  exec_trail: true\n"))
    env.env["SANDBOX_AGENT_SOCKET"] = str(env.tmp / "nowhere" / "agent.sock")
    cid, res = env.run(["true"])
    assert res.returncode == 1
    assert "monitor.exec_trail needs the sandbox agent" in res.stderr and "sandbox agent start" in res.stderr
    assert cid not in env.containers()
    assert [r["event"] for r in env.records(cid)][-1] == "refused"


def test_agent_killed_mid_run_leaves_notified_syscalls_failing_never_allowed(env):
    """Exec trail (enforce) and complain mode: once the agent is gone the kernel fails every routed
    call with ENOSYS. A restarted agent picks up new containers."""
    trail_cfg = env.write_config(str(env.tmp / "trail-config.yaml"), default_profile=env.profile(
        "trail", "extends: strict\nmonitor:\n  exec_trail: true\n"))
    complain_cfg = env.write_config(str(env.tmp / "complain-config.yaml"), default_profile="strict", mode="complain")
    cid, b = env.bundle(["sh", "-c", "i=0; while [ $i -lt 40 ]; do /bin/touch /tmp/m$i; ls /tmp | wc -l; "
                                     "i=$((i+1)); sleep 0.1; done"])
    ccid, cb = env.bundle(["agent-probe", "every", "100", "keyctl"])
    out, cout = env.tmp / "trail.out", env.tmp / "complain.out"
    procs = []
    for bundle, c, cfg, path in ((b, cid, trail_cfg, out), (cb, ccid, complain_cfg, cout)):
        with open(path, "w") as f:
            procs.append(subprocess.Popen([env.shim, "--root", env.root, "run", "-b", bundle, c], stdout=f,
                                          stderr=subprocess.STDOUT, env={**env.env, "SANDBOX_CONFIG": cfg},
                                          stdin=subprocess.DEVNULL))
    try:
        time.sleep(2)
        before = out.read_text()
        counted = [int(x) for x in before.split() if x.isdigit()]
        assert counted and counted == sorted(counted), before  # the loop ran its programs
        assert cout.read_text().count("errno=0") >= 3  # keyctl let run while the agent answers
        stop_agent(env.agent, kill=True)
        time.sleep(1.5)
        after = out.read_text()[len(before):]
        # every exec now fails with ENOSYS: none of the programs runs any more
        assert "Function not implemented" in after, after
        assert not [x for x in after.split() if x.isdigit()], after
        lines = cout.read_text().splitlines()
        assert lines[-1] == f"keyctl=-1 errno={ENOSYS}", lines[-3:]
        assert all("errno=0" not in line for line in lines[-5:])
    finally:
        for c in (cid, ccid):
            subprocess.run([env.runc, "--root", env.root, "kill", c, "KILL"], capture_output=True)
        for p in procs:
            p.wait(30)
    # a restarted agent serves the next container
    env.restart_agent()
    env.write_config(default_profile=env.profile("trail", "extends: strict\nmonitor:\n  exec_trail: true\n"))
    cid2, res = env.run(["sh", "-c", "/bin/echo again"])
    assert res.returncode == 0 and "again" in res.stdout, res.stderr
    assert env.detached(cid2)
    assert any((e["data"]["program"] or {}).get("argv") == ["/bin/echo", "again"] for e in env.records(cid2, "exec"))


# -- learn ----------------------------------------------------------------------------------------------

def _learn(env, out, *args, timeout=120):
    return subprocess.run([CLI, "learn", "--profile", "strict", "--rootfs", env.rootfs, "--root", env.root,
                           "--audit-log", env.audit, "-o", str(out), *args], capture_output=True, text=True,
                          env=env.env, timeout=timeout)


def _run(env, profile, *cmd, name=None, timeout=60):
    return subprocess.run([CLI, "run", "--profile", profile, "--rootfs", env.rootfs, "--root", env.root,
                           "--audit-log", env.audit, *(["--name", name] if name else []), "--", *cmd],
                          capture_output=True, text=True, env=env.env, timeout=timeout)


def test_learn_then_enforce_round_trip_static_c_program(env):
    learned = env.tmp / "learned.yaml"
    res = _learn(env, learned, "--", "agent-probe", "hello")
    assert res.returncode == 0, res.stderr
    text = learned.read_text()
    assert "extends: strict" in text and "base: empty" in text and "denials: true" in text
    assert "# " in text.split("allow:")[1]  # counts as comments
    v = subprocess.run([CLI, "profile", "validate", str(learned)], capture_output=True, text=True, env=env.env)
    assert v.returncode == 0 and "valid" in v.stdout
    lint = subprocess.run([CLI, "profile", "lint", str(learned)], capture_output=True, text=True, env=env.env)
    assert lint.returncode == 0, lint.stdout
    os.chmod(learned, 0o644)
    ok = _run(env, str(learned), "agent-probe", "hello", name="rt-ok")
    assert ok.returncode == 0 and "hello" in ok.stdout, ok.stderr
    # something the workload never did while learning: denied, and recorded
    bad = _run(env, str(learned), "agent-probe", "keyctl", name="rt-bad")
    assert f"keyctl=-1 errno={EPERM}" in bad.stdout, bad.stdout + bad.stderr
    assert env.detached("rt-bad")
    seen = firsts(env, "rt-bad")
    assert seen["keyctl"]["answer"] == "errno EPERM"


FETCH = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
         "'http://127.0.0.1:8080/index.html', timeout=2).read().decode())")


def _fetch_from_its_namespace(env, cid, times=1):
    """GET the page over loopback inside the container's own network namespace; the body, or ""."""
    st = env.state(cid)
    if not st or st.get("status") != "running":
        return ""
    body = ""
    for _ in range(times):
        r = subprocess.run(["nsenter", "-t", str(st["pid"]), "-n", sys.executable, "-c", FETCH], capture_output=True,
                           text=True, timeout=10)
        body = body or r.stdout
    return body


def _exercise(env, until, out, times=4):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not out and not until():
        for cid in env.containers():
            body = _fetch_from_its_namespace(env, cid, times)
            if "sandbox-was-here" in body:
                out.append(body)
        time.sleep(0.2)


def test_learn_a_service_exercised_over_loopback_then_enforce(env):
    """busybox httpd in its own network namespace, fetched over loopback in that namespace while
    `learn --duration` runs; then served under the learned profile in enforce mode."""
    require_tool("nsenter")
    serve = "mkdir -p /tmp/www && echo sandbox-was-here > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /tmp/www"
    learned = env.tmp / "httpd.yaml"
    fetched: list[str] = []
    done = threading.Event()
    t = threading.Thread(target=_exercise, args=(env, done.is_set, fetched))
    t.start()
    try:
        res = _learn(env, learned, "--duration", "5", "--", "sh", "-c", serve)
    finally:
        done.set()
        t.join()
    assert res.returncode == 0, res.stderr
    assert fetched, "the service never answered while learning"
    text = learned.read_text()
    for name in ("bind", "listen", "accept"):
        assert f"- {name} " in text, text
    os.chmod(learned, 0o644)
    # enforce: the same service under the learned profile, fetched the same way
    proc = subprocess.Popen([CLI, "run", "--profile", str(learned), "--rootfs", env.rootfs, "--root", env.root,
                             "--audit-log", env.audit, "--name", "httpd-enforce", "--", "sh", "-c", serve],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.env)
    served: list[str] = []
    try:
        _exercise(env, lambda: proc.poll() is not None, served, times=2)
    finally:
        subprocess.run([env.runc, "--root", env.root, "kill", "httpd-enforce", "KILL"], capture_output=True)
        out, err = proc.communicate(timeout=60)
    assert served and "sandbox-was-here" in served[0], out + err


# -- many at once ---------------------------------------------------------------------------------------

def test_twenty_containers_in_complain_mode_at_once_every_record_present_and_the_chain_verifies(env):
    env.write_config(default_profile="strict", mode="complain")
    cids = []
    procs = []
    for _ in range(20):
        cid, b = env.bundle(["sh", "-c", "agent-probe keyctl; agent-probe loop 200 keyctl; agent-probe unshare; true"])
        cids.append(cid)
        procs.append(subprocess.Popen([env.shim, "--root", env.root, "run", "-b", b, cid], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env.env, stdin=subprocess.DEVNULL))
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):  # every workload ran every call, as without the agent
        assert p.returncode == 0, err
        assert "keyctl=" in out and "calls=200" in out and "unshare=0" in out, out
    deadline = time.monotonic() + 60
    while True:  # every container's descriptor closed, and its counts written
        recs = env.records(settle=0)
        gone = {r["container_id"] for r in recs if r["event"] == "monitor" and r["data"].get("action") == "detached"}
        if set(cids) <= gone or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for cid in cids:
        mine = [r for r in recs if r["container_id"] == cid]
        seen = {r["data"]["syscall"] for r in mine if r["event"] == "syscall" and r["data"].get("first")}
        assert {"keyctl", "unshare"} <= seen, (cid, sorted(seen))
        [detach] = [r["data"] for r in mine if r["event"] == "monitor" and r["data"].get("action") == "detached"]
        assert detach["totals"]["keyctl"] == 201 and detach["totals"]["unshare"] == 1
        # rate-limited: one record for the first call of each syscall, then counts
        assert sum(1 for r in mine if r["event"] == "syscall" and r["data"].get("first")) == 2
    v = env.verify()
    assert v.returncode == 0, v.stdout


def test_complain_mode_through_the_sandbox_daemon(env):
    """The daemon does the hardening (and so asks whether the agent answers) for sandbox-runc."""
    from tests.e2e.engines import start_daemon, stop_daemon

    env.write_config(default_profile="strict", mode="complain")
    sock, proc = start_daemon(env.tmp)
    try:
        env.env["SANDBOX_DAEMON_SOCKET"] = sock
        cid, res = env.run(["agent-probe", "keyctl"])
        assert res.returncode == 0, res.stderr
        assert [r["data"].get("served_by") for r in env.records(cid, "profile_resolved")] == ["daemon"]
        assert firsts(env, cid)["keyctl"]["would"] == "SCMP_ACT_ERRNO(EPERM)"
    finally:
        env.env["SANDBOX_DAEMON_SOCKET"] = "off"
        stop_daemon(proc)
