"""The process user and the user namespace, with what adding a user namespace implies."""

from __future__ import annotations

from ..decisions import ROOTFS_TARGET, RootfsPrep, RuntimePrep, pointer
from ..profile import DEFAULT_ID_MAPPING, IdMapping
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Namespaces the runtime can enter for runc (setns before it starts) when the user namespace
# sandbox adds does not own them: runc 1.1 joins the user namespace first and then lacks the
# capability to join these.
_ENTERABLE = ("network", "ipc", "uts")


def _mappings(raw: Any) -> list[IdMapping] | None:
    if not isinstance(raw, list):
        return None
    out = []
    for m in raw:
        try:
            out.append(IdMapping(int(m["containerID"]), int(m["hostID"]), int(m["size"])))
        except (KeyError, TypeError, ValueError):
            return None
    return out


def map_id(mappings: list[IdMapping] | tuple[IdMapping, ...], container_id: int) -> int | None:
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + (container_id - m.container_id)
    return None


def maps_host_id(mappings: list[IdMapping] | tuple[IdMapping, ...], host_id: int) -> bool:
    return any(m.host_id <= host_id < m.host_id + m.size for m in mappings)


def maps_host_root(mappings: list[IdMapping]) -> bool:
    return maps_host_id(mappings, 0)


def has_userns(config: dict[str, Any]) -> bool:
    nss = (config.get("linux") or {}).get("namespaces") or []
    return any(isinstance(n, dict) and n.get("type") == "user" for n in nss)


def userns_required(profile: Any) -> bool:
    return profile.user.user_namespace == "required" or "user" in profile.namespaces.required


def needs_id_range(profile: Any, config: dict[str, Any]) -> bool:
    """Whether creating `config` under `profile` adds a user namespace whose ids the operator's pool
    must provide (the bundle has none, and neither bundle nor profile names an id mapping)."""
    linux: dict[str, Any] = config["linux"] if isinstance(config.get("linux"), dict) else {}
    return (userns_required(profile) and not has_userns(config) and not profile.user.uid_mappings
            and not _mappings(linux.get("uidMappings")))


def user(ctx: Context) -> None:
    pol = ctx.profile.user
    if ctx.get("root", "path") == ROOTFS_TARGET:
        # runc would get whatever is at that path on the host, not the engine's rootfs
        ctx.decide("user", "/root/path", "refuse", ROOTFS_TARGET, None,
                   f"root.path is {ROOTFS_TARGET}, where sandbox-runc mounts a rootfs view in a runtime's own mount "
                   "namespace: this config.json was already hardened by an earlier create; let the engine write "
                   "it anew", "user.user_namespace")
    linux = ctx.section("linux")
    required = userns_required(ctx.profile)
    userns = has_userns(ctx.config)
    ctx.userns_added = required and not userns
    join = ctx.host.pod_userns if ctx.userns_added else None
    for key, prof_maps in (("uidMappings", pol.uid_mappings), ("gidMappings", pol.gid_mappings)):
        current = _mappings(linux.get(key))
        ptr = pointer("linux", key)
        if not (required or userns):
            continue
        if current:
            if maps_host_root(current):
                ctx.decide("user", ptr, "refuse", linux.get(key), None,
                           "the id mapping maps host root (id 0) into the container", "user.user_namespace")
            else:
                ctx.decide("user", ptr, "keep", linux.get(key), linux.get(key),
                           "the bundle's id mapping maps no host root", "user.user_namespace")
            continue
        if prof_maps:
            maps, why, rule = list(prof_maps), "the profile's is used", "user.uid_mappings"
        elif ctx.host.id_range is not None:
            maps, rule = [ctx.host.id_range], "user.user_namespace"
            why = ("its pod's host id range, which every container of the pod shares" if join else
                   "a host id range of its own, allocated from the operator's pool")
        else:
            maps, rule = [DEFAULT_ID_MAPPING], "user.user_namespace"
            why = "the default one (a running container gets a range of its own from the operator's pool)"
        linux[key] = [m.to_oci() for m in maps]
        ctx.decide("user", ptr, "set", None, linux[key], "a user namespace needs an id mapping; " + why, rule)
    if join:
        nss: list[Any] = linux["namespaces"] if isinstance(linux.get("namespaces"), list) else []
        nss.append({"type": "user", "path": join})
        linux["namespaces"] = nss
        ctx.decide("user", pointer("linux", "namespaces", len(nss) - 1), "set", None, nss[-1],
                   "joins the user namespace of its pod's sandbox container (one user namespace per pod)",
                   "user.user_namespace")

    uid = ctx.get("process", "user", "uid")
    uid = uid if isinstance(uid, int) else 0
    if pol.run_as_non_root and uid == 0:
        host_uid = map_id(_mappings(linux.get("uidMappings")) or [], 0) if (required or userns) else None
        if host_uid is not None and host_uid != 0:
            ctx.decide("user", "/process/user/uid", "keep", 0, 0,
                       f"uid 0 inside the container is host uid {host_uid} through the user namespace",
                       "user.run_as_non_root")
        else:
            ctx.decide("user", "/process/user/uid", "refuse", 0, None,
                       "the process would run as root (uid 0) on the host; the profile requires a non-root user "
                       "or a user namespace", "user.run_as_non_root")


