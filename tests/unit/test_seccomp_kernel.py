"""The seccomp intersection against the real kernel.

Filters are compiled with libseccomp (pyseccomp) the way runc 1.1 compiles them, loaded into a
forked child, and probed with getppid(2) called through syscall(2) with chosen argument values:
getppid ignores its arguments, the filter does not (tests/seccomp_probe.py).  The rules under test
are put on getppid, including the real clone and personality rules of engine profiles.

SANDBOX_SECCOMP_EXAMPLES=N runs N examples of the random spot check (default 12).
"""

import json
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sandbox.core import loader, seccomp_eval
from sandbox.core.hostfacts import HostFacts
from sandbox.core.transform import apply
from sandbox.core.transform.context import Context
from sandbox.core.transform.seccomp import bundle_filter, combine, profile_filter
from tests.conftest import ENGINE_CONFIGS, OCI
from tests.seccomp_probe import expected_outcome, kernel_outcomes, probe_args
from tests.unit.test_seccomp_intersection import VERDICTS, rules

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="getppid is syscall 110 on x86_64 only")

_FRESH = os.environ.get("SANDBOX_SECCOMP_EXAMPLES")
DENY = ("SCMP_ACT_ERRNO", 1, ())
ALLOW = "SCMP_ACT_ALLOW"


def test_libseccomp_resolves_overlaps_by_tree_order_not_by_strictness():
    """Why the transform never emits overlapping rules with different actions: libseccomp checks the
    higher argument first and an EQ before an LT, whatever the order or the actions."""
    allow_a0 = (ALLOW, None, ((0, 1, 0, "SCMP_CMP_EQ"),))
    errno_a1 = ("SCMP_ACT_ERRNO", 22, ((1, 2, 0, "SCMP_CMP_EQ"),))
    assert kernel_outcomes(DENY, [allow_a0, errno_a1], [(1, 2)]) == [("errno", 22)]
    errno_a0 = ("SCMP_ACT_ERRNO", 22, ((0, 1, 0, "SCMP_CMP_EQ"),))
    allow_a1 = (ALLOW, None, ((1, 2, 0, "SCMP_CMP_EQ"),))
    assert kernel_outcomes(DENY, [errno_a0, allow_a1], [(1, 2)]) == ["allow"]
    allow_lt = (ALLOW, None, ((0, 10, 0, "SCMP_CMP_LT"),))
    errno_eq = ("SCMP_ACT_ERRNO", 22, ((0, 5, 0, "SCMP_CMP_EQ"),))
    assert kernel_outcomes(DENY, [allow_lt, errno_eq], [(5,)]) == [("errno", 22)]
    assert kernel_outcomes(DENY, [errno_eq, allow_lt], [(5,)]) == [("errno", 22)]


def test_runc_splits_two_conditions_on_one_argument_into_an_or():
    """The reason exact intersections must never write two conditions on one argument in one rule."""
    rule = (ALLOW, None, ((0, 10, 0, "SCMP_CMP_GE"), (0, 20, 0, "SCMP_CMP_LE")))
    assert kernel_outcomes(DENY, [rule], [(5,), (15,), (25,)]) == ["allow", "allow", "allow"]
    assert [seccomp_eval.allows(seccomp_eval.verdict(DENY, [rule], [v])) for v in (5, 15, 25)] == [True] * 3


RANGE_OPS = {"SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE"}


def libseccomp_fragile(rules):
    """Rule sets libseccomp 2.5 is known to compile wrongly whatever their order: range comparisons
    on one argument in several rules, with another rule continuing past that argument (GT 0 | LT 1
    && a1 == 0 lets (0, 1) through).  runc would install them just as wrongly."""
    for index in {c[0] for r in rules for c in r[2]}:
        ranged = [r for r in rules if any(c[0] == index and c[3] in RANGE_OPS for c in r[2])]
        if len(ranged) > 1 and any(len(r[2]) > 1 for r in ranged):
            return True
    return False


def test_libseccomp_miscompiles_range_rules_sharing_an_argument():
    """The libseccomp 2.5 bug `libseccomp_fragile` stands for, shown: the same set as an EQ works."""
    gt0 = (ALLOW, None, ((0, 0, 0, "SCMP_CMP_GT"),))
    lt1 = (ALLOW, None, ((0, 1, 0, "SCMP_CMP_LT"), (1, 0, 0, "SCMP_CMP_EQ")))
    eq0 = (ALLOW, None, ((0, 0, 0, "SCMP_CMP_EQ"), (1, 0, 0, "SCMP_CMP_EQ")))
    assert seccomp_eval.verdict(DENY, [gt0, lt1], (0, 1)) == ("SCMP_ACT_ERRNO", 1)
    assert kernel_outcomes(DENY, [gt0, lt1], [(0, 1)]) == ["allow"]  # wrong, in every order
    assert kernel_outcomes(DENY, [gt0, eq0], [(0, 1)]) == [("errno", 1)]
    assert libseccomp_fragile([gt0, lt1]) and not libseccomp_fragile([gt0, eq0])
    # where the profile changes something, the transform spells a single value EQ, whatever the
    # bundle wrote (where it changes nothing, the bundle's rules stay as written: runc's as before)
    prof = [(ALLOW, None, ((1, 1, 0, "SCMP_CMP_LE"),))]
    out = combine(DENY, prof, DENY, [gt0, lt1], ("SCMP_ACT_ERRNO", 1)).rules
    assert not libseccomp_fragile(out)
    assert kernel_outcomes(DENY, sorted(out, key=lambda r: len(r[2])), [(0, 1), (0, 0), (3, 1), (3, 5)]) == \
        [("errno", 1), "allow", "allow", ("errno", 1)]
    assert combine(DENY, [(ALLOW, None, ())], DENY, [gt0, lt1], ("SCMP_ACT_ERRNO", 1)).rules == [gt0, lt1]


