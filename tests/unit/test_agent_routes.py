"""The transform's routes to the sandbox agent (transform.seccomp.agent_routes), judged by the shared
evaluator: complain mode changes nothing a workload can do and notifies exactly what enforcement
would deny; the exec trail and denials route what they say; a missing agent warns or refuses; a
bundle's own listener is refused (it would decide calls the profile restricts)."""

import copy
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox._record import replace
from sandbox.core import loader, tables
from sandbox.core.hostfacts import Executable, HostFacts
from sandbox.core.monitor import answer, parse_meta
from sandbox.core.seccomp_eval import allows, evaluate, evaluate_section
from sandbox.core.transform import apply, needs_agent
from sandbox.core.transform.seccomp import LEARN_BASE, _complement, bundle_filter, unroute
from tests.conftest import FIXTURES, OCI, nethook_facts

SOCK = "/run/sandbox/agent.sock"
DOCKER_CID = "4d2f" * 16
# the docker-like fixture's hook and network namespace, as test_transform's facts resolve them
# the bundles' own paths as a probe of them would see them (the host-path gate's business, not these tests')
HOST = {"bundle_dir": "/var/lib/sandbox/bundle", "realpaths": {"/proc/1234/exe": "/usr/sbin/dockerd"},
        "executables": {"/proc/1234/exe": Executable(real="/usr/sbin/dockerd", trusted_chain=True, pid=1234,
                                                     process_uid=0)},
        "host_namespaces": {f"/var/run/docker/netns/{DOCKER_CID[:12]}": False}}
# strict has a network section: its hook program installed and trusted, as on a real host
_NET = nethook_facts()
HOST = {**HOST, "own_hooks": _NET["own_hooks"], "realpaths": {**HOST["realpaths"], **_NET["realpaths"]},
        "executables": {**HOST["executables"], **_NET["executables"]}}
AGENT = HostFacts(arch="x86_64", agent=SOCK, agent_socket=SOCK, agent_problem="", **HOST)
NO_AGENT = HostFacts(arch="x86_64", agent_socket=SOCK, agent_problem="no sandbox agent answers at /x; start it with "
                                                                       "`sandbox agent start`", **HOST)
EXAMPLES = int(os.environ.get("SANDBOX_HYPOTHESIS_EXAMPLES", "40"))
# values of clone's flags, socket's family, personality's persona that the built-in rules tell apart
SAMPLES = {"clone": [0x01200011, 0x10000011, 0x20000, 0x7E020000, 0x00100000 | 0x11],
           "socket": [1, 2, 10, 16, 38, 39, 40, 41], "personality": [0, 8, 0x20000, 0xFFFFFFFF, 0x400000]}


def runc_spec():
    with open(os.path.join(OCI, "runc-spec-1.1.json")) as f:
        return json.load(f)


def docker():
    with open(os.path.join(FIXTURES, "bundles", "docker-like.json")) as f:
        return json.load(f)


def profile(name="strict", **monitor):
    p = loader.load_profile(name)
    return replace(p, monitor=replace(p.monitor, **monitor)) if monitor else p


def complain(name="strict"):
    return replace(loader.load_profile(name), mode="complain")


def section(config):
    return config.get("linux", {}).get("seccomp")


def calls():
    for name in sorted(tables.syscalls_on("x86_64")):
        for v in SAMPLES.get(name, [0]):
            yield name, (v,)


@pytest.mark.parametrize("bundle", [runc_spec, docker])
@pytest.mark.parametrize("name", ["baseline", "restricted", "strict"])
def test_complain_mode_changes_nothing_and_notifies_exactly_what_enforcement_would_deny(bundle, name):
    cfg = bundle()
    out = apply(complain(name), cfg, AGENT)
    enforced = apply(loader.load_profile(name), cfg, AGENT).config
    routed = section(out.config)
    # only linux.seccomp differs from the bundle
    assert {k: v for k, v in out.config.items() if k != "linux"} == {k: v for k, v in cfg.items() if k != "linux"}
    assert {k: v for k, v in out.config["linux"].items() if k != "seccomp"} == \
        {k: v for k, v in cfg["linux"].items() if k != "seccomp"}
    meta = parse_meta(routed["listenerMetadata"])
    assert routed["listenerPath"] == SOCK and meta.mode == "complain"
    for sc, args in calls():
        before = evaluate_section(section(cfg), sc, args)
        after = evaluate_section(routed, sc, args)
        # what ran runs, what failed fails (NOTIFY is answered "continue")
        assert allows(after) == allows(before), (sc, args, before, after)
        if after[0] == "SCMP_ACT_NOTIFY":
            assert sc != "write"
            ans = answer(meta, sc, args)
            assert ans.errno == 0
            would = evaluate_section(section(enforced), sc, args)
            # notified only where enforcement differs; recorded exactly where it would deny
            assert (ans.record == "syscall") == (not allows(would)), (sc, args, would)
        elif allows(before) and sc != "write":
            assert allows(evaluate_section(section(enforced), sc, args)), (sc, args)


