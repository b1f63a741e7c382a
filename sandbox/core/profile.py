"""The security profile model: frozen dataclasses, built by the loader, read by the transform.

A profile is an upper bound: the transform never grants more than the bundle
asked for, and never lets the bundle keep more than the profile allows.
"""

from __future__ import annotations

from .._record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    Mode = Literal["enforce", "complain"]
    UsernsMode = Literal["required", "optional"]
    PathMatch = Literal["exact", "subtree"]


@record
class IdMapping:
    container_id: int
    host_id: int
    size: int

    def to_oci(self) -> dict[str, int]:
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.size}


@record
class UserPolicy:
    run_as_non_root: bool = False
    user_namespace: UsernsMode = "optional"
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


# Used when a user namespace is required and neither profile nor bundle maps ids:
# the conventional subordinate range of the first user in /etc/subuid.
DEFAULT_ID_MAPPING = IdMapping(container_id=0, host_id=100000, size=65536)


@record
class SeccompPolicy:
    base: str = "runtime-default"  # runtime-default | empty | none | a path to an OCI/Docker seccomp JSON
    base_profile: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    default_action: str = "SCMP_ACT_ERRNO"
    default_errno: int = 1  # EPERM
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    # OCI-format rules that replace the base's entries for the syscalls they name
    rules: tuple[dict[str, Any], ...] = field(default=(), hash=False)


@record
class TmpfsMount:
    path: str
    size: int | None = None  # bytes
    options: tuple[str, ...] = ("nosuid", "nodev", "noexec")
    mode: int = 0o1777


@record
class HostPath:
    path: str
    match: PathMatch = "subtree"


@record
class FilesystemPolicy:
    readonly_rootfs: bool = False
    tmpfs: tuple[TmpfsMount, ...] = ()
    forbidden_host_paths: tuple[HostPath, ...] = ()
    allowed_host_paths: tuple[str, ...] = ()  # subtrees excepted from the forbidden ones
    bind_readonly: bool = False
    bind_nosuid_nodev: bool = True
    readonly_system_mounts: bool = True  # sysfs and cgroup mounts forced read-only
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    # filesystem types allowed beyond the built-in ones (tables.MOUNT_TYPES)
    mount_types: tuple[str, ...] = ()
    # directories a container's root filesystem may lie in (strictly inside one of them)
    rootfs_dirs: tuple[str, ...] = ()


@record
class NamespacePolicy:
    required: tuple[str, ...] = ()


@record
class Limit:
    max: int | None = None
    default: int | None = None


@record
class ResourcePolicy:
    memory: Limit = Limit()  # bytes
    pids: Limit = Limit()
    cpu: Limit = Limit()  # millicpus (1000 = one CPU)


@record
class DevicePolicy:
    allow: tuple[str, ...] = ()  # device paths a bundle may add beyond the standard set


@record
class SysctlPolicy:
    allow: tuple[str, ...] = ()  # names, or glob patterns such as "net.ipv4.*"


@record
class HookPolicy:
    allow: tuple[str, ...] = ()  # host paths of hook binaries, symlinks resolved
    allow_engine_hooks: bool = True


@record
class NetRule:
    """One allow-list entry: traffic to (egress) or from (ingress) `cidr` on `ports` over `protocol`."""

    cidr: str = ""  # a network in canonical form ("10.0.0.0/8", "fd00::/64", "192.0.2.1/32"); "": anywhere
    protocol: str = ""  # tcp | udp | icmp; "": any
    ports: tuple[tuple[int, int], ...] = ()  # inclusive ranges, merged and sorted; (): every port


@record
class NetworkPolicy:
    """What the container's network namespace lets through (nftables, loaded by sandbox's own hook)."""

    egress: tuple[NetRule, ...] | None = None  # None: not filtered; a tuple: allow-list, the rest dropped
    ingress: tuple[NetRule, ...] | None = None
    dns: tuple[str, ...] | None = None  # resolver addresses; None: the nameservers of the bundle's resolv.conf
    deny_always: tuple[str, ...] = ()  # networks never reachable whatever the lists say, and "node"

    @property
    def enforced(self) -> bool:
        """Whether any rule needs loading (a profile without a network section loads none)."""
        return self.egress is not None or self.ingress is not None or bool(self.deny_always)


@record
class ProcessPolicy:
    oom_score_adj_min: int | None = None  # process.oomScoreAdj is raised to at least this
    rlimits: tuple[tuple[str, int], ...] = ()  # (RLIMIT_*, maximum for soft and hard)


@record
class LsmPolicy:
    apparmor: str | None = None
    selinux: str | None = None


@record
class MonitorPolicy:
    """What the sandbox agent watches (seccomp user notification; sandbox/runtime/agent.py)."""

    exec_trail: bool = False  # every execve/execveat is reported to the agent and recorded
    denials: bool = False  # syscalls the filter denies outright are failed by the agent and recorded


@record
class Profile:
    name: str
    description: str = ""
    mode: Mode = "enforce"
    extends: str | None = None
    source: str = ""  # file the profile came from (the leaf of an extends chain)
    sha256: str = ""  # of the resolved profile, for the audit log
    capabilities: tuple[str, ...] = ()
    no_new_privileges: bool = True
    user: UserPolicy = UserPolicy()
    seccomp: SeccompPolicy = SeccompPolicy()
    filesystem: FilesystemPolicy = FilesystemPolicy()
    namespaces: NamespacePolicy = NamespacePolicy()
    resources: ResourcePolicy = ResourcePolicy()
    devices: DevicePolicy = DevicePolicy()
    sysctls: SysctlPolicy = SysctlPolicy()
    hooks: HookPolicy = HookPolicy()
    network: NetworkPolicy = NetworkPolicy()
    lsm: LsmPolicy = LsmPolicy()
    process: ProcessPolicy = ProcessPolicy()
    unknown_config_fields: str = "refuse"  # refuse | warn: config.json fields outside sandbox's table
    runc_mitigations: bool = True  # config-level mitigations of known runc vulnerabilities
    monitor: MonitorPolicy = MonitorPolicy()
    resolved: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # every operator file the profile was built from (chain and seccomp base), for trust checks
    files: tuple[str, ...] = field(default=(), compare=False)

    @property
    def rule(self) -> str:
        return f"{self.name} ({self.source})" if self.source else self.name


_MODEL: dict[str, type] = {c.__name__: c for c in (
    IdMapping, UserPolicy, SeccompPolicy, TmpfsMount, HostPath, FilesystemPolicy, NamespacePolicy, Limit,
    ResourcePolicy, DevicePolicy, SysctlPolicy, HookPolicy, NetRule, NetworkPolicy, ProcessPolicy, LsmPolicy,
    MonitorPolicy, Profile)}


def to_plain(obj: Any) -> Any:
    """The profile as plain data (dicts, tuples, scalars) that marshal can store."""
    names = getattr(obj.__class__, "__record_fields__", None)
    if names is not None:
        return {"__model__": obj.__class__.__name__, **{n: to_plain(getattr(obj, n)) for n in names}}
    if isinstance(obj, tuple):
        return tuple(to_plain(x) for x in obj)
    return obj


def from_plain(data: Any) -> Any:
    """Inverse of to_plain."""
    if isinstance(data, dict) and "__model__" in data:
        cls = _MODEL[data["__model__"]]
        return cls(**{k: from_plain(v) for k, v in data.items() if k != "__model__"})
    if isinstance(data, tuple):
        return tuple(from_plain(x) for x in data)
    return data
