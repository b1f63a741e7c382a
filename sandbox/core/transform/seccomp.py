"""Seccomp: the profile's filter, resolved for the final capabilities, intersected with the bundle's.

A call is allowed exactly when both filters allow it (argument conditions included);
a call either denies gets the stricter of the two answers, and the stricter default
action wins.  Docker-style capability conditions are resolved against the bounding
set that survives the capability transform, so a syscall allowed only with
CAP_SYS_ADMIN goes when CAP_SYS_ADMIN goes.
"""

from __future__ import annotations

from .. import seccomp_eval, tables
from ..decisions import pointer
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..seccomp_eval import ArgBox, Atom, Verdict


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


# profile_filter's answers for the profiles the daemon serves: a profile is immutable once loaded, and
# every create re-derives the same table from it (a measured third of the seccomp step; scripts/bench.py
# transform). The entry holds the policy itself, so its id cannot be reused while the entry lives.
_PROFILE_FILTERS: dict[tuple[int, frozenset[str], str], tuple[Any, tuple[Rule, Table] | None]] = {}


def profile_filter(ctx: Context, caps: set[str]) -> tuple[Rule, Table] | None:
    """(default rule, per-syscall rules) of the profile, or None for no filter at all. Callers must not
    modify the answer (it is shared between calls)."""
    pol = ctx.profile.seccomp
    arch = tables.ARCHITECTURES.get(ctx.host.arch, ("amd64", "", ()))[0]
    key = (id(pol), frozenset(caps), arch)
    hit = _PROFILE_FILTERS.get(key)
    if hit is not None and hit[0] is pol:
        return hit[1]
    out = _profile_filter(pol, caps, arch)
    if len(_PROFILE_FILTERS) >= 64:
        _PROFILE_FILTERS.clear()
    _PROFILE_FILTERS[key] = (pol, out)
    return out


def _profile_filter(pol: Any, caps: set[str], arch: str) -> tuple[Rule, Table] | None:
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


# -- the exact intersection of two filters, one syscall at a time ------------------------------------
#
# Each side's rules for a syscall partition the calls into regions, one per verdict (runc's view:
# rules split where an argument repeats, rules with the default's action not installed, overlaps
# read as the strictest).  The intersection gives every call the stricter of the two sides'
# verdicts (the profile's on a tie) and is emitted as boxes — rules with one condition per
# argument, which runc installs as written — that never overlap across verdicts, so libseccomp's
# tree order cannot change what they mean.  Where one condition cannot say a conjunction on one
# argument, seccomp_eval.cond_and splits it into ORed conditions, so the allowed set is exactly
# the intersection: never larger, never needlessly smaller.

# Budgets.  Engine filters need a few dozen boxes and rules per syscall; past these a hostile bundle
# could make the transform arbitrarily slow or the filter longer than the kernel's 4096 BPF
# instructions (runc could not load it), so such a syscall gets the strictest answer either side
# gives any of its calls instead (never looser; a decision says so).
PER_SYSCALL = 2000  # boxes made while intersecting one syscall
PER_FILTER = 20000  # ... and the whole filter
RULES_PER_SYSCALL = 256  # conditional rules emitted for one syscall
RULES_PER_FILTER = 256  # ... and the whole filter, beyond those of the bundle or profile as written
_PRUNE_MAX = 300  # more boxes than this for one verdict are only deduplicated, not pruned
_DECISION_WORK = 500  # a region only a decision asks about: past this it counts as not empty


class TooComplex(Exception):
    pass


class Work:
    """What one syscall's intersection may still make: boxes, and conditional rules to emit."""

    __slots__ = ("left", "rules")

    def __init__(self, left: int = PER_SYSCALL, rules: int = RULES_PER_SYSCALL) -> None:
        self.left = left
        self.rules = rules

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise TooComplex

    def emit(self, n: int) -> None:
        self.rules -= n
        if self.rules < 0:
            raise TooComplex


Regions = list[tuple["Verdict", list["ArgBox"]]]


def _regions(default: Rule, rules: list[Rule], work: Work) -> tuple[Regions, list[ArgBox]]:
    """(verdict, boxes) per verdict other than the default's, disjoint across verdicts; and the
    boxes of all installed rules (whose union the default does not reach)."""
    groups: dict[Verdict, list[ArgBox]] = {}
    for r in seccomp_eval.installed(default, rules):
        box = seccomp_eval.box_of(r[2])
        if box is not None:
            groups.setdefault(seccomp_eval.action_of(r[0], r[1]), []).append(box)
    raw = [b for boxes in groups.values() for b in boxes]
    if len(groups) < 2:
        return list(groups.items()), raw
    out: Regions = []
    stricter: list[ArgBox] = []
    for v in sorted(groups, key=seccomp_eval.strength, reverse=True):  # an overlap goes to the stricter
        boxes = groups[v]
        if any(seccomp_eval.box_meets(a, b) for a in boxes for b in stricter):
            boxes = _minus_all(boxes, stricter, work)
        if boxes:
            out.append((v, boxes))
        stricter = stricter + groups[v]
    return out, raw


