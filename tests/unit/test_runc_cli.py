"""sandbox.core.runc_cli reads a command line as runc 1.1.5 does (tests/runc_behaviours.py; the e2e twin
tests/e2e/test_runc_argv.py checks the same rows against the real runc)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.core.runc_cli import (
    BOOL,
    FORWARD,
    GLOBAL_FLAGS,
    HARDENED,
    HELP,
    INT,
    INT64S,
    PROFILE,
    REFUSE,
    STRING,
    STRINGS,
    SUBCOMMAND_FLAGS,
    flag_index,
    go_bool,
    go_int,
    go_uint,
    parse,
    reorder_args,
)
from tests.runc_behaviours import ROWS


def _id(row):
    return " ".join(row[0]) or "(empty)"


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_parser_agrees_with_the_table_of_runc_behaviours(row):
    argv, expected = row
    argv = [a.replace("{root}", "/nonexistent/root") for a in argv]
    inv = parse(argv)
    kind = expected[0]
    if kind == "passthrough":
        assert inv.route == "passthrough" and inv.subcommand == expected[1]
        return
    assert inv.route == "hardened"
    if kind == "usage":
        assert inv.error and expected[1] in inv.error, inv.error
        return
    assert inv.subcommand == expected[1]
    if kind == "help":
        assert inv.help and not inv.error
    elif kind == "later":
        assert inv.error and expected[2] in inv.error
    else:
        _, sub, options, args = expected
        assert inv.error is None and not inv.help, inv.error
        assert (inv.subcommand, inv.options, inv.args) == (sub, options, args)


@pytest.mark.parametrize("row", [r for r in ROWS if r[1][0] == "run"], ids=_id)
def test_canonical_argv_reads_back_to_the_same_meaning(row):
    """The argv sandbox hands runc has one occurrence per flag and means what the caller's meant."""
    inv = parse(row[0])
    canon = inv.canonical()
    again = parse(canon)
    assert (again.subcommand, _meaning(again.options), again.args, _meaning(again.global_values)) == \
        (inv.subcommand, _meaning(inv.options), inv.args, _meaning(inv.global_values))
    assert again.route == "hardened" and again.error is None
    names = [a.split("=", 1)[0] for a in canon if a.startswith("--") and a != "--"]
    slices = {f"--{s.name}" for specs in SUBCOMMAND_FLAGS.values() for s in specs if s.kind in (STRINGS, INT64S)}
    assert all(names.count(n) == 1 for n in names if n not in slices), canon
    assert canon.index(inv.subcommand) == len(inv.global_argv())


def _meaning(values):
    """Flag values without help/version set to false (which mean nothing and are not emitted)."""
    return {k: v for k, v in values.items() if not (k in ("help", "version") and v is False)}


def test_global_flags_as_text_for_the_log_and_refusal_code():
    inv = parse(["--root", "/run/x", "--log=/tmp/l", "-log-format", "json", "--debug", "create", "id1"])
    assert inv.globals == {"root": "/run/x", "log": "/tmp/l", "log-format": "json", "debug": "true"}
    assert inv.global_argv() == ["--debug", "--log=/tmp/l", "--log-format=json", "--root=/run/x"]
    assert inv.container_id == "id1"


def test_go_integer_syntax():
    assert [go_int(s, 0) for s in ("0x10", "010", "0o17", "0b11", "1_000", "-5", "+7", "0")] == \
        [16, 8, 15, 3, 1000, -5, 7, 0]
    assert [go_int(s, 0) for s in ("08", "_1", "1_", "1__0", "0x", "", "+", " 1", "1e3", "９")] == [None] * 10
    assert go_int("9223372036854775807", 10) == (1 << 63) - 1 and go_int("9223372036854775808", 10) is None
    assert go_int("-9223372036854775808", 10) == -(1 << 63)
    assert go_int("0x10", 10) is None and go_int("1_0", 10) is None  # Atoi, Int64Slice: base 10
    assert go_uint("-0", 10) is None and go_uint("18446744073709551615", 10) == (1 << 64) - 1


def test_go_bool_spellings():
    assert [go_bool(s) for s in ("1", "t", "T", "TRUE", "true", "True")] == [True] * 6
    assert [go_bool(s) for s in ("0", "f", "F", "FALSE", "false", "False")] == [False] * 6
    assert [go_bool(s) for s in ("yes", "tRUE", "", "on", " true")] == [None] * 5


def test_reorder_moves_the_subcommands_flags_and_what_may_be_their_values():
    idx = flag_index("create")
    assert reorder_args(["c1", "--bundle", "b"], idx) == ["--bundle", "b", "c1"]
    assert reorder_args(["--no-pivot", "c1", "--bundle", "b"], idx) == ["--no-pivot", "c1", "--bundle", "b"]
    assert reorder_args(["c1", "--"], idx) == ["--", "c1"]
    assert reorder_args(["c1", "--", "-x", "--bundle"], idx) == ["--", "c1", "-x", "--bundle"]
    assert reorder_args(["--bundle", "--", "c1"], idx) == ["--bundle", "--", "c1"]
    assert reorder_args(["c1", "--bogus", "--pid-file=p"], idx) == ["--pid-file=p", "c1", "--bogus"]
    assert reorder_args(["c1", "---bundle", "b"], idx) == ["---bundle", "b", "c1"]


def test_the_table_is_complete_and_well_formed():
    assert HARDENED == {"create", "run", "restore", "exec", "update"}
    for specs in (GLOBAL_FLAGS, *SUBCOMMAND_FLAGS.values()):
        names = [n for s in specs for n in s.names]
        assert len(names) == len(set(names))
        for s in specs:
            assert s.kind in (BOOL, STRING, INT, STRINGS, INT64S) and s.action in (FORWARD, PROFILE, REFUSE, HELP)
            assert s.why
    assert {s.name for s in SUBCOMMAND_FLAGS["exec"]} >= {"cap", "no-new-privs", "user", "cwd", "process"}


@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(
    ["--", "-", "--root", "-root=/r", "--log", "create", "run", "exec", "update", "restore", "state", "-b",
     "--bundle=/b", "-p", "--cap", "-c", "--memory", "-r", "--debug", "-d", "-t", "c1", "sh", "--=x", "-=",
     "---x", "--help=0", "-h", "--no-new-privs=false", "--user", "0"])), max_size=14))
def test_parser_never_raises_and_its_canonical_argv_is_stable(argv):
    inv = parse(argv)
    assert inv.argv == argv
    assert inv.route in ("hardened", "passthrough")
    if inv.route == "hardened" and not inv.error and not inv.help:
        again = parse(inv.canonical())
        assert (_meaning(again.options), again.args, again.error) == (_meaning(inv.options), inv.args, None)

