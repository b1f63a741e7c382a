"""What the host supports and what host paths resolve to, as a plain value.

The edge (`sandbox.host`) probes once and passes this to the pure transform, so
the transform never stats a file or reads /proc itself.
"""

from __future__ import annotations

from ._record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .profile import IdMapping


@record
class RootfsFacts:
    """The bundle's rootfs as the host holds it (probed only when a user namespace may be added)."""

    path: str  # absolute, symlinks resolved
    kind: str  # dir | overlay | unsupported
    fs_type: str = ""
    owner_uid: int | None = None
    # overlay: the layers to stack, topmost first (the engine's upper layer, then its lower ones)
    layers: tuple[str, ...] = ()
    overlay_options: tuple[str, ...] = ()  # options of the engine's overlay that the view keeps
    # (path, uid, gid, mode) of every directory above the rootfs, outermost first
    parents: tuple[tuple[str, int, int, int], ...] = ()
    problem: str = ""  # kind unsupported: why


@record
class HostFacts:
    arch: str = "x86_64"  # uname -m
    cgroup_version: str = "v2"  # v1 | v2 | hybrid
    apparmor: bool = False
    selinux: bool = False
    # Host paths named by the bundle (bind sources, hook paths) with symlinks resolved.
    realpaths: Mapping[str, str] = field(default_factory=dict)
    # Namespace paths named by the bundle -> True when that is one of the host's namespaces.
    host_namespaces: Mapping[str, bool] = field(default_factory=dict)
    # Mount destinations (and hook-required paths) that do not exist in the rootfs.
    missing_in_rootfs: frozenset[str] = frozenset()
    rootfs_owner_uid: int | None = None
    # the memory cgroup can limit swap (v1 memory.memsw.*, v2 memory.swap.max)
    swap_limit: bool = True
    rootfs: RootfsFacts | None = None
    # Namespace paths named by the bundle whose owning user namespace is the host's.
    host_owned_namespaces: frozenset[str] = frozenset()
    # The host id range the edge allocated for this container (or its pod) from the operator's pool.
    id_range: IdMapping | None = None
    # The user namespace of the container's pod (/proc/<pid>/ns/user of the pod's sandbox
    # container), which a pod's app container joins; its ids are `id_range`.
    pod_userns: str | None = None
    # userns probed: bind sources -> the per-mount flags of the mount holding each (nosuid, nodev,
    # noexec, atime...), which the kernel locks for a less privileged mount namespace
    source_mount_flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Directories the engines running on this host keep per-container files in (resolved paths),
    # discovered from their configuration and command lines (sandbox.engines).
    engine_dirs: tuple[str, ...] = ()
