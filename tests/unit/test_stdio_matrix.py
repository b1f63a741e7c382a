"""Every refusal and error of sandbox-runc reaches the audit log and the engine, whatever stdio
the engine hands it (issue 12).

The matrix: stdio states (fd 0, 1 or 2 closed, all three closed, read-only /dev/null as
containerd's shim gives a process without stdio, /dev/full, a pipe whose reader is gone)
x failures (a policy refusal, an invalid config.json, runc missing, an audit log that cannot be
written) x paths (the Python path under the compiled dispatcher and under its sh twin, the
sandbox daemon) x runc's --log-format (json, text).  Each cell asserts the exit code, the one
line in runc's --log file as runc writes it, the audit record, stderr and stdout where the
test can read them, and that nothing of ours went into the audit log or config.json through a
descriptor number that was closed.  Then the dispatchers' own errors (no runc, an operator
config refused, no python, itself found as runc) over the same stdio states and formats.

runc is a fake that records being called: in every cell it must not be.
"""

import ast
import json
import os
import re
import subprocess
import sys
import time

import pytest

from sandbox.audit.log import verify_files
from sandbox.runtime import daemon as sd
from tests.conftest import OCI, ROOT, SH_DISPATCHER

SPEC = os.path.join(OCI, "runc-spec-1.1.json")

# how the dispatcher is started: a shell redirection on `exec`, or (None) a pipe without a reader
STATES = {
    "closed-0": "<&-",
    "closed-1": ">&-",
    "closed-2": "2>&-",
    "closed-012": "<&- >&- 2>&-",
    "ro-devnull": "</dev/null 1</dev/null 2</dev/null",
    "dev-full": "</dev/null >/dev/full 2>/dev/full",
    "broken-pipe": None,
}
READABLE_STDERR = {"closed-0", "closed-1"}
READABLE_STDOUT = {"closed-0", "closed-2"}
CASES = ["refusal", "invalid-config", "runc-missing", "audit-unwritable"]
PATHS = ["python", "python-sh", "daemon"]
FORMATS = ["json", "text"]
TEXT_LINE = re.compile(r'^time="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)" level=(\w+) msg=(".*")$')


def run_in_state(argv, state, env, cwd):
    """Run argv with its stdio in `state`; (exit code, stdout, stderr), each None where unreadable."""
    redir = STATES[state]
    if redir is None:
        r, w = os.pipe()
        os.close(r)
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w, env=env, cwd=cwd, timeout=60)
        finally:
            os.close(w)
        return res.returncode, None, None
    res = subprocess.run(["/bin/sh", "-c", f'exec "$@" {redir}', "sh", *argv], stdin=subprocess.DEVNULL,
                         capture_output=True, env=env, cwd=cwd, timeout=60)
    out = res.stdout.decode() if state in READABLE_STDOUT else None
    err = res.stderr.decode() if state in READABLE_STDERR else None
    return res.returncode, out, err


def runc_log_lines(path, fmt):
    """The --log file as (level, msg) pairs, each line checked to be as runc writes it."""
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path, encoding="utf-8").read().splitlines():
        if fmt == "json":
            rec = json.loads(line)
            assert list(rec) == ["level", "msg", "time"], line
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["time"]), line
            out.append((rec["level"], rec["msg"]))
        else:
            m = TEXT_LINE.match(line)
            assert m, f"not a logrus text line: {line!r}"
            out.append((m.group(2), ast.literal_eval(m.group(3))))  # Go's %q escapes read as Python's
    return out


class Cell:
    """One operator config, bundle, fake runc and --log path for one cell of the matrix."""

    def __init__(self, tmp, case):
        self.tmp = tmp
        self.runc = tmp / "fake-runc"
        self.runc_calls = tmp / "runc-calls"
        self.runc.write_text(f'#!/bin/sh\necho "$*" >> {self.runc_calls}\n')
        self.runc.chmod(0o755)
        self.audit = tmp / "audit" / "audit.jsonl"
        runc = "/nonexistent/runc" if case == "runc-missing" else self.runc
        audit = self.audit
        if case == "audit-unwritable":
            (tmp / "not-a-dir").write_text("")
            audit = tmp / "not-a-dir" / "audit.jsonl"
        self.config = tmp / "config.yaml"
        self.config.write_text(f"runc: {runc}\naudit_log: {audit}\n")
        self.config.chmod(0o644)
        self.bundle = tmp / "bundle"
        self.bundle.mkdir()
        cfg = json.load(open(SPEC))
        if case == "refusal":
            cfg["mounts"].append({"destination": "/host-etc", "type": "bind", "source": "/etc",
                                  "options": ["rbind", "ro"]})
        text = json.dumps(cfg, indent=1)
        if case == "invalid-config":
            text = '{\n  "ociVersion": "1.0.2",\n  "process": \n}\n'
        (self.bundle / "config.json").write_text(text)
        self.config_json = text
        self.log = tmp / "runc-log"

    def records(self):
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


