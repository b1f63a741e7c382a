"""Root filesystem, mounts, masked and read-only paths.

Mounts are allowed by type (tables.MOUNT_TYPES plus the profile's filesystem.mount_types), each
system filesystem only at its one destination, every host path through the host-path gate, and
filesystem data options by a per-type allow-list.  Flags the profile demands are made to hold
whatever order the bundle wrote its options in (runc applies them in order, the last one wins).
"""

from __future__ import annotations

from .. import tables
from ..decisions import pointer
from .context import Context, _normpath
from .hostpath import forbidden_reason, gate, mount_type, overlay_dirs, within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["forbidden_reason", "mounts", "rootfs"]

# Docker's /dev (moby oci/defaults.go), added where a bundle has none (see _dev_tmpfs).
DEV_TMPFS = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}


def rootfs(ctx: Context) -> None:
    root = ctx.config.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    if isinstance(path, str):
        v = gate(ctx, "root", path)
        if v.ok:
            ctx.decide("filesystem", "/root/path", "keep", path, path, v.reason, v.key)
        else:
            ctx.decide("filesystem", "/root/path", "refuse", path, None, v.reason, v.key)
    linux: Any = ctx.config.get("linux")
    prop = linux.get("rootfsPropagation") if isinstance(linux, dict) else None
    if prop in tables.SHARED_PROPAGATION:
        linux["rootfsPropagation"] = tables.SHARED_PROPAGATION[prop]
        ctx.decide("filesystem", "/linux/rootfsPropagation", "tighten", prop, linux["rootfsPropagation"],
                   "shared propagation of the container's mount tree would let its mounts appear on the host",
                   "filesystem.bind_mounts")
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
    """Add options to a mount, removing `remove`; returns what changed, or None when nothing did."""
    opts = [o for o in (m.get("options") or []) if isinstance(o, str)]
    new = [o for o in opts if o not in remove]
    added = [o for o in add if o not in new]
    new += added
    if new == opts:
        return None
    m["options"] = new
    return added + [f"-{o}" for o in remove if o in opts]


def _require(m: dict[str, Any], flags: list[str]) -> list[str] | None:
    """Make each flag hold: drop the options that would undo it, add it when missing."""
    clears = tuple(c for f in flags for c in tables.MOUNT_FLAG_CLEARS.get(f, ()))
    return _set_options(m, flags, clears)


def mounts(ctx: Context) -> None:
    fs = ctx.profile.filesystem
    mounts = ctx.config.get("mounts")
    if not isinstance(mounts, list):
        mounts = []
    if ctx.profile.runc_mitigations:
        _dev_tmpfs(ctx, mounts)
    writable_binds: list[str] = []
    for i, m in enumerate(mounts):
        if isinstance(m, dict):
            _mount(ctx, m, i, writable_binds)
    _tmpfs(ctx, mounts)
    ctx.config["mounts"] = mounts
    _paths(ctx, "maskedPaths", fs.masked_paths, "filesystem.masked_paths", "masked")
    _paths(ctx, "readonlyPaths", fs.readonly_paths, "filesystem.readonly_paths", "read-only")


def _mount(ctx: Context, m: dict[str, Any], i: int, writable_binds: list[str]) -> None:
    fs = ctx.profile.filesystem
    ptr = pointer("mounts", i)
    raw = m.get("destination")
    dest = _normpath("/" + raw) if isinstance(raw, str) else None
    kind = mount_type(m)
    src = m.get("source")
    shown = {"source": src, "destination": raw, "type": m.get("type")}
    if dest is None:
        ctx.decide("mounts", ptr, "refuse", shown, None, "a mount without a destination", "filesystem")
        return
    if kind in tables.MOUNT_TYPES:
        canonical, data_ok = tables.MOUNT_TYPES[kind]
    elif kind in fs.mount_types:
        canonical, data_ok = None, None
    else:
        known = ", ".join(sorted({*tables.MOUNT_TYPES, *fs.mount_types}))
        ctx.decide("mounts", ptr, "refuse", shown, None,
                   f"mount of type {kind or '(none)'!r} at {dest}: not a filesystem type a container needs "
                   f"(allowed: {known}; a profile can add one with filesystem.mount_types)", "filesystem.mount_types")
        return
    if canonical is not None and dest != canonical:
        ctx.decide("mounts", ptr, "refuse", shown, None,
                   f"{kind} may only be mounted at {canonical}, not {dest}: elsewhere it would have none of the "
                   "masked and read-only paths", "filesystem.mount_types")
        return
    if not _sources_pass(ctx, m, kind, ptr, shown):
        return
    if not _options_pass(ctx, m, kind, dest, data_ok, i):
        return
    if ctx.profile.runc_mitigations and not _mitigations_pass(ctx, m, kind, dest, ptr, shown, writable_binds):
        return
    if kind == "bind":
        want = (["nosuid", "nodev"] if fs.bind_nosuid_nodev else []) + (["ro"] if fs.bind_readonly else [])
        changed = _require(m, want)
        if changed:
            ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", src, m["options"],
                       f"bind mount of {src} at {dest} gets {', '.join(changed)}", "filesystem.bind_mounts")
        if not _effective(m, "ro"):
            writable_binds.append(dest)
    elif kind in ("sysfs", "cgroup", "cgroup2") and fs.readonly_system_mounts:
        changed = _require(m, ["ro"])
        if changed:
            ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", dest, m["options"],
                       f"{kind} at {dest} is mounted read-only", "filesystem.readonly_system_mounts")
    _propagation(ctx, m, i)


