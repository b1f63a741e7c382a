"""Root filesystem, mounts, masked and read-only paths."""

from __future__ import annotations

from ..decisions import pointer
from ..profile import HostPath
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_SYSTEM_TYPES = ("sysfs", "cgroup", "cgroup2")
_SHARED = {"shared": "slave", "rshared": "rslave"}


def _is_bind(m: dict[str, Any]) -> bool:
    opts = m.get("options") or []
    return m.get("type") == "bind" or "bind" in opts or "rbind" in opts


def _within(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def forbidden_reason(source: str, forbidden: tuple[HostPath, ...], allowed: tuple[str, ...]) -> str | None:
    """Why binding host path `source` (already resolved) is forbidden, or None."""
    for f in forbidden:
        if source == f.path:
            return f"{source} is a forbidden host path"
    for f in forbidden:
        if f.match == "subtree" and _within(source, f.path) and not any(_within(source, a) for a in allowed):
            return f"{source} lies inside the forbidden host path {f.path}"
    for f in forbidden:
        if f.path != source and _within(f.path, source) and not any(_within(f.path, a) for a in allowed):
            return f"{source} contains the forbidden host path {f.path}"
    return None


def rootfs(ctx: Context) -> None:
    if not ctx.profile.filesystem.readonly_rootfs:
        return
    root = ctx.section("root")
    before = root.get("readonly")
    if before is True:
        ctx.decide("filesystem", "/root/readonly", "keep", True, True, "already read-only",
                   "filesystem.readonly_rootfs")
    else:
        root["readonly"] = True
        ctx.decide("filesystem", "/root/readonly", "tighten", before, True,
                   "the root filesystem must be read-only", "filesystem.readonly_rootfs")


def _set_options(m: dict[str, Any], add: list[str], remove: tuple[str, ...] = ()) -> list[str] | None:
    """Add options to a mount; returns the added ones, or None when nothing changed."""
    opts = [o for o in (m.get("options") or []) if isinstance(o, str)]
    new = [o for o in opts if o not in remove]
    added = [o for o in add if o not in new]
    new += added
    if new == opts:
        return None
    m["options"] = new
    return added or [f"-{o}" for o in remove if o in opts]


def mounts(ctx: Context) -> None:
    fs = ctx.profile.filesystem
    mounts = ctx.config.get("mounts")
    if not isinstance(mounts, list):
        mounts = []
    for i, m in enumerate(mounts):
        if not isinstance(m, dict):
            continue
        ptr = pointer("mounts", i)
        dest = m.get("destination")
        if _is_bind(m):
            src = m.get("source")
            if not isinstance(src, str):
                continue
            real = ctx.realpath(src)
            # the engines' own per-container directories found on this host count as allowed (HostFacts)
            why = forbidden_reason(real, fs.forbidden_host_paths, fs.allowed_host_paths + ctx.host.engine_dirs)
            if why:
                shown = src if real == src else f"{src} (resolves to {real})"
                ctx.decide("mounts", ptr, "refuse", {"source": src, "destination": dest}, None,
                           f"bind mount of {shown}: {why}", "filesystem.forbidden_host_paths")
                continue
            add = (["nosuid", "nodev"] if fs.bind_nosuid_nodev else []) + (["ro"] if fs.bind_readonly else [])
            changed = _set_options(m, add, ("rw",) if fs.bind_readonly else ())
            if changed:
                ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", src, m["options"],
                           f"bind mount of {src} at {dest} gets {', '.join(changed)}", "filesystem.bind_mounts")
            _propagation(ctx, m, i)
        elif m.get("type") in _SYSTEM_TYPES and fs.readonly_system_mounts:
            changed = _set_options(m, ["ro"], ("rw",))
            if changed:
                ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", dest, m["options"],
                           f"{m.get('type')} at {dest} is mounted read-only", "filesystem.readonly_system_mounts")
    _tmpfs(ctx, mounts)
    ctx.config["mounts"] = mounts
    _paths(ctx, "maskedPaths", fs.masked_paths, "filesystem.masked_paths", "masked")
    _paths(ctx, "readonlyPaths", fs.readonly_paths, "filesystem.readonly_paths", "read-only")


def _propagation(ctx: Context, m: dict[str, Any], i: int) -> None:
    opts = m.get("options") or []
    shared = [o for o in opts if o in _SHARED]
    if shared:
        m["options"] = [_SHARED.get(o, o) for o in opts]
        ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", shared, [_SHARED[o] for o in shared],
                   "shared propagation would let mounts made in the container appear on the host",
                   "filesystem.bind_mounts")


def _tmpfs(ctx: Context, mounts: list[Any]) -> None:
    for t in ctx.profile.filesystem.tmpfs:
        want = list(t.options) + ([f"size={t.size}"] if t.size else []) + [f"mode={t.mode:o}"]
        found = next((i for i, m in enumerate(mounts) if isinstance(m, dict) and m.get("destination") == t.path),
                     None)
        key = "filesystem.tmpfs"
        if found is None:
            mounts.append({"destination": t.path, "type": "tmpfs", "source": "tmpfs", "options": want})
            ctx.decide("mounts", pointer("mounts", len(mounts) - 1), "set", None, mounts[-1],
                       f"{t.path} is a tmpfs ({', '.join(want)})", key)
            continue
        m = mounts[found]
        add = [o for o in t.options if o not in ("rw",)]
        if m.get("type") == "tmpfs" and t.size:
            sizes = [o for o in m.get("options") or [] if isinstance(o, str) and o.startswith("size=")]
            current = _parse_tmpfs_size(sizes[-1][5:]) if sizes else None
            if current is None or current > t.size:
                m["options"] = [o for o in m.get("options") or [] if o not in sizes]
                add.append(f"size={t.size}")
        changed = _set_options(m, add)
        if changed:
            ctx.decide("mounts", pointer("mounts", found, "options"), "tighten", t.path, m["options"],
                       f"the bundle's mount at {t.path} gets {', '.join(changed)}", key)


def _parse_tmpfs_size(s: str) -> int | None:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    try:
        if s and s[-1].lower() in units:
            return int(s[:-1]) * units[s[-1].lower()]
        return None if s.endswith("%") else int(s)
    except ValueError:
        return None


def _paths(ctx: Context, field: str, wanted: tuple[str, ...], key: str, what: str) -> None:
    linux = ctx.section("linux")
    current = [p for p in linux.get(field) or [] if isinstance(p, str)]
    added = [p for p in wanted if p not in current]
    if added:
        linux[field] = current + added
        ctx.decide("filesystem", pointer("linux", field), "tighten", current, linux[field],
                   f"{len(added)} more paths {what}: {', '.join(added)}", key)