def _minus_all(boxes: list[ArgBox], minus: list[ArgBox], work: Work) -> list[ArgBox]:
    """`boxes` less every call matching one of `minus`."""
    if any(not m for m in minus):
        return []  # an unconditional box covers every call
    out = [b for b in boxes if not any(seccomp_eval.box_subset(b, m) for m in minus)]
    for i, m in enumerate(minus):
        later = minus[i + 1:]
        nxt: list[ArgBox] = []
        for b in out:
            for piece in seccomp_eval.box_minus(b, m):
                if not any(seccomp_eval.box_subset(piece, x) for x in later):
                    nxt.append(piece)
            work.spend(len(nxt))
        out = nxt
        if not out:
            break
    return out


def _prune(boxes: list[ArgBox]) -> list[ArgBox]:
    """The same union in fewer boxes: no duplicates and (up to _PRUNE_MAX boxes) none inside another,
    and boxes that differ in one argument merged where one atom says both."""
    seen: dict[tuple[Any, ...], ArgBox] = {}
    for b in boxes:
        seen.setdefault(tuple(sorted(b.items())), b)
    todo = list(seen.values())
    if len(todo) > _PRUNE_MAX:
        return todo
    kept: list[ArgBox] = []
    while todo:
        b = todo.pop()
        if any(seccomp_eval.box_subset(b, k) for k in kept):
            continue
        kept = [k for k in kept if not seccomp_eval.box_subset(k, b)]
        for i, k in enumerate(kept):
            merged = seccomp_eval.box_union(b, k)
            if merged is not None:
                del kept[i]
                todo.append(merged)  # it may merge further
                break
        else:
            kept.append(b)
    if len(kept) > 1:
        try:  # together they may cover every call: one unconditional rule says it
            if not _minus_all([{}], kept, Work(_DECISION_WORK, 0)):
                return [{}]
        except TooComplex:
            pass
    return kept


class Combined:
    """One syscall's intersection: the emitted rules and what the decision needs to know."""

    __slots__ = ("rules", "allowed_after", "narrowed", "prules", "pdefault", "exact", "approx", "reanswered")

    def __init__(self, rules: list[Rule], allowed_after: bool, narrowed: set[Verdict], prules: list[Rule],
                 pdefault: Verdict, exact: bool = True) -> None:
        self.rules = rules
        self.allowed_after = allowed_after  # the intersection lets some call of it run
        self.narrowed = narrowed  # what calls the bundle let run now get (empty: none lost)
        self.prules = prules  # the profile's rules for the syscall, as runc installs them
        self.pdefault = pdefault
        self.exact = exact  # False: too complex, every call gets the strictest answer
        self.approx: set[Verdict] = set()  # answers too complex to emit: their calls get the default
        # (the bundle's answer, the new one) for calls both filters deny with different answers
        self.reanswered: set[tuple[Verdict, Verdict]] = set()


def _region(up: list[ArgBox] | None, ub: list[ArgBox] | None, allp: list[ArgBox], allb: list[ArgBox],
            work: Work) -> list[ArgBox]:
    """The calls in the profile's region `up` and the bundle's `ub` (None: that side's default region)."""
    if up is not None and ub is not None:
        out = []
        for a in up:
            for b in ub:
                both = seccomp_eval.box_and(a, b)
                if both is not None:
                    out.append(both)
        work.spend(len(out))
        return out
    if up is None and ub is not None:
        return _minus_all(ub, allp, work)
    if ub is None and up is not None:
        return _minus_all(up, allb, work)
    return _minus_all([{}], allp + allb, work)


def combine(pdefault: Rule, prules: list[Rule], bdefault: Rule, brules: list[Rule], default: Verdict,
            work: Work | None = None) -> Combined:
    """The exact intersection of the profile's and the bundle's rules for one syscall, under the
    emitted `default` (the stricter of the two defaults)."""
    work = work or Work()
    pdv = seccomp_eval.action_of(pdefault[0], pdefault[1])
    bdv = seccomp_eval.action_of(bdefault[0], bdefault[1])
    try:
        rp, allp = _regions(pdefault, prules, work)
        rb, allb = _regions(bdefault, brules, work)
        if bdv == default and _bundle_stands(rp, rb, allp, allb, pdv, bdv) \
                and not seccomp_eval.conflicts(bdefault, brules):
            # every call already gets the bundle's answer: keep its rules as written (idempotent)
            kept = sorted(set(seccomp_eval.installed(bdefault, brules)), key=_rule_key)
            comb = Combined(kept, any(v[0] in tables.SECCOMP_PERMISSIVE_ACTIONS for v, _ in rb)
                            or bdv[0] in tables.SECCOMP_PERMISSIVE_ACTIONS, set(), [], pdv)
        else:
            comb = _combine(rp, rb, allp, allb, pdv, bdv, default, prules + brules, work)
        comb.prules = seccomp_eval.installed(pdefault, prules)
        return comb
    except TooComplex:
        pass
    vp = pdv
    for r in prules:
        vp = seccomp_eval.stricter(vp, seccomp_eval.action_of(r[0], r[1]))
    vb, b_allows = bdv, bdv[0] in tables.SECCOMP_PERMISSIVE_ACTIONS
    for r in brules:
        vb = seccomp_eval.stricter(vb, seccomp_eval.action_of(r[0], r[1]))
        b_allows = b_allows or r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS
    v = seccomp_eval.stricter(vp, vb)
    allowed = v[0] in tables.SECCOMP_PERMISSIVE_ACTIONS
    return Combined([] if v == default else [(v[0], v[1], ())], allowed, set() if allowed or not b_allows else {v},
                    seccomp_eval.installed(pdefault, prules), pdv, exact=False)


