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


def probe(config: dict[str, Any] | None = None, bundle_dir: str | None = None, *,
          network: bool = False) -> HostFacts:
    """Facts the transform needs about this host and about the host paths `config` names.

    `network`: the profile has a network section, so the facts its rules need are probed too.
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
    net: dict[str, Any] = network_facts(config, bundle_dir) if network else {}
    return HostFacts(
        **net,
        arch=os.uname().machine,
        cgroup_version=cgroup_version(),
        apparmor=_read("/sys/module/apparmor/parameters/enabled") == "Y",
        selinux=os.path.exists("/sys/fs/selinux/enforce"),
        realpaths=realpaths,
        host_namespaces=host_ns,
        missing_in_rootfs=frozenset(missing),
        rootfs_owner_uid=owner,
        swap_limit=swap_accounting(),
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


# --- network policy facts ------------------------------------------------------------------------

MAX_RESOLV_CONF = 64 * 1024


def network_facts(config: dict[str, Any], bundle_dir: str | None) -> dict[str, Any]:
    """The bundle's resolvers, the node's addresses and sandbox's own hook program (trust-checked)."""
    from .nethook import hook_program

    resolvers, source = bundle_resolvers(config, bundle_dir)
    hook, problem = hook_program()
    return {"resolvers": resolvers, "resolvers_source": source, "node_addresses": node_addresses(),
            "network_hook": hook, "network_hook_problem": problem}


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
    from .netrules import canonical_network

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
    from .netrules import canonical_network, format_address

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