def userns_runtime(ctx: Context) -> None:
    """What the user namespace sandbox added needs from the runtime: a rootfs its root can reach and
    own, the engine's namespaces entered before runc, and no sysfs it may not mount.  Runs last."""
    if not ctx.userns_added:
        return
    uid_maps = tuple(_mappings(ctx.get("linux", "uidMappings")) or ())
    gid_maps = tuple(_mappings(ctx.get("linux", "gidMappings")) or ())
    rootfs = _rootfs(ctx, uid_maps, gid_maps)
    _locked_flags(ctx)
    entered = _entered_namespaces(ctx)
    if "network" in entered:
        _no_sysfs(ctx)
    if rootfs is not None or entered:
        ctx.prep = RuntimePrep(uid_mappings=uid_maps, gid_mappings=gid_maps, rootfs=rootfs,
                               enter=tuple(entered.items()))
    owner = ctx.host.rootfs.owner_uid if ctx.host.rootfs else ctx.host.rootfs_owner_uid
    if rootfs is None and owner is not None and not maps_host_id(uid_maps, owner):
        for path in sorted(ctx.host.missing_in_rootfs):
            ctx.decide("user", "/mounts", "warn", path, path,
                       f"mount point {path} does not exist in the rootfs and cannot be created there by the "
                       "container's root; create it in the image", "user.user_namespace")


def _traversable(parent: tuple[str, int, int, int], uid: int | None, gid: int | None) -> bool:
    _, owner, group, mode = parent
    if uid is not None and owner == uid:
        return bool(mode & 0o100)
    if gid is not None and group == gid:
        return bool(mode & 0o010)
    return bool(mode & 0o001)


def _rootfs(ctx: Context, uid_maps: tuple[IdMapping, ...], gid_maps: tuple[IdMapping, ...]) -> RootfsPrep | None:
    facts = ctx.host.rootfs
    if facts is None:  # not probed (a dry run without the rootfs at hand): say what would happen
        owner = ctx.host.rootfs_owner_uid
        if owner is not None and not maps_host_id(uid_maps, owner):
            ctx.decide("user", "/root/path", "warn", owner, owner,
                       f"the rootfs is owned by host uid {owner}, which is not mapped: sandbox-runc gives the "
                       "container an idmapped view of it in which the container's root owns it",
                       "user.user_namespace")
        return None
    root_uid, root_gid = map_id(uid_maps, 0), map_id(gid_maps, 0)
    owned = facts.owner_uid is not None and maps_host_id(uid_maps, facts.owner_uid)
    reachable = all(_traversable(p, root_uid, root_gid) for p in facts.parents)
    before = ctx.get("root", "path")
    if owned and reachable:
        ctx.decide("user", "/root/path", "keep", before, before,
                   "the rootfs already belongs to the container's ids and its root can reach it",
                   "user.user_namespace")
        return None
    if facts.kind == "unsupported":
        ctx.decide("user", "/root/path", "refuse", before, None,
                   f"the rootfs {facts.path} cannot be given to the user namespace sandbox adds: {facts.problem}",
                   "user.user_namespace")
        return None
    blocked = next((p[0] for p in facts.parents if not _traversable(p, root_uid, root_gid)), None)
    where = (f"it lies under {blocked} (mode {blocked_mode(facts, blocked):04o}), which the container's root "
             f"(host uid {root_uid}) cannot traverse" if blocked else "")
    if owned:
        prep = RootfsPrep("bind", facts.path)
        why = f"the rootfs belongs to the container's ids, but {where}: runc gets a bind mount of it"
    else:
        unowned = f"its files belong to host uid {facts.owner_uid}, which the container's user namespace does not map"
        reasons = f"{where}, and {unowned}" if where else unowned
        if facts.kind == "dir":
            prep = RootfsPrep("idmapped-bind", facts.path)
            why = f"{reasons}: runc gets an idmapped bind mount of it, in which the container's root owns them"
        elif ctx.get("root", "readonly") is True:
            prep = RootfsPrep("idmapped-overlay", facts.path, layers=facts.layers,
                              overlay_options=facts.overlay_options)
            why = (f"{reasons}: runc gets an overlay of idmapped views of the engine's layers (the kernel "
                   "cannot idmap an overlay mount itself), in which the container's root owns them, read-only "
                   "but for the mount points runc creates (on a small tmpfs of the runtime's own)")
        else:
            ctx.decide("user", "/root/readonly", "refuse", ctx.get("root", "readonly"), None,
                       f"the rootfs {facts.path} is an overlay mount and {reasons}; the kernel cannot idmap an "
                       "overlay mount, and a view built from idmapped layers can only be read-only: make the root "
                       "filesystem read-only (filesystem.readonly_rootfs: true, or the engine's read-only root "
                       "option), or let the engine create the user namespace (dockerd --userns-remap)",
                       "user.user_namespace")
            return None
    ctx.section("root")["path"] = prep.target
    ctx.decide("user", "/root/path", "set", before, prep.target,
               f"{why} ({prep.target} exists only in the runtime's own mount namespace)", "user.user_namespace")
    return prep