def _effective(m: dict[str, Any], flag: str) -> bool:
    """Whether `flag` holds after runc applies the options in order."""
    on = False
    clears = tables.MOUNT_FLAG_CLEARS.get(flag, ())
    for o in m.get("options") or []:
        if o == flag:
            on = True
        elif o in clears:
            on = False
    return on


def _sources_pass(ctx: Context, m: dict[str, Any], kind: str, ptr: str, shown: dict[str, Any]) -> bool:
    src = m.get("source")
    if kind == "bind":
        paths = [("bind", src if isinstance(src, str) else "")]
    elif kind == "overlay":
        paths = [("overlay", d) for _, d in overlay_dirs(m.get("options"))]
    elif kind not in tables.MOUNT_TYPES and isinstance(src, str) and src.startswith("/"):
        paths = [("mount-source", src)]
    else:
        return True  # proc, sysfs, tmpfs, ...: the source is a name the kernel ignores
    for use, path in paths:
        v = gate(ctx, use, path)
        if not v.ok:
            ctx.decide("mounts", ptr, "refuse", shown, None, v.reason, v.key)
            return False
    return True


def _options_pass(ctx: Context, m: dict[str, Any], kind: str, dest: str, data_ok: frozenset[str] | None,
                  i: int) -> bool:
    ptr = pointer("mounts", i, "options")
    opts = m.get("options") or []
    for o in opts:
        if not isinstance(o, str):  # JSON null: Go decodes it as "", which runc hands the kernel as data
            o = ""
        if o == "remount":
            ctx.decide("mounts", ptr, "refuse", o, None,
                       f"the remount option on the mount at {dest} would change a mount made before it (such as a "
                       "read-only /sys) instead of making a new one", "filesystem")
            return False
        if o in tables.MOUNT_FLAG_OPTIONS or data_ok is None:
            continue
        why = _data_problem(o, data_ok)
        if why:
            ctx.unknown("mounts", ptr, o,
                        f"mount option {o!r} of the {kind} mount at {dest} {why}: runc passes it to the kernel as "
                        "filesystem data")
            if ctx.profile.unknown_config_fields == "refuse":
                return False
    return True


def _data_problem(o: str, data_ok: frozenset[str]) -> str | None:
    if "," in o:
        return "is several options written as one"
    if "\\" in o:
        return "contains an escape the kernel would read differently"
    key, eq, _ = o.partition("=")
    if o in data_ok or (eq and key + "=" in data_ok):
        return None
    return "is not one sandbox knows for this filesystem type"


def _mitigations_pass(ctx: Context, m: dict[str, Any], kind: str, dest: str, ptr: str, shown: dict[str, Any],
                      writable_binds: list[str]) -> bool:
    """Config-level defences against runc 1.1.5's known mount vulnerabilities (runc_mitigations)."""
    why = None
    if (kind in tables.SYSTEM_MOUNT_TYPES or dest == "/dev") and dest in ctx.host.rootfs_symlinks:
        why = (f"{dest} is a symlink (or passes through one) in the rootfs: runc would mount {kind} where it "
               "points (CVE-2019-16884, CVE-2023-27561, CVE-2023-28642)")
    elif dest == "/dev" and kind != "tmpfs":
        why = ("/dev must be a fresh tmpfs: runc masks paths with the container's /dev/null and binds the "
               "console at /dev/console, which an attacker-made /dev can redirect (CVE-2025-31133, CVE-2025-52565)")
    elif any(dest != w and within(dest, w) for w in writable_binds):
        outer = next(w for w in writable_binds if dest != w and within(dest, w))
        why = (f"{dest} lies inside the writable bind mount at {outer}: another container sharing that volume "
               "could swap a directory on the way for a symlink while runc creates the mount point "
               "(CVE-2024-45310, CVE-2025-52881)")
    elif kind == "bind" and within(dest, "/proc"):
        why = (f"a bind mount onto {dest}: runc writes to /proc while setting the container up, and a "
               "mount there can redirect those writes (CVE-2025-52881)")
    if why is None:
        return True
    ctx.decide("mounts", ptr, "refuse", shown, None, why, "runc_mitigations")
    return False


def _dev_tmpfs(ctx: Context, mounts: list[Any]) -> None:
    """A bundle without a /dev mount gets Docker's /dev tmpfs, before any mount below /dev: runc
    would otherwise set up /dev/null and /dev/console in the image's own /dev (CVE-2025-31133/52565)."""
    dests = [_normpath("/" + m["destination"]) if isinstance(m, dict) and isinstance(m.get("destination"), str)
             else "" for m in mounts]
    if "/dev" in dests:
        return
    at = next((j for j, d in enumerate(dests) if d.startswith("/dev/")), len(mounts))
    mounts.insert(at, {k: (list(v) if isinstance(v, list) else v) for k, v in DEV_TMPFS.items()})
    ctx.decide("mounts", pointer("mounts", at), "set", None, mounts[at],
               "/dev is a fresh tmpfs, so runc makes /dev/null and /dev/console itself (CVE-2025-31133, "
               "CVE-2025-52565)", "runc_mitigations")


def _propagation(ctx: Context, m: dict[str, Any], i: int) -> None:
    opts = m.get("options") or []
    shared = [o for o in opts if o in tables.SHARED_PROPAGATION]
    if shared:
        m["options"] = [tables.SHARED_PROPAGATION.get(o, o) for o in opts]
        ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", shared,
                   [tables.SHARED_PROPAGATION[o] for o in shared],
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
        changed = _require(m, add)
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
