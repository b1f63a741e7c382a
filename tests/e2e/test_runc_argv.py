"""The real runc reads each command line of tests/runc_behaviours.py the way the table (and so
sandbox.core.runc_cli) says: it refuses the ones the table calls usage errors, shows help where the
table says so, and goes on to the subcommand's own work otherwise.

Harmless by construction: the container id is one that exists nowhere, the working directory
is empty (no config.json), bundles and image paths do not exist, and the state directory is a
fresh temporary one wherever the row names one.
"""

import os
import subprocess
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.core.runc_cli import HARDENED, parse
from tests.runc_behaviours import ROWS, global_argvs, subcommand_argvs

# what runc says once it has parsed a hardened subcommand and gone on to its work
WORKING = {
    "exec": "exec failed: container does not exist",
    "create": "runc create failed:",
    "run": "runc run failed:",
    "update": "container does not exist",
    "restore": "JSON specification file config.json not found",
}


def run_real(runc, argv, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    root = tmp_path / "root"
    res = subprocess.run([runc, *argv], capture_output=True, text=True, cwd=cwd, timeout=30,
                         env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
    assert not root.exists() or not any(root.iterdir()), "runc created state: the row is not harmless"
    return res.stdout + res.stderr


def substitute(argv, tmp_path, cid):
    return [a.replace("{root}", str(tmp_path / "root")).replace("c1", cid) for a in argv]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: " ".join(r[0]) or "(empty)")
def test_real_runc_agrees_with_the_table(e2e, tmp_path, row):
    cid = f"sandbox-argv-{uuid.uuid4().hex[:12]}"
    argv = substitute(row[0], tmp_path, cid)
    out = run_real(e2e, argv, tmp_path)
    kind = row[1][0]
    if kind == "usage":
        assert "Incorrect Usage" in out or "requires" in out, out
        wanted = {"two forms": "Cannot use two forms", "requires exactly 1": "requires exactly 1",
                  "requires a minimum of 1": "requires a minimum of 1"}.get(row[1][1], row[1][1])
        assert wanted in out, out
    elif kind == "help":
        assert "NAME:" in out and f"runc {row[1][1]} -" in out and "Incorrect Usage" not in out, out
    elif kind in ("run", "later"):
        sub = row[1][1]
        assert WORKING[sub] in out and "Incorrect Usage" not in out, out
    else:  # passthrough: runc runs no hardened subcommand
        assert not any(v in out for k, v in WORKING.items() if k != "update"), out
        if row[1][1] in HARDENED:
            assert "NAME:" in out or "runc version" in out, out
    assert parse(argv).route == ("passthrough" if kind == "passthrough" else "hardened")


def test_no_row_touched_the_host_state():
    assert not any(n.startswith("sandbox-argv-") for n in (os.listdir("/run/runc") if os.path.isdir("/run/runc")
                                                            else []))


# -- generated command lines: does runc run the subcommand the parser (and so the dispatchers) says? --

EXAMPLES = int(os.environ.get("SANDBOX_ARGV_EXAMPLES") or 40)
ARGV_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                         derandomize=not os.environ.get("SANDBOX_ARGV_EXAMPLES"),
                         suppress_health_check=[HealthCheck.function_scoped_fixture], database=None)


def classify(out):
    """Which hardened subcommand the real runc went on to run, as far as its output tells."""
    if "Incorrect Usage" in out or "Cannot use two forms" in out or "requires" in out:
        for sub in sorted(HARDENED):
            if f"runc {sub} -" in out:
                return f"usage:{sub}"
        return "usage"
    if "NAME:" in out or "runc version" in out or "No help topic" in out:
        return "help"
    for sub, text in (("exec", "exec failed:"), ("create", "runc create failed:"), ("run", "runc run failed:"),
                      ("restore", WORKING["restore"])):
        if text in out:
            return sub
    if "container does not exist" in out or "invalid container ID format" in out:
        return "update-or-other"
    return "other"


@ARGV_SETTINGS
@given(argv=global_argvs(st))
def test_generated_argv_run_by_real_runc_as_the_parser_says(e2e, tmp_path_factory, argv):
    tmp = tmp_path_factory.mktemp("argv")
    cid = f"sandbox-argv-{uuid.uuid4().hex[:12]}"
    argv = [a.replace("ROOT", str(tmp / "root")).replace("CID", cid) for a in argv]
    seen = classify(run_real(e2e, argv, tmp))
    inv = parse(argv)
    if seen in WORKING:  # runc ran a hardened subcommand (and may refuse later, on its own)
        assert (inv.route, inv.subcommand) == ("hardened", seen), (argv, seen)
        assert inv.error in (None, "process args cannot be empty", "container id cannot be empty"), (argv, inv.error)
    elif seen.startswith("usage:"):
        assert (inv.route, inv.subcommand) == ("hardened", seen[6:]) and inv.error, (argv, seen)
    elif seen == "update-or-other":
        assert inv.route == "passthrough" or (inv.subcommand == "update" and not inv.error), (argv, seen)
    elif seen in ("usage", "help"):  # runc refused the global flags or printed help/version: ran nothing
        assert inv.route == "passthrough" or inv.help, (argv, seen)
    # else runc stopped on its own before any subcommand (say, an unknown subcommand or a bad
    # --log-format): whatever the parser says is safe


@ARGV_SETTINGS
@given(argv=subcommand_argvs(st))
def test_generated_subcommand_flags_accepted_or_refused_as_runc_does(e2e, tmp_path_factory, argv):
    tmp = tmp_path_factory.mktemp("argv")
    cid = f"sandbox-argv-{uuid.uuid4().hex[:12]}"
    argv = [a.replace("CID", cid) for a in argv]
    seen = classify(run_real(e2e, argv, tmp))
    inv = parse(argv)
    sub = argv[0]
    if seen == f"usage:{sub}":
        assert inv.error, (argv, seen)
    elif seen == "help":
        assert inv.help, (argv, seen)
    else:  # runc went on to the subcommand's work (and may refuse later, on its own)
        assert not seen.startswith("usage"), (argv, seen)
        assert inv.error in (None, "process args cannot be empty", "container id cannot be empty"), (argv, inv.error)
