"""The `network:` profile section: loading, diff, lint, and the nftables ruleset it demands (pure parts)."""

import json

import pytest

from sandbox.core import loader, netrules
from sandbox.core.diff import diff
from sandbox.core.lint import lint
from sandbox.core.profile import NetRule, NetworkPolicy
from sandbox.errors import ProfileError, ProfileErrors
from tests.conftest import NETHOOK, nethook_facts

HEAD = "apiVersion: sandbox/v1\nkind: Profile\nname: net\n"


def load(tmp_path, body, name="p.yaml"):
    p = tmp_path / name
    p.write_text(HEAD + body)
    return loader.load_profile(str(p))


def errors(tmp_path, body):
    p = tmp_path / "bad.yaml"
    p.write_text(HEAD + body)
    with pytest.raises(ProfileError) as e:
        loader.load_profile(str(p))
    return [str(x) for x in (e.value.errors if isinstance(e.value, ProfileErrors) else [e.value])]


def test_builtins_network_sections():
    base, restricted, strict = (loader.load_profile(n) for n in loader.BUILTIN_PROFILES)
    assert base.network == NetworkPolicy() and not base.network.enforced
    assert restricted.network.egress is None and restricted.network.ingress is None
    assert set(restricted.network.deny_always) >= {"169.254.0.0/16", "fe80::/10", "node"}
    assert strict.network.egress == () and strict.network.ingress == () and strict.network.dns is None
    assert strict.network.deny_always == restricted.network.deny_always  # additive, inherited


def test_rules_are_parsed_and_canonical(tmp_path):
    p = load(tmp_path, "network:\n  egress:\n    - {cidr: 10.1.0.0/16, ports: [443, '8000-8100', 80, 81]}\n"
                       "    - {cidr: 'fd00:0::1', protocol: udp, ports: ['53']}\n    - {protocol: icmp}\n"
                       "    - {cidr: 192.0.2.7}\n  dns: ['fd00::0053', 10.0.0.2]\n"
                       "  deny_always: [node, 169.254.0.0/16]\n")
    n = p.network
    assert n.egress == (NetRule("10.1.0.0/16", "tcp", ((80, 81), (443, 443), (8000, 8100))),
                        NetRule("fd00::1/128", "udp", ((53, 53),)), NetRule("", "icmp", ()),
                        NetRule("192.0.2.7/32", "", ()))
    assert n.ingress is None and n.dns == ("fd00::53", "10.0.0.2")
    assert n.deny_always == ("node", "169.254.0.0/16")


def test_positioned_errors_with_did_you_mean(tmp_path):
    out = errors(tmp_path, "network:\n  egres: []\n  ingress:\n    - {cidr: 10.0.0.1/8, protocl: tcp}\n"
                           "    - {protocol: TCP, ports: [0, 80-70, x]}\n    - {protocol: icmp, ports: [1]}\n"
                           "  dns: [resolver.example]\n  deny_always: [nodes, 10.0.0.0/33]\n")
    text = "\n".join(out)
    assert ":5:3: network.egres: unknown key 'egres' (did you mean 'egress'?)" in text
    assert "network.ingress[0].cidr: 10.0.0.1/8 has host bits set" in text and "did you mean '10.0.0.0/8'?" in text
    assert "network.ingress[0].protocl: unknown key 'protocl' (did you mean 'protocol'?)" in text
    assert "network.ingress[1].protocol: must be 'tcp', 'udp' or 'icmp', got 'TCP' (did you mean 'tcp'?)" in text
    assert "network.ingress[1].ports[0]: expected a port from 1 to 65535" in text
    assert "network.ingress[1].ports[1]: expected a port" in text and "network.ingress[1].ports[2]:" in text
    assert "network.ingress[2].ports: icmp has no ports" in text
    assert "network.dns[0]: expected an IP address" in text
    assert "network.deny_always[0]: expected an address or network" in text and "did you mean 'node'?" in text
    assert "network.deny_always[1]:" in text
    assert all(line.startswith(str(tmp_path / "bad.yaml") + ":") for line in out)


def test_a_null_list_is_refused_not_read_as_unfiltered(tmp_path):
    out = errors(tmp_path, "extends: strict\nnetwork:\n  egress:\n")
    assert any("network.egress: expected a list" in e for e in out)


