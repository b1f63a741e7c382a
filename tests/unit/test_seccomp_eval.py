"""The shared seccomp rule-table evaluator: runc 1.1's semantics, one condition at a time."""

import pytest

from sandbox.seccomp_eval import allows, cond_matches, evaluate, evaluate_section, runc_rules, verdict

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


def test_unlisted_syscalls_get_the_default_and_an_allowing_match_wins():
    table = {"x": [("SCMP_ACT_ERRNO", 38, ((0, 1, 0, "SCMP_CMP_EQ"),)), ("SCMP_ACT_ALLOW", None, ())]}
    assert evaluate(DENY, table, "y") == ("SCMP_ACT_ERRNO", 1)
    assert verdict(DENY, table["x"], [1]) == ("SCMP_ACT_ALLOW", None)
    assert evaluate(ALLOW, {"x": [("SCMP_ACT_KILL_PROCESS", None, ())]}, "x") == ("SCMP_ACT_KILL_PROCESS", None)


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
