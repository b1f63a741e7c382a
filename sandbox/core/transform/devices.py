"""Devices: device nodes outside the allow-list are refused; cgroup device access is kept to the standard set.

A `linux.devices` entry asks runc to make a device node (type, major:minor) at a path in the
container; the node need not exist on the host, so reasons name the node, not a "host device".
"""

from __future__ import annotations

from .. import tables
from ..decisions import pointer
from .context import Context
from .hostpath import gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_DENY_ALL = {"allow": False, "access": "rwm"}


def _standard(rule: dict[str, Any], allowed_numbers: set[tuple[Any, Any, Any]]) -> bool:
    kind, major, minor = rule.get("type", "a"), rule.get("major"), rule.get("minor")
    if kind == "c" and major == tables.PTS_MAJOR:
        return True
    if (kind, major, minor) in allowed_numbers:
        return True
    # Docker's "c *:* m" / "b *:* m": creating nodes only, and mknod itself is capability-gated
    return rule.get("access") == "m" and kind in ("b", "c") and major is None and minor is None


def devices(ctx: Context) -> None:
    linux = ctx.section("linux")
    numbers: set[tuple[Any, Any, Any]] = set(tables.STANDARD_DEVICES.values())
    for i, dev in enumerate(linux.get("devices") or []):
        if not isinstance(dev, dict):
            continue
        path = dev.get("path")
        v = gate(ctx, "device", path if isinstance(path, str) else "", dev)
        if v.ok:
            # the numbers were checked against the host's node (or the standard table): their cgroup rule may stay
            numbers.add((dev.get("type"), dev.get("major"), dev.get("minor")))
            ctx.decide("devices", pointer("linux", "devices", i), "keep", path, path, v.reason, v.key)
        else:
            ctx.decide("devices", pointer("linux", "devices", i), "refuse", path, None, v.reason, v.key)
    res = linux.get("resources")
    rules = res.get("devices") if isinstance(res, dict) else None
    if not isinstance(rules, list):
        rules = []
    kept: list[Any] = []
    for r in rules:
        if not isinstance(r, dict):
            continue
        if r.get("allow") and not _standard(r, numbers):
            desc = f"{r.get('type', 'a')} {r.get('major', '*')}:{r.get('minor', '*')} {r.get('access', 'rwm')}"
            ctx.decide("devices", pointer("linux", "resources", "devices"), "drop", desc, None,
                       f"cgroup access to devices {desc} is not allowed by the profile", "devices.allow")
            continue
        kept.append(r)
    if not kept or kept[0] != _DENY_ALL:
        if not any(r == _DENY_ALL for r in kept[:1]):
            kept.insert(0, dict(_DENY_ALL))
            ctx.decide("devices", pointer("linux", "resources", "devices", 0), "tighten", None, _DENY_ALL,
                       "device access starts from deny-all", "devices.allow")
    ctx.section("linux", "resources")["devices"] = kept
