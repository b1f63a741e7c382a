"""The exact intersection of two seccomp filters (sandbox.core.transform.seccomp.combine).

Property: for random rule pairs and argument values (including the boundary values of every
condition), the emitted rules — evaluated by the one evaluator, sandbox.core.seccomp_eval — give a
call exactly the stricter of the two inputs' verdicts: allowed exactly when both allow it, never
larger and never smaller.  The emitted rules never overlap with different actions (libseccomp's
tree order cannot change their meaning) and never repeat an argument in one rule (runc would
split it into an OR).  tests/unit/test_seccomp_kernel.py checks the same against the kernel.

SANDBOX_SECCOMP_EXAMPLES=N runs N examples per property (default: a few hundred, derandomized).
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.core import loader, seccomp_eval
from sandbox.core.hostfacts import HostFacts
from sandbox.core.transform import apply
from sandbox.core.transform.context import Context
from sandbox.core.transform.seccomp import bundle_filter, combine, intersect, profile_filter
from tests.conftest import ENGINE_CONFIGS, FIXTURES, OCI
from tests.seccomp_probe import probe_args

MASK64 = (1 << 64) - 1
_FRESH = os.environ.get("SANDBOX_SECCOMP_EXAMPLES")
EXAMPLES = int(_FRESH) if _FRESH else None
OPS = ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE",
       "SCMP_CMP_MASKED_EQ"]
VERDICTS = [("SCMP_ACT_ALLOW", None), ("SCMP_ACT_LOG", None), ("SCMP_ACT_ERRNO", None), ("SCMP_ACT_ERRNO", 1),
            ("SCMP_ACT_ERRNO", 38), ("SCMP_ACT_TRACE", 5), ("SCMP_ACT_TRAP", None), ("SCMP_ACT_KILL_PROCESS", None),
            ("SCMP_ACT_KILL", None), ("SCMP_ACT_NOTIFY", None)]
CLONE_NS, CLONE_NS_OLD = 0x7E020000, 0x7C020000


def examples(n):
    return settings(max_examples=EXAMPLES or n, deadline=None, derandomize=not _FRESH, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


values = st.one_of(st.integers(0, 24), st.sampled_from([0xFFFFFFFF, MASK64, MASK64 - 1, 1 << 63, 1 << 32, CLONE_NS,
                                                        CLONE_NS_OLD, 0x20000, 0x20008]),
                   st.integers(0, MASK64))


# the values real filters compare with: small numbers (families, personalities), flag masks, -1 as u32
realistic = st.one_of(st.integers(0, 64), st.sampled_from([0xFFFFFFFF, 0x20000, 0x20008, 0x10000000, CLONE_NS,
                                                           CLONE_NS_OLD]))


@st.composite
def conds(draw, index=None, vals=values):
    i, op = draw(st.integers(0, 2) if index is None else index), draw(st.sampled_from(OPS))
    if op != "SCMP_CMP_MASKED_EQ":
        return (i, draw(vals), 0, op)
    mask = draw(st.one_of(st.sampled_from([CLONE_NS, CLONE_NS_OLD, 0xF0, 0xFF, 0x3, 1, MASK64, 0]), vals))
    two = draw(st.one_of(st.just(0), vals.map(lambda v: v & mask), vals))  # mostly within the mask
    return (i, mask, two, op)


@st.composite
def rules(draw, verdicts=VERDICTS):
    action, errno = draw(st.sampled_from(verdicts))
    args = draw(st.lists(conds(), max_size=3))
    return (action, errno, tuple(sorted(args)))


@st.composite
def sides(draw, verdicts=VERDICTS):
    default = draw(st.sampled_from([v for v in verdicts if v[0] != "SCMP_ACT_NOTIFY"]))
    return (default[0], default[1], ()), draw(st.lists(rules(verdicts), max_size=4))


def check_exact(p, b, out, default, exact=True, approx=()):
    """Every probe: the emitted rules give the stricter of the two inputs' verdicts (exact), except
    that calls whose deny answer is in `approx` (too many rules to say) get the default; when the
    intersection was too complex to emit at all (`exact` False), an answer at least as strict."""
    (pdefault, prules), (bdefault, brules) = p, b
    out_default = (default[0], default[1], ())
    for r in out:
        assert len({c[0] for c in r[2]}) == len(r[2]), f"{r} repeats an argument: runc would OR its conditions"
    assert not seccomp_eval.conflicts(out_default, out), "emitted rules overlap with different actions"
    for args in probe_args([prules, brules, out], limit=150):
        vp = seccomp_eval.verdict(pdefault, prules, args)
        vb = seccomp_eval.verdict(bdefault, brules, args)
        got = seccomp_eval.verdict(out_default, out, args)
        want = seccomp_eval.stricter(vp, vb)
        if exact:
            assert seccomp_eval.allows(got) == (seccomp_eval.allows(vp) and seccomp_eval.allows(vb)), args
            if want in approx and got == seccomp_eval.action_of(*out_default[:2]):
                continue
            assert got == want, (args, vp, vb, got)
        else:
            assert not seccomp_eval.allows(got) or (seccomp_eval.allows(vp) and seccomp_eval.allows(vb)), args
            assert seccomp_eval.strength(got)[0] >= seccomp_eval.strength(want)[0], (args, got, want)


def run_combine(p, b):
    (pdefault, prules), (bdefault, brules) = p, b
    default = seccomp_eval.stricter(seccomp_eval.action_of(*pdefault[:2]), seccomp_eval.action_of(*bdefault[:2]))
    comb = combine(pdefault, prules, bdefault, brules, default)
    return comb, default


@examples(150)
@given(p=sides(), b=sides())
def test_intersection_allows_exactly_what_both_allow(p, b):
    """Any rules, overlapping actions included.  A syscall whose intersection needs more rules than
    runc and the kernel take (sandbox.core.transform.seccomp.RULES_PER_SYSCALL) gets an answer at least as
    strict as the exact one everywhere."""
    comb, default = run_combine(p, b)
    check_exact(p, b, comb.rules, default, comb.exact, comb.approx)


@examples(100)
@given(data=st.data(), index=st.integers(0, 1))
def test_two_conditions_on_one_argument_are_intersected_exactly(data, index):
    """Both sides constrain the same argument with the values real filters use (the clone/personality
    class): always exact, within the rule budget."""
    same = st.lists(conds(st.just(index), realistic), min_size=1, max_size=2).map(lambda c: tuple(sorted(c)))
    side = st.tuples(st.sampled_from([("SCMP_ACT_ERRNO", 1, ()), ("SCMP_ACT_KILL_PROCESS", None, ())]),
                     st.lists(same.map(lambda c: ("SCMP_ACT_ALLOW", None, c)), min_size=1, max_size=3))
    p, b = data.draw(side), data.draw(side)
    comb, default = run_combine(p, b)
    assert comb.exact
    check_exact(p, b, comb.rules, default, approx=comb.approx)


def test_clone_masks_are_ored_into_one_rule():
    """The bug of issue 13: clone with 0x7C020000 (bundle) and 0x7E020000 (profile) disappeared."""
    deny = ("SCMP_ACT_ERRNO", 1, ())
    prof = [("SCMP_ACT_ALLOW", None, ((0, CLONE_NS, 0, "SCMP_CMP_MASKED_EQ"),))]
    bund = [("SCMP_ACT_ALLOW", None, ((0, CLONE_NS_OLD, 0, "SCMP_CMP_MASKED_EQ"),))]
    assert intersect(prof, bund, deny) == prof
    assert intersect(bund, prof, deny) == prof
    odd = [("SCMP_ACT_ALLOW", None, ((0, 0x0F, 0x01, "SCMP_CMP_MASKED_EQ"),))]
    assert intersect(prof, odd, deny) == [("SCMP_ACT_ALLOW", None, ((0, CLONE_NS | 0x0F, 0x01, "SCMP_CMP_MASKED_EQ"),))]
    check_exact((deny, prof), (deny, bund), intersect(prof, bund, deny), ("SCMP_ACT_ERRNO", 1))


def test_personality_values_are_evaluated_not_dropped():
    deny = ("SCMP_ACT_ERRNO", 1, ())
    eq = [("SCMP_ACT_ALLOW", None, ((0, v, 0, "SCMP_CMP_EQ"),)) for v in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)]
    strict = [eq[0], eq[1], eq[4]]
    assert intersect(strict, eq, deny) == strict
    below = [("SCMP_ACT_ALLOW", None, ((0, 0x10000, 0, "SCMP_CMP_LT"),))]
    assert intersect(eq, below, deny) == [eq[0], eq[1]]


@pytest.mark.parametrize("p,b,n", [
    # two ranges: the tighter bounds, or aligned blocks for a middle range
    (("SCMP_CMP_GE", 10), ("SCMP_CMP_GE", 12), 1),
    (("SCMP_CMP_LT", 10), ("SCMP_CMP_LE", 3), 1),
    (("SCMP_CMP_GE", 16), ("SCMP_CMP_LT", 32), 1),  # [16, 31] is one aligned block
    (("SCMP_CMP_GE", 10), ("SCMP_CMP_LE", 20), 3),  # [10,11] [12,15] [16,19] [20]
    (("SCMP_CMP_NE", 3), ("SCMP_CMP_NE", 7), 4),  # <3, [4,7) in blocks, >7
    (("SCMP_CMP_NE", 5), ("SCMP_CMP_GT", 5), 1),
    (("SCMP_CMP_EQ", 5), ("SCMP_CMP_LT", 5), 0),  # empty: denied
])
def test_range_pairs(p, b, n):
    deny = ("SCMP_ACT_ERRNO", 1, ())
    pr = [("SCMP_ACT_ALLOW", None, ((0, p[1], 0, p[0]),))]
    br = [("SCMP_ACT_ALLOW", None, ((0, b[1], 0, b[0]),))]
    out = intersect(pr, br, deny)
    check_exact((deny, pr), (deny, br), out, ("SCMP_ACT_ERRNO", 1))
    if n != 3:
        assert len(out) == n, out


def test_the_stricter_answer_wins_where_either_denies():
    deny = ("SCMP_ACT_ERRNO", 1, ())
    prof = [("SCMP_ACT_ALLOW", None, ())]
    bund = [("SCMP_ACT_ALLOW", None, ((0, 1, 0, "SCMP_CMP_EQ"),)),
            ("SCMP_ACT_KILL_PROCESS", None, ((0, 2, 0, "SCMP_CMP_EQ"),))]
    out = combine(deny, prof, ("SCMP_ACT_ERRNO", 38, ()), bund, ("SCMP_ACT_ERRNO", 1)).rules
    assert seccomp_eval.verdict(deny, out, [1]) == ("SCMP_ACT_ALLOW", None)
    assert seccomp_eval.verdict(deny, out, [2]) == ("SCMP_ACT_KILL_PROCESS", None)
    assert seccomp_eval.verdict(deny, out, [3]) == ("SCMP_ACT_ERRNO", 38)  # the bundle's answer: the profile allows


# -- through the whole transform --------------------------------------------------------------------------

PROFILES = {n: loader.load_profile(n) for n in loader.BUILTIN_PROFILES}
NAMES = ["clone", "clone3", "personality", "socket", "read", "mount", "unshare", "keyctl"]


def _entry(rule, names):
    action, errno, args = rule
    e = {"names": names, "action": action}
    if errno is not None:
        e["errnoRet"] = errno
    if args:
        e["args"] = [{"index": i, "value": v, "valueTwo": v2, "op": op} for i, v, v2, op in args]
    return e


@st.composite
def sections(draw):
    default = draw(st.sampled_from([v for v in VERDICTS if v[0] != "SCMP_ACT_NOTIFY"]))
    entries = [_entry(draw(rules()), draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True)))
               for _ in range(draw(st.integers(0, 6)))]
    sec = {"defaultAction": default[0], "syscalls": entries}
    if default[1] is not None:
        sec["defaultErrnoRet"] = default[1]
    return sec


class _AnyDenial:
    def __contains__(self, v):
        return not seccomp_eval.allows(v)


def check_section(profile, config, sec_in, out):
    res = out.config
    caps = set(res["process"]["capabilities"]["bounding"])
    pdefault, ptable = profile_filter(Context(profile, {}, HostFacts(arch="x86_64")), caps)
    bdefault, btable = bundle_filter(sec_in) if sec_in else (("SCMP_ACT_ALLOW", None, ()), {})
    odefault, otable = bundle_filter(res["linux"]["seccomp"])
    # a warning names the syscalls whose deny answers were too many rules to say (they get the default)
    approx = {d.before for d in out.decisions if d.control == "seccomp" and d.action == "warn"}
    for name in set(ptable) | set(btable) | set(NAMES):
        check_exact((pdefault, ptable.get(name, [])), (bdefault, btable.get(name, [])), otable.get(name, []),
                    seccomp_eval.action_of(odefault[0], odefault[1]),
                    approx=_AnyDenial() if name in approx else ())


@examples(60)
@given(sec=sections(), name=st.sampled_from(sorted(PROFILES)))
def test_transform_emits_the_exact_intersection(sec, name):
    with open(os.path.join(OCI, "podman-4.3-config.json")) as f:
        config = json.load(f)
    config["linux"]["seccomp"] = sec
    out = apply(PROFILES[name], config, HostFacts(arch="x86_64"))
    check_section(PROFILES[name], config, sec, out)


@pytest.mark.parametrize("engine", ENGINE_CONFIGS)
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_engine_filters_are_intersected_exactly(name, engine):
    with open(os.path.join(OCI, f"{engine}-config.json")) as f:
        config = json.load(f)
    out = apply(PROFILES[name], config, HostFacts(arch="x86_64"))
    check_section(PROFILES[name], config, config["linux"]["seccomp"], out)
    assert not [d for d in out.decisions if d.action == "warn"]


def test_decision_names_the_real_reason_for_clone():
    with open(os.path.join(OCI, "podman-4.3-config.json")) as f:
        config = json.load(f)
    sec = config["linux"]["seccomp"]
    sec["syscalls"] = [e for e in sec["syscalls"] if "clone" not in e["names"]]
    sec["syscalls"].append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                            "args": [{"index": 0, "value": CLONE_NS_OLD, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    out = apply(PROFILES["baseline"], config, HostFacts(arch="x86_64"))
    clone = [e for e in out.config["linux"]["seccomp"]["syscalls"] if "clone" in e["names"]]
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": CLONE_NS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]
    d = [d for d in out.decisions if d.control == "seccomp" and d.before == "clone"]
    assert len(d) == 1 and d[0].action == "tighten", d
    assert "arg0 & 0x7e020000 == 0" in d[0].reason and "more only with CAP_SYS_ADMIN" in d[0].reason
    assert not [d for d in out.decisions if d.action == "drop" and d.before in ("clone", "personality")]


def test_decision_records_a_denied_call_that_gets_another_answer():
    """Both filters deny clone3 (runtime-tools' generator by its default EPERM, the profile with ENOSYS):
    the answer changes what glibc does (ENOSYS: fall back to clone), so a decision must say so."""
    with open(os.path.join(FIXTURES, "bundles", "runtime-tools-generate.json")) as f:
        config = json.load(f)
    out = apply(PROFILES["baseline"], config, HostFacts(arch="x86_64"))
    d = [d for d in out.decisions if d.control == "seccomp" and d.before == "clone3"]
    assert len(d) == 1 and d[0].action == "set", d
    assert "SCMP_ACT_ERRNO(ENOSYS) instead of the bundle's SCMP_ACT_ERRNO(EPERM)" in d[0].reason
    assert seccomp_eval.evaluate_section(out.config["linux"]["seccomp"], "clone3") == ("SCMP_ACT_ERRNO", 38)


def test_decision_for_reanswered_calls_with_conditions_and_not_for_the_default():
    """A conditioned rule of the bundle answering EINVAL where the profile answers EPERM gets a decision;
    calls both filters leave to their defaults are the default decision's (no second record)."""
    with open(os.path.join(OCI, "podman-4.3-config.json")) as f:
        config = json.load(f)
    sec = config["linux"]["seccomp"]
    sec["syscalls"].append({"names": ["add_key"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]})
    out = apply(PROFILES["baseline"], config, HostFacts(arch="x86_64"))
    check_section(PROFILES["baseline"], config, sec, out)
    addkey = [d for d in out.decisions if d.control == "seccomp" and d.before == "add_key"]
    assert [d.action for d in addkey] == ["set"] and "instead of the bundle's SCMP_ACT_ERRNO(EINVAL)" in addkey[0].reason
    assert not [d for d in out.decisions if d.control == "seccomp" and d.before == "personality"]
