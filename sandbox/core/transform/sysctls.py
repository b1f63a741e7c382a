"""Sysctls: names outside the allow-list are refused; ping_group_range is fitted to a user namespace."""

from __future__ import annotations

from ..decisions import pointer
from .context import Context
from .user import _mappings, has_userns

PING_GROUP_RANGE = "net.ipv4.ping_group_range"


def sysctls(ctx: Context) -> None:
    linux = ctx.section("linux")
    values = linux.get("sysctl")
    if not isinstance(values, dict) or not values:
        return
    allow = ctx.profile.sysctls.allow
    for name in sorted(values):
        ptr = pointer("linux", "sysctl", name)
        if not any(glob_match(name, pat) for pat in allow):
            ctx.decide("sysctls", ptr, "refuse", values[name], None,
                       f"sysctl {name} is not in the profile's sysctl allow-list", "sysctls.allow")
        else:
            ctx.decide("sysctls", ptr, "keep", values[name], values[name], "allowed by the profile",
                       "sysctls.allow")
    if PING_GROUP_RANGE in values and has_userns(ctx.config):
        _fit_ping_range(ctx, values)


def _fit_ping_range(ctx: Context, values: dict[str, object]) -> None:
    """Inside a user namespace the kernel rejects (EINVAL) a range naming unmapped gids.

    Docker sets "0 2147483647" by default; it is narrowed to the mapped gids.
    """
    maps = _mappings(ctx.get("linux", "gidMappings")) or []
    raw = values[PING_GROUP_RANGE]
    try:
        lo, hi = (int(x) for x in str(raw).split())
    except ValueError:
        return
    if not maps:
        return
    first = min(m.container_id for m in maps)
    last = max(m.container_id + m.size - 1 for m in maps)
    new_lo, new_hi = max(lo, first), min(hi, last)
    if (new_lo, new_hi) == (lo, hi):
        return
    new = f"{new_lo} {new_hi}" if new_lo <= new_hi else "1 0"  # "1 0" means no group may ping
    values[PING_GROUP_RANGE] = new
    ctx.decide("sysctls", pointer("linux", "sysctl", PING_GROUP_RANGE), "tighten", raw, new,
               "inside the user namespace only the mapped gids exist; the kernel rejects a wider range",
               "user.user_namespace")


def glob_match(name: str, pattern: str) -> bool:
    """Shell-style `*` and `?` matching (fnmatch without importing `re` on the hot path)."""
    if "*" not in pattern and "?" not in pattern:
        return name == pattern
    if "[" in pattern:
        import fnmatch

        return fnmatch.fnmatchcase(name, pattern)
    ni = pi = 0
    star, mark = -1, 0
    while ni < len(name):
        if pi < len(pattern) and (pattern[pi] == "?" or pattern[pi] == name[ni]):
            ni, pi = ni + 1, pi + 1
        elif pi < len(pattern) and pattern[pi] == "*":
            star, mark, pi = pi, ni, pi + 1
        elif star >= 0:
            pi, mark = star + 1, mark + 1
            ni = mark
        else:
            return False
    while pi < len(pattern) and pattern[pi] == "*":
        pi += 1
    return pi == len(pattern)
