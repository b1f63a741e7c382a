"""`sandbox profile suggest`: the smallest change to a profile that would have allowed what was recorded.

Input: the calls the sandbox agent recorded for containers under the profile (complain mode's
"enforcement would deny", and denials), each with its syscall, integer arguments and the
container's capabilities.  For each syscall, the smallest change that allows every recorded
call, tried in this order:

1. take it off `seccomp.deny`;
2. where the profile's filter allows it only with some argument values (its rules look at
   arguments), allow exactly the recorded values: a `seccomp.rules` entry per distinct value,
   beside the rules the profile already has for it (`rules` replace the base's entries for the
   syscalls they name, so those are written too);
3. add it to `seccomp.allow`.

Every recorded call is then checked against the changed profile (`transform.seccomp.profile_filter`
and `seccomp_eval`, as enforcement would judge it).  The text is edited where the profile says it
(comments and layout kept): a list the profile file does not set, or an edit the file's layout does
not allow, is written in full, as the list the profile inherits with the change.  Pure: data and
text in, data and text out.
"""

from __future__ import annotations

from .._record import record, replace
from .seccomp_eval import allows, verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from .profile import Profile
    from .seccomp_eval import Rule


@record
class Call:
    """One recorded call: what the agent saw, and the capabilities its container kept."""

    syscall: str
    args: tuple[tuple[int, int], ...]  # (index, value) of the integer arguments
    caps: frozenset[str]
    container: str
    arch: str = "x86_64"


@record
class Suggestion:
    remove_deny: tuple[str, ...] = ()
    add_allow: tuple[tuple[str, str], ...] = ()  # (syscall, why)
    add_rules: tuple[tuple[dict[str, Any], str], ...] = ()  # (OCI rule, why)
    unchanged: tuple[str, ...] = ()  # recorded, but the profile allows them now

    def __bool__(self) -> bool:
        return bool(self.remove_deny or self.add_allow or self.add_rules)


def calls_from_records(records: Iterable[Mapping[str, Any]], profile_name: str,
                       containers: Sequence[str] = ()) -> list[Call]:
    """The agent's first-call records (complain mode and denials) of containers under `profile_name`."""
    caps: dict[str, frozenset[str]] = {}
    out: list[Call] = []
    for rec in records:
        cid = str(rec.get("container_id") or "")
        if rec.get("profile") != profile_name or (containers and cid not in containers):
            continue
        d = rec.get("data") or {}
        if rec.get("event") == "monitor" and d.get("action") == "attached":
            caps[cid] = frozenset(str(c) for c in d.get("caps") or ())
        elif rec.get("event") == "syscall" and d.get("first") and d.get("would") and isinstance(d.get("syscall"), str):
            args = tuple((i, a["value"]) for i, a in enumerate(d.get("args") or ())
                         if isinstance(a, dict) and isinstance(a.get("value"), int))
            out.append(Call(d["syscall"], args, caps.get(cid, frozenset()), cid, str(d.get("arch") or "x86_64")))
    return out


def judged(profile: Profile, call: Call) -> tuple[Rule, list[Rule]]:
    """The profile's filter for this call's container: (default rule, the syscall's rules)."""
    from .hostfacts import HostFacts
    from .transform.context import Context
    from .transform.seccomp import profile_filter

    res = profile_filter(Context(profile, {}, HostFacts(arch=call.arch)), set(call.caps))
    if res is None:
        return ("SCMP_ACT_ALLOW", None, ()), []
    default, table = res
    return default, table.get(call.syscall, [])


def allowed(profile: Profile, call: Call) -> bool:
    default, rules = judged(profile, call)
    return allows(verdict(default, rules, dict(call.args)))


def _why(calls: list[Call]) -> str:
    n = len({c.container for c in calls})
    return f"recorded in {n} container{'s' if n != 1 else ''}"


