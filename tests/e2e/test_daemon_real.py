"""sandbox-runc through the sandbox daemon, with the real runc and kernel.

The daemon must change where the hardening work runs and nothing else: the container's init
shows the strict profile in the kernel's own state, a forbidden syscall fails inside it,
refusals still stop runc, signals reach a `run` workload, and the container stays the child
of whoever called sandbox-runc (a subreaper like containerd-shim or conmon relies on that).
The podman suite (test_shim_podman.py) runs whole through the daemon as well.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from sandbox.host.bundle import spec_for_rootfs
from tests.e2e.engines import PrivateRunc, audit_records, shim_path, start_daemon, status_caps, stop_daemon

pytestmark = pytest.mark.e2e


class Env(PrivateRunc):
    def __init__(self, tmp_path, runc, rootfs):
        super().__init__(tmp_path, runc, rootfs, default_profile="strict")
        self.socket, self.proc = start_daemon(tmp_path)
        self.env["SANDBOX_DAEMON_SOCKET"] = self.socket

    def bundle(self, args, **changes):
        cid = f"sbx-d-{uuid.uuid4().hex[:10]}"
        d = self.tmp / cid
        d.mkdir()
        os.chmod(d, 0o755)
        cfg = spec_for_rootfs(self.rootfs, args)
        cfg.update(changes)
        (d / "config.json").write_text(json.dumps(cfg))
        return cid, str(d)

    def runc_json(self, *args):
        out = subprocess.run([self.runc, "--root", self.root, *args], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def close(self):
        self.delete_all()
        stop_daemon(self.proc)


@pytest.fixture
def env(e2e, demo_rootfs, tmp_path):
    os.chmod(tmp_path, 0o755)
    e = Env(tmp_path, e2e, demo_rootfs)
    yield e
    e.close()


def _served(records):
    return [r["data"].get("served_by") for r in records if r["event"] == "profile_resolved"]


def test_strict_through_the_daemon_shows_in_the_kernel_state(env):
    cid, b = env.bundle(["sleep", "60"])
    res = env.run_shim("create", "-b", b, cid)
    assert res.returncode == 0, res.stderr
    pid = env.runc_json("state", cid)["pid"]
    with open(f"/proc/{pid}/status") as f:
        st = status_caps(f.read())
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
    assert st["CapBnd_names"] <= {"CAP_NET_BIND_SERVICE"}
    with open(f"/proc/{pid}/uid_map") as f:
        first = f.read().split()
    assert first[0] == "0" and first[1] != "0"  # strict: container root is not host root
    assert _served(audit_records(env.audit, cid)) == ["daemon"]
    assert [r["event"] for r in audit_records(env.audit, cid)][-1] == "created"
    # and sandbox's own verifier agrees with every control
    cli = os.path.join(os.path.dirname(sys.executable), "sandbox")
    v = subprocess.run([cli, "verify", "--root", env.root, "--runc", env.runc, cid, "--audit-log", env.audit],
                       capture_output=True, text=True, env=env.env, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    assert env.run_shim("delete", "-f", cid).returncode == 0


def test_a_forbidden_syscall_fails_inside_a_daemon_hardened_container(env):
    # strict drops CAP_SYS_ADMIN and filters mount(2): the workload's mount must fail
    cid, b = env.bundle(["sh", "-c", "mount -t tmpfs none /tmp && echo MOUNTED || echo DENIED"])
    res = env.run_shim("run", "-b", b, cid)
    assert res.returncode == 0, res.stderr
    assert "DENIED" in res.stdout and "MOUNTED" not in res.stdout
    assert _served(audit_records(env.audit, cid)) == ["daemon"]


def test_a_refusal_through_the_daemon_never_reaches_runc(env):
    cid, b = env.bundle(["true"], mounts=spec_for_rootfs(env.rootfs, ["true"])["mounts"]
                        + [{"destination": "/hostetc", "type": "bind", "source": "/etc", "options": ["rbind"]}])
    res = env.run_shim("create", "-b", b, cid)
    assert res.returncode == 1 and "refused by sandbox profile strict" in res.stderr
    gone = subprocess.run([env.runc, "--root", env.root, "state", cid], capture_output=True)
    assert gone.returncode != 0  # runc never created it


def test_run_workload_gets_signals_and_the_container_is_our_child(env):
    cid, b = env.bundle(["sh", "-c", "trap 'echo GOT-TERM; exit 7' TERM; echo READY; while :; do sleep 0.1; done"])
    out = env.tmp / "run.out"
    with open(out, "wb") as o:
        p = subprocess.Popen([shim_path(), "--root", env.root, "run", "-b", b, cid], stdout=o,
                             stderr=subprocess.STDOUT, env=env.env, stdin=subprocess.DEVNULL)
        for _ in range(300):
            if "READY" in out.read_text(errors="replace"):
                break
            time.sleep(0.05)
        # the client runs runc itself: runc is the client's child, not the daemon's
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            children = f.read().split()
        assert children and all(open(f"/proc/{c}/comm").read().strip().startswith("runc") for c in children)
        with open(f"/proc/{env.proc.pid}/task/{env.proc.pid}/children") as f:
            assert f.read().split() == []
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 7
    assert "GOT-TERM" in out.read_text(errors="replace")
    assert [r["event"] for r in audit_records(env.audit, cid)][-1] == "exited"


def test_daemon_gone_mid_stream_means_the_python_path(env):
    stop_daemon(env.proc)
    cid, b = env.bundle(["true"])
    res = env.run_shim("run", "-b", b, cid)
    assert res.returncode == 0, res.stderr
    assert _served(audit_records(env.audit, cid)) == [None]
