"""The process user and the user namespace, with what adding a user namespace implies."""

from __future__ import annotations

from ..decisions import pointer
from ..profile import DEFAULT_ID_MAPPING, IdMapping
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



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


def map_id(mappings: list[IdMapping], container_id: int) -> int | None:
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + (container_id - m.container_id)
    return None


def maps_host_root(mappings: list[IdMapping]) -> bool:
    return any(m.host_id <= 0 < m.host_id + m.size for m in mappings)


def has_userns(config: dict[str, Any]) -> bool:
    nss = (config.get("linux") or {}).get("namespaces") or []
    return any(isinstance(n, dict) and n.get("type") == "user" for n in nss)


def user(ctx: Context) -> None:
    pol = ctx.profile.user
    linux = ctx.section("linux")
    required = pol.user_namespace == "required" or "user" in ctx.profile.namespaces.required
    userns = has_userns(ctx.config)
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
        maps = list(prof_maps) or [DEFAULT_ID_MAPPING]
        linux[key] = [m.to_oci() for m in maps]
        ctx.decide("user", ptr, "set", linux.get(key) if current else None, linux[key],
                   "a user namespace needs an id mapping; the profile's is used", "user.uid_mappings")

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

    if required and not userns:
        _consequences(ctx)


def _consequences(ctx: Context) -> None:
    """Record what changes for the workload once a user namespace is added."""
    uid_maps = _mappings(ctx.get("linux", "uidMappings")) or []
    owner = ctx.host.rootfs_owner_uid
    if owner is not None and all(not (m.host_id <= owner < m.host_id + m.size) for m in uid_maps):
        ctx.decide("user", "/root/path", "warn", owner, owner,
                   f"the rootfs is owned by host uid {owner}, which is not mapped: inside the user namespace "
                   "its files belong to nobody and cannot be written by the container's root",
                   "user.user_namespace")
    for path in sorted(ctx.host.missing_in_rootfs):
        ctx.decide("user", "/mounts", "warn", path, path,
                   f"mount point {path} does not exist in the rootfs and cannot be created by an unmapped "
                   "root; create it in the image", "user.user_namespace")
