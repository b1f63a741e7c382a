"""Capabilities, no_new_privileges and LSM labels of the container process."""

from __future__ import annotations

from ..decisions import pointer
from ..tables import CAPABILITY_SETS, normalize_capability
from .context import Context


def capabilities(ctx: Context) -> None:
    allowed = set(ctx.profile.capabilities)
    proc = ctx.section("process")
    caps = proc.get("capabilities")
    if not isinstance(caps, dict):
        caps = {}
    new: dict[str, list[str]] = {}
    dropped: dict[str, list[str]] = {}
    for s in CAPABILITY_SETS:
        requested = caps.get(s)
        if not isinstance(requested, list):
            # runc leaves the process with all of runc's own capabilities when a set is absent
            ctx.decide("capabilities", pointer("process", "capabilities", s), "set", None, [],
                       f"the {s} set was absent; runc would keep its own capabilities, so it is set explicitly",
                       "capabilities")
            requested = []
        kept: list[str] = []
        for c in requested:
            norm = normalize_capability(c) if isinstance(c, str) else None
            if norm in allowed:
                if c not in kept:
                    kept.append(c)
            else:
                dropped.setdefault(str(c), []).append(s)
        new[s] = kept
    for c in sorted(dropped):
        ctx.decide("capabilities", pointer("process", "capabilities"), "drop", dropped[c], [],
                   f"{c} is not among the capabilities the profile allows; dropped from {', '.join(dropped[c])}",
                   "capabilities")
    if not dropped:
        ctx.decide("capabilities", pointer("process", "capabilities"), "keep", new["bounding"], new["bounding"],
                   "every requested capability is allowed by the profile", "capabilities")
    for k, val in caps.items():
        if k not in new:
            new[k] = val  # unknown keys kept as data
    proc["capabilities"] = new


def no_new_privileges(ctx: Context) -> None:
    if not ctx.profile.no_new_privileges:
        return
    proc = ctx.section("process")
    before = proc.get("noNewPrivileges")
    if before is True:
        ctx.decide("no_new_privileges", "/process/noNewPrivileges", "keep", True, True,
                   "already set", "no_new_privileges")
        return
    proc["noNewPrivileges"] = True
    ctx.decide("no_new_privileges", "/process/noNewPrivileges", "tighten", before, True,
               "setuid binaries and file capabilities must not raise privileges", "no_new_privileges")


def lsm(ctx: Context) -> None:
    proc = ctx.section("process")
    for key, label, field, supported in (
        ("apparmor", ctx.profile.lsm.apparmor, "apparmorProfile", ctx.host.apparmor),
        ("selinux", ctx.profile.lsm.selinux, "selinuxLabel", ctx.host.selinux),
    ):
        if not label:
            continue
        before = proc.get(field)
        if not supported:
            ctx.decide(key, pointer("process", field), "warn", before, before,
                       f"{key} label {label!r} skipped: {key} is not enabled on this host", key)
        elif before == label:
            ctx.decide(key, pointer("process", field), "keep", before, label, "already set", key)
        else:
            proc[field] = label
            ctx.decide(key, pointer("process", field), "set", before, label,
                       f"confine the process with the profile's {key} label", key)
