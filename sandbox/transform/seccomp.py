"""Seccomp: the profile's filter, resolved for the final capabilities, intersected with the bundle's.

A syscall is allowed only if both filters allow it; the stricter default action
wins.  Docker-style capability conditions are resolved against the bounding set
that survives the capability transform, so a syscall allowed only with
CAP_SYS_ADMIN goes when CAP_SYS_ADMIN goes.
"""

from __future__ import annotations

from .. import tables
from ..decisions import pointer
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


Arg = tuple[int, int, int, str]  # index, value, valueTwo, op
Rule = tuple[str, int | None, tuple[Arg, ...]]  # action, errnoRet, args (ANDed)
Table = dict[str, list[Rule]]

_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")


def _rank(action: str) -> int:
    return tables.SECCOMP_ACTION_RANK.get(action, 7)


def _stricter(a: Rule, b: Rule) -> Rule:
    return b if _rank(b[0]) > _rank(a[0]) else a


def _permissive(rules: list[Rule]) -> bool:
    return any(r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS for r in rules)


def _rule(entry: dict[str, Any]) -> Rule:
    action = entry.get("action", "SCMP_ACT_ERRNO")
    errno = entry.get("errnoRet") if action in _ERRNO_ACTIONS else None
    raw = entry.get("args")
    if not raw:
        return (action, errno if isinstance(errno, int) else None, ())
    args = [(int(a.get("index", 0)), int(a.get("value", 0)), int(a.get("valueTwo", 0)),
             str(a.get("op", "SCMP_CMP_EQ"))) for a in raw]
    return (action, errno if isinstance(errno, int) else None, tuple(sorted(args)))


def _names(entry: dict[str, Any]) -> list[str]:
    names = entry.get("names")
    if isinstance(names, list):
        return [n for n in names if isinstance(n, str)]
    return [entry["name"]] if isinstance(entry.get("name"), str) else []


def _applies(entry: dict[str, Any], caps: set[str], arch: str) -> bool:
    inc = entry.get("includes") or {}
    exc = entry.get("excludes") or {}
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    return not (exc.get("arches") and arch in exc["arches"])


def _conditional_caps(base: dict[str, Any], name: str) -> list[str]:
    out: list[str] = []
    for entry in base.get("syscalls") or []:
        if name in _names(entry) and (entry.get("includes") or {}).get("caps"):
            out += entry["includes"]["caps"]
    return out


def profile_filter(ctx: Context, caps: set[str]) -> tuple[Rule, Table] | None:
    """(default rule, per-syscall rules) of the profile, or None for no filter at all."""
    pol = ctx.profile.seccomp
    arch = tables.ARCHITECTURES.get(ctx.host.arch, ("amd64", "", ()))[0]
    table: Table = {}
    if pol.base_profile is None:
        default: Rule = ("SCMP_ACT_ALLOW", None, ())
        if not (pol.deny or pol.rules):
            return None
    else:
        base = pol.base_profile
        base_default = (base.get("defaultAction", "SCMP_ACT_ERRNO"), base.get("defaultErrnoRet"), ())
        prof_default = (pol.default_action, pol.default_errno if pol.default_action in _ERRNO_ACTIONS else None,
                        ())
        default = _stricter(prof_default, base_default)
        if default[0] in _ERRNO_ACTIONS and default[1] is None:
            default = (default[0], pol.default_errno, ())
        for entry in base.get("syscalls") or []:
            if _applies(entry, caps, arch):
                rule = _rule(entry)
                for n in _names(entry):
                    table.setdefault(n, []).append(rule)
    replaced: set[str] = set()
    for entry in pol.rules:
        for n in _names(entry):
            if n not in replaced:
                table.pop(n, None)
                replaced.add(n)
            table.setdefault(n, []).append(_rule(entry))
    for n in pol.allow:
        table[n] = [("SCMP_ACT_ALLOW", None, ())]
    for n in pol.deny:
        table.pop(n, None)
        if default[0] in tables.SECCOMP_PERMISSIVE_ACTIONS:
            table[n] = [("SCMP_ACT_ERRNO", pol.default_errno, ())]
    return default, {n: _dedupe(r) for n, r in table.items()}


