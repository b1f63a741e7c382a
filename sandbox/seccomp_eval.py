"""What a seccomp rule table does with one system call: the one evaluator of such tables.

The escape suite, the transform's property tests and `verify` all ask the same question —
"what does this filter answer for syscall S with arguments A?" — so they share this code.
Pure: tables in, verdicts out.

A table is the transform's form of an OCI `linux.seccomp` section (see
`sandbox.transform.seccomp`): a default rule and, per syscall name, a list of rules, each
`(action, errnoRet, conditions)` with conditions `(index, value, valueTwo, op)`.  The
semantics are runc 1.1's, as it hands the section to libseccomp:

- the rules of one syscall are ORed; the conditions of one rule are ANDed;
- except that a rule with more than one condition on the same argument is split by runc into
  one rule per condition (libcontainer/seccomp/seccomp_linux.go, "revert to old behavior"),
  so its conditions are ORed;
- arguments are compared as unsigned 64-bit values; `SCMP_CMP_MASKED_EQ` is
  `(arg & value) == valueTwo`;
- when several rules match, an allowing one wins (libseccomp gives the permissive action to
  overlapping rules in the order runc adds them; the tables here never rely on the order).
"""

from __future__ import annotations

from . import tables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    Cond = tuple[int, int, int, str]  # index, value, valueTwo, op
    Rule = tuple[str, int | None, tuple[Cond, ...]]  # action, errnoRet, conditions
    Verdict = tuple[str, int | None]  # action, errno (None unless the action carries one)

MASK64 = (1 << 64) - 1


def cond_matches(cond: Cond, args: Mapping[int, int] | Sequence[int]) -> bool:
    """Whether one condition holds for the call's arguments (missing arguments count as 0)."""
    index, value, value_two, op = cond
    if isinstance(args, dict):
        raw = args.get(index, 0)
    else:
        raw = args[index] if index < len(args) else 0
    a = raw & MASK64
    v = value & MASK64
    if op == "SCMP_CMP_EQ":
        return a == v
    if op == "SCMP_CMP_NE":
        return a != v
    if op == "SCMP_CMP_LT":
        return a < v
    if op == "SCMP_CMP_LE":
        return a <= v
    if op == "SCMP_CMP_GT":
        return a > v
    if op == "SCMP_CMP_GE":
        return a >= v
    if op == "SCMP_CMP_MASKED_EQ":
        return (a & v) == (value_two & MASK64)
    raise ValueError(f"unknown seccomp operator {op!r}")


def runc_rules(rule: Rule) -> list[Rule]:
    """The rules runc really installs for one OCI rule (split when an argument repeats)."""
    action, errno, conds = rule
    indexes = [c[0] for c in conds]
    if len(set(indexes)) == len(indexes):
        return [rule]
    return [(action, errno, (c,)) for c in conds]


def rule_matches(rule: Rule, args: Mapping[int, int] | Sequence[int]) -> bool:
    """Whether `rule`, as runc installs it, matches a call with `args`."""
    return any(all(cond_matches(c, args) for c in r[2]) for r in runc_rules(rule))


def verdict(default: Rule, rules: Iterable[Rule], args: Mapping[int, int] | Sequence[int] = ()) -> Verdict:
    """The action (and errno) a filter with `default` and this syscall's `rules` gives the call."""
    matching = [r for r in rules if rule_matches(r, args)]
    for r in matching:
        if r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS:
            return r[0], None
    if matching:
        return matching[0][0], matching[0][1]
    return default[0], default[1]


def evaluate(default: Rule, table: Mapping[str, list[Rule]], syscall: str,
             args: Mapping[int, int] | Sequence[int] = ()) -> Verdict:
    """The verdict of the whole table for `syscall(args)`."""
    return verdict(default, table.get(syscall, ()), args)


def allows(v: Verdict) -> bool:
    """Whether the call runs (SCMP_ACT_NOTIFY counts: a supervisor may let it)."""
    return v[0] in tables.SECCOMP_PERMISSIVE_ACTIONS


def evaluate_section(section: Mapping[str, object] | None, syscall: str,
                     args: Mapping[int, int] | Sequence[int] = ()) -> Verdict:
    """The verdict of an OCI `linux.seccomp` section (None: no filter, everything runs)."""
    if not section:
        return "SCMP_ACT_ALLOW", None
    from .transform.seccomp import bundle_filter

    default, table = bundle_filter(dict(section))
    return evaluate(default, table, syscall, args)


def section_table(section: Mapping[str, object]) -> tuple[Rule, dict[str, list[Rule]]]:
    """(default rule, per-syscall rules) of an OCI `linux.seccomp` section, to evaluate many calls with `evaluate`."""
    from .transform.seccomp import bundle_filter

    return bundle_filter(dict(section))