def test_child_replaces_lists_and_cannot_drop_deny_always(tmp_path):
    p = load(tmp_path, "extends: strict\nnetwork:\n  egress: [{cidr: 10.0.0.0/8, ports: [443]}]\n"
                       "  deny_always: [192.0.2.0/24]\n")
    assert p.network.egress == (NetRule("10.0.0.0/8", "tcp", ((443, 443),)),)
    assert p.network.ingress == ()
    assert {"169.254.0.0/16", "node", "192.0.2.0/24"} <= set(p.network.deny_always)


@pytest.mark.parametrize("body,direction,field", [
    ("extends: strict\nnetwork:\n  egress: [{cidr: 10.0.0.0/8}]\n", "loosen", "network.egress"),
    ("extends: strict\nnetwork:\n  dns: [10.0.0.2]\n", "tighten", "network.dns"),
    ("extends: strict\nnetwork:\n  deny_always: [10.0.0.0/8]\n", "tighten", "network.deny_always"),
    ("extends: restricted\nnetwork:\n  ingress: [{ports: [8080]}]\n", "tighten", "network.ingress"),
])
def test_diff_judges_network_changes(tmp_path, body, direction, field):
    new = load(tmp_path, body)
    base = loader.load_profile(body.split("\n")[0].split(": ")[1])
    changes = [c for c in diff(base, new) if c.field == field]
    assert [c.direction for c in changes] == [direction], [str(c) for c in diff(base, new)]
    back = [c for c in diff(new, base) if c.field == field]
    assert [c.direction for c in back] == [{"loosen": "tighten", "tighten": "loosen"}[direction]]


def test_restricted_to_baseline_loosens_the_network():
    changes = diff(loader.load_profile("restricted"), loader.load_profile("baseline"))
    assert any(c.direction == "loosen" and c.field == "network.deny_always" for c in changes)
    assert not [c for c in diff(loader.load_profile("baseline"), loader.load_profile("strict"))
                if c.direction == "loosen"]


def test_floor_refuses_a_profile_that_opens_the_network(tmp_path):
    from sandbox.errors import PolicyRefusal
    from sandbox.host.opconfig import OperatorConfig
    from tests.unit.test_shim import shim_with

    opened = tmp_path / "opened.yaml"
    opened.write_text(HEAD.replace("name: net", "name: opened") + "extends: strict\nnetwork:\n"
                      "  egress: [{cidr: 0.0.0.0/0}]\n")
    s = shim_with(OperatorConfig(default_profile="strict", floor="strict", allowed_profiles=(str(opened),),
                                 profile_dirs=()))
    with pytest.raises(PolicyRefusal, match="looser than the floor strict .network.egress"):
        s.select_profile({"annotations": {"org.sandbox-runtime.profile": str(opened)}})


def test_lint_network_rules(tmp_path):
    ids = lambda p: {f.rule for f in lint(p)}  # noqa: E731
    assert {"SBX020", "SBX021", "SBX022"} <= ids(loader.load_profile("baseline"))
    assert not {"SBX020", "SBX021"} & ids(loader.load_profile("restricted"))
    assert not {"SBX020", "SBX021", "SBX022", "SBX023"} & ids(loader.load_profile("strict"))
    wide = load(tmp_path, "extends: strict\nnetwork:\n  egress: [{cidr: '::/0'}, {cidr: 10.0.0.0/8, ports: [1]}]\n")
    assert [f.message for f in lint(wide) if f.rule == "SBX023"] == ["the entry ::/0 allows every protocol and port"]
    meta = load(tmp_path, "extends: strict\nnetwork:\n  egress: [{cidr: 169.254.169.254}]\n", "m.yaml")
    assert "SBX020" not in ids(meta)  # deny_always (inherited) wins over the list


# --- the ruleset --------------------------------------------------------------------------

STRICTISH = NetworkPolicy(egress=(), ingress=(), deny_always=("169.254.0.0/16", "fe80::/10", "node"))


def test_no_rules_without_a_network_section():
    assert netrules.ruleset(NetworkPolicy(), ("10.0.0.2",), ("10.0.0.1",)) is None


