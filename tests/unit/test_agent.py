"""The sandbox agent against the real kernel, without runc: a child process loads a seccomp filter
with SCMP_ACT_NOTIFY rules (libseccomp) and hands the notification descriptor to the agent exactly
as runc does (one message: the container state JSON with the metadata, and the fd by SCM_RIGHTS),
then makes the routed calls.  What the child sees (return values, errno) is what the agent answered."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from sandbox.runtime.agent import run_in_thread

CHILD = r"""
import ctypes, json, os, socket, sys, time
import pyseccomp
path, cid, meta, uid, plan = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
libc = ctypes.CDLL(None, use_errno=True)
f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
for name in ("keyctl", "getppid", "execve"):
    f.add_rule(pyseccomp.NOTIFY, name)
if uid:
    os.setgid(uid); os.setuid(uid)
f.load()
fd = pyseccomp._libseccomp.seccomp_notify_fd(f._filter)
state = {"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": os.getpid(), "metadata": meta,
         "state": {"ociVersion": "1.0.2", "id": cid, "status": "creating", "pid": os.getpid(), "bundle": "/b"}}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
if plan and plan[0] == "pipe":  # hand over some other descriptor
    r, w = os.pipe(); fd = r; plan = plan[1:]
try:
    socket.send_fds(s, [json.dumps(state).encode()], [fd])
except OSError as e:  # the agent hung up at once (a peer it does not serve)
    print(f"send: {e.strerror}", file=sys.stderr)
os.close(fd)
time.sleep(0.05)
for step in plan:
    name, n = step.split("*") if "*" in step else (step, "1")
    for _ in range(int(n)):
        ctypes.set_errno(0)
        r = libc.syscall(250, 0, -2, 1) if name == "keyctl" else libc.syscall(110)
        print(f"{name}={r} errno={ctypes.get_errno()}", flush=True)