EXPECT = {  # exit code, what the one --log line says, the audit record's event (None: no record possible)
    "refusal": (1, "refused by sandbox profile baseline: bind mount source /etc", "refused"),
    "invalid-config": (1, "config.json:4", "error"),
    "runc-missing": (127, "runc not found: /nonexistent/runc", "error"),
    "audit-unwritable": (1, "cannot write audit log", None),
}


@pytest.fixture(scope="module")
def daemon_socket(tmp_path_factory):
    d = tmp_path_factory.mktemp("daemon-run")
    os.chmod(d, 0o700)
    sock = str(d / "daemon.sock")
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from sandbox.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, ROOT, "daemon", "run", "--socket", sock],
                            env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            if sd.ping(sock):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the sandbox daemon did not come up")
        yield sock
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("state", list(STATES))
def test_refusals_and_errors_reach_the_log_and_the_audit(state, case, path, fmt, tmp_path, c_dispatcher, request):
    cell = Cell(tmp_path, case)
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(cell.config), "SANDBOX_PYTHON": sys.executable,
           "SANDBOX_CACHE_DIR": str(tmp_path / "no-cache"), "SANDBOX_DAEMON_SOCKET": "off"}
    served = None
    if path == "daemon":
        sock = request.getfixturevalue("daemon_socket")
        env["SANDBOX_DAEMON_SOCKET"] = sock
        served = int(sd.ping(sock)["served"])
    dispatcher = ["/bin/sh", SH_DISPATCHER] if path == "python-sh" else [c_dispatcher]
    argv = [*dispatcher, "--root", str(tmp_path / "runc-root"), "--log", str(cell.log), "--log-format", fmt,
            "create", "--bundle", "bundle", "c1"]
    code, out, err = run_in_state(argv, state, env, str(tmp_path))

    want_code, want_msg, want_event = EXPECT[case]
    assert code == want_code, (code, err)
    [(level, msg)] = runc_log_lines(str(cell.log), fmt)
    assert level == "error" and want_msg in msg[:200], msg
    records = cell.records()
    if want_event is None:
        assert records == [] and "audit.jsonl" in msg
    else:
        last = records[-1]
        assert last["event"] == want_event and last["container_id"] == "c1"
        assert last["data"]["reason"] == msg  # the same words in the record and for the engine
        assert verify_files([str(cell.audit)]).ok  # nothing else was written into it
    if err is not None:
        assert err == f"sandbox-runc: {msg}\n"
    if out is not None:
        assert out == ""  # engines parse runc's stdout
    assert not cell.runc_calls.exists()
    assert (cell.bundle / "config.json").read_text() == cell.config_json
    if served is not None:
        assert int(sd.ping(env["SANDBOX_DAEMON_SOCKET"])["served"]) == served + 1  # the daemon did it


# -- the dispatchers' own errors ----------------------------------------------------------------------

DISPATCHER_ERRORS = {  # env changes -> exit code, what the --log line says
    "no-runc": ({"PATH": "/nonexistent"}, "state", 127, "runc not found"),
    "config-refused": ({"SANDBOX_CONFIG": "{tmp}"}, "state", 1, "not a regular file; refusing it"),
    "no-python": ({"SANDBOX_RUNC": "{runc}", "SANDBOX_PYTHON": "/nonexistent/python"}, "create", 127,
                  "cannot execute /nonexistent/python"),
    "itself": ({"SANDBOX_RUNC_SHIM_ACTIVE": "1"}, "state", 127, "the runc found is sandbox-runc itself"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["c", "sh"])
@pytest.mark.parametrize("error", list(DISPATCHER_ERRORS))
@pytest.mark.parametrize("state", list(STATES))
def test_dispatcher_errors_reach_the_log(state, error, which, fmt, tmp_path, c_dispatcher):
    runc = tmp_path / "fake-runc"
    runc.write_text(f"#!/bin/sh\necho called >> {tmp_path}/runc-calls\n")
    runc.chmod(0o755)
    changes, sub, want_code, want_msg = DISPATCHER_ERRORS[error]
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(tmp_path / "none"), "SANDBOX_DAEMON_SOCKET": "off"}
    env.update({k: v.format(tmp=tmp_path, runc=runc) for k, v in changes.items()})
    dispatcher = ["/bin/sh", SH_DISPATCHER] if which == "sh" else [c_dispatcher]
    log = tmp_path / "log"
    code, out, err = run_in_state([*dispatcher, f"--log={log}", "-log-format", fmt, sub, "c1"], state, env,
                                  str(tmp_path))
    assert code == want_code, (code, err)
    [(level, msg)] = runc_log_lines(str(log), fmt)
    assert level == "error" and want_msg in msg, msg
    if err is not None:
        assert err == f"sandbox-runc: {msg}\n"
    if out is not None:
        assert out == ""
    assert not (tmp_path / "runc-calls").exists()


