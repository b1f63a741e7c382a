"""What the host supports and what host paths resolve to, as a plain value.

The edge (`sandbox.host.probe`) probes once and passes this to the pure transform, so
the transform never stats a file or reads /proc itself.  Which paths it probes
is decided by the core (`sandbox.core.transform.hostpath.named_host_paths`), so the
two can never disagree about which host paths a config.json names.
"""

from __future__ import annotations

from .._record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .profile import IdMapping

# The file name of sandbox's own network hook program (sandbox/runtime/nethook.py, csrc/sandbox-nethook.c),
# installed beside sandbox's entry points: one of host.OWN_HOOK_PROGRAMS.
NETWORK_HOOK = "sandbox-nethook"

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
class Executable:
    """A hook binary as the host sees it."""

    real: str  # its resolved path (for /proc/<pid>/exe: the running process's executable)
    # the binary and every directory above it are owned by root and writable by no one else
    trusted_chain: bool = False
    pid: int | None = None  # the process, when the hook path is /proc/<pid>/exe of a running one
    process_uid: int | None = None  # that process's real uid


@record
class HostFacts:
    arch: str = "x86_64"  # uname -m
    cgroup_version: str = "v2"  # v1 | v2 | hybrid
    apparmor: bool = False
    selinux: bool = False
    # True when the edge probed every host path the config names (then a path missing from the
    # maps below could not be probed, and the transform refuses it rather than guess).
    probed: bool = False
    bundle_dir: str = ""  # relative host paths in config.json are relative to it (runc's cwd)
    container_id: str = ""  # the id runc was given ("" when checking a bundle on its own)
    # Host paths named by the bundle, as written -> symlinks resolved.
    realpaths: Mapping[str, str] = field(default_factory=dict)
    # Resolved host paths -> the directories above them that someone other than root could
    # replace (owned by another uid, or writable by group/others without the sticky bit), each
    # with why.  A symlink swapped in there after the check would redirect runc.
    unsafe_ancestors: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # Hook paths as written -> what they are.
    executables: Mapping[str, Executable] = field(default_factory=dict)
    # linux.devices paths -> (type, major, minor) of the host's node there ("c", "b" or "p").
    devices: Mapping[str, tuple[str, int, int]] = field(default_factory=dict)
    # Namespace paths named by the bundle -> True when that is one of the host's namespaces.
    host_namespaces: Mapping[str, bool] = field(default_factory=dict)
    # Namespace paths -> the kind of namespace the file is ("net", "mnt", ...; "" when not one).
    namespace_kinds: Mapping[str, str] = field(default_factory=dict)
    # User-namespace paths -> whether that namespace maps host uid or gid 0 (None: unknown).
    userns_maps_host_root: Mapping[str, bool] = field(default_factory=dict)
    # Directories the engines running on this host keep per-container files in (resolved paths,
    # discovered from their configuration and command lines by sandbox.host.engines); admitted like
    # filesystem.allowed_host_paths and rootfs_dirs.
    engine_dirs: tuple[str, ...] = ()
    # A root filesystem the person named on sandbox's own command line (`sandbox run --rootfs DIR`,
    # resolved; `--bundle B` names B and admits roots strictly inside it): trusted input, so it
    # need not lie in filesystem.rootfs_dirs, but system paths are still refused.
    named_root: str = ""
    named_root_subtree: bool = False
    # Resolved paths of sandbox's own hook programs (installed beside sandbox, root-owned chain).
    own_hooks: frozenset[str] = frozenset()
    # Container paths (mount destinations of proc, sysfs, cgroup, devpts, mqueue and /dev) that
    # are, or pass through, a symlink in the rootfs.
    rootfs_symlinks: frozenset[str] = frozenset()
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
    # For a profile with a network section (probed only then): the nameservers of the bundle's
    # resolv.conf and where they were read ("" when none could be), and this node's own addresses
    # (loopback excepted), all in canonical form.  sandbox's own hook program is in `own_hooks`.
    resolvers: tuple[str, ...] = ()
    resolvers_source: str = ""
    # ...and the network namespace sandbox was started in, "DEV:INO" (the engine's, normally the host's):
    # sandbox's hook never loads rules there, even when sandbox-runc enters a pod's before runc
    runtime_netns: str = ""
    node_addresses: tuple[str, ...] = ()
    # The sandbox agent's socket (asked only for profiles that need it), and the same when an agent
    # answered there.
    agent_socket: str | None = None
    agent: str | None = None
    agent_problem: str = "the sandbox agent was not asked for"  # why `agent` is None