def test_complain_mode_splits_clone_and_socket_exactly_so_a_fork_never_waits_for_the_agent():
    routed = section(apply(complain("strict"), runc_spec(), AGENT).config)
    assert evaluate_section(routed, "clone", (0x01200011,))[0] == "SCMP_ACT_ALLOW"  # fork
    assert evaluate_section(routed, "clone", (0x10000011,))[0] == "SCMP_ACT_NOTIFY"  # CLONE_NEWUSER
    assert evaluate_section(routed, "socket", (2,))[0] == "SCMP_ACT_ALLOW"
    assert evaluate_section(routed, "socket", (40,))[0] == "SCMP_ACT_NOTIFY"  # AF_VSOCK
    # personality's rules cannot be split without two conditions on one argument: routed whole
    assert evaluate_section(routed, "personality", (0,))[0] == "SCMP_ACT_NOTIFY"
    for name in ("mount", "keyctl", "unshare", "bpf"):
        assert evaluate_section(routed, name)[0] == "SCMP_ACT_NOTIFY"
    assert evaluate_section(routed, "write")[0] == "SCMP_ACT_ALLOW"


def test_complain_mode_without_an_agent_warns_and_changes_nothing():
    cfg = runc_spec()
    out = apply(complain("strict"), cfg, NO_AGENT)
    assert out.config == cfg and not out.refused
    [warn] = [d for d in out.decisions if d.control == "monitor"]
    assert warn.action == "warn" and warn.applied and "sandbox agent start" in warn.reason


@pytest.mark.parametrize("key", ["exec_trail", "denials"])
def test_enforce_mode_refuses_a_profile_that_needs_an_absent_agent(key):
    p = profile(**{key: True})
    assert needs_agent(p)
    out = apply(p, runc_spec(), NO_AGENT)
    assert out.refused
    [refusal] = [d for d in out.refusals if d.control == "monitor"]
    assert [d for d in out.refusals if d.applied] == [refusal]
    assert f"monitor.{key}" in refusal.reason and "sandbox agent start" in refusal.reason


def test_exec_trail_notifies_execve_and_execveat_and_nothing_else():
    cfg = runc_spec()
    plain = section(apply(profile(), cfg, AGENT).config)
    trail = section(apply(profile(exec_trail=True), cfg, AGENT).config)
    for sc, args in calls():
        a, b = evaluate_section(plain, sc, args), evaluate_section(trail, sc, args)
        if sc in ("execve", "execveat"):
            assert b[0] == "SCMP_ACT_NOTIFY"
        else:
            assert a == b, sc
    meta = parse_meta(trail["listenerMetadata"])
    assert meta.exec and meta.mode == "enforce" and answer(meta, "execve", ()).record == "exec"


def test_denials_are_failed_by_the_agent_with_the_filters_errno():
    cfg = runc_spec()
    plain = section(apply(profile(), cfg, AGENT).config)
    routed = section(apply(profile(denials=True), cfg, AGENT).config)
    meta = parse_meta(routed["listenerMetadata"])
    for sc, args in calls():
        a, b = evaluate_section(plain, sc, args), evaluate_section(routed, sc, args)
        if b[0] == "SCMP_ACT_NOTIFY":
            assert a[0] == "SCMP_ACT_ERRNO"
            ans = answer(meta, sc, args)
            assert ans.errno == a[1] and ans.record == "syscall"
        else:
            assert a == b, sc
    assert meta.errno["clone3"] == 38 and meta.errno["keyctl"] == 1  # ENOSYS so glibc falls back to clone


@pytest.mark.parametrize("make", [lambda: complain("strict"), lambda: profile(exec_trail=True, denials=True),
                                  lambda: profile("baseline", exec_trail=True)])
@pytest.mark.parametrize("bundle", [runc_spec, docker])
def test_routing_twice_is_routing_once(make, bundle):
    p = make()
    once = apply(p, bundle(), AGENT)
    twice = apply(p, copy.deepcopy(once.config), AGENT)
    assert not once.refused
    assert twice.config == once.config and not twice.refused


def test_unroute_gives_back_the_bundle_a_split_came_from():
    cfg = runc_spec()
    routed = apply(complain("strict"), cfg, AGENT).config
    back = section(unroute(routed))
    assert "listenerPath" not in back
    for sc, args in calls():
        assert allows(evaluate_section(back, sc, args)) == allows(evaluate_section(section(cfg), sc, args)), sc


