"""The sandbox daemon with the compiled dispatcher as its client, and a fake runc that records
what it was asked to do: the same hardening, audit records and refusals as the Python path,
runc run by the client (so the engine stays its parent), and every failure falling back or
failing closed.  tests/e2e/test_daemon_real.py does the same with the real runc and kernel."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from sandbox.runtime import daemon as sd
from tests.conftest import OCI, ROOT

RUNC_SPEC = os.path.join(OCI, "runc-spec-1.1.json")


def _spec_with_userns(path):
    """runc's spec with a user namespace of its own: strict keeps it, so the daemon serves the create
    (a user namespace sandbox adds takes the Python path: test_an_added_user_namespace_...)."""
    cfg = json.loads(open(RUNC_SPEC).read())
    cfg["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        cfg["linux"][key] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


SPEC = None  # set per session by _spec below


class Setup:
    def __init__(self, tmp_path, dispatcher):
        self.tmp = tmp_path
        self.dispatcher = dispatcher
        self.runc_log = tmp_path / "runc.log"
        self.runc = tmp_path / "fake-runc"
        # records argv; FAKE_EXIT sets its exit code; FAKE_KILL is a pid to kill before answering
        self.runc.write_text('#!/bin/sh\necho "$*" >> "$FAKE_LOG"\n'
                             # the rootfs view sandbox prepares for a user namespace it adds, seen by runc
                             'grep -q " /run/sandbox-rootfs " /proc/self/mountinfo && echo VIEW >> "$FAKE_LOG"\n'
                             '[ -n "$FAKE_KILL" ] && kill -9 "$FAKE_KILL" && sleep 0.2\n'
                             '[ -n "$FAKE_TRAP" ] && { trap \'echo TERM >> "$FAKE_LOG"; exit 143\' TERM; '
                             'echo ready >> "$FAKE_LOG"; while :; do sleep 0.05; done; }\n'
                             'exit "${FAKE_EXIT:-0}"\n')
        self.runc.chmod(0o755)
        self.audit = tmp_path / "audit" / "audit.jsonl"
        self.config = tmp_path / "config.yaml"
        self.config.write_text(f"runc: {self.runc}\naudit_log: {self.audit}\ndefault_profile: strict\n")
        self.config.chmod(0o644)
        self.cache = tmp_path / "cache"
        self.cache.mkdir(mode=0o700)
        self.sockdir = tmp_path / "run"
        self.sockdir.mkdir(mode=0o700)
        self.socket = str(self.sockdir / "daemon.sock")
        self.bundle = tmp_path / "bundle"
        self.bundle.mkdir()
        (self.bundle / "rootfs").mkdir()
        shutil.copy(SPEC, self.bundle / "config.json")
        self.runtime_dir = str(tmp_path / "runtime")  # id ranges, engine dirs: not the host's /run/sandbox
        self.env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(self.config), "SANDBOX_CACHE_DIR": str(self.cache),
                    "SANDBOX_RUNTIME_DIR": self.runtime_dir,
                    "SANDBOX_DAEMON_SOCKET": self.socket, "FAKE_LOG": str(self.runc_log),
                    "SANDBOX_PYTHON": sys.executable}
        self.proc = None

    def start_daemon(self):
        code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from sandbox.cli import main; main()"
        self.proc = subprocess.Popen([sys.executable, "-c", code, ROOT, "daemon", "run", "--socket", self.socket],
                                     env={"PATH": "/usr/bin:/bin", "SANDBOX_RUNTIME_DIR": self.runtime_dir},
                                     stderr=subprocess.PIPE, text=True)
        for _ in range(200):
            if sd.ping(self.socket):
                return self.proc
            time.sleep(0.05)
        self.proc.kill()
        pytest.fail("daemon did not come up: " + self.proc.stderr.read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def sandbox_runc(self, *args, env=None, prefix=(), **kw):
        e = {**self.env, **(env or {})}
        return subprocess.run([*prefix, self.dispatcher, *args], capture_output=True, text=True, env=e,
                              timeout=60, cwd=str(self.tmp), **kw)

    def runc_calls(self):
        return self.runc_log.read_text().splitlines() if self.runc_log.exists() else []

    def records(self):
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def events(self):
        return [r["event"] for r in self.records()]

    def hardened(self):
        return json.loads((self.bundle / "config.json").read_text())


@pytest.fixture(scope="session", autouse=True)
def _spec(tmp_path_factory):
    global SPEC
    SPEC = _spec_with_userns(str(tmp_path_factory.mktemp("spec") / "config.json"))


@pytest.fixture
def s(tmp_path, c_dispatcher):
    st = Setup(tmp_path, c_dispatcher)
    yield st
    st.stop()


def _served_by(records):
    return [r["data"].get("served_by") for r in records if r["event"] == "profile_resolved"]


def test_create_through_the_daemon_is_hardened_and_audited(s):
    s.start_daemon()
    res = s.sandbox_runc("--root", "/r", "create", "--bundle", "bundle", "c1")
    assert res.returncode == 0, res.stderr
    # runc got the command line rebuilt from the parsed one: one occurrence per flag, the bundle absolute
    assert s.runc_calls() == [f"--root=/r create --bundle={s.bundle} c1"]
    cfg = s.hardened()
    assert cfg["annotations"]["org.sandbox-runtime.profile.applied"].startswith("strict@")
    assert cfg["process"]["noNewPrivileges"] is True and cfg["linux"]["seccomp"]["defaultAction"]
    assert _served_by(s.records()) == ["daemon"]
    assert s.events()[-1] == "created" and all(r["container_id"] == "c1" for r in s.records())
    assert sd.ping(s.socket)["served"] == "2"  # harden, then the outcome


@pytest.mark.skipif(os.geteuid() != 0, reason="the idmapped rootfs view is mounted: needs root")
@pytest.mark.parametrize("daemon", [True, False])
def test_an_added_user_namespace_gets_its_rootfs_view_in_runcs_own_mount_namespace(s, daemon):
    """strict gives runc's plain spec a user namespace: an id range is allocated and runc finds the rootfs
    view at /run/sandbox-rootfs in a mount namespace of its own (the daemon builds the view, detached, and
    passes it to the client, which attaches it), never in the host's."""
    shutil.copy(RUNC_SPEC, s.bundle / "config.json")
    if daemon:
        s.start_daemon()
    res = s.sandbox_runc("--root", str(s.tmp / "runc-root"), "create", "--bundle", "bundle", "c1")
    assert res.returncode == 0, res.stderr
    assert _served_by(s.records()) == ["daemon" if daemon else None]
    assert s.runc_calls()[-1] == "VIEW"
    with open("/proc/self/mountinfo") as f:
        assert " /run/sandbox-rootfs " not in f.read()
    resolved = next(r for r in s.records() if r["event"] == "profile_resolved")["data"]
    assert resolved["rootfs"] == {"kind": "idmapped-bind", "source": str(s.bundle / "rootfs")}
    start, size = resolved["id_range"].split(":")
    assert int(size) == 65536
    cfg = s.hardened()
    assert cfg["root"]["path"] == "/run/sandbox-rootfs"
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": int(start), "size": 65536}]
    assert cfg["annotations"]["org.sandbox-runtime.profile.applied"].endswith(f";userns={start}:65536")


