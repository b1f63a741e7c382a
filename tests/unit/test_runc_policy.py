"""The profile applied to parsed runc flags (sandbox.core.runc_policy) and runc's JSON reading (sandbox.core.gojson)."""

import pytest

from sandbox._record import replace
from sandbox.core import gojson, loader
from sandbox.core.runc_cli import parse
from sandbox.core.runc_policy import FdFact, exec_process, fd_decisions, flag_decisions, ignored_with_process
from sandbox.errors import UsageError

BASELINE = loader.load_profile("baseline")
RESTRICTED = loader.load_profile("restricted")
BASE = {"args": ["sleep", "1"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 1000, "gid": 1000},
        "terminal": True, "noNewPrivileges": True,
        "capabilities": {s: ["CAP_CHOWN"] for s in ("bounding", "effective", "permitted", "inheritable", "ambient")}}


def proc(*flags, base=BASE):
    return exec_process(base, parse(["exec", *flags, "c1", "sh", "-c", "x"]))


def test_exec_process_is_built_as_runc_builds_it():
    p = proc("--cap", "CAP_NET_RAW", "-e", "A=1", "--cwd", "/tmp", "-u", "5", "-g", "7", "-g", "8")
    assert p["args"] == ["sh", "-c", "x"] and p["cwd"] == "/tmp" and p["env"] == ["PATH=/bin", "A=1"]
    for s in ("bounding", "effective", "permitted", "ambient"):
        assert p["capabilities"][s] == ["CAP_CHOWN", "CAP_NET_RAW"]
    assert p["capabilities"]["inheritable"] == ["CAP_CHOWN"]  # runc exec --cap leaves inheritable alone
    assert p["user"] == {"uid": 5, "gid": 1000, "additionalGids": [7, 8]}  # gid kept when not given
    assert p["terminal"] is False and p["noNewPrivileges"] is True  # no --tty: no terminal; nnp as configured
    assert BASE["capabilities"]["bounding"] == ["CAP_CHOWN"]  # the base is not changed


def test_last_no_new_privs_wins_and_false_spellings():
    assert proc("--no-new-privs", "--no-new-privs=false")["noNewPrivileges"] is False
    assert proc("--no-new-privs=F", "--no-new-privs")["noNewPrivileges"] is True
    assert proc("--no-new-privs=0", base={})["noNewPrivileges"] is False


@pytest.mark.parametrize("user, uid, gid", [("0", 0, 1000), ("+7", 7, 1000), ("007:0", 7, 0), ("1000:1000", 1000, 1000),
                                            ("4294967295", 4294967295, 1000)])
def test_user_as_runc_reads_it(user, uid, gid):
    assert proc("--user", user)["user"]["uid"] == uid and proc("--user", user)["user"]["gid"] == gid


@pytest.mark.parametrize("user", ["4294967296", "-1", "1000:-1", "1000:4294967296", "root", ":5", "5:", "1_000"])
def test_user_runc_refuses_or_wraps_is_refused(user):
    with pytest.raises(UsageError):
        proc("--user", user)


@pytest.mark.parametrize("gid", ["-1", "4294967296"])
def test_additional_gid_negative_or_wrapping_is_refused(gid):
    with pytest.raises(UsageError):
        proc("-g", gid, "-g", "1")


def test_flags_ignored_with_process_are_dropped():
    inv = parse(["exec", "-p", "/p.json", "--cap", "CAP_SYS_ADMIN", "--no-new-privs=false", "--tty", "c1"])
    assert [d.pointer for d in ignored_with_process(RESTRICTED, inv)] == \
        ["/exec/--tty", "/exec/--no-new-privs", "/exec/--cap"]


