"""Property-based tests: for generated bundles the result is never looser than the input nor the profile."""

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.core import loader, netrules, seccomp_eval, tables
from sandbox.core.hostfacts import HostFacts
from sandbox.core.transform import apply
from sandbox.core.transform.context import Context
from sandbox.core.transform.seccomp import profile_filter
from tests.conftest import NETHOOK, nethook_facts
from tests.seccomp_probe import probe_args

PROFILES = {n: loader.load_profile(n) for n in loader.BUILTIN_PROFILES}
SYSCALLS = ["read", "write", "openat", "mount", "ptrace", "bpf", "unshare", "clone", "clone3", "mkdir",
            "personality", "keyctl", "socket", "exit_group", "reboot", "chown", "setns", "io_uring_setup"]
ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG", "SCMP_ACT_TRAP"]
SOURCES = ["/var/run/docker.sock", "/srv/data", "/etc/passwd", "/var/lib/kubelet/pods/p/v", "/home/u", "/run"]

caps = st.lists(st.sampled_from(tables.CAPABILITIES), max_size=8, unique=True)
arg = st.fixed_dictionaries({"index": st.integers(0, 2), "value": st.integers(0, 16),
                             "op": st.sampled_from(["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ"])})
rule = st.fixed_dictionaries({"names": st.lists(st.sampled_from(SYSCALLS), min_size=1, max_size=4, unique=True),
                              "action": st.sampled_from(ACTIONS)},
                             optional={"args": st.lists(arg, max_size=2)})
seccomp = st.fixed_dictionaries({"defaultAction": st.sampled_from(ACTIONS), "syscalls": st.lists(rule, max_size=6)})
mount = st.fixed_dictionaries({"destination": st.sampled_from(["/a", "/b", "/tmp", "/data"]),
                               "type": st.just("bind"), "source": st.sampled_from(SOURCES),
                               "options": st.lists(st.sampled_from(["rbind", "rw", "ro", "rshared", "nosuid"]),
                                                   unique=True)})
limit = st.one_of(st.none(), st.integers(-1, 2**40))


@st.composite
def configs(draw):
    cfg = {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": draw(st.sampled_from([0, 1000]))}, "args": ["sh"], "cwd": "/",
                    "capabilities": {s: draw(caps) for s in tables.CAPABILITY_SETS if draw(st.booleans())},
                    "noNewPrivileges": draw(st.booleans())},
        "root": {"path": "rootfs", "readonly": draw(st.booleans())},
        "mounts": draw(st.lists(mount, max_size=3)),
        "linux": {"namespaces": [{"type": t} for t in draw(st.lists(st.sampled_from(tables.NAMESPACES[:5]),
                                                                     unique=True))],
                  "maskedPaths": draw(st.lists(st.sampled_from(["/proc/kcore", "/proc/foo"]), unique=True)),
                  "resources": {}},
    }
    if draw(st.booleans()):
        cfg["linux"]["seccomp"] = draw(seccomp)
    mem, pids = draw(limit), draw(limit)
    if mem is not None:
        cfg["linux"]["resources"]["memory"] = {"limit": mem}
    if pids is not None:
        cfg["linux"]["resources"]["pids"] = {"limit": pids}
    return cfg


def _calls(*sections):
    """(name, args) to try: every syscall of interest with the argument values the rules mention."""
    rules = [(r.get("action"), None, tuple((a.get("index", 0), a.get("value", 0), a.get("valueTwo", 0), a.get("op"))
                                         for a in r.get("args") or [])) for sec in sections if sec
             for r in sec.get("syscalls") or []]
    return [(n, args) for n in SYSCALLS for args in probe_args([rules], limit=40)]


_OWN = nethook_facts()
FACTS = HostFacts(realpaths={"/var/run/docker.sock": "/run/docker.sock", **_OWN["realpaths"]},
                  executables=_OWN["executables"], own_hooks=_OWN["own_hooks"],
                  resolvers=("10.0.0.2", "169.254.20.10"), node_addresses=("192.0.2.1", "fd00::1"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), name=st.sampled_from(sorted(PROFILES)))
