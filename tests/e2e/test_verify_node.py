"""`sandbox verify` with seccomp proved by content, and `sandbox verify --all`, against real runc.

Containers are started through sandbox-runc (hardened, audited) and by plain runc with filters
weaker than the profile in exactly one place; verify must find exactly that place in the filter
the kernel holds (read with ptrace), and nothing in the filters runc installs for the profile.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from sandbox.host.bundle import make_bundle, spec_for_rootfs
from sandbox.runtime.service import apply_profile_to_config
from tests.e2e.engines import ANNOTATION, PrivateRunc

pytestmark = pytest.mark.e2e

PROFILES = ("baseline", "restricted", "strict")


@pytest.fixture
def node(e2e, demo_rootfs, tmp_path):
    n = PrivateRunc(tmp_path, e2e, demo_rootfs, allowed_profiles=["restricted", "strict"])
    yield n
    n.delete_all()


def _cid(tag):
    return f"vn-{tag}-{uuid.uuid4().hex[:8]}"


def _spec(node, profile=None, uid=0, args=("sleep", "600")):
    cfg = spec_for_rootfs(node.rootfs, list(args))
    cfg["process"]["user"] = {"uid": uid, "gid": uid}
    if profile:
        cfg["annotations"] = {ANNOTATION: profile}
    return cfg


def through_sandbox(node, profile="baseline"):
    """A container created through sandbox-runc under `profile` (restricted: as uid 1000)."""
    cid = _cid(profile)
    bundle = make_bundle(str(node.tmp / "bundles"), node.rootfs,
                         _spec(node, None if profile == "baseline" else profile, 1000 if profile == "restricted" else 0),
                         name=cid)
    res = node.run_shim("run", "-d", "-b", bundle, cid)
    assert res.returncode == 0, res.stderr
    return cid


def plain_runc(node, config, tag="plain", outer_filter=None):
    """A container started by runc itself (no sandbox) from `config`; under `outer_filter` (raw BPF) if given."""
    cid = _cid(tag)
    bundle = make_bundle(str(node.tmp / "bundles"), node.rootfs, config, name=cid)
    argv = [node.runc, "--root", node.root, "run", "-d", "-b", bundle, cid]
    if outer_filter is not None:
        launcher = ("import ctypes, os, sys\n"
                    "from tests.seccomp_probe import install_filter\n"
                    "install_filter(bytes.fromhex(sys.argv[1]))\n"
                    "os.execv(sys.argv[2], sys.argv[2:])\n")
        argv = [sys.executable, "-c", launcher, outer_filter.hex(), *argv]
    with open(node.tmp / f"{cid}.err", "w") as err:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert res.returncode == 0, (node.tmp / f"{cid}.err").read_text()
    return cid


def hardened(node, profile="baseline", uid=0):
    """What `profile` makes of a plain spec (the config a sandbox container of it would get)."""
    return apply_profile_to_config(profile, _spec(node, uid=uid))


def verify(node, *args):
    res = subprocess.run([sys.executable, "-m", "sandbox", "verify", *args], capture_output=True, text=True,
                         env=node.env, timeout=120)
    return res


def verify_json(node, cid, *args):
    res = verify(node, cid, "--root", node.root, "--format", "json", *args)
    assert res.returncode in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    return res.returncode, doc, {c["control"]: c for c in doc["checks"]}


def verify_all(node, *args):
    res = verify(node, "--all", "--root", node.root, "--audit-log", node.audit, "--format", "json", *args)
    assert res.returncode in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    return res.returncode, doc, {c["id"]: c for c in doc["containers"]}


# ---------------------------------------------------------------------------------------------------------
# One container
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_each_built_in_profile_passes_every_control_with_seccomp_proved_by_content(node, profile):
    cid = through_sandbox(node, profile)
    code, doc, checks = verify_json(node, cid, "--all-processes")
    assert code == 0 and doc["passed"], [c for c in doc["checks"] if c["status"] == "FAIL"]
    assert not [c for c in doc["checks"] if c["status"] == "FAIL"]
    seccomp = checks["seccomp"]
    assert seccomp["status"] == "PASS" and "no call is allowed beyond the profile" in seccomp["detail"]
    assert seccomp["actual"].startswith("1 filter(s)")
    assert "x86_64" in seccomp["detail"] and "i386" in seccomp["detail"]
    if profile == "strict":  # a user namespace: the filters are read all the same
        assert checks["user.uid_map"]["status"] == "PASS"
    # the profile applied again to the config.json sandbox wrote (strict's names the rootfs view) demands the same
    code, doc, _ = verify_json(node, cid, "--profile", profile)
    assert code == 0 and doc["passed"], [c for c in doc["checks"] if c["status"] == "FAIL"]
    code, doc, rows = verify_all(node)
    assert rows[cid]["state"] == "hardened" and rows[cid]["profile"] == profile, \
        (rows[cid]["reason"], [c["detail"] for c in rows[cid]["checks"] if c["status"] == "FAIL"])
    assert code == 0 and doc["passed"]


def test_a_filter_weaker_in_one_syscall_fails_naming_exactly_that_syscall(node):
    config = hardened(node)
    config["linux"]["seccomp"]["syscalls"].append({"names": ["acct"], "action": "SCMP_ACT_ALLOW"})
    cid = plain_runc(node, config, "acct")
    code, doc, checks = verify_json(node, cid, "--profile", "baseline")
    seccomp = checks["seccomp"]
    assert code == 1 and seccomp["status"] == "FAIL"
    assert seccomp["detail"] == "allowed beyond the profile: acct: ALLOW, the profile: ERRNO(EPERM); " \
                                "acct [i386]: ALLOW, the profile: ERRNO(EPERM)"
    assert [c["control"] for c in doc["checks"] if c["status"] == "FAIL"] == ["seccomp"]


def test_a_filter_weaker_for_one_argument_value_fails_naming_it(node):
    config = hardened(node)
    config["linux"]["seccomp"]["syscalls"].append(
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0x123, "op": "SCMP_CMP_EQ"}]})
    cid = plain_runc(node, config, "personality")
    code, _, checks = verify_json(node, cid, "--profile", "baseline")
    detail = checks["seccomp"]["detail"]
    assert code == 1 and checks["seccomp"]["status"] == "FAIL"
    assert detail.startswith("allowed beyond the profile: personality(arg0=0x123): ALLOW"), detail
    assert detail.count("personality(") == 2 and "acct" not in detail  # x86_64 and i386, nothing else


def test_a_stricter_filter_stacked_on_runcs_passes(node):
    from tests.seccomp_probe import compile_filter

    outer = compile_filter("SCMP_ACT_ALLOW", {"shmget": "SCMP_ACT_ERRNO", "msgget": "SCMP_ACT_ERRNO"})
    cid = plain_runc(node, hardened(node), "stacked", outer_filter=outer)
    code, _, checks = verify_json(node, cid, "--profile", "baseline")
    seccomp = checks["seccomp"]
    assert seccomp["status"] == "PASS", seccomp
    assert seccomp["actual"].startswith("2 filter(s)") and "stricter" in seccomp["detail"]
    assert code == 0


def test_a_container_without_a_filter_fails(node):
    config = hardened(node)
    del config["linux"]["seccomp"]
    cid = plain_runc(node, config, "nofilter")
    code, _, checks = verify_json(node, cid, "--profile", "baseline")
    assert code == 1 and checks["seccomp"]["status"] == "FAIL"
    assert "no seccomp filter is installed" in checks["seccomp"]["detail"]


def test_a_process_that_is_already_traced_is_not_attached_to(node):
    from sandbox.host.ptrace import PTRACE_SEIZE, _Libc

    cid = through_sandbox(node)
    pid = node.state(cid)["pid"]
    r, w = os.pipe()
    tracer = os.fork()
    if tracer == 0:  # a debugger: seizes the init and holds on
        try:
            os.close(r)
            _Libc().call(PTRACE_SEIZE, pid)
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
        code, _, checks = verify_json(node, cid)
        assert code == 1 and checks["seccomp"]["status"] == "FAIL"
        assert f"already traced by process {tracer}" in checks["seccomp"]["detail"]
    finally:
        os.kill(tracer, signal.SIGKILL)
        os.waitpid(tracer, 0)
        os.close(r)


# ---------------------------------------------------------------------------------------------------------
# The whole node
# ---------------------------------------------------------------------------------------------------------

def test_all_reports_plain_runc_containers_as_bypass_next_to_sandbox_ones(node):
    from prometheus_client.parser import text_string_to_metric_families

    good = [through_sandbox(node, "baseline"), through_sandbox(node, "strict")]
    plain = plain_runc(node, hardened(node), "plain")  # a hardened config, but runc was called directly
    copied = copy.deepcopy(node.state(good[0]))  # a sandbox container's config.json, copied with its annotation
    with open(os.path.join(copied["bundle"], "config.json")) as f:
        forged = plain_runc(node, json.load(f), "copied")
    code, doc, rows = verify_all(node)
    assert code == 1 and not doc["passed"]
    assert [rows[c]["state"] for c in good] == ["hardened", "hardened"]
    assert rows[plain]["state"] == "bypass" and "no sandbox annotation" in rows[plain]["reason"]
    assert rows[forged]["state"] == "bypass" and "no record of its creation" in rows[forged]["reason"]
    assert doc["summary"]["hardened"] == 2 and doc["summary"]["bypass"] == 2
    assert doc["audit_log"]["state"] == "ok"

    prom = verify(node, "--all", "--root", node.root, "--audit-log", node.audit, "--format", "prometheus")
    assert prom.returncode == 1, prom.stderr
    families = {f.name: f for f in text_string_to_metric_families(prom.stdout)}
    by_state = {s.labels["state"]: s.value for s in families["sandbox_verify_containers"].samples}
    assert by_state == {"hardened": 2, "drifted": 0, "bypass": 2, "unverified": 0, "stopped": 0}
    by_profile = {(s.labels["state"], s.labels["profile"]): s.value
                  for s in families["sandbox_verify_containers_by_profile"].samples}
    assert by_profile[("hardened", "baseline")] == 1 and by_profile[("hardened", "strict")] == 1
    failing = {(s.labels["container"], s.labels["control"]) for s in families["sandbox_verify_control_failed"].samples}
    assert {(plain, "provenance"), (forged, "provenance")} <= failing
    assert not {c for c, _ in failing} & set(good)
    assert [s.value for s in families["sandbox_verify_ok"].samples] == [0]

    out = node.tmp / "textfile" / "sandbox.prom"
    out.parent.mkdir()
    res = verify(node, "--all", "--root", node.root, "--audit-log", node.audit, "--format", "prometheus",
                 "--output", str(out))
    assert res.returncode == 1 and res.stdout == "" and oct(out.stat().st_mode & 0o777) == "0o644"
    assert {f.name for f in text_string_to_metric_families(out.read_text())} == set(families)


def test_a_process_added_by_runc_exec_with_more_capabilities_is_drift(node):
    cid = through_sandbox(node, "baseline")
    with open(node.tmp / "exec.err", "w") as err:  # not a pipe: the detached process would hold it open
        res = subprocess.run([node.runc, "--root", node.root, "exec", "-d", "--cap", "CAP_SYS_ADMIN", cid, "sleep",
                              "600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
    assert res.returncode == 0, (node.tmp / "exec.err").read_text()
    code, _, checks = verify_json(node, cid)  # init only: still as configured
    assert code == 0
    code, _, checks = verify_json(node, cid, "--all-processes")
    assert code == 1 and checks["processes.capabilities"]["status"] == "FAIL"
    assert "CAP_SYS_ADMIN" in checks["processes.capabilities"]["detail"]
    assert checks["processes.seccomp"]["status"] == "PASS"  # runc exec installs the container's filter
    code, _, rows = verify_all(node)
    assert code == 1 and rows[cid]["state"] == "drifted" and rows[cid]["failing"] == ["processes.capabilities"]


def test_a_paused_container_is_unverified_and_its_filters_are_not_read(node):
    from sandbox.host.ptrace import read_filters

    cid = through_sandbox(node, "baseline")
    pid = node.state(cid)["pid"]
    subprocess.run([node.runc, "--root", node.root, "pause", cid], check=True, timeout=30)
    try:
        code, _, rows = verify_all(node)
        assert code == 1 and rows[cid]["state"] == "unverified" and "paused" in rows[cid]["reason"]
        # forced: a frozen task never reaches the stop; the helper is killed and the kernel detaches it
        got = read_filters([pid], timeout=0.5)[pid]
        assert got.programs is None and "did not stop" in got.error
    finally:
        subprocess.run([node.runc, "--root", node.root, "resume", cid], check=True, timeout=30)
    for _ in range(50):
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        if status["State"].split()[0] != "t":
            break
        time.sleep(0.05)
    assert status["TracerPid"].strip() == "0" and status["State"].split()[0] in ("S", "R")
    code, _, rows = verify_all(node)
    assert rows[cid]["state"] == "hardened"


TRAP_SCRIPT = "echo 0 > /tmp/n; {trap}; while :; do sleep 1 & wait $!; done"


def _with_tmp(config, script):
    config["process"]["args"] = ["sh", "-c", script]
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev", "mode=1777", "size=1m"]})
    return config


def _read_tmp(pid, name):
    try:
        with open(f"/proc/{pid}/root/tmp/{name}") as f:
            return f.read().strip()
    except OSError:
        return None


def _wait_tmp(pid, value, timeout=5.0):
    """Whether the workload's /tmp/n says `value` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while _read_tmp(pid, "n") != value:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def trap_container(node, trap, tag):
    """A plain-runc container whose shell runs `trap` and waits; its init pid once it is ready."""
    cid = plain_runc(node, _with_tmp(hardened(node), TRAP_SCRIPT.format(trap=trap)), tag)
    pid = node.state(cid)["pid"]
    assert _wait_tmp(pid, "0")
    return pid