def _bundle_stands(rp: Regions, rb: Regions, allp: list[ArgBox], allb: list[ArgBox], pdv: Verdict,
                   bdv: Verdict) -> bool:
    """Whether the bundle's answer is the intersection's for every call (within a small budget)."""
    for vp, up in [*rp, (pdv, None)]:
        for vb, ub in [*rb, (bdv, None)]:
            if seccomp_eval.stricter(vp, vb) == vb:
                continue
            try:
                if _region(up, ub, allp, allb, Work(_DECISION_WORK, 0)):
                    return False
            except TooComplex:
                return False
    return True


def _combine(rp: Regions, rb: Regions, allp: list[ArgBox], allb: list[ArgBox], pdv: Verdict, bdv: Verdict,
             default: Verdict, inputs: list[Rule], work: Work) -> Combined:
    permissive = tables.SECCOMP_PERMISSIVE_ACTIONS
    wanted: dict[Verdict, list[tuple[list[ArgBox] | None, list[ArgBox] | None]]] = {}
    after = False
    narrowed: set[Verdict] = set()
    reanswered: set[tuple[Verdict, Verdict]] = set()
    for vp, up in [*rp, (pdv, None)]:
        for vb, ub in [*rb, (bdv, None)]:
            v = seccomp_eval.stricter(vp, vb)
            if v != default:
                wanted.setdefault(v, []).append((up, ub))
            # the decision needs to know whether a region the bundle allowed is empty
            if vb[0] in permissive and not (after if v[0] in permissive else v in narrowed):
                try:
                    nonempty = bool(_region(up, ub, allp, allb, Work(_DECISION_WORK, 0)))
                except TooComplex:
                    nonempty = True
                if nonempty and v[0] in permissive:
                    after = True
                elif nonempty:
                    narrowed.add(v)
            elif vb[0] not in permissive and v != vb and (v != default or vb != bdv) and (vb, v) not in reanswered:
                # a denied call that now gets another answer (ENOSYS for EPERM changes what a program does);
                # default for default is the default decision's
                try:
                    nonempty = bool(_region(up, ub, allp, allb, Work(_DECISION_WORK, 0)))
                except TooComplex:
                    nonempty = True
                if nonempty:
                    reanswered.add((vb, v))
    spelling: dict[tuple[int, Atom], Arg] = {}
    for r in inputs:
        for c in r[2]:
            a = seccomp_eval.atom_of(c)
            if a is not None and a[0] != a[1]:  # a single value is always EQ (LT 1 is libseccomp-fragile)
                spelling.setdefault((c[0], a), c)
    written = {r[2] for r in inputs}
    rules: list[Rule] = []
    approx: set[Verdict] = set()
    # what may run first and in full (too complex: the caller gives up); then the deny answers,
    # strictest first, as far as the budget goes — the rest get the default instead
    for v in sorted(wanted, key=lambda v: (v[0] not in permissive, -_rank(v[0]), v[0], v[1] or 0)):
        part = Work(work.left, work.rules)
        try:
            boxes = [b for up, ub in wanted[v] for b in _region(up, ub, allp, allb, part)]
            emitted = []
            for box in _prune(boxes):
                part.spend(seccomp_eval.box_size(box))
                for conds in seccomp_eval.box_conds(box, spelling):
                    if conds and conds not in written:
                        part.emit(1)
                    emitted.append((v[0], v[1], conds))
        except TooComplex:
            if v[0] in permissive or default[0] in permissive:
                raise  # the default would let these calls run: give up on the syscall instead
            approx.add(v)
            continue
        work.left, work.rules = part.left, part.rules
        rules.extend(emitted)
    comb = Combined(sorted(set(rules), key=_rule_key), after, narrowed, [], pdv)
    comb.approx = approx
    comb.reanswered = reanswered
    return comb


def intersect(p: list[Rule], b: list[Rule], default: Rule = ("SCMP_ACT_ERRNO", None, ())) -> list[Rule]:
    """What both rule lists for one syscall allow, under one `default` for both (rules ORed)."""
    dv = seccomp_eval.action_of(default[0], default[1])
    return combine(default, p, default, b, dv).rules


def _emit(table: Table) -> list[dict[str, Any]]:
    groups: dict[Rule, list[str]] = {}
    for name, rules in table.items():
        for r in rules:
            groups.setdefault(r, []).append(name)
    out = []
    # runc adds each syscall's rules in this order; libseccomp 2.5 prunes a rule whose condition
    # chain starts like a shorter one added after it, even when the shorter one compares the other
    # way (a1 != 3 added after a0 == 7 && a1 == 3 loses the latter): fewer conditions first
    for r in sorted(groups, key=lambda r: (len(r[2]), _rule_key(r))):
        entry: dict[str, Any] = {"names": sorted(groups[r]), "action": r[0]}
        if r[1] is not None:
            entry["errnoRet"] = r[1]
        if r[2]:
            entry["args"] = [{"index": i, "value": v, "valueTwo": v2, "op": op} for i, v, v2, op in r[2]]
        out.append(entry)
    return out


