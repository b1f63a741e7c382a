"""sandbox.host.bundle + sandbox.host.runc + sandbox.host.demo against the real runc."""

import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from sandbox.errors import RuncError
from sandbox.host.bundle import make_bundle, read_config, spec_for_rootfs
from sandbox.host.runc import Runc

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cid():
    return f"sandbox-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def runc(e2e, tmp_path):
    return Runc(e2e, root=str(tmp_path / "runc-root"))


def test_run_foreground_returns_the_exit_code_and_streams_are_inherited(e2e, demo_rootfs, tmp_path):
    # run in a child interpreter so its stdout is a pipe we read (the container inherits it)
    code = textwrap.dedent(f"""
        import sys
        from sandbox.host.bundle import make_bundle, spec_for_rootfs
        from sandbox.host.runc import Runc
        r = Runc({e2e!r}, root={str(tmp_path / "root")!r})
        cfg = spec_for_rootfs({demo_rootfs!r}, ["sh", "-c", "echo hi; echo err >&2; exit 3"])
        b = make_bundle({str(tmp_path / "state")!r}, {demo_rootfs!r}, cfg)
        with r.deleting("{cid()}"):
            rc = r.run_foreground("{cid()}", b)
        print("rc", rc)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["hi", "rc 3"]
    assert "err" in res.stderr


def test_run_foreground_with_capfd(runc, demo_rootfs, tmp_path, capfd):
    b = make_bundle(str(tmp_path / "state"), demo_rootfs, spec_for_rootfs(demo_rootfs, ["sh", "-c", "echo hi; exit 3"]))
    name = cid()
    with runc.deleting(name):
        assert runc.run_foreground(name, b) == 3
    assert capfd.readouterr().out == "hi\n"


def _foreground_child(e2e, demo_rootfs, tmp_path, name, script):
    """A child interpreter running `run_foreground` on `script`; prints "rc N" at the end."""
    code = textwrap.dedent(f"""
        from sandbox.host.bundle import make_bundle, spec_for_rootfs
        from sandbox.host.runc import Runc
        r = Runc({e2e!r}, root={str(tmp_path / "root")!r})
        cfg = spec_for_rootfs({demo_rootfs!r}, ["sh", "-c", {script!r}])
        b = make_bundle({str(tmp_path / "state")!r}, {demo_rootfs!r}, cfg)
        with r.deleting({name!r}):
            print("rc", r.run_foreground({name!r}, b), flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})


def test_death_by_signal_is_128_plus_n(e2e, demo_rootfs, tmp_path):
    name = cid()
    p = _foreground_child(e2e, demo_rootfs, tmp_path, name, "echo ready; sleep 30")
    try:
        assert p.stdout.readline() == "ready\n"
        Runc(e2e, root=str(tmp_path / "root")).kill(name, "KILL")
        out, _ = p.communicate(timeout=20)
    finally:
        p.kill()
    assert out.splitlines() == ["rc 137"]


def test_sigterm_sent_to_us_reaches_the_workload_once(e2e, demo_rootfs, tmp_path):
    script = "n=0; trap 'n=$((n+1)); echo got TERM $n' TERM; echo ready; sleep 1 & wait; sleep 0.5 & wait; exit 5"
    p = _foreground_child(e2e, demo_rootfs, tmp_path, cid(), script)
    try:
        assert p.stdout.readline() == "ready\n"
        p.send_signal(15)
        out, _ = p.communicate(timeout=20)
    finally:
        p.kill()
    assert out.splitlines() == ["got TERM 1", "rc 5"]


