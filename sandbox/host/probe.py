"""Probe the host once and hand the pure transform a `HostFacts` value.

Which host paths to probe is the core's decision (`transform.hostpath.named_host_paths`); here
they are resolved, stat'ed and, for hooks, matched with the running process they name.  Nothing
is opened except namespace files (after checking they are on nsfs) and /proc files.
"""

from __future__ import annotations

import os

from ..core.hostfacts import NETWORK_HOOK, Executable, HostFacts, RootfsFacts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..core.profile import IdMapping


_NS_PROC_NAMES = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts", "user": "user",
                  "cgroup": "cgroup", "time": "time"}
# linux/sched.h CLONE_NEW* as NS_GET_NSTYPE returns them
_NS_TYPES = {0x40000000: "net", 0x00020000: "mnt", 0x20000000: "pid", 0x08000000: "ipc", 0x04000000: "uts",
             0x10000000: "user", 0x02000000: "cgroup", 0x00000080: "time"}
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
_EXPOSED = ("root", "bind", "overlay", "mount-source", "listener", "criu-config")
_S_ISVTX = 0o1000

# sandbox's own hook programs (installed beside the sandbox entry points), by file name: the
# network policy's createRuntime hook (sandbox/runtime/nethook.py).  A hook is sandbox's own only when its
# resolved path is one of these and it, what it runs (the Python interpreter beside it, the shell of
# a #! launcher) and every directory above them are owned by root and not writable by others.
OWN_HOOK_PROGRAMS: tuple[str, ...] = (NETWORK_HOOK,)


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