def test_a_log_file_that_cannot_be_written_is_said_on_stderr(tmp_path, c_dispatcher):
    cell = Cell(tmp_path, "refusal")
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(cell.config), "SANDBOX_PYTHON": sys.executable,
           "SANDBOX_DAEMON_SOCKET": "off"}
    res = subprocess.run([c_dispatcher, "--log", "/nonexistent/dir/log.json", "create", "-b", "bundle", "c1"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert res.returncode == 1
    first, second = res.stderr.splitlines()
    assert first.startswith("sandbox-runc: refused by sandbox profile baseline")
    assert second == "sandbox-runc: cannot write runc log /nonexistent/dir/log.json: No such file or directory"
    assert cell.records()[-1]["event"] == "refused"


def test_a_refusal_that_cannot_be_recorded_says_so_and_still_refuses(tmp_path, c_dispatcher):
    """The annotation check refuses before any decision is recorded; the audit log then fails."""
    cell = Cell(tmp_path, "audit-unwritable")
    cfg = json.load(open(SPEC))
    cfg["annotations"] = {"org.sandbox-runtime.profile": "/tmp/evil.yaml"}
    (cell.bundle / "config.json").write_text(json.dumps(cfg))
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(cell.config), "SANDBOX_PYTHON": sys.executable,
           "SANDBOX_DAEMON_SOCKET": "off"}
    res = subprocess.run([c_dispatcher, "--log", "log.json", "--log-format", "json", "create", "-b", "bundle", "c1"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert res.returncode == 1
    [(level, msg)] = runc_log_lines(str(tmp_path / "log.json"), "json")
    assert msg.startswith("refused by sandbox: annotation org.sandbox-runtime.profile=/tmp/evil.yaml")
    assert "[not in the audit log: cannot write audit log" in msg
    assert not cell.runc_calls.exists()


def test_closed_stdio_is_reopened_on_dev_null_and_runc_gets_it(tmp_path, c_dispatcher):
    """runc itself is handed /dev/null where the engine gave a closed descriptor, open ones as they were."""
    probe = tmp_path / "fds"
    runc = tmp_path / "probe-runc"
    runc.write_text(f"#!{sys.executable} -I\nimport fcntl, os\nwith open({str(probe)!r}, 'w') as f:\n"
                    "    f.write('\\n'.join([*(os.readlink(f'/proc/self/fd/{n}') for n in (0, 1, 2)),\n"
                    "                         str(fcntl.fcntl(1, fcntl.F_GETFL) & os.O_ACCMODE)]))\n")
    runc.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_RUNC": str(runc), "SANDBOX_CONFIG": str(tmp_path / "none")}
    for dispatcher in ([c_dispatcher], ["/bin/sh", SH_DISPATCHER]):
        probe.unlink(missing_ok=True)
        code, _, _ = run_in_state([*dispatcher, "state", "c1"], "closed-0", env, str(tmp_path))
        assert code == 0
        lines = probe.read_text().splitlines()
        assert lines[0] == "/dev/null" and lines[1].startswith("pipe:") and lines[2].startswith("pipe:")
        probe.unlink()
        code, _, _ = run_in_state([*dispatcher, "state", "c1"], "ro-devnull", env, str(tmp_path))
        assert code == 0
        lines = probe.read_text().splitlines()
        assert lines[:3] == ["/dev/null"] * 3
        assert int(lines[3]) == os.O_RDONLY  # a read-only stdout stays what it was
