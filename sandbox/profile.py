"""The security profile model: frozen dataclasses, built by the loader, read by the transform.

A profile is an upper bound: the transform never grants more than the bundle
asked for, and never lets the bundle keep more than the profile allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["enforce", "complain"]
UsernsMode = Literal["required", "optional"]
PathMatch = Literal["exact", "subtree"]


@dataclass(frozen=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int

    def to_oci(self) -> dict[str, int]:
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.size}


@dataclass(frozen=True)
class UserPolicy:
    run_as_non_root: bool = False
    user_namespace: UsernsMode = "optional"
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


# Used when a user namespace is required and neither profile nor bundle maps ids:
# the conventional subordinate range of the first user in /etc/subuid.
DEFAULT_ID_MAPPING = IdMapping(container_id=0, host_id=100000, size=65536)


@dataclass(frozen=True)
class SeccompPolicy:
    base: str = "runtime-default"  # runtime-default | none | a path to an OCI/Docker seccomp JSON
    base_profile: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    default_action: str = "SCMP_ACT_ERRNO"
    default_errno: int = 1  # EPERM
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    # OCI-format rules that replace the base's entries for the syscalls they name
    rules: tuple[dict[str, Any], ...] = field(default=(), hash=False)


@dataclass(frozen=True)
class TmpfsMount:
    path: str
    size: int | None = None  # bytes
    options: tuple[str, ...] = ("nosuid", "nodev", "noexec")
    mode: int = 0o1777


@dataclass(frozen=True)
class HostPath:
    path: str
    match: PathMatch = "subtree"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class NamespacePolicy:
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limit:
    max: int | None = None
    default: int | None = None


@dataclass(frozen=True)
class ResourcePolicy:
    memory: Limit = Limit()  # bytes
    pids: Limit = Limit()
    cpu: Limit = Limit()  # millicpus (1000 = one CPU)


@dataclass(frozen=True)
class DevicePolicy:
    allow: tuple[str, ...] = ()  # device paths a bundle may add beyond the standard set


@dataclass(frozen=True)
class SysctlPolicy:
    allow: tuple[str, ...] = ()  # names, or glob patterns such as "net.ipv4.*"


@dataclass(frozen=True)
class HookPolicy:
    allow: tuple[str, ...] = ()  # host paths of hook binaries, symlinks resolved
    allow_engine_hooks: bool = True


@dataclass(frozen=True)
class LsmPolicy:
    apparmor: str | None = None
    selinux: str | None = None


@dataclass(frozen=True)
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
    lsm: LsmPolicy = LsmPolicy()
    resolved: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def rule(self) -> str:
        return f"{self.name} ({self.source})" if self.source else self.name