def test_strict_allows_dns_to_the_resolvers_only_and_denies_the_rest():
    r = netrules.ruleset(STRICTISH, ("10.0.0.2", "fd00::2"), ("192.0.2.1", "fe80::1", "172.17.0.1"))
    text = r.text
    assert "type filter hook output priority filter; policy drop;" in text
    assert "type filter hook input priority filter; policy drop;" in text
    assert "ip daddr 10.0.0.2 udp dport 53 counter accept" in text
    assert "ip6 daddr fd00::2 tcp dport 53 counter accept" in text
    # the node's fe80::1 lies in fe80::/10, so it is merged into it (nft refuses overlapping set elements)
    assert "ip daddr { 169.254.0.0/16, 172.17.0.1, 192.0.2.1 } counter drop" in text
    assert "ip6 daddr fe80::/10 counter drop" in text
    out = text.split("chain output")[1].split("chain input")[0]
    assert out.index("oif \"lo\" accept") < out.index("ct state established,related accept") < out.index("udp dport 53")
    assert out.rstrip().endswith("counter drop\n\t}")
    assert r.rules == (3 + 4 + 2 + 1) + 4 + 2 and len(r.sha256) == 64
    assert r.sha256 == netrules.digest(json.loads(json.dumps(r.document)))


def test_loopback_between_loopback_addresses_is_not_tracked_but_dockers_dns_is():
    """conntrack on lo costs as much as the rest of the path; Docker NATs its embedded DNS there."""
    text = netrules.ruleset(STRICTISH, (), ()).text
    raw = text.split("chain raw_output")[1].split("}")[0]
    assert "type filter hook output priority raw; policy accept;" in raw
    assert 'oif "lo" ip daddr 127.0.0.0/8 ip daddr != 127.0.0.11 ip saddr != 127.0.0.11 notrack' in raw
    assert 'oif "lo" ip6 daddr ::1 notrack' in raw
    assert "prerouting" not in text  # marked at output, lo traffic arrives untracked: no hook on every packet in


def test_restricted_only_denies_and_keeps_policy_accept():
    r = netrules.ruleset(NetworkPolicy(deny_always=("169.254.0.0/16", "node")), ("10.0.0.2",), ("10.0.2.15",))
    assert "policy accept;" in r.text and "chain input" not in r.text
    assert "dport 53" not in r.text  # nothing to open when egress is not filtered


def test_entries_render_as_nft_lists_them():
    pol = NetworkPolicy(egress=(NetRule("10.1.0.0/24", "tcp", ((80, 80), (8000, 8100))),
                                NetRule("fd00::/8", "udp", ((53, 53),)), NetRule("", "icmp"),
                                NetRule("192.0.2.0/25"), NetRule("192.0.2.128/25", "udp")),
                        ingress=(NetRule("", "tcp", ((8080, 8080),)),))
    text = netrules.ruleset(pol, (), ()).text
    assert "ip daddr 10.1.0.0/24 tcp dport { 80, 8000-8100 } counter accept" in text
    assert "ip6 daddr fd00::/8 udp dport 53 counter accept" in text
    assert "meta l4proto { icmp, ipv6-icmp } counter accept" in text
    assert "ip daddr 192.0.2.0/25 counter accept" in text
    assert "ip daddr 192.0.2.128/25 meta l4proto udp counter accept" in text
    assert "tcp dport 8080 counter accept" in text.split("chain input")[1]


def test_normalize_ignores_handles_counters_and_other_tables():
    r = netrules.ruleset(STRICTISH, ("10.0.0.2",), ())
    listing = {"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "sandbox",
                                                                            "handle": 3}}]}
    for cmd in r.document["nftables"]:
        obj = cmd.get("add", {})
        for kind in ("chain", "rule"):
            if kind in obj:
                item = json.loads(json.dumps(obj[kind]).replace('"counter": null',
                                                                '"counter": {"packets": 3, "bytes": 180}'))
                listing["nftables"].append({kind: {**item, "handle": 7}})
    listing["nftables"].append({"rule": {"family": "ip", "table": "filter", "chain": "OUTPUT", "expr": []}})
    assert netrules.normalize(listing) == netrules.normalize(r.document)
    listing["nftables"][-2]["rule"]["expr"] = [{"accept": None}]
    assert netrules.normalize(listing) != netrules.normalize(r.document)


