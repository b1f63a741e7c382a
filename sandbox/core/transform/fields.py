"""The config.json fields the other steps do not own: process limits and paths, the container's
cgroup, and the config-field table itself (fields outside it, and fields that reach the host).

Fields outside sandbox's table of what runc 1.1 acts on (ocishape.FIELDS) and `policy` fields are
refused or warned about as the profile's `unknown_config_fields` says, so a newer runc or
runtime-spec cannot open a hole by adding a field sandbox never looked at.
"""

from __future__ import annotations

from .. import ocishape, tables
from ..decisions import pointer
from .context import Context, walk
from .hostpath import gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CRIU_CONFIG = "org.criu.config"
SYSTEMD_PROPERTY = "org.systemd.property."


def process_fields(ctx: Context) -> None:
    proc = ctx.config.get("process")
    if not isinstance(proc, dict):
        return
    pol = ctx.profile.process
    adj = proc.get("oomScoreAdj")
    floor = pol.oom_score_adj_min
    if floor is not None and isinstance(adj, int) and not isinstance(adj, bool) and adj < floor:
        proc["oomScoreAdj"] = floor
        ctx.decide("process", "/process/oomScoreAdj", "tighten", adj, floor,
                   f"an oom_score_adj of {adj} would make the kernel kill host processes before this container's",
                   "process.oom_score_adj_min")
    _rlimits(ctx, proc)
    if ctx.profile.runc_mitigations:
        _runc_mitigations(ctx, proc)
    _lsm_off(ctx, proc)


def _rlimits(ctx: Context, proc: dict[str, Any]) -> None:
    bounds = dict(ctx.profile.process.rlimits)
    rl = proc.get("rlimits")
    for i, r in enumerate(rl if isinstance(rl, list) else []):
        if not isinstance(r, dict) or r.get("type") not in bounds:
            continue
        top = bounds[r["type"]]
        for part in ("soft", "hard"):
            v = r.get(part)
            if isinstance(v, int) and not isinstance(v, bool) and v > top:
                r[part] = top
                ctx.decide("process", pointer("process", "rlimits", i, part), "tighten", v, top,
                           f"{r['type']} above {top} would let the process outrank host processes",
                           "process.rlimits")


def proc_fd_path(path: Any) -> bool:
    """A path that goes through a file descriptor, root or cwd of some process via /proc (or /dev/fd).

    Checked at every step of the walk, as the kernel resolves it: `/proc/self/fd/7/../..` leaves
    through the descriptor's target before the `..` apply, so normalising first would hide it."""
    if not isinstance(path, str) or not path.startswith("/"):
        return False
    for parts in walk(path):
        if parts and parts[0] == "dev" and len(parts) >= 2 and parts[1] in ("fd", "stdin", "stdout", "stderr"):
            return True
        if parts and parts[0] == "proc" and len(parts) >= 3 and parts[2] in ("fd", "cwd", "root", "fdinfo",
                                                                            "map_files"):
            return True
    return False


def _runc_mitigations(ctx: Context, proc: dict[str, Any]) -> None:
    for field, value in (("cwd", proc.get("cwd")),
                         ("args", (proc.get("args") or [None])[0] if isinstance(proc.get("args"), list) else None)):
        if proc_fd_path(value):
            ctx.decide("process", f"/process/{field}" + ("/0" if field == "args" else ""), "refuse", value, None,
                       f"process.{field} {value} goes through another process's file descriptors: with a descriptor "
                       "leaked from runc it reaches the host's filesystem (CVE-2024-21626)", "runc_mitigations")
    caps = proc.get("capabilities")
    inh = caps.get("inheritable") if isinstance(caps, dict) else None
    if isinstance(inh, list) and inh:
        caps["inheritable"] = []  # type: ignore[index]
        ctx.decide("capabilities", "/process/capabilities/inheritable", "tighten", inh, [],
                   "inheritable capabilities let an exec'd file-capability binary gain them (CVE-2022-29162)",
                   "runc_mitigations")


def _lsm_off(ctx: Context, proc: dict[str, Any]) -> None:
    aa = proc.get("apparmorProfile")
    if ctx.host.apparmor and aa in tables.UNCONFINED_APPARMOR:
        ctx.decide("apparmor", "/process/apparmorProfile", "refuse", aa, None,
                   "AppArmor profile unconfined switches confinement off", "apparmor")
    label = proc.get("selinuxLabel")
    if ctx.host.selinux and isinstance(label, str) and label:
        parts = label.split(":")
        if len(parts) < 3 or parts[2] not in tables.SELINUX_CONTAINER_TYPES:
            ctx.decide("selinux", "/process/selinuxLabel", "refuse", label, None,
                       f"SELinux label {label} is not of a container type "
                       f"({', '.join(sorted(tables.SELINUX_CONTAINER_TYPES))})", "selinux")


# -- the container's cgroup ----------------------------------------------------------------------------------

