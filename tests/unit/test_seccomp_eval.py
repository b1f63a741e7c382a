"""The shared seccomp rule-table evaluator: runc 1.1's semantics, one condition at a time."""

import pytest

from sandbox.core.seccomp_eval import (
    allows,
    cond_matches,
    conflicts,
    evaluate,
    evaluate_section,
    installed,
    runc_rules,
    verdict,
)

DENY = ("SCMP_ACT_ERRNO", 1, ())
ALLOW = ("SCMP_ACT_ALLOW", None, ())


@pytest.mark.parametrize("op,value,arg,expected", [
    ("SCMP_CMP_EQ", 5, 5, True), ("SCMP_CMP_EQ", 5, 6, False),
    ("SCMP_CMP_NE", 5, 6, True), ("SCMP_CMP_NE", 5, 5, False),
    ("SCMP_CMP_LT", 5, 4, True), ("SCMP_CMP_LT", 5, 5, False),
    ("SCMP_CMP_LE", 5, 5, True), ("SCMP_CMP_LE", 5, 6, False),
    ("SCMP_CMP_GT", 5, 6, True), ("SCMP_CMP_GT", 5, 5, False),
    ("SCMP_CMP_GE", 5, 5, True), ("SCMP_CMP_GE", 5, 4, False),
    # arguments are unsigned 64-bit: -1 is the largest value
    ("SCMP_CMP_GT", 5, -1, True), ("SCMP_CMP_EQ", 2**64 - 1, -1, True),
])
def test_comparison_operators(op, value, arg, expected):
    assert cond_matches((0, value, 0, op), [arg]) is expected


def test_masked_eq_compares_the_masked_argument_with_value_two():
    clone_ns = 0x7E020000
    cond = (0, clone_ns, 0, "SCMP_CMP_MASKED_EQ")
    assert cond_matches(cond, [0x11])  # SIGCHLD only: no namespace flags
    assert not cond_matches(cond, [0x10000000 | 0x11])  # CLONE_NEWUSER


def test_conditions_of_one_rule_are_anded_and_rules_are_ored():
    rule = ("SCMP_ACT_ALLOW", None, ((0, 1, 0, "SCMP_CMP_EQ"), (1, 2, 0, "SCMP_CMP_EQ")))
    assert allows(evaluate(DENY, {"x": [rule]}, "x", [1, 2]))
    assert not allows(evaluate(DENY, {"x": [rule]}, "x", [1, 3]))
    other = ("SCMP_ACT_ALLOW", None, ((0, 7, 0, "SCMP_CMP_EQ"),))
    assert allows(evaluate(DENY, {"x": [rule, other]}, "x", [7, 0]))


def test_two_conditions_on_one_argument_are_ored_as_runc_installs_them():
    """runc splits such a rule into one rule per condition: the pair allows more than either reads."""
    rule = ("SCMP_ACT_ALLOW", None, ((0, 10, 0, "SCMP_CMP_GE"), (0, 20, 0, "SCMP_CMP_LE")))
    assert len(runc_rules(rule)) == 2
    assert allows(evaluate(DENY, {"x": [rule]}, "x", [5]))  # 5 <= 20: allowed although 5 < 10


def test_unlisted_syscalls_get_the_default():
    table = {"x": [("SCMP_ACT_ALLOW", None, ((0, 1, 0, "SCMP_CMP_EQ"),))]}
    assert evaluate(DENY, table, "y") == ("SCMP_ACT_ERRNO", 1)
    assert evaluate(DENY, table, "x", [2]) == ("SCMP_ACT_ERRNO", 1)
    assert evaluate(ALLOW, {"x": [("SCMP_ACT_KILL_PROCESS", None, ())]}, "x") == ("SCMP_ACT_KILL_PROCESS", None)


def test_overlapping_rules_with_different_actions_read_as_the_strictest():
    """libseccomp resolves such overlaps by its tree order (tests/unit/test_seccomp_kernel.py shows it);
    the evaluator never reads them looser than the kernel could."""
    table = {"x": [("SCMP_ACT_ERRNO", 38, ((0, 1, 0, "SCMP_CMP_EQ"),)), ("SCMP_ACT_ALLOW", None, ())]}
    assert verdict(DENY, table["x"], [1]) == ("SCMP_ACT_ERRNO", 38)
    assert verdict(DENY, table["x"], [2]) == ("SCMP_ACT_ALLOW", None)
    assert conflicts(DENY, table["x"])


def test_runc_skips_rules_whose_action_is_the_default():
    """An ERRNO(EPERM) rule under an ERRNO(EPERM) default is not installed: it cannot override an allow."""
    rules = [("SCMP_ACT_ERRNO", None, ((0, 1, 0, "SCMP_CMP_EQ"),)), ("SCMP_ACT_ALLOW", None, ((1, 2, 0, "SCMP_CMP_EQ"),))]
    assert installed(DENY, rules) == rules[1:]
    assert verdict(DENY, rules, [1, 2]) == ("SCMP_ACT_ALLOW", None)
    assert not conflicts(DENY, rules)
    assert verdict(ALLOW, rules, [1, 2]) == ("SCMP_ACT_ERRNO", 1)  # installed under an allow default


def test_errno_without_errnoret_is_eperm_and_kill_is_kill_thread():
    assert verdict(ALLOW, [("SCMP_ACT_ERRNO", None, ())]) == ("SCMP_ACT_ERRNO", 1)
    assert verdict(ALLOW, [("SCMP_ACT_KILL", None, ())]) == ("SCMP_ACT_KILL_THREAD", None)