@pytest.mark.parametrize("text,canon", [
    ("10.1.2.3/8", "10.0.0.0/8"), ("192.0.2.1", "192.0.2.1/32"), ("fd00:0:0::1", "fd00::1/128"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128"), ("::ffff:192.0.2.1", "::ffff:192.0.2.1/128"),
    ("fe80::/10", "fe80::/10"), ("::", "::/128"), ("1.2.3", None), ("1::2::3", None), ("10.0.0.0/33", None),
])
def test_address_parsing_matches_ipaddress(text, canon):
    """The same networks as Python's ipaddress, written as inet_ntop (and so nft's listing) writes them."""
    import ipaddress
    import socket

    assert netrules.canonical_network(text) == canon
    if canon:
        net = ipaddress.ip_network(text, strict=False)
        fam = socket.AF_INET if net.version == 4 else socket.AF_INET6
        assert canon == f"{socket.inet_ntop(fam, net.network_address.packed)}/{net.prefixlen}"


def test_ports_and_networks_merge():
    assert netrules.merge_ports([(90, 100), (80, 80), (81, 89), (200, 300), (250, 260)]) == ((80, 100), (200, 300))
    pol = NetworkPolicy(deny_always=("10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/25", "192.0.2.128/25"))
    assert "ip daddr { 10.0.0.0/8, 192.0.2.0/24 } counter drop" in netrules.ruleset(pol, (), ()).text


def test_stale_compiled_profile_from_another_model_is_not_used(tmp_path, monkeypatch):
    """Found here: the shared cache handed a profile compiled by another installation (no network
    section in its model) to this one, so a profile's network rules could silently vanish."""
    from sandbox.host import cache

    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(d))
    assert cache.load_profile("strict").network.egress == ()
    calls = []
    monkeypatch.setattr(cache, "store", lambda *a: calls.append(a))
    cache.load_profile("strict")
    assert calls == []  # a hit
    monkeypatch.setattr(cache, "model_signature", lambda: (("Profile", ("name",)),))
    cache.load_profile("strict")
    assert len(calls) == 1  # another model: a miss, rebuilt


# --- the transform step -------------------------------------------------------------------------

HOOK = NETHOOK


def _facts(**kw):
    from sandbox.core.hostfacts import HostFacts

    base = {**nethook_facts(), "bundle_dir": "/var/lib/sandbox/bundle", "resolvers": ("10.0.0.2",),
            "node_addresses": ("192.0.2.1",),
            "host_namespaces": {"/var/run/netns/pod": False, "/run/netns/test": False}}
    return HostFacts(**{**base, **kw})


def _bundle(uid=1000, netns=None, annotations=None):
    from sandbox.host.bundle import spec_for_rootfs

    cfg = spec_for_rootfs("rootfs", ["sh"])
    cfg["process"]["user"] = {"uid": uid, "gid": uid}
    if netns:
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = netns
    if annotations:
        cfg["annotations"] = dict(annotations)
    return cfg


def _net(decisions):
    return [d for d in decisions if d.control == "network"]


def test_strict_gets_sandboxs_hook_and_the_ruleset_annotation():
    from sandbox.core.transform import apply

    out = apply(loader.load_profile("strict"), _bundle(), _facts())
    assert not out.refused
    hooks = out.config["hooks"]["createRuntime"]
    assert len(hooks) == 1 and hooks[0]["path"] == HOOK and hooks[0]["timeout"] == 10
    text = out.config["annotations"][netrules.ANNOTATION]
    doc = json.loads(text)
    assert hooks[0]["args"] == ["sandbox-nethook", "--sha256", netrules.digest(doc)]  # no runtime_netns probed
    assert "ip daddr 10.0.0.2 udp dport 53 counter accept" in netrules.to_text(doc)
    assert "192.0.2.1" in netrules.to_text(doc)  # node
    told = apply(loader.load_profile("strict"), _bundle(), _facts(runtime_netns="4:4026531840"))
    assert told.config["hooks"]["createRuntime"][0]["args"][3:] == ["--runtime-netns", "4:4026531840"]
    actions = [(d.action, d.pointer) for d in _net(out.decisions)]
    assert actions == [("set", "/annotations/org.sandbox-runtime.network"), ("tighten", "/hooks/createRuntime/0")]
    recorded = _net(out.decisions)[0].after
    assert recorded["sha256"] == netrules.digest(doc) and "table inet sandbox" in recorded["ruleset"]