def cgroups(ctx: Context) -> None:
    linux = ctx.config.get("linux")
    if not isinstance(linux, dict):
        return
    path = linux.get("cgroupsPath")
    if isinstance(path, str) and path:
        v = gate(ctx, "cgroup", path)
        if not v.ok:
            ctx.decide("resources", "/linux/cgroupsPath", "refuse", path, None, v.reason, v.key)
    rdt = linux.get("intelRdt")
    if isinstance(rdt, dict) and isinstance(rdt.get("closID"), str):
        v = gate(ctx, "resctrl", rdt["closID"])
        if not v.ok:
            ctx.unknown("resources", "/linux/intelRdt/closID", rdt["closID"], v.reason)
    res = linux.get("resources")
    unified = res.get("unified") if isinstance(res, dict) else None
    if isinstance(unified, dict):
        for key in sorted(unified):
            _unified(ctx, unified, key)


def _unified(ctx: Context, unified: dict[str, Any], key: str) -> None:
    ptr = pointer("linux", "resources", "unified", key)
    value = unified[key]
    if key.startswith("cgroup.") or "/" in key or key not in tables.UNIFIED_KEYS:
        why = (f"cgroup v2 file {key} is not one sandbox lets a bundle write: runc writes any file name given here "
               "into the container's cgroup")
        if key.startswith("cgroup.") or "/" in key:
            ctx.decide("resources", ptr, "refuse", value, None, why + " (cgroup.* files move processes and reshape "
                       "the tree)", "resources")
        else:
            ctx.unknown("resources", ptr, value, why)
        return
    resource = tables.UNIFIED_KEYS[key]
    limit = getattr(ctx.profile.resources, resource).max if resource else None
    if limit is None:
        return
    clamped = _clamp_unified(key, str(value), limit)
    if clamped is not None:
        unified[key] = clamped
        ctx.decide("resources", ptr, "tighten", value, clamped,
                   f"{key} would override the profile's {resource} maximum", f"resources.{resource}")


def _clamp_unified(key: str, value: str, limit: int) -> str | None:
    """The value to write instead, or None when `value` is within `limit`."""
    v = value.strip()
    if key == "memory.swap.max" or key == "memory.swap.high":
        return None if v == "0" else "0"  # memory+swap may not exceed the memory limit
    if key == "cpu.max":
        quota, _, period = v.partition(" ")
        try:
            per = int(period) if period else 100_000
            if quota != "max" and int(quota) * 1000 // per <= limit:
                return None
        except ValueError:
            per = 100_000
        return f"{limit * per // 1000} {per}"
    try:
        if v != "max" and 0 <= int(v) <= limit:
            return None
    except ValueError:
        pass
    return str(limit)


# -- the table of config fields ----------------------------------------------------------------------------

def config_fields(ctx: Context) -> None:
    """Runs first, on the bundle's own config: what sandbox adds is in the table, what it drops never
    reaches runc."""
    pol = ctx.profile.seccomp
    rebuilt = pol.base_profile is not None or bool(pol.deny or pol.rules)  # see seccomp.profile_filter
    for keys in ocishape.outside(ctx.config, seccomp_rebuilt=rebuilt):
        value: Any = ctx.get(*keys)
        dotted = ".".join(str(k) for k in keys)
        ctx.unknown("fields", pointer(*keys), value,
                    f"config.json field {dotted} is not in sandbox's table of the fields runc 1.1 acts on, so "
                    "nothing checked what runc (or a newer one) would do with it")
    for path, why in ocishape.POLICY_FIELDS:
        keys = path.split(".")
        value = ctx.get(*keys)
        if value not in (None, {}, [], ""):
            ctx.unknown("fields", pointer(*keys), value, f"{path}: {why}")
    _annotations(ctx)
    _listener(ctx)


def _annotations(ctx: Context) -> None:
    ann = ctx.config.get("annotations")
    if not isinstance(ann, dict):
        return
    for key in sorted(ann):
        ptr = pointer("annotations", key)
        if "=" in key:
            ctx.decide("fields", ptr, "refuse", key, None,
                       f"annotation key {key!r} contains '=': runc stores annotations as key=value labels and would "
                       f"read this one back as {key.split('=', 1)[0]!r}", "fields")
        elif key == CRIU_CONFIG and ann[key]:
            v = gate(ctx, "criu-config", str(ann[key]))
            if not v.ok:
                ctx.decide("fields", ptr, "refuse", ann[key], None, v.reason, v.key)
        elif key.startswith(SYSTEMD_PROPERTY):
            ctx.unknown("fields", ptr, ann[key],
                        f"annotation {key} sets a property of the container's systemd unit (with the systemd cgroup "
                        "driver), which can override its limits")


def _listener(ctx: Context) -> None:
    path = ctx.get("linux", "seccomp", "listenerPath")
    if isinstance(path, str) and path:
        v = gate(ctx, "listener", path)
        if not v.ok:
            ctx.decide("seccomp", "/linux/seccomp/listenerPath", "refuse", path, None, v.reason, v.key)
