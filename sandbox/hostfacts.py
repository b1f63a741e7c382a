"""What the host supports and what host paths resolve to, as a plain value.

The edge (`sandbox.host`) probes once and passes this to the pure transform, so
the transform never stats a file or reads /proc itself.
"""

from __future__ import annotations

from ._record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


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
    # The sandbox agent's socket (asked only for profiles that need it), and the same when an agent
    # answered there.
    agent_socket: str | None = None
    agent: str | None = None
    agent_problem: str = "the sandbox agent was not asked for"  # why `agent` is None