def _check_kernel(p, b):
    (pdefault, prules), (bdefault, brules) = p, b
    default = seccomp_eval.stricter(seccomp_eval.action_of(*pdefault[:2]), seccomp_eval.action_of(*bdefault[:2]))
    comb = combine(pdefault, prules, bdefault, brules, default)
    out = sorted(comb.rules, key=lambda r: len(r[2]))  # as _emit orders them for runc
    assume(not libseccomp_fragile(out))
    probes = probe_args([prules, brules, out], limit=60)
    got = kernel_outcomes((default[0], default[1], ()), out, probes)
    for args, k in zip(probes, got):
        vp = seccomp_eval.verdict(pdefault, prules, args)
        vb = seccomp_eval.verdict(bdefault, brules, args)
        want = seccomp_eval.stricter(vp, vb)
        ev = seccomp_eval.verdict((default[0], default[1], ()), out, args)
        assert k == expected_outcome(ev), (args, k, ev)  # the evaluator predicts the kernel
        if comb.exact and not (want in comb.approx and ev == default):
            assert k == expected_outcome(want), (args, k, want)
        assert (k == "allow") <= (seccomp_eval.allows(vp) and seccomp_eval.allows(vb))
    # the inputs themselves, where libseccomp's meaning is not order-dependent
    for dflt, rs in ((pdefault, prules), (bdefault, brules)):
        if seccomp_eval.conflicts(dflt, rs) or libseccomp_fragile(seccomp_eval.installed(dflt, rs)):
            continue
        try:
            got_in = kernel_outcomes(dflt, rs, probes)
        except RuntimeError:
            continue  # libseccomp refuses some rule sets outright (runc would not start)
        for args, k in zip(probes, got_in):
            assert k == expected_outcome(seccomp_eval.verdict(dflt, rs, args)), (args, k)
    return comb


KERNEL_VERDICTS = [v for v in VERDICTS if v[0] != "SCMP_ACT_NOTIFY"]  # NOTIFY needs a listener


@st.composite
def kernel_sides(draw):
    default = draw(st.sampled_from(KERNEL_VERDICTS))
    return (default[0], default[1], ()), draw(st.lists(rules(KERNEL_VERDICTS), max_size=3))


@settings(max_examples=int(_FRESH) if _FRESH else 12, deadline=None, derandomize=not _FRESH, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(p=kernel_sides(), b=kernel_sides())
def test_kernel_answers_what_the_intersection_says(p, b):
    assume(p[1] or b[1])
    _check_kernel(p, b)


# -- the real clone and personality rules ---------------------------------------------------------------

CLONE_NS, CLONE_NS_OLD = 0x7E020000, 0x7C020000
SIGCHLD = 0x11
THREAD = 0x3D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID (pthread_create)
CLONE_FLAGS = {"fork": SIGCHLD, "thread": THREAD, "vfork": 0x4111, "newuser": 0x10000000 | SIGCHLD,
               "newns": 0x20000 | SIGCHLD, "newcgroup": 0x02000000 | SIGCHLD, "newpid": 0x20000000 | SIGCHLD}


def _clone_rule(mask):
    return (ALLOW, None, ((0, mask, 0, "SCMP_CMP_MASKED_EQ"),))


@pytest.mark.parametrize("bundle_mask", [CLONE_NS, CLONE_NS_OLD, None])
def test_clone_from_every_engine_runs_forks_and_threads(bundle_mask):
    prof = [_clone_rule(CLONE_NS)]  # the profile without CAP_SYS_ADMIN
    bund = [_clone_rule(bundle_mask)] if bundle_mask else [(ALLOW, None, ())]  # podman: unconditional
    out = combine(DENY, prof, DENY, bund, ("SCMP_ACT_ERRNO", 1)).rules
    names = list(CLONE_FLAGS)
    got = dict(zip(names, kernel_outcomes(DENY, out, [(CLONE_FLAGS[n],) for n in names])))
    assert got["fork"] == got["thread"] == got["vfork"] == "allow"
    for n in ("newuser", "newns", "newcgroup", "newpid"):
        assert got[n] == ("errno", 1), n


def test_personality_lists_intersect_to_the_common_values():
    docker = [(ALLOW, None, ((0, v, 0, "SCMP_CMP_EQ"),)) for v in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)]
    strict = [docker[0], docker[1], docker[4]]
    out = combine(DENY, strict, DENY, docker, ("SCMP_ACT_ERRNO", 1)).rules
    values = [0, 8, 0x20000, 0x20008, 0xFFFFFFFF, 0x0800000]
    got = kernel_outcomes(DENY, out, [(v,) for v in values])
    assert got == ["allow", "allow", ("errno", 1), ("errno", 1), "allow", ("errno", 1)]


