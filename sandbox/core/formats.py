"""Render decisions and verdicts for people (text) and machines (json)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .decisions import Decision, Outcome
from .profile import Profile


def _short(v: Any, width: int = 40) -> str:
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
    return s if len(s) <= width else s[: width - 1] + "…"


def decisions_text(decisions: list[Decision]) -> str:
    lines = [f"{'ACTION':<8} {'CONTROL':<17} {'FIELD':<34} REASON"]
    for d in decisions:
        action = d.action if d.applied else f"({d.action})"
        lines.append(f"{action:<8} {d.control:<17} {_short(d.pointer, 34):<34} {d.reason}")
    return "\n".join(lines)


def verdict_line(profile: Profile, outcome: Outcome) -> str:
    counts = Counter(d.action for d in outcome.decisions)
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    if outcome.refusals:
        reasons = refusal_reasons(outcome, see_also="")  # the table above has every decision
        mode = " (complain mode: would be refused)" if profile.mode == "complain" else ""
        return f"verdict: refused by sandbox profile {profile.name}{mode}: {reasons}"
    mode = " (complain mode: nothing changed)" if profile.mode == "complain" else ""
    return f"verdict: allowed under profile {profile.name}{mode} ({summary})"


def refusal_message(profile: Profile, outcome: Outcome) -> str:
    """The one line an engine shows: what went wrong comes first (engines cut long errors)."""
    return f"refused by sandbox profile {profile.name}: {refusal_reasons(outcome)}"


# Refusals of one rule are told as one clause once there are this many; every decision stays in
# the audit log and in `sandbox check`.
GROUP_FROM = 3
GROUP_ITEMS = 3
MAX_REASONS_CHARS = 1000
# rule key (after the profile in Decision.rule) -> what its refusals are, and what names each one
_GROUPED: dict[str, tuple[str, str]] = {
    "devices.allow": ("host devices outside the profile's device allow-list", "before"),
    "sysctls.allow": ("sysctls outside the profile's sysctl allow-list", "pointer"),
    "filesystem.forbidden_host_paths": ("bind mounts of host paths the profile forbids", "source"),
    "hooks.allow": ("hooks that would run on the host as root and are not allow-listed", "before"),
    "namespaces.required": ("joins of namespaces that are the host's own or cannot be checked", "before"),
}


def _rule_key(d: Decision) -> str:
    return d.rule.rsplit(": ", 1)[-1]


def _item(d: Decision, how: str) -> str:
    if how == "pointer":
        v: Any = d.pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
    elif how == "source" and isinstance(d.before, dict):
        v = d.before.get("source")
    else:
        v = d.before
    return _short(v if v is not None else d.pointer)


def _group_clause(group: list[Decision]) -> str:
    n, key = len(group), _rule_key(group[0])
    what, how = _GROUPED.get(key, (f"refusals by {key or group[0].control}", "pointer"))
    items = [_item(d, how) for d in group[:GROUP_ITEMS]] + (["…"] if n > GROUP_ITEMS else [])
    return f"{n} {what} ({', '.join(items)})"


def _asks_for_every_device(outcome: Outcome) -> bool:
    # `--privileged` (Docker, podman, the CRI) is the cgroup rule "a *:* rwm": every device
    return any(d.control == "devices" and d.pointer == "/linux/resources/devices" and d.before == "a *:* rwm"
               for d in outcome.decisions)


def refusal_reasons(outcome: Outcome, *, see_also: str = "sandbox check") -> str:
    """The refusals as clauses: many of one rule become one clause with a count, the biggest first.

    `see_also` is named at the end when clauses were collapsed or left out.
    """
    groups: dict[tuple[str, str], list[Decision]] = {}
    for d in outcome.refusals:
        groups.setdefault((d.control, d.rule), []).append(d)
    clauses: list[tuple[int, str]] = []
    for group in groups.values():
        if len(group) >= GROUP_FROM:
            clauses.append((len(group), _group_clause(group)))
        else:
            clauses.extend((1, d.reason) for d in group)
    clauses.sort(key=lambda c: -c[0])  # stable: single reasons keep their order
    collapsed = any(n > 1 for n, _ in clauses)
    out: list[str] = []
    used = 0
    for i, (_, text) in enumerate(clauses):
        if out and used + len(text) > MAX_REASONS_CHARS:
            out.append(f"and {len(clauses) - i} more")
            collapsed = True
            break
        out.append(text)
        used += len(text) + 2
    text = "; ".join(out)
    if _asks_for_every_device(outcome):
        text = f"privileged container: {text}"
    return text + (f"; see {see_also}" if collapsed and see_also else "")


def outcome_json(profile: Profile, outcome: Outcome) -> dict[str, Any]:
    return {
        "profile": profile.name,
        "profile_source": profile.source,
        "profile_sha256": profile.sha256,
        "mode": profile.mode,
        "verdict": "refused" if outcome.refusals else "allowed",
        "decisions": [d.to_dict() for d in outcome.decisions],
    }


def network_rules_text(outcome: Outcome) -> str:
    """The nftables rules the container would get (nft syntax, with their SHA-256), or ""."""
    for d in outcome.decisions:
        if d.control == "network" and isinstance(d.after, dict) and "ruleset" in d.after:
            return f"network rules (sha256 {d.after['sha256']}):\n{d.after['ruleset']}"
    return ""