def _simple(rules: list[Rule]) -> bool:
    return len(rules) == 1 and not rules[0][2]


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
    dv = seccomp_eval.stricter(seccomp_eval.action_of(pdefault[0], pdefault[1]),
                               seccomp_eval.action_of(bdefault[0], bdefault[1]))
    default: Rule = (dv[0], dv[1], ())
    table: Table = {}
    changes: list[tuple[str, Combined]] = []
    budget, rule_budget = PER_FILTER, RULES_PER_FILTER
    pdv = seccomp_eval.action_of(pdefault[0], pdefault[1])
    bdv = seccomp_eval.action_of(bdefault[0], bdefault[1])
    permissive = tables.SECCOMP_PERMISSIVE_ACTIONS
    verdicts: dict[tuple[str, int | None], Verdict] = {}  # action_of, once per distinct action

    def verdict_of(r: Rule) -> Verdict:
        v = verdicts.get((r[0], r[1]))
        if v is None:
            v = verdicts[(r[0], r[1])] = seccomp_eval.action_of(r[0], r[1])
        return v

    for name in sorted(set(ptable) | set(btable)):
        pr = ptable.get(name, [])
        br = btable.get(name, [])
        if raw is None and len(pr) == 1 and not pr[0][2]:  # no bundle filter: the profile's answer
            table[name] = [] if verdict_of(pr[0]) == dv else pr
            continue
        if len(pr) <= 1 and len(br) <= 1 and not (pr and pr[0][2]) and not (br and br[0][2]):
            # no argument conditions on either side: one verdict per side for every call
            vp = verdict_of(pr[0]) if pr else pdv
            vb = verdict_of(br[0]) if br else bdv
            v = vp if vp == vb else seccomp_eval.stricter(vp, vb)
            # the answer as one side spelt it (errnoRet left out stays left out: the transform is idempotent)
            rule = pr[0] if v == vp and pr else br[0] if v == vb and br else (v[0], v[1], ())
            table[name] = [] if v == dv else [rule]
            if raw is not None and v[0] not in permissive and vb[0] in permissive:
                changes.append((name, Combined([], False, {v}, [(vp[0], vp[1], ())], pdv)))
            elif raw is not None and v != vb and (v != dv or vb != bdv):
                # denied by both, now with the profile's answer (one the default decision does not explain)
                comb = Combined([], False, set(), [(vp[0], vp[1], ())], pdv)
                comb.reanswered = {(vb, v)}
                changes.append((name, comb))
            continue
        work = Work(min(PER_SYSCALL, budget), min(RULES_PER_SYSCALL, rule_budget))
        comb = combine(pdefault, pr, bdefault, br, dv, work)
        budget -= min(PER_SYSCALL, budget) - max(work.left, 0)
        rule_budget -= min(RULES_PER_SYSCALL, rule_budget) - max(work.rules, 0)
        table[name] = comb.rules
        if raw is not None and (comb.narrowed or comb.approx or comb.reanswered
                                or not (comb.exact or comb.allowed_after)):
            changes.append((name, comb))

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
    new["syscalls"] = _emit(table)
    if not any(r[0] == "SCMP_ACT_NOTIFY" for rules in table.values() for r in rules):
        new.pop("listenerPath", None)
        new.pop("listenerMetadata", None)
    linux["seccomp"] = new
    _record(ctx, raw, bdv, default, table, changes, ptr)


def _summary(raw: dict[str, Any] | None) -> str | None:
    if not raw:
        return None
    n = sum(len(_names(e)) for e in raw.get("syscalls") or [] if isinstance(e, dict))
    return f"defaultAction {raw.get('defaultAction')}, {n} syscall rules"


