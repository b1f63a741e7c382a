"""What a new profile loosens and tightens compared with an old one (for code review in CI).

Each field's rule (which way a change goes) is declared with the field in `sandbox.core.fields`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import tables
from .profile import Profile


@dataclass(frozen=True)
class Change:
    direction: str  # loosen | tighten
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.direction:<7} {self.field}: {self.message}"


def allowed_syscalls(p: Profile, arch: str = "x86_64") -> tuple[str, set[str]]:
    """(default action, syscalls allowed under any condition) for the profile's own capabilities."""
    from .hostfacts import HostFacts
    from .transform.context import Context
    from .transform.seccomp import profile_filter

    res = profile_filter(Context(p, {}, HostFacts(arch=arch)), set(p.capabilities))
    if res is None:
        return "SCMP_ACT_ALLOW", set()
    default, table = res
    return default[0], {n for n, rules in table.items()
                        if any(r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS for r in rules)}


def diff(old: Profile, new: Profile) -> list[Change]:
    """Every change in effect, judged field by field as `sandbox.core.fields` declares."""
    from .fields import diff_findings

    return [Change(direction, field, message) for direction, field, message in diff_findings(old, new)]
