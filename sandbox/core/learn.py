"""The profile `sandbox learn` writes, from what the agent saw a workload do: pure, text out.

The learned profile `extends:` the base profile (every other control is the base's) and replaces
its seccomp filter by an allow-list (`seccomp.base: empty`) of what was observed, one syscall per
line with its count as a comment:

- a syscall the base allows only with some arguments (clone's namespace flags, socket families)
  keeps the base's rules when every observed call met them (`seccomp.rules`), else is allowed;
- a syscall the base does not allow is allowed too (the workload used it), marked for review;
- the syscalls let run without the agent while learning (`LEARN_BASE`: memory, signals, threads,
  exit, the fork family, write) are allowed as the base allows them, marked "base";
- `seccomp.deny: []`, so the base's deny list cannot take back what was observed;
- `monitor.denials: true`: under the learned profile a syscall outside the list is failed by the
  agent and recorded, so what learning missed shows in the audit log.
"""

from __future__ import annotations

from .seccomp_eval import allows, verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from .seccomp_eval import Rule


def call_args(recorded: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """A record's `args` list as {index: value}, the unread (pointer) ones left out."""
    return {i: a["value"] for i, a in enumerate(recorded) if isinstance(a.get("value"), int)}


def _quote(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def _rule_yaml(name: str, rule: Rule) -> str:
    parts = [f"names: [{name}]", f"action: {rule[0]}"]
    if rule[1] is not None:
        parts.append(f"errnoRet: {rule[1]}")
    if rule[2]:
        conds = ", ".join(f"{{index: {i}, value: {v}, valueTwo: {v2}, op: {op}}}" for i, v, v2, op in rule[2])
        parts.append(f"args: [{conds}]")
    return "{" + ", ".join(parts) + "}"


def learned_profile(*, name: str, base_ref: str, base_name: str, totals: Mapping[str, int],
                    calls: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], default: Rule,
                    table: Mapping[str, list[Rule]], base_names: Iterable[str], command: Sequence[str],
                    seconds: float, workload_exit: int | None, when: str) -> tuple[str, dict[str, Any]]:
    """The learned profile's YAML text, and a summary (`allowed`, `not_in_base`, `ruled`).

    `totals`: calls per syscall the agent counted; `calls`: the recorded (first) calls with their
    arguments; `default`/`table`: the base profile's filter as enforced on this workload's bundle;
    `base_names`: what ran without the agent.
    """
    by_name: dict[str, list[dict[int, int]]] = {}
    for n, args in calls:
        by_name.setdefault(n, []).append(call_args(args))
    allow: list[tuple[str, str]] = []
    rules: list[tuple[str, Rule, str]] = []
    not_in_base: list[str] = []
    base_set = set(base_names)
    for n in sorted(set(totals) | base_set):
        if n.startswith("syscall#"):
            continue  # a number libseccomp has no name for cannot be allowed by name
        own = table.get(n, [])
        conditional = any(r[2] for r in own) and not any(
            r[0] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") and not r[2] for r in own)
        count = totals.get(n, 0)
        seen = by_name.get(n, [])
        if n not in totals:  # let run without the agent while learning
            v = verdict(default, own, {})
            if conditional:
                rules += [(n, r, "base: as " + base_name + " allows it") for r in own if r[0] == "SCMP_ACT_ALLOW"]
            elif allows(v):
                allow.append((n, "base: let run without the agent while learning"))
            continue
        what = f"{count} call{'s' if count != 1 else ''}"
        if conditional and seen and all(allows(verdict(default, own, a)) for a in seen):
            rules += [(n, r, f"{what}, all within {base_name}'s rules") for r in own if r[0] == "SCMP_ACT_ALLOW"]
            continue
        in_base = any(allows(verdict(default, own, a)) for a in seen) if seen else allows(verdict(default, own, {}))
        if not in_base or conditional:
            not_in_base.append(n)
            what += f"; not allowed by {base_name}" + (" with these arguments" if conditional else "") + ": review"
        allow.append((n, what))
    width = max([len(n) for n, _ in allow] + [8]) + 2
    lines = [
        f"# Learned by `sandbox learn` on {when} from {len(totals)} syscalls observed in "
        f"{sum(totals.values())} calls",
        f"# of: {' '.join(command)}",
        f"# (ran {seconds:.1f} s" + (f", exit status {workload_exit})" if workload_exit is not None else ")"),
        f"# Everything but seccomp is {base_name}'s. Review the syscalls marked `review` before enforcing.",
        "apiVersion: sandbox/v1",
        "kind: Profile",
        f"name: {name}",
        f"extends: {_quote(base_ref) if any(c in base_ref for c in ':#{}[],&*!|>%@`') else base_ref}",
        f"description: {_quote('learned from ' + ' '.join(command)[:200])}",
        "monitor:",
        "  denials: true   # a syscall outside the list fails and is recorded (needs `sandbox agent`)",
        "seccomp:",
        "  base: empty     # only what is listed below is allowed",
        "  deny: []",
        "  allow:" + ("" if allow else " []"),
    ]
    lines += [f"    - {n:<{width}}# {why}" for n, why in allow]
    lines.append("  rules:" + ("" if rules else " []"))
    lines += [f"    - {_rule_yaml(n, r)}  # {why}" for n, r, why in rules]
    summary = {"allowed": len(allow) + len({n for n, _r, _w in rules}), "not_in_base": not_in_base,
               "ruled": sorted({n for n, _r, _w in rules})}
    return "\n".join(lines) + "\n", summary