def _record(ctx: Context, raw: dict[str, Any] | None, bdv: Verdict, default: Rule, table: Table,
            changes: list[tuple[str, Combined]], ptr: str) -> None:
    after = _summary(ctx.config["linux"]["seccomp"])
    if raw is None:
        allowed = sum(1 for r in table.values() if _permissive(r))
        ctx.decide("seccomp", ptr, "set", None, after,
                   f"the bundle had no seccomp filter; the profile's allows {allowed} syscalls and answers the "
                   f"rest with {_action_text(default)}", "seccomp.base")
        return
    changed = False
    if _rank(default[0]) > _rank(bdv[0]):
        changed = True
        ctx.decide("seccomp", pointer("linux", "seccomp", "defaultAction"), "tighten", _action_text(bdv),
                   _action_text(default), "the profile's default action is stricter; syscalls outside its "
                   "allow-list now fail", "seccomp.default_action")
    elif (default[0], default[1]) != bdv:
        changed = True
        ctx.decide("seccomp", pointer("linux", "seccomp", "defaultAction"), "set", _action_text(bdv),
                   _action_text(default), "syscalls outside both allow-lists get the profile's answer",
                   "seccomp.default_errno")
    pol = ctx.profile.seccomp
    base = pol.base_profile or {}
    caps = set(ctx.get("process", "capabilities", "bounding") or [])
    for name, comb in changes:
        changed = True
        if comb.approx:
            ctx.decide("seccomp", ptr + "/syscalls", "warn", name, name,
                       f"the calls of {name} that both filters answer with "
                       f"{' or '.join(sorted(_action_text(v) for v in comb.approx))} get the default "
                       f"{_action_text(default)} instead: saying exactly which they are takes more rules than runc "
                       "and the kernel take", "seccomp")
            if not comb.narrowed:
                continue
        if comb.reanswered and comb.exact:
            for before, now in sorted(comb.reanswered):
                why = "the profile's answer is stricter" if _rank(now[0]) > _rank(before[0]) else \
                    "the profile's answer wins a tie of actions"
                some = "calls of " if comb.narrowed or comb.allowed_after else ""
                ctx.decide("seccomp", ptr + "/syscalls", "set", name, name,
                           f"both filters deny {some}{name}; they now get {_action_text(now)} instead of the "
                           f"bundle's {_action_text(before)} ({why})", "seccomp")
            if not comb.narrowed:
                continue
        missing = sorted({c for c in _conditional_caps(base, name) if c not in caps})
        needs = f"{', '.join(missing)}, which the container does not keep" if missing else ""
        pdesc = _allowed_text(comb)
        answer = " or ".join(sorted(_action_text(v) for v in comb.narrowed))
        if not comb.exact:
            rule = comb.rules[0] if comb.rules else default
            ctx.decide("seccomp", ptr + "/syscalls", "tighten" if comb.allowed_after else "drop", name,
                       name if comb.allowed_after else None,
                       f"the argument conditions of the two filters for {name} are too complex to intersect "
                       f"exactly within runc's and the kernel's limits; every call of it gets {_action_text(rule)}",
                       "seccomp")
            continue
        if not comb.allowed_after:
            if name in pol.deny:
                why = f"{name} is listed in seccomp.deny"
            elif pdesc is None:
                why = f"{name} is allowed only with {needs}" if needs else \
                    f"{name} is not in the profile's seccomp allow-list"
            else:
                why = f"the profile allows {name} only when {pdesc}, and the bundle's filter allows no such call"
            ctx.decide("seccomp", ptr + "/syscalls", "drop", name, None, f"{why}; it now gets {answer}", "seccomp")
        else:
            more = f" (more only with {needs})" if needs else ""
            ctx.decide("seccomp", ptr + "/syscalls", "tighten", name, name,
                       f"the profile allows {name} only when {pdesc}{more}; the bundle's filter also allowed other "
                       f"calls, which now get {answer}", "seccomp")
    if not changed:
        ctx.decide("seccomp", ptr, "keep", after, after, "the bundle's filter is within the profile's",
                   "seccomp")


_OP_TEXT = {"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=",
            "SCMP_CMP_GT": ">", "SCMP_CMP_GE": ">="}


def _num(v: int) -> str:
    return str(v) if v < 4096 else hex(v)


def _cond_text(c: Arg) -> str:
    i, v, v2, op = c
    if op == "SCMP_CMP_MASKED_EQ":
        return f"arg{i} & {_num(v)} == {_num(v2)}"
    return f"arg{i} {_OP_TEXT.get(op, op)} {_num(v)}"


def _rules_text(rules: list[Rule]) -> str:
    texts = [" and ".join(_cond_text(c) for c in r[2]) or "always" for r in rules]
    if len(texts) > 4:
        texts = [*texts[:3], f"{len(texts) - 3} more conditions"]
    return " or ".join(texts)


def _allowed_text(comb: Combined) -> str | None:
    """What calls the profile's rules let run, in words; None when none does."""
    permissive = tables.SECCOMP_PERMISSIVE_ACTIONS
    if comb.pdefault[0] in permissive:
        deny = [r for r in comb.prules if r[0] not in permissive]
        return f"not {_rules_text(deny)}" if deny else "always"
    allow = [r for r in comb.prules if r[0] in permissive]
    return _rules_text(allow) if allow else None


def _action_text(r: Rule | Verdict) -> str:
    return f"{r[0]}({tables.errno_name(r[1])})" if r[1] is not None else r[0]


# --- routes to the sandbox agent (issue 17) ---------------------------------------------------------
#
# Kept apart from the filter above.  `agent_routes` takes a finished section (the one enforcement
# produced; in complain mode and while learning, the bundle's own) and hands chosen syscalls to the
# sandbox agent with SCMP_ACT_NOTIFY.  A permissive rule becomes a NOTIFY rule with the same
# conditions, and the agent answers those "continue", so a route never lets through what the section
# did not; a denial route replaces an unconditional SCMP_ACT_ERRNO and the agent answers that errno.
# The agent never reads pointer arguments (docs/security.md, "The agent and TOCTOU").