@pytest.mark.parametrize("argv, refused", [
    (["create", "--no-pivot", "c1"], ["/create/--no-pivot"]),
    (["run", "--no-new-keyring=1", "c1"], ["/run/--no-new-keyring"]),
    (["create", "--no-pivot=false", "c1"], []),
    (["--rootless", "true", "create", "c1"], ["/global/--rootless"]),
    (["--rootless=t", "exec", "c1", "sh"], ["/global/--rootless"]),
    (["--rootless=auto", "create", "c1"], []),
    (["--rootless=false", "update", "c1"], []),
    (["restore", "c1"], ["/restore"]),
    (["exec", "--cgroup", "../x", "c1", "sh"], ["/exec/--cgroup"]),
    (["exec", "--cgroup", "pids:a/../../b", "--cgroup", "memory:a", "c1", "sh"], ["/exec/--cgroup"]),
    (["exec", "--cgroup", "a", "--cgroup", "b", "c1", "sh"], ["/exec/--cgroup", "/exec/--cgroup"]),
    (["exec", "--cgroup", "pids:x:y", "c1", "sh"], ["/exec/--cgroup"]),
    (["exec", "--cgroup", "pids,memory:sub/dir", "c1", "sh"], []),
])
def test_flag_decisions(argv, refused):
    ds = flag_decisions(BASELINE, parse(argv))
    assert [d.pointer for d in ds if d.action == "refuse"] == refused
    assert all(d.applied for d in ds)
    assert not any(d.applied for d in flag_decisions(replace(BASELINE, mode="complain"), parse(argv)))


@pytest.mark.parametrize("fact, refused", [
    (FdFact(3, "dir", "/"), True), (FdFact(3, "blk", "/dev/vda", (254, 0)), True),
    (FdFact(3, "missing"), True), (FdFact(3, "lnk", "/x"), True),
    (FdFact(3, "chr", "/dev/null", (1, 3)), False), (FdFact(3, "chr", "/dev/mem", (1, 1)), True),
    (FdFact(3, "chr", "/dev/pts/3", (136, 3)), False), (FdFact(3, "sock", "socket:[1]"), False),
    (FdFact(3, "fifo", "pipe:[1]"), False), (FdFact(3, "reg", "/etc/shadow"), True),
    (FdFact(3, "reg", "/memfd:x (deleted)"), False), (FdFact(3, "reg", "/srv/data/file"), False),
])
def test_preserved_descriptors_by_kind(fact, refused):
    (d,) = fd_decisions(BASELINE, "exec", [fact])
    assert (d.action == "refuse") is refused, d.reason


def test_preserved_file_follows_the_profiles_host_path_rule():
    (d,) = fd_decisions(RESTRICTED, "exec", [FdFact(3, "reg", "/srv/data/file")])
    assert d.action == "refuse" and "forbidden host path" in d.reason  # restricted forbids / but engine storage


# -- Go's encoding/json ------------------------------------------------------------------------------

def decode(text, schema=gojson.PROCESS):
    return gojson.decode(gojson.loads(text), schema)


def test_keys_match_case_insensitively_like_go():
    p = decode('{"NoNewPrivileges": true, "USER": {"Uid": 5}, "\\u017felinuxLabel": "x", "capabilities": '
               '{"\\u212aNOWN": 1, "Bounding": ["A"]}, "unknown": 3}')
    assert p == {"noNewPrivileges": True, "user": {"uid": 5}, "selinuxLabel": "x", "capabilities": {"bounding": ["A"]}}


@pytest.mark.parametrize("text", ['{"cwd": "/", "CWD": "/proc"}', '{"user": {"uid": 1, "UID": 0}}',
                                  '{"noNewPrivileges": true, "noNewPrivileges": false}'])
def test_two_keys_for_one_field_are_refused(text):
    with pytest.raises(gojson.GoJSONError, match="case-insensitively"):
        decode(text)


@pytest.mark.parametrize("text", ['{"user": {"uid": -1}}', '{"user": {"uid": 4294967296}}', '{"user": {"uid": 1.0}}',
                                  '{"user": {"uid": 1e3}}', '{"user": {"uid": -0}}', '{"user": {"uid": "0"}}',
                                  '{"args": "sh"}', '{"terminal": 1}', '{"user": []}', '{"cwd": 5}'])
def test_values_go_cannot_decode_are_refused(text):
    with pytest.raises(gojson.GoJSONError):
        decode(text)


def test_null_clears_pointers_and_leaves_the_rest():
    assert decode('{"capabilities": null, "user": null, "terminal": null, "args": null}') == \
        {"capabilities": None, "args": None}
    assert decode("null") is None
    with pytest.raises(ValueError):
        gojson.loads('{"x": NaN}')
