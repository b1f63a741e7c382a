"""Cgroup limits: a larger request is clamped to the profile's maximum, a missing one gets the default."""

from __future__ import annotations

from ..decisions import pointer
from ..profile import Limit
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


DEFAULT_CPU_PERIOD = 100_000  # microseconds, as the kernel and runc default


def _effective(requested: int | None, lim: Limit) -> tuple[int | None, str]:
    """(value, why) for a request where None or <= 0 means unlimited."""
    unlimited = requested is None or requested <= 0
    if unlimited:
        if lim.default is not None:
            return lim.default, "no limit was requested; the profile's default applies"
        if lim.max is not None:
            return lim.max, "no limit was requested; the profile's maximum applies"
        return requested, ""
    if lim.max is not None and requested > lim.max:  # type: ignore[operator]
        return lim.max, f"the request is above the profile's maximum of {lim.max}"
    return requested, ""


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _node(parent: dict[str, Any], key: str) -> dict[str, Any]:
    if not isinstance(parent.get(key), dict):
        parent[key] = {}
    node: dict[str, Any] = parent[key]
    return node


def resources(ctx: Context) -> None:
    pol = ctx.profile.resources
    if pol.memory == Limit() and pol.pids == Limit() and pol.cpu == Limit():
        return
    res = ctx.section("linux", "resources")

    for key, lim in (("memory", pol.memory), ("pids", pol.pids)):
        if lim == Limit():
            continue
        node = _node(res, key)
        before = _int(node.get("limit"))
        value, why = _effective(before, lim)
        _apply(ctx, node, "limit", before, value, why, pointer("linux", "resources", key, "limit"),
               f"resources.{key}")
        if key == "memory":
            _swap(ctx, node, value)

    if pol.cpu != Limit():
        cpu = _node(res, "cpu")
        period = _int(cpu.get("period")) or DEFAULT_CPU_PERIOD
        quota = _int(cpu.get("quota"))
        requested_milli = quota * 1000 // period if quota is not None and quota > 0 else None
        value, why = _effective(requested_milli, pol.cpu)
        if why and value is not None:
            new_quota = value * period // 1000
            cpu["quota"] = new_quota
            cpu["period"] = period
            ctx.decide("resources", pointer("linux", "resources", "cpu", "quota"),
                       "set" if quota is None else "tighten", quota, new_quota,
                       f"{why} ({value / 1000:g} CPUs)", "resources.cpu")
        else:
            ctx.decide("resources", pointer("linux", "resources", "cpu", "quota"), "keep", quota, quota,
                       "within the profile's maximum", "resources.cpu")


def _swap(ctx: Context, mem: dict[str, Any], limit: int | None) -> None:
    """Bound memory+swap by the memory limit: when it is absent runc leaves it unlimited, and a container
    could then use the host's swap far beyond its limit (runc update is clamped the same way)."""
    bound = ctx.profile.resources.memory.max if ctx.profile.resources.memory.max is not None else limit
    swap = _int(mem.get("swap"))
    if limit is None or limit <= 0 or bound is None:
        return
    if not (swap is None or swap <= 0 or swap > bound or swap < limit):
        return
    ptr = pointer("linux", "resources", "memory", "swap")
    if not ctx.host.swap_limit:
        ctx.decide("resources", ptr, "warn", swap, swap, "this host has no swap accounting in its memory "
                   "cgroup: swap use cannot be bounded", "resources.memory")
        return
    mem["swap"] = limit
    ctx.decide("resources", ptr, "set" if swap is None else "tighten", swap, limit,
               "memory+swap may not exceed the memory limit", "resources.memory")


def _apply(ctx: Context, node: dict[str, Any], key: str, before: int | None, value: int | None, why: str,
           ptr: str, rule: str) -> None:
    if why and value is not None:
        node[key] = value
        ctx.decide("resources", ptr, "set" if before is None else "tighten", before, value, why, rule)
    else:
        ctx.decide("resources", ptr, "keep", before, before, "within the profile's maximum", rule)
