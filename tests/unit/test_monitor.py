"""What the agent answers, records and counts (sandbox.core.monitor), and how the records read back."""

import json

from sandbox.core.monitor import (
    UNREAD,
    Meta,
    Tally,
    TokenBucket,
    answer,
    arguments,
    condition_indexes,
    describe,
    exec_record,
    parse_meta,
    syscall_record,
)

CLONE_RULE = [["SCMP_ACT_ALLOW", None, [[0, 2114060288, 0, "SCMP_CMP_MASKED_EQ"]]]]


def meta(**kw):
    d = {"v": 1, "profile": "strict", "sha256": "ab" * 32, "mode": "complain", "routes": ["complain"], "exec": False,
         "errno": {}, "default": ["SCMP_ACT_ERRNO", 1], "would": {"clone": CLONE_RULE}, "caps": []}
    d.update(kw)
    return parse_meta(json.dumps(d))


def test_metadata_that_is_not_the_transforms_is_refused():
    for bad in (None, "", "{", "[]", json.dumps({"v": 2, "mode": "complain"}), json.dumps({"v": 1, "mode": "allow"}),
                json.dumps({"v": 1, "mode": "complain", "would": {"x": [["A", "x", []]]}}),
                json.dumps({"v": 1, "mode": "enforce", "errno": {"x": "y"}})):
        assert parse_meta(bad) is None, bad
    m = meta(errno={"keyctl": 1, "bad": 0, "huge": 99999})
    assert m.errno == {"keyctl": 1}  # an errno outside 1..4095 is not one the agent would answer


def test_complain_records_only_what_enforcement_would_deny_and_always_continues():
    m = meta()
    fork, newuser = answer(m, "clone", [0x01200011]), answer(m, "clone", [0x10000011])
    assert fork.errno == 0 and fork.record == ""
    assert newuser.errno == 0 and newuser.record == "syscall" and newuser.would == "SCMP_ACT_ERRNO(EPERM)"
    keyctl = answer(m, "keyctl", [0])  # not in `would`: the default rule judges it
    assert keyctl.errno == 0 and keyctl.would == "SCMP_ACT_ERRNO(EPERM)"


def test_denials_fail_with_their_errno_exec_trail_continues_learning_records_all():
    m = meta(mode="enforce", errno={"keyctl": 1, "clone3": 38}, exec=True, default=None, would={})
    assert (answer(m, "clone3", []).errno, answer(m, "clone3", []).record) == (38, "syscall")
    assert answer(m, "execve", []).errno == 0 and answer(m, "execve", []).record == "exec"
    assert answer(m, "read", []).errno == 0 and answer(m, "read", []).record == ""
    # an exec that cannot be recorded does not run (enforce mode, on_audit_failure: fail)
    assert answer(m, "execve", [], audit_failing=True).errno == 1
    assert answer(meta(exec=True), "execve", [], audit_failing=True).errno == 0  # complain mode refuses nothing
    learn = meta(mode="learn", default=None, would={})
    assert answer(learn, "openat", []).record == "syscall" and answer(learn, "openat", []).errno == 0


def test_pointer_arguments_are_never_read():
    sig = [["dev_name", "ptr"], ["dir_name", "ptr"], ["type", "ptr"], ["flags", "int"], ["data", "ptr"]]
    args = arguments(sig, [0x7FFF0000, 0x7FFF0100, 0x7FFF0200, 0x8000, 0x7FFF0300, 0])
    assert [a["value"] for a in args] == [UNREAD, UNREAD, UNREAD, 0x8000, UNREAD]
    # a syscall the kernel gave no signature for: every argument unread
    assert {a["value"] for a in arguments(None, [1, 2, 3, 4, 5, 6])} == {UNREAD}


def test_the_tally_records_the_first_call_of_each_kind_then_counts_with_bounded_keys():
    t = Tally(max_keys=3)
    assert t.add("keyctl", ("x86_64", "keyctl"))
    assert not t.add("keyctl", ("x86_64", "keyctl"))
    assert t.add("clone", ("x86_64", "clone", 0x10000011))
    assert t.add("clone", ("x86_64", "clone", 0x20000000))  # another value the rules look at: recorded
    # keys are spent: a name seen before is only counted, a new name still gets its first record once
    assert not t.add("clone", ("x86_64", "clone", 0x40000000))
    assert t.add("mount", ("x86_64", "mount"))
    assert not t.add("mount", ("x86_64", "mount"))
    assert t.take() == {"keyctl": 2, "clone": 3, "mount": 2} and t.take() == {}
    assert t.totals == {"keyctl": 2, "clone": 3, "mount": 2}
    many = Tally(max_names=2)
    for n in ("a", "b", "c", "c"):
        many.add(n, (n,))
    assert many.totals == {"a": 1, "b": 1} and many.uncounted == 2


def test_condition_indexes_are_the_arguments_the_rules_look_at():
    assert condition_indexes(meta(), "clone") == (0,) and condition_indexes(meta(), "keyctl") == ()


def test_token_bucket():
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)  # one token back after half a second at 2/s


def test_records_read_back_in_one_line_each():
    m = meta()
    state = {"id": "c1", "bundle": "/b"}
    rec = syscall_record(state, m, name="mount", arch="x86_64", nr=165, pid=7, process={"exe": "/bin/x", "comm": "x"},
                         args=arguments([["flags", "int"], ["data", "ptr"]], [3, 9]),
                         ans=answer(m, "mount", [3, 9]))
    assert rec["container_id"] == "c1" and rec["profile"] == "strict" and rec["event"] == "syscall"
    assert describe(rec) == ("mount(flags=3, data=unread) [x86_64] by pid 7 x (/bin/x): continue; "
                             "enforcement: SCMP_ACT_ERRNO(EPERM)")
    ex = exec_record(state, m, syscall="execve", n=2, pid=9, ans=answer(meta(exec=True), "execve", []),
                     caller={"pid": 9, "comm": "sh", "exe": "/bin/busybox", "argv": ["sh"]},
                     parent={"pid": 1, "comm": "sh"}, program={"exe": "/bin/busybox", "comm": "cat",
                                                               "argv": ["cat", "/etc/passwd"]},
                     seen="at the exec (traced)", notified="t")
    assert ex["data"]["filename"] == ex["data"]["argv"] == UNREAD
    assert describe(ex) == "#2 execve: cat /etc/passwd (/bin/busybox) — by pid 9 sh, parent pid 1 sh"


def test_meta_is_a_plain_record():
    assert isinstance(meta(), Meta) and meta() == meta()