def suggest(profile: Profile, calls: Sequence[Call]) -> tuple[Suggestion, Profile]:
    """The smallest change that allows every call, and the profile with it."""
    by: dict[str, list[Call]] = {}
    for c in calls:
        by.setdefault(c.syscall, []).append(c)
    new = profile
    remove: list[str] = []
    add_allow: list[tuple[str, str]] = []
    add_rules: list[tuple[dict[str, Any], str]] = []
    unchanged: list[str] = []
    for name in sorted(by):
        todo = [c for c in by[name] if not allowed(new, c)]
        if not todo:
            unchanged.append(name)
            continue
        if name in new.seccomp.deny:
            new = replace(new, seccomp=replace(new.seccomp, deny=tuple(n for n in new.seccomp.deny if n != name)))
            remove.append(name)
            todo = [c for c in todo if not allowed(new, c)]
            if not todo:
                continue
        shared = any(name in (r.get("names") or ()) and len(r.get("names") or ()) > 1 for r in new.seccomp.rules)
        rules = None if shared else _value_rules(new, name, todo)
        if rules is not None:
            own = [r for r in new.seccomp.rules if name in (r.get("names") or ())]
            kept = own or _base_rules(new, todo[0])
            extra = [r for r in rules if r not in kept]
            trial = replace(new, seccomp=replace(new.seccomp, rules=(
                *[r for r in new.seccomp.rules if name not in (r.get("names") or ())], *kept, *extra)))
            if all(allowed(trial, c) for c in todo):
                new = trial
                add_rules += [(r, _why(todo)) for r in ([*kept, *extra] if not own else extra)]
                continue
        new = replace(new, seccomp=replace(new.seccomp, allow=(*new.seccomp.allow, name)))
        add_allow.append((name, _why(todo)))
    left = [c for c in calls if not allowed(new, c)]
    if left:  # cannot happen: allow is unconditional, and deny (taken off) is applied after it
        raise ValueError(f"the suggested profile still denies {left[0].syscall}")
    return Suggestion(tuple(remove), tuple(add_allow), tuple(add_rules), tuple(unchanged)), new