def test_an_oci_section_is_evaluated_as_runc_reads_it():
    section = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ]}
    assert allows(evaluate_section(section, "read"))
    assert allows(evaluate_section(section, "personality", [8]))
    assert evaluate_section(section, "personality", [0x0800000]) == ("SCMP_ACT_ERRNO", 1)
    assert evaluate_section(section, "mount") == ("SCMP_ACT_ERRNO", 1)
    assert allows(evaluate_section(None, "mount"))


# -- the algebra of conditions (atoms and boxes), against brute force membership --------------------------

import itertools  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sandbox.core import seccomp_eval as se  # noqa: E402

M64 = se.MASK64
OPS = ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ"]
vals = st.one_of(st.integers(0, 40), st.sampled_from([0xFFFFFFFF, M64, M64 - 1, 1 << 63, 0x7E020000, 0x7C020000, 0xF0]),
                 st.integers(0, M64))
conds = st.tuples(st.just(0), vals, st.one_of(st.just(0), vals), st.sampled_from(OPS))


def probes(*cs):
    out = {0, 1, M64, M64 - 1, 1 << 63, 0xFFFFFFFF}
    for c in cs:
        _, v, v2, _ = c
        out |= {v, (v - 1) & M64, (v + 1) & M64, v2, v2 | (M64 ^ v), (v2 ^ (v & -v)) & M64}
    return sorted(out)


def member(conds_or, x):
    return any(se.cond_matches(c, [x]) for c in conds_or)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(x=st.integers(0, 1 << 12), m=st.integers(0, (1 << 10) - 1), v=st.integers(0, (1 << 10) - 1))
def test_next_and_prev_masked_agree_with_brute_force(x, m, v):
    v &= m
    nxt = next(y for y in itertools.count(x) if y & m == v)  # the bits above 10 are free: found soon
    assert se.next_masked(x, m, v) == nxt
    prev = next((y for y in range(x, -1, -1) if y & m == v), None)
    assert se.prev_masked(x, m, v) == prev


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(a=conds, b=conds)
def test_cond_and_not_subset_meets_agree_with_membership(a, b):
    both, nota = se.cond_and(a, b), se.cond_not(a)
    for c in both + nota:
        assert c[3] in OPS
    sub = se.cond_subset(a, b)
    meets = se.cond_meets(a, b)
    for x in probes(a, b):
        in_a, in_b = se.cond_matches(a, [x]), se.cond_matches(b, [x])
        assert member(both, x) == (in_a and in_b), (x, both)
        assert member(nota, x) == (not in_a), (x, nota)
        if in_a and not in_b:
            assert not sub
        if in_a and in_b:
            assert meets


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(a=conds, b=conds, c=conds)
def test_atom_union_is_exact_when_it_answers(a, b, c):
    x, y, z = se.atom_of(a), se.atom_of(b), se.atom_of(c)
    if x is None or y is None:
        return
    xy = se.atom_and(x, z) if z is not None else x
    if xy is None:
        return
    u = se.atom_union(xy, y)
    if u is None:
        return
    for v in probes(a, b, c):
        assert se.atom_contains(u, v) == (se.atom_contains(xy, v) or se.atom_contains(y, v)), v
    for v in probes(a, b, c):
        assert member(se.atom_conds(0, u), v) == se.atom_contains(u, v) or u == se.EVERY


def test_masks_or_into_one_condition_and_ranges_tighten():
    ns, ns_old = (0, 0x7E020000, 0, "SCMP_CMP_MASKED_EQ"), (0, 0x7C020000, 0, "SCMP_CMP_MASKED_EQ")
    assert se.cond_and(ns, ns_old) == [ns]
    assert se.cond_and((0, 0xF0, 0x10, "SCMP_CMP_MASKED_EQ"), (0, 0x0F, 0x01, "SCMP_CMP_MASKED_EQ")) == \
        [(0, 0xFF, 0x11, "SCMP_CMP_MASKED_EQ")]
    # [3, 9]: touches neither end, so aligned blocks: 3, [4, 7], [8, 9]
    assert se.cond_and((0, 10, 0, "SCMP_CMP_LT"), (0, 3, 0, "SCMP_CMP_GE")) == [
        (0, 3, 0, "SCMP_CMP_EQ"), (0, M64 - 3, 4, "SCMP_CMP_MASKED_EQ"), (0, M64 - 1, 8, "SCMP_CMP_MASKED_EQ")]
    # two values excluded: <= 2, [4, 5], 6, >= 8
    assert se.cond_and((0, 3, 0, "SCMP_CMP_NE"), (0, 7, 0, "SCMP_CMP_NE")) == [
        (0, 2, 0, "SCMP_CMP_LE"), (0, M64 - 1, 4, "SCMP_CMP_MASKED_EQ"), (0, 6, 0, "SCMP_CMP_EQ"),
        (0, 8, 0, "SCMP_CMP_GE")]
    assert se.cond_and((0, 5, 0, "SCMP_CMP_EQ"), (0, 5, 0, "SCMP_CMP_LT")) == []
    assert se.cond_and((0, 8, 0, "SCMP_CMP_EQ"), (0, 0xF0, 0, "SCMP_CMP_MASKED_EQ")) == [(0, 8, 0, "SCMP_CMP_EQ")]
