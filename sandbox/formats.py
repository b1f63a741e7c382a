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
        reasons = "; ".join(d.reason for d in outcome.refusals)
        mode = " (complain mode: would be refused)" if profile.mode == "complain" else ""
        return f"verdict: refused by sandbox profile {profile.name}{mode}: {reasons}"
    mode = " (complain mode: nothing changed)" if profile.mode == "complain" else ""
    return f"verdict: allowed under profile {profile.name}{mode} ({summary})"


def refusal_message(profile: Profile, outcome: Outcome) -> str:
    return f"refused by sandbox profile {profile.name}: " + "; ".join(d.reason for d in outcome.refusals)


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
