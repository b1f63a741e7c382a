"""The nftables ruleset a profile's `network:` section demands, as data.  Pure.

`ruleset(policy, resolvers, node_addresses)` turns the policy and the facts the edge
found (the bundle's resolvers, the node's own addresses) into one nftables JSON
document: table `inet sandbox` with an `output` chain (egress) and an `input` chain
(ingress), loaded atomically by sandbox's own hook (`sandbox.runtime.nethook`) inside the
container's network namespace.  The document is written in the form `nft -j list`
gives back (sets sorted and merged, one-element sets as plain values, /32 and /128
as plain addresses), so `normalize` of the live listing equals `normalize` of the
document exactly when the kernel holds these rules; `sandbox verify` and the hook
rely on that.

Rules match addresses and ports, never interface names, so they hold whatever the
engine's own network set-up (Docker's libnetwork-setkey, netavark, CNI) does after
them; the one interface matched is `lo`, which exists in every namespace from its
creation.  This module runs on the create path: it imports nothing heavy (no
ipaddress, json or hashlib); addresses come in canonical form (the loader
normalises the profile's, the edge the facts').
"""

from __future__ import annotations

from .._record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .profile import NetRule, NetworkPolicy

ANNOTATION = "org.sandbox-runtime.network"  # the ruleset, as canonical JSON, for sandbox's own hook
TABLE = "sandbox"
FAMILY = "inet"
NODE = "node"  # in deny_always: the node's own addresses
# neighbour discovery: without it IPv6 stops working on the link (and fe80::/10 is often denied)
ND_OUT = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert")
ND_IN = ("nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert")


@record
class Ruleset:
    document: dict[str, Any]  # {"nftables": [commands]}: what the hook loads with libnftables
    text: str  # the same rules in nft syntax, for people (sandbox check, the audit log)
    sha256: str  # of `canonical(document)`
    rules: int  # rules in the chains, for messages


# --- addresses ------------------------------------------------------------------------------

def parse_address(text: str) -> tuple[int, int] | None:
    """(4 or 6, value) of an IPv4 or IPv6 address in text form, or None."""
    if ":" in text:
        return _parse_v6(text)
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    return 4, (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])


def _parse_v6(text: str) -> tuple[int, int] | None:
    if text.count("::") > 1:
        return None
    tail: list[int] = []
    if "." in text:  # ::ffff:192.0.2.1
        head, _, v4 = text.rpartition(":")
        four = parse_address(v4)
        if four is None or four[0] != 4:
            return None
        text = head + ":" + f"{four[1] >> 16:x}:{four[1] & 0xFFFF:x}"
    if "::" in text:
        left, right = text.split("::")
        lp, rp = (left.split(":") if left else []), (right.split(":") if right else [])
        if len(lp) + len(rp) > 7:
            return None
        groups = lp + ["0"] * (8 - len(lp) - len(rp)) + rp
    else:
        groups = text.split(":")
    if len(groups) != 8:
        return None
    for g in groups:
        if not 1 <= len(g) <= 4 or any(c not in "0123456789abcdefABCDEF" for c in g):
            return None
        tail.append(int(g, 16))
    value = 0
    for g16 in tail:
        value = (value << 16) | g16
    return 6, value


def parse_network(text: str) -> tuple[int, int, int] | None:
    """(family, first address, prefix length) of `addr/len` or a plain address."""
    addr, _, length = text.partition("/")
    parsed = parse_address(addr)
    if parsed is None:
        return None
    family, value = parsed
    bits = 32 if family == 4 else 128
    if not length:
        return family, value, bits
    if not length.isdigit() or int(length) > bits:
        return None
    n = int(length)
    return family, value & ~((1 << (bits - n)) - 1), n


def _inside(inner: tuple[int, int, int], outer: tuple[int, int, int]) -> bool:
    """Whether network `inner` lies within network `outer` (both (family, first address, length))."""
    shift = (32 if outer[0] == 4 else 128) - outer[2]
    return inner[0] == outer[0] and outer[2] <= inner[2] and inner[1] >> shift == outer[1] >> shift


def contains(network: str, address: str) -> bool:
    net, addr = parse_network(network), parse_network(address)
    return net is not None and addr is not None and _inside(addr, net)