def _dedupe(rules: list[Rule]) -> list[Rule]:
    if len(rules) == 1:
        return rules
    return sorted(set(rules), key=_rule_key)


def _rule_key(r: Rule) -> tuple[Any, ...]:
    return (r[0], -1 if r[1] is None else r[1], r[2])


def bundle_filter(raw: dict[str, Any]) -> tuple[Rule, Table]:
    default = _rule({"action": raw.get("defaultAction", "SCMP_ACT_ALLOW"), "errnoRet": raw.get("defaultErrnoRet")})
    table: Table = {}
    for entry in raw.get("syscalls") or []:
        if isinstance(entry, dict):
            rule = _rule(entry)
            for n in _names(entry):
                table.setdefault(n, []).append(rule)
    return default, {n: _dedupe(r) for n, r in table.items()}


def _conjoin(a: tuple[Arg, ...], b: tuple[Arg, ...]) -> tuple[Arg, ...] | None:
    """Both conditions at once, or None when that needs two conditions on one argument.

    runc turns several conditions on the same argument into separate rules (an OR),
    which would allow more than either side; such a pair is left out (denied).
    """
    merged = dict((x[0], x) for x in a)
    for x in b:
        if x[0] in merged and merged[x[0]] != x:
            return None
        merged[x[0]] = x
    return tuple(sorted(merged.values()))


def intersect(p: list[Rule], b: list[Rule]) -> list[Rule]:
    """What both rule sets for one syscall allow (each list is ORed; an empty args tuple is unconditional)."""
    p_uncond = len(p) == 1 and not p[0][2]
    b_uncond = len(b) == 1 and not b[0][2]
    if p_uncond and b_uncond:
        return [_stricter(p[0], b[0])]
    if p_uncond:
        return b if p[0][0] == "SCMP_ACT_ALLOW" else p
    if b_uncond:
        return p if b[0][0] == "SCMP_ACT_ALLOW" else b
    if sorted(p, key=_rule_key) == sorted(b, key=_rule_key):
        return p
    out = []
    for pr in p:
        for br in b:
            if pr[0] in tables.SECCOMP_PERMISSIVE_ACTIONS and br[0] in tables.SECCOMP_PERMISSIVE_ACTIONS:
                args = _conjoin(pr[2], br[2])
                if args is not None:
                    out.append(_stricter(pr, br)[:2] + (args,))  # type: ignore[operator]
    return _dedupe(out)


def _emit(default: Rule, table: Table) -> list[dict[str, Any]]:
    groups: dict[Rule, list[str]] = {}
    for name, rules in table.items():
        if rules == [default]:
            continue
        for r in rules:
            groups.setdefault(r, []).append(name)
    out = []
    for r in sorted(groups, key=_rule_key):
        entry: dict[str, Any] = {"names": sorted(groups[r]), "action": r[0]}
        if r[1] is not None:
            entry["errnoRet"] = r[1]
        if r[2]:
            entry["args"] = [{"index": i, "value": v, "valueTwo": v2, "op": op} for i, v, v2, op in r[2]]
        out.append(entry)
    return out


