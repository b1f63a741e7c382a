from hypothesis import given
from hypothesis import strategies as st

from sandbox.runc_cli import parse


def test_globals_before_subcommand_in_every_form():
    inv = parse(["--root", "/run/x", "--log=/tmp/l", "-log-format", "json", "--debug", "create", "--bundle", "/b",
                 "--pid-file=/p", "id1"])
    assert inv.globals == {"root": "/run/x", "log": "/tmp/l", "log-format": "json", "debug": None}
    assert inv.subcommand == "create"
    assert inv.flag("bundle", "b") == "/b"
    assert inv.flag("pid-file") == "/p"
    assert inv.container_id == "id1"


def test_value_is_never_the_container_id():
    inv = parse(["create", "-b", "mybundle", "--console-socket", "/s.sock", "ctr"])
    assert inv.container_id == "ctr" and inv.flag("b") == "mybundle"


def test_exec_command_after_id_is_positional():
    inv = parse(["exec", "--cap", "CAP_SYS_ADMIN", "-u", "0", "--tty", "c1", "ls", "-la", "--cap", "x"])
    assert inv.container_id == "c1"
    assert [f.value for f in inv.flags_named("cap")] == ["CAP_SYS_ADMIN"]
    assert [inv.argv[i] for i in inv.positionals] == ["c1", "ls", "-la", "--cap", "x"]


def test_passthrough_subcommands_and_no_subcommand():
    assert parse(["state", "c1"]).subcommand == "state"
    assert parse(["--version"]).subcommand is None
    assert parse([]).subcommand is None


def test_double_dash():
    inv = parse(["exec", "--", "c1", "sh"])
    assert inv.container_id == "c1"


@given(st.lists(st.text(max_size=12), max_size=12))
def test_parser_never_raises(argv):
    inv = parse(argv)
    assert inv.argv == argv