def test_applying_twice_keeps_everything():
    from sandbox.core.transform import apply

    strict = loader.load_profile("strict")
    once = apply(strict, _bundle(), _facts())
    twice = apply(strict, once.config, _facts())
    assert twice.config == once.config
    assert {d.action for d in _net(twice.decisions)} == {"keep"}
    assert [d.action for d in twice.decisions if d.control == "hooks"] == ["keep"]


def test_a_bundles_own_copy_of_the_hook_is_replaced_and_without_a_section_removed():
    from sandbox.core.transform import apply

    cfg = _bundle(annotations={netrules.ANNOTATION: '{"nftables": []}'})
    forged = {"path": HOOK, "args": ["sandbox-nethook", "--sha256", netrules.digest({"nftables": []})]}
    cfg["hooks"] = {"prestart": [forged], "createRuntime": [dict(forged)]}
    out = apply(loader.load_profile("strict"), cfg, _facts())
    assert not out.refused
    assert out.config["hooks"]["prestart"] == [] and len(out.config["hooks"]["createRuntime"]) == 1
    assert out.config["hooks"]["createRuntime"][0]["args"][2] != forged["args"][2]
    assert sum(1 for d in _net(out.decisions) if d.action == "drop") == 2
    plain = apply(loader.load_profile("baseline"), cfg, _facts())
    assert not plain.refused and netrules.ANNOTATION not in plain.config["annotations"]
    assert plain.config["hooks"] == {"prestart": [], "createRuntime": []}


def test_no_trusted_hook_program_refuses():
    from sandbox.core.transform import apply

    out = apply(loader.load_profile("restricted"), _bundle(), _facts(own_hooks=frozenset()))
    assert out.refused
    assert [d.reason for d in out.refusals] == [
        "the network rules cannot be loaded: sandbox's own hook program sandbox-nethook was not found beside "
        "sandbox, or it, what it runs or a directory above them is not owned by root or is writable by others"]


@pytest.mark.parametrize("path", ["/tmp/x/sandbox-nethook", "/usr/local/bin/sandbox-nethook", "/bin/sh"])
def test_same_name_or_argv_elsewhere_is_not_sandboxs_own_hook(path):
    """hook identity spoofing: only the resolved path in HostFacts.own_hooks is sandbox's own; a hook
    with its file name or its arguments anywhere else is judged as any other hook, and refused."""
    from sandbox.core.hostfacts import Executable
    from sandbox.core.transform import apply

    facts = nethook_facts()
    cfg = _bundle()
    cfg["hooks"] = {"createRuntime": [{"path": path, "args": ["sandbox-nethook", "--sha256", "0" * 64]}]}
    executables = {**facts["executables"], path: Executable(real=path, trusted_chain=True)}
    for name in ("baseline", "restricted", "strict"):
        out = apply(loader.load_profile(name), cfg, _facts(executables=executables,
                                                            realpaths={**facts["realpaths"], path: path}))
        assert any(d.control == "hooks" and d.pointer == "/hooks/createRuntime/0" for d in out.refusals), name
    # the same entry naming the trusted program is sandbox's own (then replaced by sandbox's own copy)
    cfg["hooks"]["createRuntime"][0]["path"] = HOOK
    out = apply(loader.load_profile("strict"), cfg, _facts())
    assert not out.refused
    assert [h["args"][2] for h in out.config["hooks"]["createRuntime"]] == [
        netrules.digest(json.loads(out.config["annotations"][netrules.ANNOTATION]))]


def test_sharing_the_hosts_network_namespace_is_refused():
    from sandbox.core.transform import apply

    p = load_profile_text("extends: restricted\nnamespaces:\n  required: [pid, ipc, uts, mount]\n")
    cfg = _bundle()
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "network"]
    out = apply(p, cfg, _facts())
    assert any("share the host's network namespace" in d.reason for d in out.refusals)


def test_kubernetes_pod_members_get_no_rules_of_their_own_the_sandbox_does():
    from sandbox.core.transform import apply

    member = _bundle(netns="/var/run/netns/pod", annotations={"io.kubernetes.cri.container-type": "container"})
    out = apply(loader.load_profile("restricted"), member, _facts())
    assert not out.refused and not (out.config.get("hooks") or {}).get("createRuntime")
    assert netrules.ANNOTATION not in (out.config.get("annotations") or {})
    assert [d.action for d in _net(out.decisions)] == ["keep"]
    pause = _bundle(netns="/var/run/netns/pod", annotations={"io.kubernetes.cri.container-type": "sandbox"})
    out = apply(loader.load_profile("restricted"), pause, _facts())
    assert len(out.config["hooks"]["createRuntime"]) == 1