def _load_like_runc(section):
    """Compile a whole OCI seccomp section as runc does, architectures included (libseccomp
    rejects some rule sets only once the 32-bit x86 ABI, with its socketcall, is added)."""
    import pyseccomp as sc

    from tests.seccomp_probe import _OPS, _action

    default = _action(sc, section["defaultAction"], section.get("defaultErrnoRet"))
    f = sc.SyscallFilter(default)
    for arch in section.get("architectures", []):
        try:
            f.add_arch(getattr(sc.Arch, arch.removeprefix("SCMP_ARCH_")))
        except FileExistsError:
            pass  # libseccomp-golang's AddArch: already there (the native one) is fine
    for e in section["syscalls"]:
        act = _action(sc, e["action"], e.get("errnoRet"))
        if act == default:
            continue
        args = [sc.Arg(a["index"], getattr(sc, _OPS[a["op"]]), a["value"], a.get("valueTwo", 0))
                for a in e.get("args", [])]
        if len({a["index"] for a in e.get("args", [])}) != len(args):
            args_sets = [[a] for a in args]
        else:
            args_sets = [args]
        for name in e["names"]:
            if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:
                continue  # runc: unknown to this libseccomp, ignored
            for a in args_sets:
                f.add_rule(act, name, *a)
    return f


@pytest.mark.parametrize("engine", ENGINE_CONFIGS)
@pytest.mark.parametrize("name", sorted(loader.BUILTIN_PROFILES))
def test_hardened_engine_filters_compile_as_runc_compiles_them(name, engine):
    """podman's own filter (with SCMP_ARCH_X86 added) does not compile in libseccomp 2.5: its three
    socket rules conflict once socketcall is involved.  The intersection, overlap-free, does; so do
    Docker's and containerd's own filters and their intersections."""
    with open(os.path.join(OCI, f"{engine}-config.json")) as f:
        config = json.load(f)
    out = apply(loader.load_profile(name), config, HostFacts(arch="x86_64"))
    _load_like_runc(out.config["linux"]["seccomp"])
    _, table = bundle_filter(out.config["linux"]["seccomp"])
    # only socket has range rules in the fragile shape (LT 38 beside GT 40, with podman's filter also
    # a2 != 9); the grid in test_hardened_socket_rules_answer_as_both_filters_say shows libseccomp
    # compiles it right
    assert [n for n, rs in table.items() if libseccomp_fragile(rs)] in (["socket"], [])
    if engine.startswith("podman"):
        with pytest.raises(FileExistsError):
            _load_like_runc(config["linux"]["seccomp"])
    else:
        _load_like_runc(config["linux"]["seccomp"])


@pytest.mark.parametrize("engine", ENGINE_CONFIGS)
@pytest.mark.parametrize("name", sorted(loader.BUILTIN_PROFILES))
def test_hardened_socket_rules_answer_as_both_filters_say(name, engine):
    with open(os.path.join(OCI, f"{engine}-config.json")) as f:
        config = json.load(f)
    profile = loader.load_profile(name)
    out = apply(profile, config, HostFacts(arch="x86_64"))
    odefault, otable = bundle_filter(out.config["linux"]["seccomp"])
    bdefault, btable = bundle_filter(config["linux"]["seccomp"])
    caps = set(out.config["process"]["capabilities"]["bounding"])
    pdefault, ptable = profile_filter(Context(profile, {}, HostFacts(arch="x86_64")), caps)
    probes = [(fam, 3, proto) for fam in (1, 2, 10, 16, 17, 38, 39, 40, 41, 45) for proto in (0, 9, 15)]
    got = kernel_outcomes(odefault, otable["socket"], probes)
    for args, k in zip(probes, got):
        want = seccomp_eval.stricter(seccomp_eval.verdict(pdefault, ptable["socket"], args),
                                     seccomp_eval.verdict(bdefault, btable["socket"], args))
        assert k == expected_outcome(want), (args, k, want)
    if engine.startswith("podman"):
        assert dict(zip(probes, got))[(16, 3, 9)] == ("errno", 22)  # podman's NETLINK_AUDIT answer survives
    else:
        assert dict(zip(probes, got))[(16, 3, 9)] == "allow"  # Docker and containerd allow every netlink
    assert dict(zip(probes, got))[(40, 3, 0)] == ("errno", 1)  # AF_VSOCK: the profile's