def blocked_mode(facts: Any, path: str) -> int:
    return next(p[3] for p in facts.parents if p[0] == path) & 0o7777


def _entered_namespaces(ctx: Context) -> dict[str, str]:
    """Take out of config.json the namespaces the runtime must enter instead of runc."""
    nss = ctx.get("linux", "namespaces")
    if not isinstance(nss, list):
        return {}
    out: dict[str, str] = {}
    keep = []
    for i, ns in enumerate(nss):
        path = ns.get("path") if isinstance(ns, dict) else None
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind in _ENTERABLE and isinstance(path, str) and path in ctx.host.host_owned_namespaces:
            out[kind] = path
            ctx.decide("namespaces", pointer("linux", "namespaces", i), "set", ns, None,
                       f"the {kind} namespace {path} belongs to the host's user namespace: runc, which joins the "
                       f"container's user namespace first, could not enter it; sandbox-runc enters it before runc "
                       "starts and the container stays in it", "user.user_namespace")
        else:
            keep.append(ns)
    if out:
        ctx.section("linux")["namespaces"] = keep
    return out


# per-mount flags the kernel locks on mounts a user namespace inherits, and the mount options that
# keep them (runc 1.1 remounts bind mounts with exactly the options given, and a remount that would
# clear a locked flag fails with EPERM)
_LOCKABLE = {"nosuid": "nosuid", "nodev": "nodev", "noexec": "noexec", "noatime": "noatime",
             "nodiratime": "nodiratime", "relatime": "relatime", "strictatime": "strictatime"}


def _locked_flags(ctx: Context) -> None:
    mounts = ctx.config.get("mounts")
    for i, m in enumerate(mounts if isinstance(mounts, list) else []):
        if not isinstance(m, dict) or not isinstance(m.get("source"), str):
            continue
        opts = [o for o in m.get("options") or [] if isinstance(o, str)]
        if m.get("type") != "bind" and "bind" not in opts and "rbind" not in opts:
            continue
        held = ctx.host.source_mount_flags.get(m["source"], ())
        add = [_LOCKABLE[f] for f in held if f in _LOCKABLE and _LOCKABLE[f] not in opts]
        if add:
            m["options"] = opts + add
            ctx.decide("mounts", pointer("mounts", i, "options"), "tighten", opts, m["options"],
                       f"the mount holding {m['source']} has {', '.join(add)}, which the container's user namespace "
                       "cannot clear (the kernel locks them): the bind mount keeps them", "user.user_namespace")


def _no_sysfs(ctx: Context) -> None:
    """sysfs can only be mounted by a user namespace that owns the network namespace."""
    mounts = ctx.config.get("mounts")
    if not isinstance(mounts, list):
        return
    for i, m in enumerate(mounts):
        if isinstance(m, dict) and m.get("type") == "sysfs":
            new = {"destination": m.get("destination", "/sys"), "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "noexec", "nodev", "mode=755", "size=64k"]}
            mounts[i] = new
            ctx.decide("mounts", pointer("mounts", i), "tighten", m, new,
                       "sysfs cannot be mounted in a user namespace that does not own the network namespace: "
                       f"{new['destination']} is an empty read-only tmpfs instead", "user.user_namespace")
            linux = ctx.section("linux")
            ro = [p for p in linux.get("readonlyPaths") or [] if isinstance(p, str)]
            if new["destination"] not in ro:
                linux["readonlyPaths"] = [*ro, new["destination"]]