def test_a_joined_namespace_that_is_not_a_pods_gets_the_rules():
    from sandbox.core.transform import apply

    out = apply(loader.load_profile("restricted"), _bundle(netns="/run/netns/test"), _facts())
    assert not out.refused and len(out.config["hooks"]["createRuntime"]) == 1


def test_bundle_resolvers_inside_deny_always_stay_unreachable_unless_pinned():
    from sandbox.core.transform import apply

    facts = _facts(resolvers=("169.254.20.10", "192.0.2.1", "10.0.0.2"))
    out = apply(loader.load_profile("strict"), _bundle(), facts)
    text = netrules.to_text(json.loads(out.config["annotations"][netrules.ANNOTATION]))
    assert "ip daddr 10.0.0.2 udp dport 53" in text and "169.254.20.10 udp" not in text
    assert len([d for d in _net(out.decisions) if d.action == "warn"]) == 2
    pinned = load_profile_text("extends: strict\nnetwork:\n  dns: [169.254.20.10]\n")
    text = netrules.to_text(json.loads(apply(pinned, _bundle(), facts).config["annotations"][netrules.ANNOTATION]))
    assert "ip daddr 169.254.20.10 udp dport 53 counter accept" in text and "10.0.0.2 udp" not in text
    # the pinned resolver is accepted before the deny_always drop that covers it
    assert text.index("169.254.20.10 udp") < text.index("169.254.0.0/16")


def test_complain_mode_records_and_changes_nothing():
    from sandbox._record import replace
    from sandbox.core.transform import apply

    cfg = _bundle()
    out = apply(replace(loader.load_profile("strict"), mode="complain"), cfg, _facts())
    assert out.config == cfg and _net(out.decisions) and not any(d.applied for d in _net(out.decisions))


def load_profile_text(body):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(HEAD + body)
    try:
        return loader.load_profile(f.name)
    finally:
        import os

        os.unlink(f.name)


# --- the hook's checks that need no namespace -------------------------------------------------------

def test_own_hook_programs_are_trusted_by_identity(tmp_path):
    """host.own_hooks: sandbox-nethook beside the interpreter, resolved, root-owned with what it runs."""
    import os

    from sandbox.host.probe import _Owners, own_hooks

    root = os.geteuid() == 0
    os.chmod(tmp_path, 0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir(mode=0o755)
    prog = bindir / "sandbox-nethook"
    assert own_hooks(_Owners(), str(bindir)) == frozenset()  # not installed
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o755)
    assert own_hooks(_Owners(), str(bindir)) == (frozenset({str(prog)}) if root else frozenset())
    if not root:
        return  # the rest needs files owned by someone else than root
    link_dir = tmp_path / "elsewhere"
    link_dir.mkdir(mode=0o755)
    (link_dir / "sandbox-nethook").symlink_to(prog)
    assert own_hooks(_Owners(), str(link_dir)) == frozenset({str(prog)})  # resolved
    prog.chmod(0o775)
    assert own_hooks(_Owners(), str(bindir)) == frozenset()
    prog.chmod(0o755)
    bindir.chmod(0o777)
    assert own_hooks(_Owners(), str(bindir)) == frozenset()
    bindir.chmod(0o755)
    python = bindir / "python3"  # what the hook hands its work to must be root's too
    python.write_text("")
    python.chmod(0o755)
    os.chown(python, 1000, 1000)
    assert own_hooks(_Owners(), str(bindir)) == frozenset()
    python.unlink()
    shell = tmp_path / "sh"  # and the interpreter of its #! line
    shell.write_text("")
    shell.chmod(0o777)
    prog.write_text(f"#!{shell}\nexit 0\n")
    assert own_hooks(_Owners(), str(bindir)) == frozenset()
    prog.write_text("#!\n")
    assert own_hooks(_Owners(), str(bindir)) == frozenset()
    prog.write_text("#!/bin/sh\nexit 0\n")
    os.chown(prog, 1000, 1000)
    assert own_hooks(_Owners(), str(bindir)) == frozenset()