def test_a_signal_arriving_while_attached_is_handed_back_on_detach(node):
    from sandbox.host import ptrace

    pid = trap_container(node, "trap 'echo got > /tmp/n' TERM", "term")
    sent = []

    class SignalInTheMiddle(ptrace._Libc):
        def call(self, request, tid, addr=None, data=None):
            if request == ptrace.PTRACE_INTERRUPT:
                os.kill(tid, signal.SIGTERM)  # arrives while seized: a signal-delivery-stop comes first
                time.sleep(0.05)
                sent.append(tid)
            return super().call(request, tid, addr, data)

    got = ptrace._read_one(SignalInTheMiddle(), pid)
    assert sent == [pid] and got.programs and len(got.programs) == 1, got.error
    assert _wait_tmp(pid, "got")  # the workload's handler ran: the signal was not swallowed


def test_attaching_again_and_again_loses_no_signal_and_stops_only_briefly(node):
    from sandbox.host.ptrace import read_filters

    pid = trap_container(node, "i=0; trap 'i=$((i+1)); echo $i > /tmp/n' USR1", "count")
    stops = []
    for i in range(1, 31):
        os.kill(pid, signal.SIGUSR1)
        got = read_filters([pid])[pid]
        assert got.programs, got.error
        stops.append(got.stopped_ns)
        if not _wait_tmp(pid, str(i)):
            pytest.fail(f"signal {i} was lost")
    assert max(stops) < 50_000_000  # microseconds as a rule; 50 ms even on a loaded 2-core machine


def test_a_container_in_a_root_sandbox_does_not_know_is_still_reported(node):
    """Found by its pid namespace: not started through sandbox as far as sandbox can tell."""
    cid = through_sandbox(node, "baseline")  # hardened, but in a private root that discovery cannot know
    pid = node.state(cid)["pid"]
    res = verify(node, "--all", "--audit-log", node.audit, "--format", "json")
    assert res.returncode == 1, res.stderr
    rows = {c["pid"]: c for c in json.loads(res.stdout)["containers"]}
    ns = os.readlink(f"/proc/{pid}/ns/pid").split("[")[1].rstrip("]")
    assert rows[pid]["id"] == f"pidns:{ns}" and rows[pid]["engine"] == "unknown" and rows[pid]["state"] == "bypass"
    assert "no runc root sandbox found accounts for" in rows[pid]["reason"]