def format_address(family: int, value: int) -> str:
    if family == 4:
        return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    # RFC 5952: the longest run (the first of equals) of two or more zero groups becomes "::"
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [f"{g:x}" for g in groups]
    if best == 0 and (best_len == 6 or (best_len == 5 and groups[5] == 0xFFFF)):
        # an IPv4-mapped or -compatible address, written as inet_ntop (and so nft) writes it
        return "::" + ("ffff:" if best_len == 5 else "") + format_address(4, value & 0xFFFFFFFF)
    if best < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best]) + "::" + ":".join(hexes[best + best_len:])


def canonical_network(text: str) -> str | None:
    """`10.1.2.3/8` -> `10.0.0.0/8`; a plain address gets /32 or /128."""
    net = parse_network(text)
    if net is None:
        return None
    return f"{format_address(net[0], net[1])}/{net[2]}"


def _merge_networks(nets: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Drop networks inside others and join sibling halves, as nft's interval sets would."""
    out = set(nets)
    changed = True
    while changed:
        changed = False
        for net in sorted(out):
            fam, val, n = net
            if any(other != net and _inside(net, other) for other in out):
                out.discard(net)
                changed = True
                break
            step = 1 << ((32 if fam == 4 else 128) - n)
            sibling = (fam, val ^ step, n)
            if n and sibling in out:
                out -= {net, sibling}
                out.add((fam, val & ~step, n - 1))
                changed = True
                break
    return sorted(out)


def merge_ports(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Sorted, with overlapping and adjacent ranges joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def describe_ports(ports: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def describe_rule(rule: NetRule) -> str:
    """`10.0.0.0/8 tcp 80,443` (for diff, decisions and messages)."""
    parts = [rule.cidr or "anywhere", rule.protocol or "any protocol"]
    if rule.ports:
        parts.append(describe_ports(rule.ports))
    return " ".join(parts)


# --- the ruleset ------------------------------------------------------------------------------

def _addr_value(fam: int, val: int, n: int) -> Any:
    bits = 32 if fam == 4 else 128
    addr = format_address(fam, val)
    return addr if n == bits else {"prefix": {"addr": addr, "len": n}}


def _addr_match(field: str, nets: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """One match per family present: `ip daddr {...}` and/or `ip6 daddr {...}`."""
    out = []
    for fam, proto in ((4, "ip"), (6, "ip6")):
        values = [_addr_value(*t) for t in _merge_networks([t for t in nets if t[0] == fam])]
        if values:
            right: Any = values[0] if len(values) == 1 else {"set": values}
            out.append(_match({"payload": {"protocol": proto, "field": field}}, right))
    return out


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ports_value(ports: tuple[tuple[int, int], ...]) -> Any:
    values: list[Any] = [lo if lo == hi else {"range": [lo, hi]} for lo, hi in merge_ports(ports)]
    return values[0] if len(values) == 1 else {"set": values}


def _l4(protocol: str, ports: tuple[tuple[int, int], ...], family: int | None) -> list[dict[str, Any]]:
    if protocol in ("tcp", "udp") and ports:
        return [_match({"payload": {"protocol": protocol, "field": "dport"}}, _ports_value(ports))]
    if protocol in ("tcp", "udp"):
        return [_match({"meta": {"key": "l4proto"}}, protocol)]
    if protocol == "icmp":
        kinds = {4: ["icmp"], 6: ["ipv6-icmp"], None: ["icmp", "ipv6-icmp"]}[family]
        return [_match({"meta": {"key": "l4proto"}}, kinds[0] if len(kinds) == 1 else {"set": kinds})]
    return []


def _entry_rules(rules: tuple[NetRule, ...], field: str) -> list[list[dict[str, Any]]]:
    out = []
    for r in rules:
        net = parse_network(r.cidr) if r.cidr else None
        addr = _addr_match(field, [net]) if net else []
        out.append([*addr, *_l4(r.protocol, r.ports, net[0] if net else None), {"counter": None},
                    {"accept": None}])
    return out


def _resolver_nets(resolvers: tuple[str, ...]) -> list[tuple[int, int, int]]:
    out = []
    for r in resolvers:
        parsed = parse_address(r)
        if parsed:
            out.append((parsed[0], parsed[1], 32 if parsed[0] == 4 else 128))
    return out


PRIO_FILTER, PRIO_RAW = 0, -300
# Docker's embedded DNS: its own NAT (127.0.0.11:53 to another port) in the container's namespace
# needs its packets tracked
DOCKER_DNS = "127.0.0.11"


def _untracked_loopback() -> list[tuple[str, str, int, str, list[list[dict[str, Any]]]]]:
    """Loopback traffic between loopback addresses is accepted by the filter chains whatever its
    state, so connection tracking (which the rules switch on for the namespace) is skipped for it:
    on lo, tracking every segment cost a TCP stream 6-12 % of its throughput.  Traffic to or from
    Docker's embedded DNS, which Docker NATs, and to the container's own addresses stays tracked.
    One rule per family: each rule met costs every loopback packet.  Output only: a loopback packet
    leaves through output in this same namespace, marked untracked there, and arrives untracked (a
    raw prerouting chain would only add a hook to every packet received, veth's included)."""
    out = []
    for name, hook, key in (("raw_output", "output", "oif"),):
        lo = _match({"meta": {"key": key}}, "lo")
        loopback = {"prefix": {"addr": "127.0.0.0", "len": 8}}
        v4 = [lo, _match({"payload": {"protocol": "ip", "field": "daddr"}}, loopback),
              _match({"payload": {"protocol": "ip", "field": "daddr"}}, DOCKER_DNS, "!="),
              _match({"payload": {"protocol": "ip", "field": "saddr"}}, DOCKER_DNS, "!="), {"notrack": None}]
        v6 = [lo, _match({"payload": {"protocol": "ip6", "field": "daddr"}}, "::1"), {"notrack": None}]
        out.append((name, hook, PRIO_RAW, "accept", [v4, v6]))
    return out


def ruleset(policy: NetworkPolicy, resolvers: tuple[str, ...], node_addresses: tuple[str, ...]) -> Ruleset | None:
    """The rules `policy` demands given these facts, or None when it demands none.

    `resolvers`: the DNS servers the container may query (the profile's `dns`, else the
    bundle's, already stripped of any inside `deny_always`).  `node_addresses`: this
    node's own addresses, denied when `deny_always` names `node`.
    """
    if not policy.enforced:
        return None
    # (name, hook, priority, policy, rules)
    chains: list[tuple[str, str, int, str, list[list[dict[str, Any]]]]] = []
    if policy.egress is not None or policy.deny_always:
        rules: list[list[dict[str, Any]]] = [
            [_match({"meta": {"key": "oif"}}, "lo"), {"accept": None}],
            [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
            [_match({"payload": {"protocol": "icmpv6", "field": "type"}}, {"set": list(ND_OUT)}), {"accept": None}],
        ]
        if policy.egress is not None or policy.dns is not None:
            for match in _addr_match("daddr", _resolver_nets(resolvers)):
                for proto in ("udp", "tcp"):
                    rules.append([match, _match({"payload": {"protocol": proto, "field": "dport"}}, 53),
                                  {"counter": None}, {"accept": None}])
        denied: list[tuple[int, int, int]] = []
        for entry in policy.deny_always:
            for text in (node_addresses if entry == NODE else (entry,)):
                net = parse_network(text)
                if net:
                    denied.append(net)
        for match in _addr_match("daddr", denied):
            rules.append([match, {"counter": None}, {"drop": None}])
        if policy.egress is not None:
            rules += _entry_rules(policy.egress, "daddr")
            rules.append([{"counter": None}, {"drop": None}])
        chains.append(("output", "output", PRIO_FILTER, "drop" if policy.egress is not None else "accept", rules))
    if policy.ingress is not None:
        rules = [
            [_match({"meta": {"key": "iif"}}, "lo"), {"accept": None}],
            [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
            [_match({"payload": {"protocol": "icmpv6", "field": "type"}}, {"set": list(ND_IN)}), {"accept": None}],
            *_entry_rules(policy.ingress, "saddr"),
            [{"counter": None}, {"drop": None}],
        ]
        chains.append(("input", "input", PRIO_FILTER, "drop", rules))
    chains += _untracked_loopback()
    # `create`, not `add`: in a namespace that already has a sandbox table (one this container joins)
    # the whole transaction fails, and the hook then accepts the table only if it holds these rules
    commands: list[dict[str, Any]] = [{"create": {"table": {"family": FAMILY, "name": TABLE}}}]
    count = 0
    for name, hook, prio, policy_verdict, chain_rules in chains:
        commands.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name, "type": "filter",
                                           "hook": hook, "prio": prio, "policy": policy_verdict}}})
        for expr in chain_rules:
            commands.append({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": name, "expr": expr}}})
            count += 1
    document = {"nftables": commands}
    return Ruleset(document=document, text=to_text(document), sha256=digest(document), rules=count)


def canonical(document: dict[str, Any]) -> bytes:
    from .. import _fastjson

    return _fastjson.dumps(document, sort_keys=True).encode("utf-8")


def digest(document: dict[str, Any]) -> str:
    from ..digest import sha256_hex

    return sha256_hex(canonical(document))


# --- comparing with the kernel's listing -------------------------------------------------------

def normalize(document: dict[str, Any]) -> dict[str, Any]:
    """Chain name -> [chain, rules] of table inet sandbox in `document` (a ruleset we load, or the
    output of `nft -j list ruleset`), without handles, counter values or other tables: equal
    exactly when the same rules are in force."""
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[Any]] = {}
    for item in document.get("nftables", []) if isinstance(document, dict) else []:
        if not isinstance(item, dict):
            continue
        if "add" in item and isinstance(item["add"], dict):
            item = item["add"]
        for kind in ("chain", "rule"):
            obj = item.get(kind)
            if not isinstance(obj, dict) or obj.get("family") != FAMILY or obj.get("table") != TABLE:
                continue
            if kind == "chain":
                chains[str(obj.get("name"))] = {k: obj.get(k) for k in ("type", "hook", "prio", "policy")}
            else:
                rules.setdefault(str(obj.get("chain")), []).append(_strip(obj.get("expr")))
    return {name: [chain, rules.get(name, [])] for name, chain in chains.items()}


def _strip(expr: Any) -> Any:
    if isinstance(expr, list):
        return [_strip(e) for e in expr]
    if isinstance(expr, dict):
        if set(expr) == {"counter"}:
            return {"counter": None}
        return {k: _strip(v) for k, v in expr.items()}
    return expr


def has_table(listing: dict[str, Any]) -> bool:
    return any(isinstance(i, dict) and isinstance(i.get("table"), dict) and i["table"].get("family") == FAMILY
               and i["table"].get("name") == TABLE for i in listing.get("nftables", []))


# --- nft syntax, for people ---------------------------------------------------------------------

def _text_value(v: Any) -> str:
    if isinstance(v, dict) and "prefix" in v:
        return f"{v['prefix']['addr']}/{v['prefix']['len']}"
    if isinstance(v, dict) and "range" in v:
        return f"{v['range'][0]}-{v['range'][1]}"
    if isinstance(v, dict) and "set" in v:
        return "{ " + ", ".join(_text_value(x) for x in v["set"]) + " }"
    if isinstance(v, list):
        return ",".join(_text_value(x) for x in v)
    if v == "lo":
        return '"lo"'
    return str(v)


def _text_expr(e: dict[str, Any]) -> str:
    if "match" in e:
        left = e["match"]["left"]
        if "payload" in left:
            lhs = f"{left['payload']['protocol']} {left['payload']['field']}"
        elif "meta" in left:
            lhs = f"meta {left['meta']['key']}" if left["meta"]["key"] == "l4proto" else left["meta"]["key"]
        else:
            lhs = f"ct {left['ct']['key']}"
        op = "" if e["match"]["op"] in ("==", "in") else f"{e['match']['op']} "
        return f"{lhs} {op}{_text_value(e['match']['right'])}"
    return next(iter(e))


def to_text(document: dict[str, Any]) -> str:
    lines = [f"table {FAMILY} {TABLE} {{"]
    for name, (chain, rules) in normalize(document).items():
        lines.append(f"\tchain {name} {{")
        prio = {PRIO_FILTER: "filter", PRIO_RAW: "raw"}.get(chain["prio"], chain["prio"])
        lines.append(f"\t\ttype {chain['type']} hook {chain['hook']} priority {prio}; policy {chain['policy']};")
        lines += ["\t\t" + " ".join(_text_expr(e) for e in expr) for expr in rules]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"
