"""sandbox-runc's dispatchers: the compiled one (csrc/sandbox-runc.c) and its POSIX sh twin
(bin/sandbox-runc, installed where no C compiler was found) must decide alike: which runc,
which operator config to trust, which subcommands pass through without Python."""

import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.core.runc_cli import parse
from tests.conftest import SH_DISPATCHER
from tests.runc_behaviours import ROWS, global_argvs

# generated command lines per property; more with SANDBOX_ARGV_EXAMPLES=N
EXAMPLES = int(os.environ.get("SANDBOX_ARGV_EXAMPLES") or 60)


@pytest.fixture(params=["c", "sh"])
def dispatcher(request):
    if request.param == "sh":
        return ["/bin/sh", SH_DISPATCHER]
    return [request.getfixturevalue("c_dispatcher")]


def _fake_runc(path):
    path.write_text('#!/bin/sh\necho "REAL $*"\n')
    path.chmod(0o755)
    return path


def _dispatch(dispatcher, tmp_path, *args, env=None, runc=True):
    e = {"PATH": "/usr/bin:/bin", "SANDBOX_PYTHON": "/nonexistent/python", "SANDBOX_CONFIG": str(tmp_path / "none"),
         "SANDBOX_DAEMON_SOCKET": "off"}
    if runc:
        e["SANDBOX_RUNC"] = str(_fake_runc(tmp_path / "fake-runc"))
    e.update(env or {})
    return subprocess.run([*dispatcher, *args], capture_output=True, text=True, env=e, timeout=20, cwd=tmp_path)


@pytest.mark.parametrize("argv", [["state", "c1"], ["--root", "/r", "--log", "x", "list"], ["--version"],
                                  ["kill", "c1", "KILL"], ["--log-format", "json", "delete", "-f", "c1"],
                                  ["--root=/r", "start", "c1"], ["features"], []])
def test_passthrough_execs_runc_without_python(dispatcher, tmp_path, argv):
    res = _dispatch(dispatcher, tmp_path, *argv)
    assert res.returncode == 0 and res.stdout == f"REAL {' '.join(argv)}\n", res.stderr


@pytest.mark.parametrize("argv", [["--root", "/r", "create", "c1"], ["run", "c1"], ["exec", "c1", "sh"],
                                  ["update", "c1"], ["restore", "c1"], ["--", "create", "c1"],
                                  ["--log", "create", "run", "c1"], ["--debug", "-root", "/r", "exec", "c1"]])
def test_hardened_subcommands_go_to_python(dispatcher, tmp_path, argv):
    res = _dispatch(dispatcher, tmp_path, *argv)
    assert res.returncode == 127 and "/nonexistent/python" in res.stderr and "REAL" not in res.stdout


def _routes(dispatcher, tmp_path, argv):
    res = _dispatch(dispatcher, tmp_path, *argv)
    if res.returncode == 127 and "/nonexistent/python" in res.stderr and "REAL" not in res.stdout:
        return "hardened"
    assert res.returncode == 0 and res.stdout == f"REAL {' '.join(argv)}\n", (argv, res.stdout, res.stderr)
    return "passthrough"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: " ".join(r[0]) or "(empty)")
def test_dispatchers_route_every_table_row_as_the_parser_does(dispatcher, tmp_path, row):
    """An argv passed through as, say, `state` that runc runs as `exec` would be a bypass."""
    argv = [a.replace("{root}", "/nonexistent/root") for a in row[0]]
    assert _routes(dispatcher, tmp_path, argv) == parse(argv).route


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SANDBOX_ARGV_EXAMPLES"),
          suppress_health_check=[HealthCheck.function_scoped_fixture], database=None)
@given(argv=global_argvs(st))
def test_c_sh_and_python_route_generated_argv_alike(c_dispatcher, tmp_path, argv):
    routes = {name: _routes(d, tmp_path, argv) for name, d in (("c", [c_dispatcher]),
                                                               ("sh", ["/bin/sh", SH_DISPATCHER]))}
    routes["python"] = parse(argv).route
    assert len(set(routes.values())) == 1, (argv, routes)


def test_refuses_to_loop(dispatcher, tmp_path):
    res = _dispatch(dispatcher, tmp_path, "state", "x", env={"SANDBOX_RUNC_SHIM_ACTIVE": "1"})
    assert res.returncode == 127 and "sandbox-runc itself" in res.stderr


def _config(tmp_path, text, mode=0o644):
    conf = tmp_path / "config.yaml"
    conf.write_text(text)
    conf.chmod(mode)
    return str(conf)


def test_runc_from_the_operator_config(dispatcher, tmp_path):
    fake = _fake_runc(tmp_path / "configured-runc")
    conf = _config(tmp_path, f"audit_log: /x\nrunc:  \"{fake}\"   # the real one\n")
    res = _dispatch(dispatcher, tmp_path, "state", "c1", env={"SANDBOX_CONFIG": conf}, runc=False)
    assert res.returncode == 0 and res.stdout == "REAL state c1\n", res.stderr


def test_a_config_others_may_write_is_refused(dispatcher, tmp_path):
    fake = _fake_runc(tmp_path / "configured-runc")
    conf = _config(tmp_path, f"runc: {fake}\n", mode=0o664)
    res = _dispatch(dispatcher, tmp_path, "state", "c1", env={"SANDBOX_CONFIG": conf}, runc=False)
    assert res.returncode == 1 and "writable by group or others" in res.stderr and "REAL" not in res.stdout


def test_a_fifo_as_config_is_refused_without_blocking(dispatcher, tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    res = _dispatch(dispatcher, tmp_path, "state", "c1", env={"SANDBOX_CONFIG": str(fifo)}, runc=False)
    assert res.returncode == 1 and "not a regular file" in res.stderr


def test_path_search_skips_the_dispatcher_installed_as_runc(dispatcher, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    target = dispatcher[-1]
    os.symlink(target, first / "runc")
    _fake_runc(second / "runc")
    argv = [str(first / "runc")] if dispatcher[0] != "/bin/sh" else ["/bin/sh", str(first / "runc")]
    res = _dispatch(argv, tmp_path, "state", "c1", env={"PATH": f"{first}:{second}:/usr/bin:/bin"}, runc=False)
    assert res.returncode == 0 and res.stdout == "REAL state c1\n", res.stderr


def test_no_runc_anywhere_is_exit_127(dispatcher, tmp_path):
    res = _dispatch(dispatcher, tmp_path, "state", "c1", env={"PATH": str(tmp_path)}, runc=False)
    assert res.returncode == 127 and "runc not found" in res.stderr


def test_the_compiled_dispatcher_is_recognised_as_sandbox_runc(c_dispatcher, tmp_path):
    """Under any name: find_runc must never pick it as the real runc (its marker is an early ELF note)."""
    import shutil

    from sandbox.host.runc import is_shim

    copy = tmp_path / "runc"
    shutil.copy(c_dispatcher, copy)
    assert is_shim(str(copy), ())
    assert not is_shim(shutil.which("true"), ())