"""

KEYCTL_ALLOWED = {"default": ["SCMP_ACT_ERRNO", 1], "would": {"getppid": [["SCMP_ACT_ALLOW", None, []]]}}


def meta(mode="complain", **kw):
    d = {"v": 1, "profile": "test", "sha256": "00" * 32, "mode": mode, "routes": [mode], "exec": False, "errno": {},
         "caps": [], **(KEYCTL_ALLOWED if mode == "complain" else {})}
    d.update(kw)
    return json.dumps(d)


@pytest.fixture
def agent(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the agent serves root's runc: root only")
    records = []
    d = tmp_path / "sock"
    d.mkdir(mode=0o700)
    a, thread = run_in_thread(str(d / "agent.sock"), records.extend, flush_interval=0.2)
    a.records = records
    yield a
    a.stop()
    thread.join(30)


def child(agent, cid, meta_json, *plan, uid=0):
    return subprocess.run([sys.executable, "-c", CHILD, agent.path, cid, meta_json, str(uid), *plan],
                          capture_output=True, text=True, timeout=60)


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def of(agent, cid, event=None):
    return [r for r in agent.records if r.get("container_id") == cid and (event is None or r["event"] == event)]


def detached(agent, cid):
    return wait_for(lambda: any(r["data"].get("action") == "detached" for r in of(agent, cid, "monitor")))


def test_complain_continues_every_call_and_records_the_first_of_each_that_enforcement_would_deny(agent):
    res = child(agent, "c1", meta(), "keyctl*5", "getppid*3")
    assert res.returncode == 0, res.stderr
    keyctl = [line for line in res.stdout.splitlines() if line.startswith("keyctl=")]
    assert len(keyctl) == 5 and all(not line.startswith("keyctl=-1") for line in keyctl)  # it ran
    assert all(line.startswith("getppid=") and line != "getppid=-1" for line in res.stdout.splitlines()[5:])
    assert detached(agent, "c1")
    firsts = [r["data"] for r in of(agent, "c1", "syscall") if r["data"]["first"]]
    assert [(f["syscall"], f["answer"], f["would"]) for f in firsts] == [("keyctl", "continue", "SCMP_ACT_ERRNO(EPERM)")]
    assert firsts[0]["exe"] == os.path.realpath(sys.executable)
    assert [a["value"] for a in firsts[0]["args"]][:2] == [0, (1 << 64) - 2]  # option, and the keyring id as u64
    [detach] = [r["data"] for r in of(agent, "c1", "monitor") if r["data"]["action"] == "detached"]
    assert detach["totals"] == {"keyctl": 5} and detach["why"] == "every process of the filter has exited"
    assert sum(c for r in of(agent, "c1", "syscall") if not r["data"]["first"] for c in r["data"]["counts"].values()) == 5
    assert not agent.containers and not agent.targets  # nothing kept once the container is gone


def test_denials_are_answered_with_the_errno_and_recorded(agent):
    res = child(agent, "c2", meta("enforce", errno={"keyctl": 13}), "keyctl*2", "getppid")
    assert res.stdout.splitlines()[:2] == ["keyctl=-1 errno=13", "keyctl=-1 errno=13"]
    assert res.stdout.splitlines()[2].startswith("getppid=") and "=-1" not in res.stdout.splitlines()[2]
    assert detached(agent, "c2")
    [first] = [r["data"] for r in of(agent, "c2", "syscall") if r["data"]["first"]]
    assert first["answer"] == "errno EACCES" and first["syscall"] == "keyctl"


@pytest.mark.parametrize("plan,why", [
    (("pipe",), "not a seccomp notification descriptor"),
])
def test_a_descriptor_that_is_not_a_notify_fd_is_refused(agent, plan, why):
    child(agent, "c3", meta(), *plan)
    assert wait_for(lambda: of(agent, "c3", "error"))
    assert why in of(agent, "c3", "error")[0]["data"]["reason"]


def test_metadata_that_is_not_sandboxs_fails_closed(agent):
    """Nothing says what to answer: the descriptor is closed, and the kernel fails the routed calls."""
    res = child(agent, "c4", json.dumps({"mode": "whatever"}), "keyctl", "getppid")
    assert res.stdout.splitlines() == ["keyctl=-1 errno=38", "getppid=-1 errno=38"]
    assert "listenerMetadata is not the sandbox transform's" in of(agent, "c4", "error")[0]["data"]["reason"]


def test_a_peer_that_is_not_root_is_not_served(agent):
    """Even where the socket's mode would let it connect, a process that is not root is not served."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="sandbox-agent-test-")
    try:
        os.chmod(d, 0o755)
        records = []
        other, thread = run_in_thread(os.path.join(d, "agent.sock"), records.extend, flush_interval=0.2)
        os.chmod(other.path, 0o666)
        res = child(other, "c5", meta(), "keyctl", uid=65534)
        assert res.stdout.splitlines() == ["keyctl=-1 errno=38"], res.stderr  # its descriptor was never taken
        other.stop()
        thread.join(30)
        assert [r["data"]["action"] for r in records] == ["agent started", "agent stopped"]
        assert other.stats["attached"] == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_silent_and_half_sent_connections_hold_no_one_up(agent):
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(agent.path)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(agent.path)
    half.sendall(b'{"ociVersion": "1.0.2", "fds": ["seccompFd"], "st')
    try:
        t = time.monotonic()
        res = child(agent, "c6", meta(), "keyctl*3")
        assert time.monotonic() - t < 5 and res.stdout.count("errno=0") == 3
    finally:
        silent.close()
        half.close()


def test_many_containers_at_once_none_waits_for_another(agent):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, agent.path, f"m{i}", meta(), "0", "keyctl*100"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.count("errno=0") == 100, err
    assert wait_for(lambda: all(detached(agent, f"m{i}") for i in range(20)))
    for i in range(20):
        assert sum(1 for r in of(agent, f"m{i}", "syscall") if r["data"]["first"]) == 1
    assert not agent.containers and agent.stats["notifications"] >= 2000


def test_a_child_killed_while_its_call_waits_leaves_the_agent_serving(agent):
    """A withdrawn notification (its task killed) is ENOENT on receive or send: nothing is recorded
    for it, and the agent goes on."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, agent.path, "k1", meta(), "0", "keyctl*100000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    p.kill()
    p.wait()
    assert detached(agent, "k1")
    res = child(agent, "k2", meta(), "keyctl")
    assert res.stdout.strip() == "keyctl=" + res.stdout.split("=")[1].split()[0] + " errno=0"
