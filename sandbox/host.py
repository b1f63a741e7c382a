"""Probe the host once and hand the pure transform a `HostFacts` value."""

from __future__ import annotations

import os

from .hostfacts import HostFacts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_NS_PROC_NAMES = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts", "user": "user",
                  "cgroup": "cgroup", "time": "time"}


def cgroup_version(root: str = "/sys/fs/cgroup") -> str:
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if os.path.isdir(os.path.join(root, "unified")):
        return "hybrid"
    return "v1"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def is_host_namespace(kind: str, path: str) -> bool | None:
    """True when `path` is the host's namespace of that kind, None when it cannot be told."""
    target = _ns_id(path)
    if target is None:
        return None
    proc_name = _NS_PROC_NAMES.get(kind, kind)
    hosts = {x for x in (_ns_id(f"/proc/1/ns/{proc_name}"), _ns_id(f"/proc/self/ns/{proc_name}")) if x}
    if not hosts:
        return None
    return target in hosts


def probe(config: dict[str, Any] | None = None, bundle_dir: str | None = None, *, agent: bool = False) -> HostFacts:
    """Facts the transform needs about this host and about the host paths `config` names.

    `agent`: the profile needs the sandbox agent; ask whether one answers on its socket.
    """
    realpaths: dict[str, str] = {}
    host_ns: dict[str, bool] = {}
    missing: set[str] = set()
    owner: int | None = None
    config = config or {}
    for m in config.get("mounts") or []:
        if isinstance(m, dict) and isinstance(m.get("source"), str) and m["source"].startswith("/"):
            realpaths[m["source"]] = os.path.realpath(m["source"])
    hooks = config.get("hooks")
    if isinstance(hooks, dict):
        for stage in hooks.values():
            for h in stage if isinstance(stage, list) else []:
                if isinstance(h, dict) and isinstance(h.get("path"), str):
                    realpaths[h["path"]] = _real_binary(h["path"])
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and isinstance(ns.get("path"), str) and ns["path"]:
            verdict = is_host_namespace(str(ns.get("type")), ns["path"])
            if verdict is not None:
                host_ns[ns["path"]] = verdict
    root = (config.get("root") or {}).get("path")
    if isinstance(root, str) and root:
        rootfs = root if os.path.isabs(root) else os.path.join(bundle_dir or ".", root)
        try:
            owner = os.stat(rootfs).st_uid
        except OSError:
            owner = None
        raw = [m.get("destination") for m in config.get("mounts") or [] if isinstance(m, dict)]
        dests: list[str] = [d.rstrip("/") or "/" for d in raw if isinstance(d, str) and d.startswith("/")]
        for dest in dests:
            # a mount point inside another mount (/dev/pts in the /dev tmpfs) is made there, not in the rootfs
            if any(other != dest and dest.startswith(other.rstrip("/") + "/") for other in dests):
                continue
            if owner is not None and not os.path.lexists(os.path.join(rootfs, dest.lstrip("/"))):
                missing.add(dest)
    return HostFacts(
        arch=os.uname().machine,
        cgroup_version=cgroup_version(),
        apparmor=_read("/sys/module/apparmor/parameters/enabled") == "Y",
        selinux=os.path.exists("/sys/fs/selinux/enforce"),
        realpaths=realpaths,
        host_namespaces=host_ns,
        missing_in_rootfs=frozenset(missing),
        rootfs_owner_uid=owner,
        swap_limit=swap_accounting(),
        **_agent(agent),
    )


def _agent(ask: bool) -> dict[str, Any]:
    """Where the agent listens (a bundle routed there earlier is unrouted); whether it answers, if `ask`."""
    from .agent_client import reachable, socket_path

    return reachable() if ask else {"agent_socket": socket_path()}


def swap_accounting(root: str = "/sys/fs/cgroup") -> bool:
    """Whether the memory cgroup can bound swap (runc refuses a swap limit where it cannot)."""
    if cgroup_version(root) == "v2":
        return True  # memory.swap.max exists wherever the kernel has swap support
    return os.path.exists(os.path.join(root, "memory", "memory.memsw.limit_in_bytes"))


def _real_binary(path: str) -> str:
    """/proc/<pid>/exe of a running engine resolves to the engine's binary."""
    try:
        real = os.path.realpath(path)
    except OSError:
        return path
    return real[: -len(" (deleted)")] if real.endswith(" (deleted)") else real