EXEC_SYSCALLS = ("execve", "execveat")
# runc refuses SCMP_ACT_NOTIFY on write: after loading the filter its init writes the notify fd's
# number to its parent, and only then can the parent hand the fd to the agent.
NOT_ROUTABLE = frozenset({"write"})
# While learning, what is let run as the profile lets it, without the agent: the syscalls every
# process makes (memory, signals, threads, time, exit), the fork family and a shell's plumbing around
# a fork (pipes, dup).  A notified call can fail
# with EINTR when a signal reaches its task while the agent answers (runc 1.1 loads the filter without
# SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV), and a shell forks while its children exit: routing these
# would break workloads and cost a round trip on every call.  The learned profile allows them as the
# base profile does (`sandbox learn` marks them); calls the base profile's rules would deny (clone with
# namespace flags) are still sent to the agent.
LEARN_BASE = NOT_ROUTABLE | frozenset({
    "read", "close", "fstat", "newfstatat", "lseek", "mmap", "mprotect", "munmap", "brk", "madvise",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall", "futex",
    "set_tid_address", "set_robust_list", "rseq", "arch_prctl", "exit", "exit_group", "getpid", "gettid",
    "clock_gettime", "clock_nanosleep", "nanosleep", "sched_yield", "getrandom", "prlimit64", "readv",
    "writev", "pread64", "pwrite64", "clone", "fork", "vfork", "wait4", "pipe", "pipe2", "dup", "dup2", "dup3",
    "fcntl"})
_ALLOW: Rule = ("SCMP_ACT_ALLOW", None, ())
_WHAT = {"complain": "complain mode's record of the syscalls the profile would deny",
         "learn": "learning", "exec": "monitor.exec_trail", "deny": "monitor.denials"}
_KEY = {"complain": "mode", "learn": "seccomp", "exec": "monitor.exec_trail", "deny": "monitor.denials"}


MASK64 = (1 << 64) - 1


def _complement(rules: list[Rule]) -> list[tuple[int, int, int, str]] | None:
    """Single conditions whose union is exactly the calls no permissive rule of `rules` matches, or
    None when that cannot be written so (runc splits two conditions on one argument into an OR).

    Handles what the built-in profiles use: one MASKED_EQ (clone's namespace flags: one condition per
    mask bit) and EQ/NE/LT/LE/GT/GE values of one argument whose gaps touch 0, the top, or are one
    value (socket's address families).
    """
    perm = [r for r in rules if r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS]
    if not perm or any(len(r[2]) != 1 for r in perm) or len({r[2][0][0] for r in perm}) != 1:
        return None
    conds = [r[2][0] for r in perm]
    index = conds[0][0]
    if any(c[3] == "SCMP_CMP_MASKED_EQ" for c in conds):
        if len(conds) != 1:
            return None
        mask, want = conds[0][1] & MASK64, conds[0][2] & MASK64
        if want & ~mask:
            return None  # matches nothing: route the whole syscall
        bits = [1 << i for i in range(64) if mask >> i & 1]
        return [(index, b, b & ~want & MASK64, "SCMP_CMP_MASKED_EQ") for b in bits]
    spans: list[tuple[int, int]] = []
    for _i, v, _v2, op in conds:
        v &= MASK64
        spans += {"SCMP_CMP_EQ": [(v, v)], "SCMP_CMP_NE": [(0, v - 1), (v + 1, MASK64)],
                  "SCMP_CMP_LT": [(0, v - 1)], "SCMP_CMP_LE": [(0, v)], "SCMP_CMP_GT": [(v + 1, MASK64)],
                  "SCMP_CMP_GE": [(v, MASK64)]}.get(op, [])
    spans = sorted((lo, hi) for lo, hi in spans if lo <= hi)
    gaps, at = [], 0
    for lo, hi in spans:
        if lo > at:
            gaps.append((at, lo - 1))
        at = max(at, hi + 1)
    if at <= MASK64:
        gaps.append((at, MASK64))
    out = []
    for lo, hi in gaps:
        if lo == hi:
            out.append((index, lo, 0, "SCMP_CMP_EQ"))
        elif lo == 0:
            out.append((index, hi, 0, "SCMP_CMP_LE"))
        elif hi == MASK64:
            out.append((index, lo, 0, "SCMP_CMP_GE"))
        else:
            return None
    return out


def _split(section_rules: list[Rule], enforced: list[Rule]) -> list[Rule] | None:
    """For a syscall the section allows whole and enforcement only with some arguments: enforcement's
    allowing rules, and NOTIFY for exactly the rest; None when the rest cannot be written exactly."""
    if not _allows_every_call(section_rules) or not _permissive(enforced):
        return None
    rest = _complement(enforced)
    if rest is None:
        return None
    return [r for r in enforced if r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS] + \
        [("SCMP_ACT_NOTIFY", None, (c,)) for c in rest]


def _emit_over(default: Rule, table: Table) -> list[dict[str, Any]]:
    """The section's rules, leaving out a syscall whose only rule is the default (runc would skip it)."""
    return _emit({n: rules for n, rules in table.items() if rules != [default]})


def _unconditional(rules: list[Rule]) -> bool:
    return len(rules) == 1 and not rules[0][2]


def _allows_every_call(rules: list[Rule]) -> bool:
    return any(r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS and not r[2] for r in rules)


def ours(section: Any, host: Any) -> bool:
    """Whether a seccomp section's listener is the sandbox agent (its routes were written by sandbox)."""
    listener = section.get("listenerPath") if isinstance(section, dict) else None
    return isinstance(listener, str) and bool(listener) and listener in (host.agent, host.agent_socket)