def test_hook_refuses_what_sandbox_did_not_write(tmp_path):
    import io
    import os

    from sandbox.runtime import nethook

    doc = netrules.ruleset(STRICTISH, (), ()).document
    text = netrules.canonical(doc).decode()
    good = netrules.digest(doc)
    state = {"pid": os.getpid(), "annotations": {netrules.ANNOTATION: text}}
    with pytest.raises(nethook.HookError, match="SHA-256 differs"):
        nethook.load("0" * 64, state)
    with pytest.raises(nethook.HookError, match="no org.sandbox-runtime.network annotation"):
        nethook.load(good, {"pid": os.getpid(), "annotations": {}})
    with pytest.raises(nethook.HookError, match="names no process"):
        nethook.load(good, {"pid": True, "annotations": state["annotations"]})
    # our own process is in the namespace the runtime started in (the host's): never loaded there, whether
    # the hook is told which one that is or falls back to its own
    st = os.stat("/proc/self/ns/net")
    for told in (None, (st.st_dev, st.st_ino)):
        with pytest.raises(nethook.HookError, match="(the host's|the runtime's own) network namespace"):
            nethook.load(good, state, told)
    for bad in (["--sha256"], ["--sha256", "0" * 64, "--runtime-netns"], ["--sha256", "0" * 64, "--x", "1:2"],
                ["--sha256", "0" * 64, "--runtime-netns", "12"], ["--sha256", "0" * 64, "--runtime-netns", "a:b"]):
        with pytest.raises(nethook.HookError, match="usage"):
            nethook._arguments(bad)
    assert nethook._arguments(["--sha256", "0" * 64, "--runtime-netns", "4:4026531840"]) == ("0" * 64, (4, 4026531840))
    with pytest.raises(nethook.HookError, match="not a JSON object"):
        nethook._read_state(io.BytesIO(b"[1]"))


def test_hook_main_reports_one_line_and_fails(monkeypatch, capsys):
    import io

    from sandbox.runtime import nethook

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"pid": 1}')))
    assert nethook.main(["--sha256", "0" * 64]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sandbox-nethook: ") and err.count("\n") == 1


def test_cap_net_admin_with_a_network_section_is_refused():
    """A workload that may administer its own namespace's network could flush its rules."""
    from sandbox.core.transform import apply

    p = load_profile_text("extends: restricted\ncapabilities: [NET_BIND_SERVICE, NET_ADMIN]\n")
    cfg = _bundle()
    cfg["process"]["capabilities"]["bounding"].append("CAP_NET_ADMIN")
    out = apply(p, cfg, _facts())
    assert [d.reason for d in out.refusals] == [
        "CAP_NET_ADMIN (bounding) would let the workload change or remove its own network rules"]
    cfg["process"]["capabilities"]["bounding"].remove("CAP_NET_ADMIN")
    assert not apply(p, cfg, _facts()).refused


def test_verify_network_control_compares_the_live_rules_with_the_annotation():
    """verify's network control (one of verify.CONTROLS): the live listing against the annotation."""
    from sandbox.core.verify import NFT_RULESET, Evidence, check_all, expected_from_config
    from tests.unit.test_verify import HOST, LIMITS, STATE

    doc = netrules.ruleset(STRICTISH, ("10.0.0.2",), ()).document
    # what `nft -j list ruleset` prints: the same objects, with handles, not wrapped in commands
    listing = {"nftables": [{"metainfo": {"version": "1.0.6"}}] + [
        {k: {**v, "handle": i} for k, v in (item.get("create") or item.get("add")).items()}
        for i, item in enumerate(doc["nftables"])]}

    def network(annotations, facts):
        ev = Evidence(expected_from_config({"annotations": annotations}), STATE, LIMITS, HOST, facts=facts)
        return [c for c in check_all(ev) if c.control == "network"]

    ann = {netrules.ANNOTATION: netrules.canonical(doc).decode()}
    assert [c.status for c in network(ann, {NFT_RULESET: listing})] == ["PASS"]
    assert network({}, {NFT_RULESET: listing}) == []  # no rules of its own (no section, or a pod member)
    unread = network(ann, {NFT_RULESET: None})
    assert [(c.status, c.actual) for c in unread] == [("FAIL", "unreadable")]
    fewer = {"nftables": listing["nftables"][:-1]}
    assert [c.status for c in network(ann, {NFT_RULESET: fewer})] == ["FAIL"]
    assert [c.actual for c in network(ann, {NFT_RULESET: {"nftables": []}})] == ["no table"]