def test_the_daemon_and_the_python_path_decide_alike(s, tmp_path):
    s.start_daemon()
    assert s.sandbox_runc("create", "-b", "bundle", "c1").returncode == 0
    via_daemon = s.hardened()
    shutil.copy(SPEC, s.bundle / "config.json")
    res = s.sandbox_runc("create", "-b", "bundle", "c2", env={"SANDBOX_DAEMON_SOCKET": "off"})
    assert res.returncode == 0, res.stderr
    assert s.hardened() == via_daemon
    by_cid = {}
    for r in s.records():
        if r["event"] == "decision":
            by_cid.setdefault(r["container_id"], []).append(r["decision"])
    assert by_cid["c1"] == by_cid["c2"] and by_cid["c1"]
    assert _served_by(s.records()) == ["daemon", None]


def test_a_refusal_is_told_on_stderr_and_in_runcs_log_and_runc_never_runs(s):
    cfg = json.loads(open(SPEC).read())
    cfg["mounts"].append({"destination": "/host-etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]})
    (s.bundle / "config.json").write_text(json.dumps(cfg))
    s.start_daemon()
    res = s.sandbox_runc("--log", "runc-log.json", "--log-format", "json", "create", "-b", "bundle", "c1")
    assert res.returncode == 1
    assert res.stderr.startswith("sandbox-runc: refused by sandbox") and "/etc" in res.stderr
    assert s.runc_calls() == []
    log = json.loads((s.tmp / "runc-log.json").read_text())
    assert log["level"] == "error" and "refused by sandbox" in log["msg"]
    assert "refused" in s.events() and "created" not in s.events()


def test_runc_exit_code_comes_back_and_a_failed_create_is_removed(s):
    s.start_daemon()
    res = s.sandbox_runc("--root", "/r", "create", "-b", "bundle", "c1", env={"FAKE_EXIT": "3"})
    assert res.returncode == 3
    assert s.runc_calls() == [f"--root=/r create --bundle={s.bundle} c1", "--root=/r delete --force c1"]
    assert s.events()[-1] == "error"


def test_run_exit_code_and_signals_reach_runc(s):
    s.start_daemon()
    res = s.sandbox_runc("run", "-b", "bundle", "c1", env={"FAKE_EXIT": "7"})
    assert res.returncode == 7 and s.records()[-1]["data"]["runc_exit"] == 7
    s.runc_log.unlink()
    shutil.copy(SPEC, s.bundle / "config.json")
    p = subprocess.Popen([s.dispatcher, "run", "-b", "bundle", "c2"], env={**s.env, "FAKE_TRAP": "1"},
                         cwd=str(s.tmp), stderr=subprocess.PIPE)
    for _ in range(200):
        if "ready" in s.runc_calls():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 143
    assert s.runc_calls().count("TERM") == 1
    assert s.events()[-1] == "exited"


def test_daemon_lost_before_the_outcome_removes_the_container_and_fails(s):
    proc = s.start_daemon()
    res = s.sandbox_runc("--root", "/r", "create", "-b", "bundle", "c1", env={"FAKE_KILL": str(proc.pid)})
    assert res.returncode == 1 and "did not record" in res.stderr
    assert s.runc_calls() == [f"--root=/r create --bundle={s.bundle} c1", "--root=/r delete --force c1"]


def test_daemon_hands_runc_the_rebuilt_command_line(s):
    """Flags after the id, repeats, `=` forms: runc gets what sandbox read, once, and never the caller's argv."""
    s.start_daemon()
    res = s.sandbox_runc("-root", "/x", "--root=/r", "create", "c1", "--bundle", "elsewhere", "--bundle=bundle",
                         "--pid-file", "p", "--no-pivot=false")
    assert res.returncode == 0, res.stderr
    assert s.runc_calls() == [f"--root=/r create --bundle={s.bundle} --pid-file=p --no-pivot=false c1"]
    assert _served_by(s.records()) == ["daemon"]


def test_daemon_refuses_a_flag_the_profile_refuses(s):
    s.start_daemon()
    res = s.sandbox_runc("--root", "/r", "create", "--bundle", "bundle", "--no-pivot", "c1")
    assert res.returncode == 1 and "--no-pivot" in res.stderr and s.runc_calls() == []
    refusals = [r["decision"] for r in s.records() if r.get("decision", {}).get("action") == "refuse"]
    assert [d["pointer"] for d in refusals] == ["/create/--no-pivot"]


def test_a_command_line_runc_refuses_is_refused_on_the_python_path(s):
    s.start_daemon()
    res = s.sandbox_runc("create", "-b", "bundle", "--bundle", "bundle", "c1")
    assert res.returncode == 1 and "two forms" in res.stderr and s.runc_calls() == []


def test_no_daemon_means_the_python_path(s):
    res = s.sandbox_runc("create", "-b", "bundle", "c1")
    assert res.returncode == 0, res.stderr
    assert _served_by(s.records()) == [None] and s.events()[-1] == "created"


def test_a_socket_in_a_directory_others_may_write_is_not_used(s):
    s.start_daemon()
    os.chmod(s.sockdir, 0o777)
    res = s.sandbox_runc("create", "-b", "bundle", "c1")
    assert res.returncode == 0, res.stderr
    assert _served_by(s.records()) == [None]
    assert sd.ping(s.socket)["served"] == "0"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_a_client_in_another_mount_namespace_takes_the_python_path(s):
    s.start_daemon()
    res = s.sandbox_runc("create", "-b", "bundle", "c1", prefix=("unshare", "-m"))
    assert res.returncode == 0, res.stderr
    assert _served_by(s.records()) == [None]


def test_an_upgraded_daemon_answers_fallback_and_stops(tmp_path):
    d = sd.Daemon(str(tmp_path / "s.sock"))
    d.fingerprint = ()  # as if the package files changed since the daemon started
    assert d.answer([("op", "harden"), ("arg", "create")], os.getpid()) == [
        ("status", "fallback"), ("why", "sandbox was upgraded; the daemon exits")]
    assert d.stopping


def test_unknown_or_unserved_requests_fall_back(tmp_path):
    d = sd.Daemon(str(tmp_path / "s.sock"))
    assert d.answer([("op", "nonsense")], os.getpid())[0] == ("status", "fallback")
    assert d.answer([("op", "harden"), ("arg", "exec"), ("arg", "c1")], os.getpid())[0] == ("status", "fallback")


def test_malformed_requests_get_no_answer_and_the_daemon_goes_on(s):
    s.start_daemon()
    for bad in ([("op", "outcome"), ("ticket", "{}"), ("code", "0")], [("op", "outcome"), ("ticket", "[1]")],
                [("op", "outcome"), ("ticket", "not json")],
                [("op", "harden"), ("cwd", "/nonexistent/dir"), ("arg", "create"), ("arg", "c1")]):
        assert sd.call(s.socket, bad) is None
    raw = subprocess.run([sys.executable, "-c", "import socket,sys; c=socket.socket(socket.AF_UNIX); "
                          "c.connect(sys.argv[1]); c.sendall(b'no-equals-sign'); c.shutdown(1); "
                          "print(len(c.recv(10)))", s.socket], capture_output=True, text=True, timeout=30)
    assert raw.stdout.strip() == "0"
    res = s.sandbox_runc("create", "-b", "bundle", "c1")  # still serving, environment intact
    assert res.returncode == 0, res.stderr
    assert _served_by(s.records()) == ["daemon"]


def test_records_round_trip_any_argument_bytes():
    recs = [("arg", "a=b"), ("arg", ""), ("arg", "\udcff\u00e9 x"), ("env", "SANDBOX_X=1")]
    assert sd.decode(sd.encode(recs)) == recs
    with pytest.raises(ValueError):
        sd.encode([("arg", "a\0b")])


def test_cli_status_stop_and_a_second_daemon_refused(s):
    s.start_daemon()
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from sandbox.cli import main; main()"

    def cli(*args):
        return subprocess.run([sys.executable, "-c", code, ROOT, "daemon", *args, "--socket", s.socket],
                              capture_output=True, text=True, timeout=30)

    st = cli("status", "--format", "json")
    assert st.returncode == 0 and json.loads(st.stdout)["running"] is True
    second = cli("run")
    assert second.returncode == 1 and "already listening" in second.stderr
    assert cli("stop").returncode == 0
    assert s.proc.wait(timeout=10) == 0
    assert not os.path.exists(s.socket)
    assert cli("status").returncode == 1
    started = cli("start")  # in the background: returns once it answers
    assert started.returncode == 0 and "listening on" in started.stdout, started.stderr
    pid = int(json.loads(cli("status", "--format", "json").stdout)["pid"])
    assert pid != s.proc.pid and os.getsid(pid) != os.getsid(0)  # detached from our session
    assert cli("stop").returncode == 0
    assert not os.path.exists(s.socket) and not os.path.exists(f"/proc/{pid}/cmdline")