def unroute(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as it was before sandbox routed it to the agent: NOTIFY rules allow, no listener.

    A bundle that already carries sandbox's routes (engines reuse config.json) is judged as the bundle
    it was, so applying a profile twice equals applying it once: a syscall that was split (the allowing
    rules of enforcement and NOTIFY for exactly the rest) is whole again.  Never looser than the
    routes: a route continues what it notifies, and denial routes replace rules the profile, applied
    again, denies.
    """
    sec = config["linux"]["seccomp"]
    default, table = bundle_filter(sec)
    for name, rules in table.items():
        notes = [r for r in rules if r[0] == "SCMP_ACT_NOTIFY"]
        if not notes:
            continue
        rest = [r for r in rules if r[0] != "SCMP_ACT_NOTIFY"]
        split = _complement(rest) if rest and all(len(r[2]) == 1 for r in notes) else None
        if split is not None and set(split) == {r[2][0] for r in notes}:
            table[name] = [_ALLOW]
        else:
            table[name] = _dedupe([("SCMP_ACT_ALLOW", None, r[2]) if r[0] == "SCMP_ACT_NOTIFY" else r for r in rules])
    new = {k: v for k, v in sec.items() if k not in ("listenerPath", "listenerMetadata")}
    new["syscalls"] = _emit_over(default, table)
    return {**config, "linux": {**config["linux"], "seccomp": new}}


def _listener_conflict(section: dict[str, Any] | None, kinds: list[str]) -> str | None:
    """Why the section's own SCMP_ACT_NOTIFY rules cannot stay (None: there are none).

    Routes to the sandbox agent were taken out before (`unroute`): what is left sends syscalls to
    another listener, which decides what runs, whatever the profile says.
    """
    if not section:
        return None
    default, table = bundle_filter(section)
    notified = sorted(n for n, rules in table.items() if any(r[0] == "SCMP_ACT_NOTIFY" for r in rules))
    if not notified and default[0] != "SCMP_ACT_NOTIFY":
        return None
    listener = section.get("listenerPath")
    return (f"the bundle's filter hands {', '.join(notified[:3])}{' …' if len(notified) > 3 else ''} to a "
            f"seccomp agent at {listener or '(no listenerPath)'}: runc connects to it as root and gives it the "
            "container's notification descriptor, and it decides what runs; only the sandbox agent may "
            "listen" + ("" if not kinds else f", and {', '.join(_WHAT[k] for k in kinds)} needs it"))


def agent_routes(ctx: Context, config: dict[str, Any], bundle: dict[str, Any] | None, *,
                 learn: bool = False) -> None:
    """Route syscalls of `config` (the result of `apply`) to the sandbox agent, as the profile asks.

    complain mode: what the profile would deny (or allow only with some arguments) and the bundle
    allows, answered "continue" and recorded; `monitor.exec_trail`: execve and execveat, recorded
    and let run; `monitor.denials` (enforce): what the filter denies outright, failed by the agent
    with the filter's errno and recorded; `learn`: everything the bundle allows but LEARN_BASE.
    `bundle` is the bundle's own seccomp section: routed from in complain mode and while learning.
    """
    prof, mon = ctx.profile, ctx.profile.monitor
    complain = prof.mode == "complain" and not learn
    kinds = ["learn"] if learn else ["complain"] if complain else []
    kinds += ["exec"] if mon.exec_trail else []
    kinds += ["deny"] if mon.denials and not (complain or learn) else []
    enforced = ctx.config.get("linux", {}).get("seccomp") if isinstance(ctx.config.get("linux"), dict) else None
    enforced = enforced if isinstance(enforced, dict) else None
    source = bundle if (complain or learn) else enforced
    ptr = pointer("linux", "seccomp", "listenerPath")
    soft = complain or learn  # complain mode refuses nothing
    conflict = _listener_conflict(source, kinds)
    if conflict and not soft:
        ctx.decide("seccomp", ptr, "refuse", (source or {}).get("listenerPath"), None, conflict, "seccomp")
        return
    linux = config.setdefault("linux", {})
    if not kinds or not isinstance(linux, dict):
        return
    what = ", ".join(_WHAT[k] for k in kinds)
    key = _KEY[kinds[0]]
    if conflict:
        ctx.decide("monitor", ptr, "warn", (source or {}).get("listenerPath"), None,
                   f"{what} is not recorded: {conflict}", key)
        return
    if ctx.host.agent is None:
        if soft:
            ctx.decide("monitor", ptr, "warn", None, None, f"{what} is not recorded: {ctx.host.agent_problem}", key)
        else:
            ctx.decide("monitor", ptr, "refuse", None, None, f"{what} needs the sandbox agent: "
                       f"{ctx.host.agent_problem}", key)
        return

    sdefault, stable = bundle_filter(source) if source else (_ALLOW, {})
    edefault, etable = bundle_filter(enforced) if enforced else (_ALLOW, {})
    candidates = tables.syscalls_on(ctx.host.arch) if kinds != ["exec"] else frozenset(EXEC_SYSCALLS)
    skipped: list[str] = []
    routed: dict[str, list[str]] = {}
    errnos: dict[str, int] = {}
    table = dict(stable)
    for name in sorted(candidates):
        rules = stable.get(name) or [sdefault]
        erules = etable.get(name) or [edefault]
        whole = [("SCMP_ACT_NOTIFY", None, r[2]) if r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS else r for r in rules]
        want: list[str] = []
        changed = None
        if _permissive(rules):
            if (learn and not (name in LEARN_BASE and _allows_every_call(erules))) or \
                    (complain and not _allows_every_call(erules)):
                want.append("learn" if learn else "complain")
                # only the calls enforcement would deny, where that can be written; else every call
                changed = (_split(rules, erules) if not learn or name in LEARN_BASE else None) or whole
            if "exec" in kinds and name in EXEC_SYSCALLS:
                want.append("exec")
                changed = whole
        elif "deny" in kinds and _unconditional(rules) and rules[0][0] == "SCMP_ACT_ERRNO":
            errnos[name] = rules[0][1] if rules[0][1] is not None else 1
            changed = [("SCMP_ACT_NOTIFY", None, ())]
        if name in NOT_ROUTABLE and changed is not None:
            skipped.append(name)
            errnos.pop(name, None)
            continue
        if want:
            routed[name] = want
        if changed is not None:
            table[name] = changed
    default = sdefault
    if learn and sdefault[0] in tables.SECCOMP_PERMISSIVE_ACTIONS:
        # unnamed syscalls (unknown to libseccomp) fail while learning as they will under the learned profile
        default = edefault
        for name in LEARN_BASE:
            if name not in routed:
                table[name] = [_ALLOW] if name in NOT_ROUTABLE else (etable.get(name) or [edefault])
    new: dict[str, Any] = {k: v for k, v in (source or {}).items()
                           if k not in ("defaultAction", "defaultErrnoRet", "syscalls", "listenerPath",
                                        "listenerMetadata")}
    new["defaultAction"] = default[0]
    if default[1] is not None:
        new["defaultErrnoRet"] = default[1]
    if "architectures" not in new:
        native = tables.ARCHITECTURES.get(ctx.host.arch)
        if native:
            new["architectures"] = [native[1], *native[2]]
    new["syscalls"] = _emit_over(default, table)
    new["listenerPath"] = ctx.host.agent
    new["listenerMetadata"] = listener_metadata(ctx, kinds, errnos, edefault, etable, routed)
    before = (source or {}).get("listenerPath")
    linux["seccomp"] = new
    ctx.decide("monitor", ptr, "set", before, ctx.host.agent, _route_reason(kinds, routed, errnos), key)
    if skipped:
        ctx.decide("monitor", pointer("linux", "seccomp", "syscalls"), "warn", skipped, None,
                   f"{', '.join(skipped)} cannot be sent to the agent (runc needs write to hand it the "
                   f"descriptor): not recorded by {what}", key)


def listener_metadata(ctx: Context, kinds: list[str], errnos: dict[str, int], edefault: Rule, etable: Table,
                      routed: dict[str, list[str]]) -> str:
    """What the agent is told with the descriptor (runc passes it as `metadata`): compact JSON.

    `would`: the enforced filter's rules for the syscalls complain mode routes, so the agent can
    tell (from the call's integer arguments) whether enforcement would deny the call.
    """
    from ... import _fastjson as json

    # complain mode: every routed syscall's rules; learning: the rules that look at arguments (so the
    # agent records the first call of each distinct value they look at)
    judged = [n for n, why in routed.items() if "complain" in why or
              ("learn" in why and any(r[2] for r in etable.get(n, ())))]
    meta: dict[str, Any] = {
        "v": 1, "profile": ctx.profile.name, "sha256": ctx.profile.sha256,
        "mode": "learn" if "learn" in kinds else ctx.profile.mode, "routes": sorted(kinds),
        "exec": "exec" in kinds, "errno": errnos,
        "caps": sorted(set(ctx.get("process", "capabilities", "bounding") or [])),
    }
    if judged:
        meta["default"] = list(edefault[:2])
        meta["would"] = {n: [[r[0], r[1], [list(c) for c in r[2]]] for r in etable[n]]
                         for n in judged if n in etable}
    return json.dumps(meta, sort_keys=True)


def _route_reason(kinds: list[str], routed: dict[str, list[str]], errnos: dict[str, int]) -> str:
    parts = []
    n = {k: sum(1 for why in routed.values() if k in why) for k in ("complain", "learn", "exec")}
    if n["complain"]:
        parts.append(f"complain mode: the {n['complain']} syscalls the profile would deny (or allow only with some "
                     "arguments) and the bundle allows are sent to the sandbox agent, which lets them run and records "
                     "them")
    if n["learn"]:
        parts.append(f"learning: {n['learn']} syscalls are sent to the agent, which lets them run and counts them")
    if n["exec"]:
        parts.append("monitor.exec_trail: execve and execveat are sent to the agent, recorded and let run")
    if errnos:
        parts.append(f"monitor.denials: the {len(errnos)} syscalls the filter denies outright are failed by the agent "
                     "with the filter's errno and recorded")
    return "; ".join(parts) or f"{', '.join(kinds)}: nothing to route"