def test_learning_routes_every_syscall_but_the_base_and_keeps_the_bases_conditions():
    cfg = runc_spec()
    out = apply(loader.load_profile("strict"), cfg, AGENT, learn=True)
    routed = section(out.config)
    meta = parse_meta(routed["listenerMetadata"])
    assert meta.mode == "learn"
    enforced = section(apply(loader.load_profile("strict"), cfg, AGENT).config)
    for sc, args in calls():
        v = evaluate_section(routed, sc, args)
        if sc in LEARN_BASE:
            # let run as the base profile lets it; what it would deny still goes to the agent
            e = evaluate_section(enforced, sc, args)
            assert v[0] == ("SCMP_ACT_NOTIFY" if not allows(e) and sc != "write" else e[0]), (sc, args)
        else:
            assert v[0] == "SCMP_ACT_NOTIFY", sc
            assert answer(meta, sc, args).record == "syscall"


def test_regression_bundle_listener_bypass_is_refused_in_enforce_mode():
    """A bundle that routes a syscall to its own seccomp agent (runc connects to any listenerPath as
    root and hands it the notify fd): that agent, not the profile, would decide what runs."""
    cfg = runc_spec()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/var/lib/x/rootfs/tmp/s.sock",
                               "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_NOTIFY"}]}
    out = apply(loader.load_profile("baseline"), cfg, AGENT)
    assert out.refused and "only the sandbox agent may listen" in out.refusals[0].reason
    # complain mode refuses nothing: it says the syscall-level record cannot be made
    soft = apply(complain("baseline"), cfg, AGENT)
    assert not soft.refused and soft.config == cfg
    assert [d.action for d in soft.decisions if d.control == "monitor"] == ["warn"]


def test_metadata_is_always_rewritten_for_the_agents_socket():
    """A bundle naming the agent's socket with metadata of its own gets sandbox's metadata."""
    cfg = runc_spec()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": SOCK,
                               "listenerMetadata": json.dumps({"v": 1, "mode": "complain", "profile": "forged"}),
                               "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_NOTIFY"}]}
    out = apply(profile("baseline", exec_trail=True), cfg, AGENT)
    meta = parse_meta(section(out.config)["listenerMetadata"])
    assert not out.refused and meta.profile == "baseline" and meta.mode == "enforce"
    plain = apply(loader.load_profile("baseline"), cfg, AGENT)
    assert not plain.refused and "listenerPath" not in section(plain.config)


MAX = (1 << 64) - 1
values = st.one_of(st.integers(0, 64), st.integers(MAX - 64, MAX), st.integers(0, MAX))
ops = st.sampled_from(["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE"])


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(ops, values), min_size=1, max_size=4), st.lists(values, min_size=1, max_size=20))
def test_a_complement_is_exactly_what_the_rules_do_not_allow(conds, probes):
    rules = [("SCMP_ACT_ALLOW", None, ((0, v, 0, op),)) for op, v in conds]
    rest = _complement(rules)
    if rest is None:
        return  # not writable with one condition per rule: the syscall is routed whole
    notify = [("SCMP_ACT_NOTIFY", None, (c,)) for c in rest]
    default = ("SCMP_ACT_ERRNO", 1, ())
    for v in probes + [0, MAX] + [c[1] for c in rest]:
        allowed = allows(evaluate(default, {"x": rules}, "x", (v,)))
        notified = evaluate(default, {"x": notify}, "x", (v,))[0] == "SCMP_ACT_NOTIFY"
        assert allowed != notified, (conds, rest, v)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(0, MAX), st.integers(0, MAX), st.lists(st.integers(0, MAX), min_size=1, max_size=10))
def test_a_masked_complement_is_exactly_what_the_rule_does_not_allow(mask, want, probes):
    want &= mask
    rules = [("SCMP_ACT_ALLOW", None, ((0, mask, want, "SCMP_CMP_MASKED_EQ"),))]
    notify = [("SCMP_ACT_NOTIFY", None, (c,)) for c in _complement(rules)]
    default = ("SCMP_ACT_ERRNO", 1, ())
    for v in probes + [want, mask, 0, MAX]:
        allowed = allows(evaluate(default, {"x": rules}, "x", (v,)))
        notified = evaluate(default, {"x": notify}, "x", (v,))[0] == "SCMP_ACT_NOTIFY"
        assert allowed != notified, (hex(mask), hex(want), hex(v))


def test_the_learned_filter_default_denies_what_libseccomp_cannot_name():
    routed = section(apply(loader.load_profile("strict"), runc_spec(), AGENT, learn=True).config)
    default, _table = bundle_filter(routed)
    assert default[0] == "SCMP_ACT_ERRNO"