def _value_rules(profile: Profile, name: str, calls: list[Call]) -> list[dict[str, Any]] | None:
    """EQ rules for the recorded values of the arguments the profile's rules look at, or None."""
    default, rules = judged(profile, calls[0])
    indexes = sorted({c[0] for r in rules for c in r[2]})
    if not indexes:
        return None
    out: list[dict[str, Any]] = []
    for c in calls:
        args = dict(c.args)
        if any(i not in args for i in indexes):
            return None
        rule = {"names": [name], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": i, "value": args[i], "op": "SCMP_CMP_EQ"} for i in indexes]}
        if rule not in out:
            out.append(rule)
    return out


def _base_rules(profile: Profile, call: Call) -> list[dict[str, Any]]:
    """The allowing rules the profile's filter has for the call's syscall, as OCI rules."""
    _default, rules = judged(profile, call)
    return [{"names": [call.syscall], "action": r[0],
             **({"args": [{"index": i, "value": v, "valueTwo": v2, "op": op} for i, v, v2, op in r[2]]}
                if r[2] else {})} for r in rules if r[0] == "SCMP_ACT_ALLOW"]


# --- the text ----------------------------------------------------------------------------------------

def _flow(rule: Mapping[str, Any]) -> str:
    import json

    parts = []
    for k, v in rule.items():
        if k == "names":
            parts.append(f"names: [{', '.join(v)}]")
        elif k == "args":
            conds = ", ".join("{" + ", ".join(f"{ck}: {cv}" for ck, cv in a.items()) + "}" for a in v)
            parts.append(f"args: [{conds}]")
        else:
            parts.append(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}")
    return "{" + ", ".join(parts) + "}"


def edit_profile(text: str, data: Mapping[str, Any], lines_of: Mapping[tuple[Any, ...], int],
                 resolved: Profile, s: Suggestion) -> str:
    """`text` (the profile file, parsed as `data`; `lines_of` gives each key's and item's 1-based
    line) with the suggestion applied.  `resolved` is the profile as loaded (for inherited lists)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    sec = data.get("seccomp") if isinstance(data.get("seccomp"), dict) else None
    inserts: list[tuple[int, list[str]]] = []  # (before line index, lines)
    deletes: set[int] = set()
    replaces: dict[int, str] = {}
    whole: dict[str, list[str]] = {}  # lists written in full under seccomp:

    def item_lines(key: str) -> list[int] | None:
        items = sec.get(key) if sec else None
        if not isinstance(items, list):
            return None
        return [lines_of[("seccomp", key, i)] - 1 for i in range(len(items))]

    for key, add, drop in (("deny", [], list(s.remove_deny)), ("allow", list(s.add_allow), []),
                           ("rules", list(s.add_rules), [])):
        if not add and not drop:
            continue
        current = list(getattr(resolved.seccomp, key))
        if key == "deny":
            current = [n for n in current if n not in drop]
        new_items = [(_flow(x) if isinstance(x, dict) else x, why) for x, why in add]
        at = item_lines(key)
        key_line = lines_of.get(("seccomp", key), 0) - 1
        block = at is not None and all(i > key_line for i in at) and len(set(at)) == len(at)
        if at is not None and block and (not drop or all(
                lines[i].strip().startswith("- ") and lines[i].strip()[2:].split("#")[0].strip().strip("'\"")
                in (sec or {}).get(key, []) for i in at)):
            indent = (" " * (len(lines[at[0]]) - len(lines[at[0]].lstrip()))) if at else \
                " " * (len(lines[key_line]) - len(lines[key_line].lstrip()) + 2)
            for i, item in zip(at, (sec or {}).get(key, [])):
                if item in drop:
                    deletes.add(i)
            if new_items:
                if not at and lines[key_line].rstrip().endswith("[]"):
                    replaces[key_line] = lines[key_line].replace("[]", "", 1).rstrip()
                after = (max(at) if at else key_line) + 1
                while after < len(lines) and at and lines[after].strip() and \
                        len(lines[after]) - len(lines[after].lstrip()) > len(indent):
                    after += 1  # the last item's continuation lines
                inserts.append((after, [f"{indent}- {v}  # {why}" for v, why in new_items]))
            continue
        # not set in this file, or set in a layout edited as a whole: write the list in full
        full = [(_flow(x) if isinstance(x, dict) else x, "") for x in current] + new_items
        whole[key] = [f"    - {v}" + (f"  # {why}" if why else "") for v, why in full] or ["    []"]
        if at is not None:  # remove the old one
            end = _end_of(lines, key_line)
            deletes.update(range(key_line, end))
    if whole:
        body = []
        for key, items in whole.items():
            head = f"  {key}:" + (" []" if items == ["    []"] else "")
            note = "  # the whole list: it replaces what the profile inherits" if key in ("deny", "allow", "rules") \
                and not (sec and key in sec) else ""
            body.append(head + note)
            body += [] if items == ["    []"] else items
        if sec is not None:
            inserts.append((lines_of[("seccomp",)], body))
        else:
            inserts.append((len(lines), ["seccomp:", *body]))
    out: list[str] = []
    pending = sorted(inserts, key=lambda x: x[0])
    for i, line in enumerate(lines):
        while pending and pending[0][0] == i:
            out += pending.pop(0)[1]
        if i in deletes:
            continue
        out.append(replaces.get(i, line))
    for _, extra in pending:
        out += extra
    return "\n".join(out) + "\n"


def _end_of(lines: list[str], key_line: int) -> int:
    """The line after a key's value (its indented lines)."""
    indent = len(lines[key_line]) - len(lines[key_line].lstrip())
    i = key_line + 1
    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent or
                              lines[i].lstrip().startswith("- ") and len(lines[i]) - len(lines[i].lstrip()) >= indent):
        i += 1
    return i


def child_profile(base_ref: str, name: str, resolved: Profile, s: Suggestion) -> str:
    """A new profile that extends `base_ref` with the suggestion (for a profile whose file is not the operator's)."""
    text = f"apiVersion: sandbox/v1\nkind: Profile\nname: {name}\nextends: {base_ref}\n"
    return edit_profile(text, {"apiVersion": "", "kind": "", "name": "", "extends": ""}, {}, resolved, s)