def test_ctrl_c_on_the_terminal_reaches_the_workload_once(e2e, demo_rootfs, tmp_path):
    """SIGINT from the tty goes to runc too (same process group): it must not be forwarded twice."""
    import pty
    import select

    script = "n=0; trap 'n=$((n+1)); echo got INT $n' INT; echo ready; sleep 1 & wait; sleep 0.5 & wait; exit 6"
    code = textwrap.dedent(f"""
        from sandbox.host.bundle import make_bundle, spec_for_rootfs
        from sandbox.host.runc import Runc
        r = Runc({e2e!r}, root={str(tmp_path / "root")!r})
        cfg = spec_for_rootfs({demo_rootfs!r}, ["sh", "-c", {script!r}])
        b = make_bundle({str(tmp_path / "state")!r}, {demo_rootfs!r}, cfg)
        with r.deleting({cid()!r}):
            print("rc", r.run_foreground({cid()!r}, b), flush=True)
    """)
    pid, master = pty.fork()
    if pid == 0:  # child: session leader with the pty as its controlling terminal
        os.chdir(ROOT)
        os.environ["PYTHONPATH"] = ROOT
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    deadline = time.monotonic() + 30
    sent = False
    try:
        while time.monotonic() < deadline:
            if not sent and b"ready" in out:
                os.write(master, b"\x03")
                sent = True
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if b"rc " in out and out.endswith(b"\n"):
                break
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    lines = [ln for ln in out.decode().replace("\r", "").replace("^C", "").splitlines() if ln]
    assert lines == ["ready", "got INT 1", "rc 6"], out


def test_detached_create_start_state_kill_delete(runc, demo_rootfs, tmp_path):
    cfg = spec_for_rootfs(demo_rootfs, ["sleep", "60"])
    b = make_bundle(str(tmp_path / "state"), demo_rootfs, cfg, name="c")
    assert read_config(b)["root"]["path"] == demo_rootfs
    name = cid()
    pid_file = os.path.join(b, "init.pid")
    with runc.deleting(name):
        runc.create(name, b, pid_file=pid_file)
        st = runc.state(name)
        assert st["status"] == "created" and st["bundle"] == b
        with open(pid_file) as f:
            assert int(f.read()) == st["pid"]
        runc.start(name)
        assert runc.state(name)["status"] == "running"
        runc.kill(name, "KILL")
        for _ in range(100):
            if runc.state(name)["status"] == "stopped":
                break
            time.sleep(0.05)
        assert runc.state(name)["status"] == "stopped"
        runc.delete(name)
        with pytest.raises(RuncError, match="does not exist"):
            runc.state(name)
    runc.cleanup(name)  # already gone: not an error


def test_create_failure_carries_runcs_message(runc, demo_rootfs, tmp_path):
    cfg = spec_for_rootfs(demo_rootfs, ["/no/such/binary"])
    cfg["process"]["cwd"] = "/no/such/dir"
    b = make_bundle(str(tmp_path / "state"), demo_rootfs, cfg)
    name = cid()
    with runc.deleting(name):
        # runc's own message is carried (it names what it could not find); its wording is runc's
        with pytest.raises(RuncError, match=f"runc create {name} failed: .*/no/such/"):
            runc.create(name, b)


def test_demo_rootfs_cache_builds_once_and_rebuilds_when_busybox_changes(e2e, tmp_path):
    import shutil

    from sandbox.host.demo import demo_rootfs

    bb = tmp_path / "busybox"
    shutil.copy("/bin/busybox", bb)
    cache = str(tmp_path / "cache")
    first = demo_rootfs(cache, busybox=str(bb))
    assert os.path.islink(os.path.join(first, "bin", "sh")) and os.stat(os.path.join(first, "tmp")).st_mode & 0o1777 == 0o1777
    assert demo_rootfs(cache, busybox=str(bb)) == first
    with open(bb, "ab") as f:
        f.write(b"\0")
    second = demo_rootfs(cache, busybox=str(bb))
    assert second != first and os.path.isdir(os.path.join(second, "bin"))
    assert not [n for n in os.listdir(cache) if ".tmp-" in n]


def test_missing_or_dynamic_busybox_is_a_clear_error(tmp_path):
    from sandbox.errors import BundleError
    from sandbox.host.demo import NOT_INSTALLED, demo_rootfs

    with pytest.raises(BundleError) as ei:
        demo_rootfs(str(tmp_path / "cache"), busybox=str(tmp_path / "nope"))
    assert str(ei.value) == NOT_INSTALLED == "busybox-static is not installed: apt-get install busybox-static"
    with pytest.raises(BundleError, match="dynamically linked"):
        demo_rootfs(str(tmp_path / "cache"), busybox=os.path.realpath(sys.executable))