def namespace_kind(path: str) -> str:
    """The kind of namespace the file at `path` is ("net", "mnt", ...), "" when it is not a namespace file."""
    own = _ns_id("/proc/self/ns/net")
    mine = _ns_id(path)
    if own is None or mine is None or mine[0] != own[0]:
        return ""  # not on nsfs: never opened (it could be a device or a FIFO)
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return ""
    try:
        return _NS_TYPES.get(fcntl.ioctl(fd, _NS_GET_NSTYPE), "")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _realpath(path: str) -> str | None:
    """`path` with symlinks resolved; None when something on the way cannot be read (the gate refuses it)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return None


def _proc_pid(path: str) -> str | None:
    """The pid of a /proc/<pid>/<name> path, else None."""
    parts = os.path.normpath(path).split("/")
    return parts[2] if len(parts) == 4 and parts[1] == "proc" and parts[2].isdigit() else None


def userns_maps_host_root(path: str) -> bool | None:
    """Whether the user namespace at /proc/<pid>/ns/user maps host uid or gid 0; None when unknown."""
    parts = os.path.normpath(path).split("/")
    if len(parts) != 5 or parts[1] != "proc" or not parts[2].isdigit() or parts[3:] != ["ns", "user"]:
        return None
    pid = parts[2]
    for name in ("uid_map", "gid_map"):
        text = _read(f"/proc/{pid}/{name}")
        if not text:
            return None
        for line in text.splitlines():
            try:
                _, host, size = (int(x) for x in line.split())
            except ValueError:
                return None
            if host <= 0 < host + size:
                return True
    return False


class _Owners:
    """lstat results along paths, shared by every path of one probe."""

    def __init__(self) -> None:
        self.cache: dict[str, os.stat_result | None] = {}

    def lstat(self, path: str) -> os.stat_result | None:
        if path not in self.cache:
            try:
                self.cache[path] = os.lstat(path)
            except OSError:
                self.cache[path] = None
        return self.cache[path]

    def unsafe_ancestors(self, real: str) -> tuple[tuple[str, str], ...]:
        """The directories above `real` someone other than root could rename or replace something in."""
        out = []
        child = real
        parent = os.path.dirname(real)
        while True:
            why = self._unsafe(parent, child)
            if why:
                out.append((parent, why))
            if parent == "/":
                break
            child, parent = parent, os.path.dirname(parent)
        return tuple(out)

    def _unsafe(self, directory: str, child: str) -> str | None:
        st = self.lstat(directory)
        if st is None:
            return "cannot be examined"
        if st.st_uid != 0:
            return f"is owned by uid {st.st_uid}"
        if st.st_mode & 0o022:
            cst = self.lstat(child)
            if st.st_mode & _S_ISVTX and cst is not None and cst.st_uid == 0:
                return None  # sticky: only the root-owned entry's owner can rename it
            return "is writable by group or others"
        return None

    def trusted(self, real: str, st: os.stat_result | None = None) -> bool:
        """`real` is a root-owned regular file no one else can write, in root-owned directories."""
        import stat

        st = st or self.lstat(real)
        return (st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022
                and not self.unsafe_ancestors(real))


def _executable(path: str, owners: _Owners) -> Executable:
    pid = _proc_pid(path) if path.endswith("/exe") else None
    if pid is None:
        real = _realpath(path)
        return Executable(real=real or path, trusted_chain=real is not None and owners.trusted(real))
    try:
        real = os.readlink(path)
        st = os.stat(path)  # the running binary's inode, even when its file was replaced
    except OSError:
        return Executable(real=path)
    real = real[: -len(" (deleted)")] if real.endswith(" (deleted)") else real
    uid = None
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
    return Executable(real=real, trusted_chain=owners.trusted(real, st), pid=int(pid), process_uid=uid)


def _device_node(real: str) -> tuple[str, int, int] | None:
    import stat

    try:
        st = os.stat(real)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(st.st_mode):
        return ("p", 0, 0)
    else:
        return None
    return kind, os.major(st.st_rdev), os.minor(st.st_rdev)


def own_hooks(owners: _Owners, here: str | None = None) -> frozenset[str]:
    """The resolved paths of sandbox's own hook programs installed in `here` (default: beside the
    running interpreter, i.e. this installation) that can be trusted to run as root."""
    import sys

    here = here or os.path.dirname(sys.executable)
    out = set()
    for name in OWN_HOOK_PROGRAMS:
        real = _realpath(os.path.join(here, name))
        if real is None or not owners.trusted(real):
            continue
        runs = [os.path.join(os.path.dirname(real), "python3")]  # the hook hands work to Python beside it
        try:
            with open(real, "rb") as f:
                line = f.read(128)
        except OSError:
            continue
        shebang = line[2:].split(b"\n")[0].split() if line.startswith(b"#!") else []
        if line.startswith(b"#!") and not shebang:
            continue
        runs += [shebang[0].decode("utf-8", "replace")] if shebang else []
        deps = [_realpath(d) for d in runs if os.path.lexists(d)]
        if all(d is not None and owners.trusted(d) for d in deps):
            out.add(real)
    return frozenset(out)


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
    from .._record import replace

    return replace(facts, **changes)


def probe(config: dict[str, Any] | None = None, bundle_dir: str | None = None,
          container_id: str = "", named_root: str = "", named_root_subtree: bool = False, *,
          userns: bool = False, id_range: IdMapping | None = None, pod_userns: str | None = None,
          engine_dirs: tuple[str, ...] = (), network: bool = False, agent: bool = False) -> HostFacts:
    """Facts the transform needs about this host and about the host paths `config` names.

    `named_root`: a rootfs (or, with `named_root_subtree`, a bundle directory) named on sandbox's
    own command line.  `userns`: the profile adds a user namespace, so the rootfs and the ownership
    of the namespaces the bundle joins are probed too.  `id_range`, `pod_userns` and `engine_dirs`
    are handed through (the edge allocated or discovered them).  `network`: the profile has a network
    section, so the facts its rules need (resolvers, the node's addresses, sandbox's own hook
    program) are probed too.  `agent`: the profile needs the sandbox agent; ask whether one answers."""
    from ..core.transform.hostpath import named_host_paths

    config = config or {}
    bundle = os.path.abspath(bundle_dir) if bundle_dir else ""
    owners = _Owners()
    realpaths: dict[str, str] = {}
    unsafe: dict[str, tuple[tuple[str, str], ...]] = {}
    executables: dict[str, Executable] = {}
    devices: dict[str, tuple[str, int, int]] = {}
    hooks = False
    for use, path in named_host_paths(config):
        full = path if path.startswith("/") else (os.path.join(bundle, path) if bundle else "")
        if not full:
            continue
        if use == "hook":
            hooks = True
            exe = executables[path] = _executable(full, owners)
            realpaths[path] = exe.real
            continue
        if use == "namespace":
            continue
        real = _realpath(full)
        if real is None:
            continue  # unresolvable: absent from realpaths, so the gate refuses it
        realpaths[path] = real
        if use in _EXPOSED:
            unsafe[real] = owners.unsafe_ancestors(real)
        elif use == "device":
            node = _device_node(real)
            if node is not None:
                devices[path] = node
    host_ns: dict[str, bool] = {}
    kinds: dict[str, str] = {}
    maps_root: dict[str, bool] = {}
    host_owned: set[str] = set()
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and isinstance(ns.get("path"), str) and ns["path"]:
            path = ns["path"]
            verdict = is_host_namespace(str(ns.get("type")), path)
            if verdict is not None:
                host_ns[path] = verdict
            kinds[path] = namespace_kind(path)
            if ns.get("type") == "user":
                m = userns_maps_host_root(path)
                if m is not None:
                    maps_root[path] = m
            if userns and owned_by_host_userns(path):
                host_owned.add(path)
    if pod_userns:  # the pod's user namespace the transform makes an app container join: the same checks
        verdict = is_host_namespace("user", pod_userns)
        if verdict is not None:
            host_ns[pod_userns] = verdict
        kinds[pod_userns] = namespace_kind(pod_userns)
        m = userns_maps_host_root(pod_userns)
        if m is not None:
            maps_root[pod_userns] = m
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
    rootfs: RootfsFacts | None = None
    if userns and isinstance(root, str) and root:
        rootfs = rootfs_facts(root if os.path.isabs(root) else os.path.join(bundle or ".", root))
    owner, missing, symlinks = _rootfs_facts(config, bundle)
    net: dict[str, Any] = network_facts(config, bundle_dir) if network else {}
    return HostFacts(
        **net,
        arch=os.uname().machine,
        cgroup_version=cgroup_version(),
        apparmor=_read("/sys/module/apparmor/parameters/enabled") == "Y",
        selinux=os.path.exists("/sys/fs/selinux/enforce"),
        probed=True,
        bundle_dir=bundle,
        container_id=container_id,
        realpaths=realpaths,
        unsafe_ancestors=unsafe,
        executables=executables,
        devices=devices,
        host_namespaces=host_ns,
        namespace_kinds=kinds,
        userns_maps_host_root=maps_root,
        engine_dirs=engine_dirs,
        own_hooks=own_hooks(owners) if hooks or network else frozenset(),
        rootfs_symlinks=symlinks,
        missing_in_rootfs=missing,
        rootfs_owner_uid=owner,
        swap_limit=swap_accounting(),
        named_root=(_realpath(named_root) or "") if named_root else "",
        named_root_subtree=named_root_subtree,
        rootfs=rootfs,
        source_mount_flags=source_flags,
        host_owned_namespaces=frozenset(host_owned),
        id_range=id_range,
        pod_userns=pod_userns,
        **_agent(agent),
    )


def _agent(ask: bool) -> dict[str, Any]:
    """Where the agent listens (a bundle routed there earlier is unrouted); whether it answers, if `ask`."""
    from ..runtime.agent_client import reachable, socket_path

    return reachable() if ask else {"agent_socket": socket_path()}


_SYSTEM_MOUNT_TYPES = ("proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue")


def _rootfs_facts(config: dict[str, Any], bundle: str) -> tuple[int | None, frozenset[str], frozenset[str]]:
    """(rootfs owner, mount destinations missing in it, system mount destinations that are symlinks in it)."""
    root = (config.get("root") or {}).get("path")
    if not isinstance(root, str) or not root:
        return None, frozenset(), frozenset()
    rootfs = root if os.path.isabs(root) else os.path.join(bundle or ".", root)
    try:
        owner: int | None = os.stat(rootfs).st_uid
    except OSError:
        owner = None
    mounts = [m for m in config.get("mounts") or [] if isinstance(m, dict) and isinstance(m.get("destination"), str)]
    dests: list[str] = [os.path.normpath("/" + m["destination"].lstrip("/")) for m in mounts]
    missing: set[str] = set()
    symlinks: set[str] = set()
    for m, dest in zip(mounts, dests):
        if m.get("type") in _SYSTEM_MOUNT_TYPES or dest == "/dev":
            p = rootfs
            for part in dest.strip("/").split("/"):
                p = os.path.join(p, part)
                if os.path.islink(p):
                    symlinks.add(dest)
                    break
        # a mount point inside another mount (/dev/pts in the /dev tmpfs) is made there, not in the rootfs
        if any(other != dest and dest.startswith(other.rstrip("/") + "/") for other in dests):
            continue
        if owner is not None and not os.path.lexists(os.path.join(rootfs, dest.lstrip("/"))):
            missing.add(dest)
    return owner, frozenset(missing), frozenset(symlinks)


def swap_accounting(root: str = "/sys/fs/cgroup") -> bool:
    """Whether the memory cgroup can bound swap (runc refuses a swap limit where it cannot)."""
    if cgroup_version(root) == "v2":
        return True  # memory.swap.max exists wherever the kernel has swap support
    return os.path.exists(os.path.join(root, "memory", "memory.memsw.limit_in_bytes"))


# --- network policy facts ------------------------------------------------------------------------

MAX_RESOLV_CONF = 64 * 1024


def network_facts(config: dict[str, Any], bundle_dir: str | None) -> dict[str, Any]:
    """The bundle's resolvers and the node's addresses (sandbox's own hook program is `own_hooks`)."""
    resolvers, source = bundle_resolvers(config, bundle_dir)
    st = os.stat("/proc/self/ns/net")  # before sandbox-runc enters any pod's (it does so after the probe)
    return {"resolvers": resolvers, "resolvers_source": source, "node_addresses": node_addresses(),
            "runtime_netns": f"{st.st_dev}:{st.st_ino}"}


def bundle_resolvers(config: dict[str, Any], bundle_dir: str | None) -> tuple[tuple[str, ...], str]:
    """The nameservers of the resolv.conf the container will see, and where it was read.

    That is the source of the last bind mount at /etc/resolv.conf (engines bind their own file
    there), else the rootfs's /etc/resolv.conf, read without following a symlink out of it.
    The text is the bundle author's: only well-formed addresses come out of it.
    """
    source = ""
    for m in config.get("mounts") or []:
        if (isinstance(m, dict) and isinstance(m.get("destination"), str) and isinstance(m.get("source"), str)
                and m["source"].startswith("/") and os.path.normpath(m["destination"]) == "/etc/resolv.conf"):
            source = m["source"]
    try:
        if source:
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        else:
            root = (config.get("root") or {}).get("path")
            if not isinstance(root, str) or not root:
                return (), ""
            source = os.path.join(root if os.path.isabs(root) else os.path.join(bundle_dir or ".", root),
                                  "etc", "resolv.conf")
            fd = _open_beneath(os.path.dirname(os.path.dirname(source)), ("etc", "resolv.conf"))
    except OSError:
        return (), ""
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return (), ""
        data = os.read(fd, MAX_RESOLV_CONF)
    except OSError:
        return (), ""
    finally:
        os.close(fd)
    return parse_resolv_conf(data.decode("utf-8", "replace")), source


def _open_beneath(root: str, parts: tuple[str, ...]) -> int:
    """Open root/parts... refusing symlinks at every step (a rootfs is written by the bundle's author)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except OSError:
        os.close(fd)
        raise


def parse_resolv_conf(text: str) -> tuple[str, ...]:
    from ..core.netrules import canonical_network

    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            canon = canonical_network(words[1].partition("%")[0])
            if canon and canon.rpartition("/")[0] not in out:
                out.append(canon.rpartition("/")[0])
    return tuple(out[:16])


def node_addresses(proc: str = "/proc") -> tuple[str, ...]:
    """This node's own addresses, as the kernel of its network namespace lists them; loopback left out.

    IPv4: the `/32 host LOCAL` entries of /proc/net/fib_trie; IPv6: /proc/net/if_inet6.
    """
    from ..core.netrules import canonical_network, format_address

    out: list[str] = []
    try:
        with open(os.path.join(proc, "net", "fib_trie"), encoding="ascii", errors="replace") as f:
            last = ""
            for line in f:
                text = line.strip()
                if text.startswith("|-- "):
                    last = text[4:]
                elif text == "/32 host LOCAL" and last and not last.startswith("127."):
                    canon = canonical_network(last)
                    if canon and canon[:-3] not in out:
                        out.append(canon[:-3])
    except OSError:
        pass
    try:
        with open(os.path.join(proc, "net", "if_inet6"), encoding="ascii", errors="replace") as f:
            for line in f:
                words = line.split()
                if words and len(words[0]) == 32:
                    try:
                        addr = format_address(6, int(words[0], 16))
                    except ValueError:
                        continue
                    if addr != "::1" and addr not in out:
                        out.append(addr)
    except OSError:
        pass
    return tuple(out)