def seccomp(ctx: Context) -> None:
    linux = ctx.section("linux")
    caps = set(ctx.get("process", "capabilities", "bounding") or [])
    prof = profile_filter(ctx, caps)
    raw = linux.get("seccomp") if isinstance(linux.get("seccomp"), dict) else None
    ptr = pointer("linux", "seccomp")
    if prof is None:
        ctx.decide("seccomp", ptr, "keep", _summary(raw), _summary(raw),
                   "the profile sets no seccomp filter; the bundle's is kept", "seccomp.base")
        return
    pdefault, ptable = prof
    bdefault, btable = bundle_filter(raw) if raw else (("SCMP_ACT_ALLOW", None, ()), {})
    default = _stricter(pdefault, bdefault)
    table: Table = {}
    for name in sorted(set(ptable) | set(btable)):
        pr = ptable.get(name) or [pdefault]
        br = btable.get(name) or [bdefault]
        table[name] = pr if pr == br else (intersect(pr, br) or [default])

    new: dict[str, Any] = {k: v for k, v in (raw or {}).items()
                           if k not in ("defaultAction", "defaultErrnoRet", "architectures", "syscalls", "flags")}
    new["defaultAction"] = default[0]
    if default[1] is not None:
        new["defaultErrnoRet"] = default[1]
    native = tables.ARCHITECTURES.get(ctx.host.arch)
    arches = [native[1], *native[2]] if native else []
    if raw and isinstance(raw.get("architectures"), list) and raw["architectures"]:
        arches = [a for a in arches if a in raw["architectures"]] or list(raw["architectures"])
    if arches:
        new["architectures"] = arches
    flags = [f for f in (raw or {}).get("flags") or [] if isinstance(f, str)]
    kept_flags = [f for f in flags if f not in tables.SECCOMP_LOOSENING_FLAGS]
    if kept_flags:
        new["flags"] = kept_flags
    if len(kept_flags) != len(flags):
        ctx.decide("seccomp", pointer("linux", "seccomp", "flags"), "drop", flags, kept_flags,
                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW turns off the speculative store bypass mitigation", "seccomp")
    new["syscalls"] = _emit(default, table)
    if not any(r[0] == "SCMP_ACT_NOTIFY" for rules in table.values() for r in rules):
        new.pop("listenerPath", None)
        new.pop("listenerMetadata", None)
    linux["seccomp"] = new
    _record(ctx, raw, bdefault, btable, default, table, ptr, pdefault)


def _summary(raw: dict[str, Any] | None) -> str | None:
    if not raw:
        return None
    n = sum(len(_names(e)) for e in raw.get("syscalls") or [] if isinstance(e, dict))
    return f"defaultAction {raw.get('defaultAction')}, {n} syscall rules"


def _record(ctx: Context, raw: dict[str, Any] | None, bdefault: Rule, btable: Table, default: Rule,
            table: Table, ptr: str, pdefault: Rule) -> None:
    after = _summary(ctx.config["linux"]["seccomp"])
    if raw is None:
        allowed = sum(1 for r in table.values() if _permissive(r))
        ctx.decide("seccomp", ptr, "set", None, after,
                   f"the bundle had no seccomp filter; the profile's allows {allowed} syscalls and answers the "
                   f"rest with {_action_text(default)}", "seccomp.base")
        return
    changed = False
    if _rank(default[0]) > _rank(bdefault[0]):
        changed = True
        ctx.decide("seccomp", pointer("linux", "seccomp", "defaultAction"), "tighten", _action_text(bdefault),
                   _action_text(default), "the profile's default action is stricter; syscalls outside its "
                   "allow-list now fail", "seccomp.default_action")
    pol = ctx.profile.seccomp
    base = pol.base_profile or {}
    caps = set(ctx.get("process", "capabilities", "bounding") or [])
    for name in sorted(table):
        before = btable.get(name) or [bdefault]
        after_rules = table[name]
        if sorted(before, key=_rule_key) == sorted(after_rules, key=_rule_key):
            continue
        changed = True
        if _permissive(before) and not _permissive(after_rules):
            if name in pol.deny:
                why = f"{name} is listed in seccomp.deny"
            else:
                missing = [c for c in _conditional_caps(base, name) if c not in caps]
                why = (f"{name} is allowed only with {', '.join(sorted(set(missing)))}, which the container does "
                       "not keep") if missing else f"{name} is not in the profile's seccomp allow-list"
            ctx.decide("seccomp", ptr + "/syscalls", "drop", name, None, why, "seccomp")
        elif _permissive(before):
            ctx.decide("seccomp", ptr + "/syscalls", "tighten", name, name,
                       f"{name} is allowed only under the conditions both filters share", "seccomp")
    if not changed:
        ctx.decide("seccomp", ptr, "keep", after, after, "the bundle's filter is within the profile's",
                   "seccomp")


def _action_text(r: Rule) -> str:
    return f"{r[0]}({tables.errno_name(r[1])})" if r[1] is not None else r[0]
