"""sandbox.host.runc: finding the real runc without recursing into our own shim; error codes; argv shape."""

import os

import pytest

from sandbox.errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, RuncError
from sandbox.host.runc import Runc, _error_line, find_runc, is_shim

SHIM = "#!/bin/sh\n# SANDBOX-RUNC-SHIM: test copy\nexit 99\n"
REAL = "#!/bin/sh\necho real runc \"$@\"\n"


def exe(path, text, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("SANDBOX_RUNC", raising=False)
    return monkeypatch


def test_the_shim_installed_as_runc_first_on_path_is_skipped(tmp_path, clean_env):
    shim = exe(tmp_path / "a" / "runc", SHIM)
    real = exe(tmp_path / "b" / "runc", REAL)
    clean_env.setenv("PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert is_shim(shim) and not is_shim(real)
    assert find_runc() == real


def test_a_symlink_named_runc_to_sandbox_runc_is_skipped(tmp_path, clean_env):
    target = exe(tmp_path / "bin" / "sandbox-runc", "#!/bin/sh\nexit 0\n")  # no marker: the name tells
    os.makedirs(tmp_path / "a")
    os.symlink(target, tmp_path / "a" / "runc")
    real = exe(tmp_path / "b" / "runc", REAL)
    clean_env.setenv("PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert find_runc() == real


def test_the_running_program_itself_is_skipped(tmp_path, clean_env):
    me = exe(tmp_path / "a" / "runc", "#!/bin/sh\nexit 0\n")
    real = exe(tmp_path / "b" / "runc", REAL)
    clean_env.setenv("PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    clean_env.setattr("sys.argv", [me])
    assert find_runc() == real


def test_only_the_shim_on_path_is_not_found(tmp_path, clean_env):
    exe(tmp_path / "a" / "runc", SHIM)
    clean_env.setenv("PATH", str(tmp_path / "a"))
    with pytest.raises(RuncError, match="only sandbox-runc itself") as ei:
        find_runc()
    assert ei.value.exit_code == EXIT_NOT_FOUND


def test_missing_runc_exits_127(tmp_path, clean_env):
    clean_env.setenv("PATH", str(tmp_path))
    with pytest.raises(RuncError, match="runc not found") as ei:
        find_runc()
    assert ei.value.exit_code == EXIT_NOT_FOUND == 127
    with pytest.raises(RuncError, match="runc not found") as ei:
        find_runc(str(tmp_path / "nope"))
    assert ei.value.exit_code == EXIT_NOT_FOUND
    assert RuncError("x").exit_code == 125  # the class default is untouched


def test_not_executable_exits_126(tmp_path, clean_env):
    p = exe(tmp_path / "a" / "runc", REAL, mode=0o644)
    clean_env.setenv("PATH", str(tmp_path / "a"))
    if os.geteuid() == 0 and os.access(p, os.X_OK):
        pytest.skip("root can execute a 0644 file here")
    with pytest.raises(RuncError, match="not executable") as ei:
        find_runc()
    assert ei.value.exit_code == EXIT_CANNOT_INVOKE
    with pytest.raises(RuncError, match="not executable") as ei:
        find_runc(p)
    assert ei.value.exit_code == EXIT_CANNOT_INVOKE == 126


def test_a_directory_is_not_runc(tmp_path, clean_env):
    (tmp_path / "runc").mkdir()
    with pytest.raises(RuncError, match="not a regular file") as ei:
        find_runc(str(tmp_path / "runc"))
    assert ei.value.exit_code == EXIT_CANNOT_INVOKE


def test_explicit_then_env_then_path(tmp_path, clean_env):
    a = exe(tmp_path / "a" / "runc", REAL)
    b = exe(tmp_path / "b" / "runc", REAL)
    c = exe(tmp_path / "c" / "runc", REAL)
    clean_env.setenv("PATH", str(tmp_path / "c"))
    assert find_runc() == c
    clean_env.setenv("SANDBOX_RUNC", b)
    assert find_runc() == b
    assert find_runc(a) == a


def test_an_explicit_shim_is_refused(tmp_path, clean_env):
    shim = exe(tmp_path / "runc", SHIM)
    with pytest.raises(RuncError, match="sandbox-runc itself") as ei:
        find_runc(shim)
    assert ei.value.exit_code == EXIT_CANNOT_INVOKE


def test_the_real_shim_carries_the_marker():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert is_shim(os.path.join(here, "bin", "sandbox-runc"), self_names=())


def test_global_flags_come_before_the_subcommand():
    r = Runc("/x/runc", root="/r", log="/l", log_format="json")
    assert r.argv("delete", "--force", "c") == ["/x/runc", "--root", "/r", "--log", "/l", "--log-format", "json",
                                                "delete", "--force", "c"]
    assert Runc("/x/runc").argv("state", "c") == ["/x/runc", "state", "c"]


def fake_runc(tmp_path, body):
    """A stand-in runc that records its argv and behaves as `body` says."""
    log = tmp_path / "argv"
    return exe(tmp_path / "runc", f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n{body}\n'), log


def test_errors_carry_runcs_last_error_line(tmp_path):
    path, _ = fake_runc(tmp_path, 'echo \'time="2024-01-01T00:00:00Z" level=warning msg="w"\' >&2\n'
                                  'echo \'time="2024-01-01T00:00:00Z" level=error msg="container \\"c\\" does not exist"\' >&2\n'
                                  "exit 1")
    with pytest.raises(RuncError) as ei:
        Runc(path).start("c")
    assert str(ei.value) == 'runc start c failed: container "c" does not exist'
    assert ei.value.exit_code == 125


def test_error_line_formats():
    assert _error_line('{"level":"error","msg":"boom","time":"t"}\n') == "boom"
    assert _error_line("plain failure\n\n") == "plain failure"
    assert _error_line("") == ""


def test_cleanup_ignores_a_missing_container_but_not_other_errors(tmp_path):
    path, log = fake_runc(tmp_path, 'echo \'level=error msg="container does not exist"\' >&2; exit 1')
    r = Runc(path, root="/r")
    r.cleanup("c")
    assert log.read_text().split() == ["--root", "/r", "delete", "--force", "c"]
    path, _ = fake_runc(tmp_path, 'echo \'level=error msg="permission denied"\' >&2; exit 1')
    with pytest.raises(RuncError, match="permission denied"):
        Runc(path).cleanup("c")


def test_deleting_context_manager_always_cleans_up(tmp_path):
    path, log = fake_runc(tmp_path, "exit 0")
    with pytest.raises(ValueError):
        with Runc(path).deleting("c9"):
            raise ValueError
    assert log.read_text().split() == ["delete", "--force", "c9"]


def test_state_kill_argv(tmp_path):
    path, log = fake_runc(tmp_path, 'echo \'{"id": "c", "status": "running", "pid": 5}\'')
    r = Runc(path)
    assert r.state("c")["status"] == "running"
    r.kill("c", "KILL", all=True)
    assert log.read_text().split() == ["kill", "--all", "c", "KILL"]


def test_run_foreground_maps_death_by_signal_to_128_plus_n(tmp_path):
    path, log = fake_runc(tmp_path, "kill -KILL $$")
    assert Runc(path, root="/r").run_foreground("c", "/b") == 137
    assert log.read_text().split() == ["--root", "/r", "run", "--bundle", "/b", "c"]
    path, _ = fake_runc(tmp_path, "exit 42")
    assert Runc(path).run_foreground("c", "/b") == 42


def test_run_foreground_missing_runc_is_127(tmp_path):
    with pytest.raises(RuncError) as ei:
        Runc(str(tmp_path / "nope")).run_foreground("c", "/b")
    assert ei.value.exit_code == EXIT_NOT_FOUND


def test_create_reports_the_error_from_runcs_log(tmp_path):
    # runc writes its error to --log; create inherits our stdio, so it cannot be captured from stderr
    body = ('while [ $# -gt 0 ]; do case "$1" in --log) shift; lf=$1;; esac; shift; done\n'
            'echo \'{"level":"error","msg":"runc create failed: bad bundle","time":"t"}\' >> "$lf"; exit 1')
    path, _ = fake_runc(tmp_path, body)
    with pytest.raises(RuncError, match="runc create c failed: runc create failed: bad bundle"):
        Runc(path).create("c", "/b", pid_file="/p")
