"""Probe the host once and hand the pure transform a `HostFacts` value."""

from __future__ import annotations

import os

from .hostfacts import HostFacts, RootfsFacts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .profile import IdMapping


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


_NS_GET_USERNS = 0xB701  # ioctl: the user namespace that owns a namespace


def owned_by_host_userns(path: str) -> bool | None:
    """Whether the namespace at `path` belongs to the host's user namespace (None: cannot tell)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        owner = fcntl.ioctl(fd, _NS_GET_USERNS)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        st = os.fstat(owner)
    finally:
        os.close(owner)
    hosts = {x for x in (_ns_id("/proc/1/ns/user"), _ns_id("/proc/self/ns/user")) if x}
    return (st.st_dev, st.st_ino) in hosts if hosts else None


def rootfs_facts(rootfs: str) -> RootfsFacts:
    """How the host holds `rootfs`: a plain directory, an overlay mount (with its layers), or neither."""
    from .mountns import mount_at_or_above, split_layers, split_overlay_options

    path = os.path.realpath(rootfs)
    try:
        st = os.stat(path)
    except OSError as e:
        return RootfsFacts(path=path, kind="unsupported", problem=f"cannot stat it ({e.strerror})")
    parents = []
    d = os.path.dirname(path)
    chain = []
    while True:
        chain.append(d)
        if d == "/":
            break
        d = os.path.dirname(d)
    for d in reversed(chain):
        try:
            pst = os.stat(d)
        except OSError as e:
            return RootfsFacts(path=path, kind="unsupported", problem=f"cannot stat {d} ({e.strerror})")
        parents.append((d, pst.st_uid, pst.st_gid, pst.st_mode & 0o7777))
    mount = mount_at_or_above(path)
    fs_type = mount[1] if mount else ""
    base = RootfsFacts(path=path, kind="dir", fs_type=fs_type, owner_uid=st.st_uid, parents=tuple(parents))
    if fs_type != "overlay":
        return base
    if mount is None or mount[0] != path:
        return _replace_facts(base, kind="unsupported",
                              problem="it lies inside an overlay mount that is not the rootfs itself, and the "
                                      "kernel cannot idmap overlay mounts")
    opts = split_overlay_options(mount[2])
    lower: list[str] = []
    upper = ""
    keep: list[str] = ["index=off"]  # the engine's upper layer is in use as its overlay's upper
    for k, v in opts:
        if k in ("lowerdir", "lowerdir+"):
            lower += split_layers(v)
        elif k == "upperdir":
            upper = v
        elif k == "datadir+":
            return _replace_facts(base, kind="unsupported", problem="its overlay has data-only layers")
        elif (k, v) in (("metacopy", "on"), ("userxattr", "")):
            keep.append(k if not v else f"{k}={v}")
        elif k == "redirect_dir" and v in ("on", "follow"):
            keep.append("redirect_dir=follow")
    layers = ([upper] if upper else []) + lower
    if any(not p.startswith("/") for p in layers):
        # dockerd's overlay2 mounts from its storage directory with relative layer names
        # (l/XXXX, <id>/diff); accept that layout only when it is unambiguous
        home = os.path.dirname(os.path.dirname(path))
        if upper and not upper.startswith("/") and \
                os.path.realpath(os.path.join(home, upper)) != os.path.join(os.path.dirname(path), "diff"):
            return _replace_facts(base, kind="unsupported",
                                  problem="its overlay names its layers relative to a directory sandbox cannot "
                                          "determine")
        layers = [p if p.startswith("/") else os.path.join(home, p) for p in layers]
    layers = [os.path.realpath(p) for p in layers]
    missing = next((p for p in layers if not os.path.isdir(p)), None)
    if not layers or missing:
        return _replace_facts(base, kind="unsupported", problem=f"its overlay layer {missing} cannot be found")
    return _replace_facts(base, kind="overlay", layers=tuple(layers), overlay_options=tuple(keep))


def _replace_facts(facts: RootfsFacts, **changes: Any) -> RootfsFacts:
    from ._record import replace

    return replace(facts, **changes)


def probe(config: dict[str, Any] | None = None, bundle_dir: str | None = None, *, userns: bool = False,
          id_range: IdMapping | None = None, pod_userns: str | None = None,
          engine_dirs: tuple[str, ...] = ()) -> HostFacts:
    """Facts the transform needs about this host and about the host paths `config` names.

    `userns`: the profile adds a user namespace, so the rootfs and the ownership of the namespaces
    the bundle joins are probed too.  `id_range`, `pod_userns` and `engine_dirs` are handed
    through (the edge allocated or discovered them)."""
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
    host_owned: set[str] = set()
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and isinstance(ns.get("path"), str) and ns["path"]:
            verdict = is_host_namespace(str(ns.get("type")), ns["path"])
            if verdict is not None:
                host_ns[ns["path"]] = verdict
            if userns and owned_by_host_userns(ns["path"]):
                host_owned.add(ns["path"])
    if pod_userns:
        verdict = is_host_namespace("user", pod_userns)
        if verdict is not None:
            host_ns[pod_userns] = verdict
    source_flags: dict[str, tuple[str, ...]] = {}
    if userns:
        from .mountns import mount_at_or_above, mounts

        table = mounts()
        for m in config.get("mounts") or []:
            src = m.get("source") if isinstance(m, dict) else None
            if isinstance(src, str) and src.startswith("/") and src in realpaths:
                held = mount_at_or_above(realpaths[src], table)
                if held:
                    source_flags[src] = tuple(o for o in held[3].split(",") if o)
    root = (config.get("root") or {}).get("path")
    facts: RootfsFacts | None = None
    if isinstance(root, str) and root:
        rootfs = root if os.path.isabs(root) else os.path.join(bundle_dir or ".", root)
        if userns:
            facts = rootfs_facts(rootfs)
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
        rootfs=facts,
        source_mount_flags=source_flags,
        host_owned_namespaces=frozenset(host_owned),
        id_range=id_range,
        pod_userns=pod_userns,
        engine_dirs=engine_dirs,
    )


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