def test_never_looser_than_bundle_or_profile(cfg, name):
    profile = PROFILES[name]
    original = copy.deepcopy(cfg)
    out = apply(profile, cfg, FACTS)
    assert cfg == original  # input untouched
    res = out.config
    allowed = set(profile.capabilities)
    for s in tables.CAPABILITY_SETS:
        got = set(res["process"]["capabilities"][s])
        assert got <= allowed
        assert got <= set(original["process"]["capabilities"].get(s, []))
    assert res["process"]["noNewPrivileges"] is True
    sec = res["linux"]["seccomp"]
    assert tables.SECCOMP_ACTION_RANK[sec["defaultAction"]] >= tables.SECCOMP_ACTION_RANK[profile.seccomp.default_action]
    if original["linux"].get("seccomp"):
        assert tables.SECCOMP_ACTION_RANK[sec["defaultAction"]] >= \
            tables.SECCOMP_ACTION_RANK[original["linux"]["seccomp"]["defaultAction"]]
    pdefault, ptable = profile_filter(Context(profile, {}, FACTS), set(res["process"]["capabilities"]["bounding"]))
    bundle_sec = original["linux"].get("seccomp")
    for n, args in _calls(bundle_sec, sec):
        if seccomp_eval.allows(seccomp_eval.evaluate_section(sec, n, args)):
            assert seccomp_eval.allows(seccomp_eval.evaluate_section(bundle_sec, n, args)), (n, args)
            assert seccomp_eval.allows(seccomp_eval.evaluate(pdefault, ptable, n, args)), (n, args)
    kinds = {n["type"] for n in res["linux"]["namespaces"]}
    assert set(profile.namespaces.required) <= kinds
    assert set(original["linux"]["maskedPaths"]) <= set(res["linux"]["maskedPaths"])
    if original["root"]["readonly"]:
        assert res["root"]["readonly"]
    for key, lim in (("memory", profile.resources.memory), ("pids", profile.resources.pids)):
        if lim.max is not None:
            assert 0 < res["linux"]["resources"][key]["limit"] <= lim.max
    for m in res["mounts"]:
        if m.get("source") in ("/var/run/docker.sock", "/run"):
            assert out.refused
    if profile.network.enforced and not out.refused:
        # exactly one hook of sandbox's, carrying the hash of the rules in the annotation
        ours = [h for stage in res["hooks"].values() for h in stage if h["path"] == NETHOOK]
        assert ours == res["hooks"]["createRuntime"][-1:] and len(ours) == 1
        assert ours[0]["args"][2] == netrules.digest(json.loads(res["annotations"][netrules.ANNOTATION]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), name=st.sampled_from(sorted(PROFILES)))
def test_apply_is_idempotent(cfg, name):
    profile = PROFILES[name]
    once = apply(profile, cfg, FACTS)
    twice = apply(profile, once.config, FACTS)
    assert twice.config == once.config


def test_apply_is_idempotent_when_the_bundle_spells_one_answer_twice():
    """Found by test_apply_is_idempotent: `read` under ERRNO (no errnoRet) and under KILL_PROCESS became
    ERRNO without errnoRet, then ERRNO with errnoRet 1 on a second pass (the same answer, spelt twice)."""
    import json
    import os

    from tests.conftest import OCI

    with open(os.path.join(OCI, "runc-spec-1.1.json")) as f:
        cfg = json.load(f)
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"}, {"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    once = apply(PROFILES["baseline"], copy.deepcopy(cfg), FACTS)
    twice = apply(PROFILES["baseline"], copy.deepcopy(once.config), FACTS)
    assert twice.config == once.config
    read = [e for e in once.config["linux"]["seccomp"]["syscalls"] if "read" in e["names"]]
    assert read == [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]
