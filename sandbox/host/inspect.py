"""Read a live process's security state from /proc and its cgroup limits from cgroupfs.  Edge.

Everything here takes the proc root (`proc="/proc"`) and the cgroup root
(`cgroup_root="/sys/fs/cgroup"`) as parameters so that tests can point it at a
fake tree.  The value types (`ProcState`, `CgroupLimits`, `MountEntry`,
`CgroupEntry`) are defined in the pure `sandbox.core.verify` and re-exported here.

cgroups: a controller's directory is found from the process's
/proc/PID/cgroup line for it and the cgroup mounts in /proc/self/mountinfo (so
a hierarchy mounted elsewhere, or with a mount root other than "/", is still
found), falling back to `cgroup_root/<controller>/<path>` (v1) and
`cgroup_root/<path>` or `cgroup_root/unified/<path>` (v2).  On a hybrid host a
controller bound to a v1 hierarchy is read there; the v2 tree is used only for
controllers it actually has.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable

from ..core.tables import CAPABILITIES
from ..core.verify import NAMESPACE_PROC_NAMES, CgroupEntry, CgroupLimits, MountEntry, ProcState
from ..errors import InspectError

__all__ = [
    "CgroupEntry", "CgroupLimits", "MountEntry", "ProcState", "ProcessTable", "V1_UNLIMITED_MIN", "absent_abis",
    "absent_paths", "cap_names", "process_start",
    "host_namespaces", "namespace_inode", "parse_cgroup_file", "parse_id_map", "parse_mountinfo", "parse_status",
    "read_cap_last_cap", "read_cgroup_limits", "read_namespaces", "read_process",
]

# /proc/PID/ns link names, in the order they are reported.
NS_NAMES: tuple[str, ...] = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
assert set(NS_NAMES) == set(NAMESPACE_PROC_NAMES.values())

# cgroup v1 reports "no limit" as the largest page-aligned long: 9223372036854771712 with 4 KiB pages,
# 9223372036854710272 with 64 KiB pages.  Anything from the smaller one up is unlimited.
V1_UNLIMITED_MIN = (2**63 - 1) // 65536 * 65536

_NS_LINK = re.compile(r"^[a-z_]+:\[(\d+)\]$")
_ESCAPE = re.compile(r"\\([0-7]{3})")
# the name runc 1.1's init gives itself (prctl PR_SET_NAME) while it waits on the exec fifo for `start`
RUNC_INIT_NAME = "runc:[2:INIT]"


def cap_names(mask: int) -> tuple[str, ...]:
    """Capability bit mask -> sorted CAP_* names; bits the table does not know become CAP_<n>."""
    out = []
    bit = 0
    while mask >> bit:
        if (mask >> bit) & 1:
            out.append(CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"CAP_{bit}")
        bit += 1
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------------------
# Parsers (pure helpers over file contents)
# ---------------------------------------------------------------------------------------------------------

def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status -> {field: value} (value stripped)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_id_map(text: str) -> tuple[tuple[int, int, int], ...]:
    """/proc/PID/uid_map or gid_map -> ((inside, outside, count), ...)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"bad id map line {line!r}")
        out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return tuple(out)


def _unescape(s: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> tuple[MountEntry, ...]:
    """/proc/PID/mountinfo (proc(5)) -> entries in the kernel's order.

    `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
    """
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        f = line.split(" ")
        try:
            sep = f.index("-", 6)
            mount_id, parent_id = int(f[0]), int(f[1])
            root, mount_point, options = f[3], f[4], f[5]
            fs_type = f[sep + 1]
            source = f[sep + 2] if len(f) > sep + 2 else ""
            super_options = f[sep + 3] if len(f) > sep + 3 else ""
        except (ValueError, IndexError):
            raise ValueError(f"bad mountinfo line {line!r}") from None
        out.append(MountEntry(
            mount_point=_unescape(mount_point),
            options=tuple(o for o in options.split(",") if o),
            fs_type=_unescape(fs_type),
            source=_unescape(source),
            super_options=tuple(o for o in super_options.split(",") if o),
            root=_unescape(root),
            mount_id=mount_id,
            parent_id=parent_id,
        ))
    return tuple(out)


def parse_cgroup_file(text: str) -> tuple[CgroupEntry, ...]:
    """/proc/PID/cgroup -> entries: `4:memory:/a/b` (v1), `0::/a/b` (v2)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        hid, sep1, rest = line.partition(":")
        ctrls, sep2, path = rest.partition(":")
        if not (sep1 and sep2):
            raise ValueError(f"bad cgroup line {line!r}")
        out.append(CgroupEntry(int(hid), tuple(c for c in ctrls.split(",") if c), path))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# Reading a process
# ---------------------------------------------------------------------------------------------------------

def _check_pid(pid: int) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InspectError(f"not a process id: {pid!r}")


def _fail(pid: int | str, path: str, e: OSError) -> InspectError:
    if isinstance(e, PermissionError):
        return InspectError(f"cannot read {path}: permission denied", hint="run sandbox verify as root")
    if e.errno in (errno.ENOENT, errno.ESRCH):
        return InspectError(f"process {pid} exited while being inspected ({path} is gone)")
    return InspectError(f"cannot read {path}: {e.strerror or e}")


def _read(pid: int | str, path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise _fail(pid, path, e) from None


def _exists_or_fail(pid: int, proc: str) -> str:
    base = os.path.join(proc, str(pid))
    if not os.path.isdir(base):
        raise InspectError(f"process {pid} does not exist (has the container exited?)")
    return base


def read_namespaces(pid: int | str, *, proc: str = "/proc") -> dict[str, int]:
    """/proc/PID/ns/* -> {name: inode}; kinds the kernel lacks are left out.  `pid` may be "self"."""
    out = {}
    for name in NS_NAMES:
        path = os.path.join(proc, str(pid), "ns", name)
        try:
            link = os.readlink(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise _fail(pid, path, e) from None
        m = _NS_LINK.match(link)
        if not m:
            raise InspectError(f"unexpected namespace link {path} -> {link}")
        out[name] = int(m.group(1))
    return out


def host_namespaces(*, proc: str = "/proc") -> dict[str, int]:
    """The namespaces this process is in (what runc, started from here, would inherit)."""
    return read_namespaces("self", proc=proc)


def read_process(pid: int, *, proc: str = "/proc") -> ProcState:
    """The kernel's view of process `pid`: capabilities, no_new_privs, seccomp, id maps, namespaces,
    mounts and cgroup membership.  Raises InspectError when it is gone or cannot be read."""
    _check_pid(pid)
    base = _exists_or_fail(pid, proc)
    status = parse_status(_read(pid, os.path.join(base, "status")))
    if status.get("State", "").startswith(("Z", "X")):
        raise InspectError(f"process {pid} has exited (it is a zombie waiting to be reaped)")

    def mask(key: str) -> tuple[str, ...]:
        try:
            return cap_names(int(status[key], 16))
        except (KeyError, ValueError):
            raise InspectError(f"{base}/status has no readable {key} line") from None

    def number(key: str) -> int | None:
        v = status.get(key)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise InspectError(f"{base}/status: {key} is not a number: {v!r}") from None

    def ids(key: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in status.get(key, "").split())
        except ValueError:
            raise InspectError(f"{base}/status: {key} is not a list of numbers") from None

    def id_map(name: str) -> tuple[tuple[int, int, int], ...]:
        path = os.path.join(base, name)
        if not os.path.exists(path):
            return ()
        try:
            return parse_id_map(_read(pid, path))
        except ValueError as e:
            raise InspectError(f"{path}: {e}") from None

    nnp = number("NoNewPrivs")
    try:
        mounts = parse_mountinfo(_read(pid, os.path.join(base, "mountinfo")))
        cgroups = parse_cgroup_file(_read(pid, os.path.join(base, "cgroup")))
    except ValueError as e:
        raise InspectError(f"process {pid}: {e}") from None
    state = ProcState(
        pid=pid,
        cap_inh=mask("CapInh"),
        cap_prm=mask("CapPrm"),
        cap_eff=mask("CapEff"),
        cap_bnd=mask("CapBnd"),
        cap_amb=mask("CapAmb") if "CapAmb" in status else (),
        no_new_privs=None if nnp is None else bool(nnp),
        seccomp_mode=number("Seccomp"),
        seccomp_filters=number("Seccomp_filters"),
        uid_map=id_map("uid_map"),
        gid_map=id_map("gid_map"),
        namespaces=read_namespaces(pid, proc=proc),
        mounts=mounts,
        cgroups=cgroups,
        uids=ids("Uid"),
        gids=ids("Gid"),
        before_exec=status.get("Name", "") == RUNC_INIT_NAME,
    )
    if not os.path.isdir(base):  # it went away while we read: what we have may be half of it
        raise InspectError(f"process {pid} exited while being inspected")
    return state


def absent_paths(pid: int, paths: Iterable[str], *, proc: str = "/proc") -> frozenset[str]:
    """The `paths` that do not exist inside the container of process `pid` (seen through /proc/PID/root)."""
    _check_pid(pid)
    base = _exists_or_fail(pid, proc)
    root = os.path.join(base, "root")
    out = set()
    for p in paths:
        try:
            os.lstat(root + "/" + p.lstrip("/"))
        except FileNotFoundError:
            out.add(p)
        except NotADirectoryError:
            out.add(p)
        except PermissionError:
            raise InspectError(f"cannot look inside {root}: permission denied", hint="run sandbox verify as root") \
                from None
        except OSError:
            pass
    return frozenset(out)


def namespace_inode(path: str) -> int | None:
    """The inode of the namespace a path (/proc/N/ns/net, /var/run/netns/x) refers to, or None."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def read_cap_last_cap(*, proc: str = "/proc") -> int | None:
    try:
        with open(os.path.join(proc, "sys", "kernel", "cap_last_cap"), encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------------
# The kernel's syscall ABIs and the processes of a container
# ---------------------------------------------------------------------------------------------------------

def _kernel_config(proc: str) -> dict[str, str] | None:
    """The running kernel's build configuration (/proc/config.gz, else /boot/config-RELEASE), or None."""
    import gzip

    text = None
    try:
        with gzip.open(os.path.join(proc, "config.gz"), "rt", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (OSError, EOFError):
        try:
            with open(f"/boot/config-{os.uname().release}", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return None
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            out[key] = value
    return out


def absent_abis(machine: str | None = None, *, proc: str = "/proc") -> tuple[str, ...]:
    """The compat syscall ABIs this kernel does not run, so that no filter needs proving for them.

    From the kernel's build configuration and command line; when they cannot be read, every
    ABI is assumed to run (nothing is left out).
    """
    machine = machine or os.uname().machine
    config = _kernel_config(proc)
    if config is None:
        return ()
    try:
        with open(os.path.join(proc, "cmdline"), encoding="utf-8", errors="replace") as f:
            cmdline = f.read().split()
    except OSError:
        cmdline = []
    out = []
    if machine == "x86_64":
        if config.get("CONFIG_X86_X32_ABI") != "y":
            out.append("x32")
        ia32 = config.get("CONFIG_IA32_EMULATION") == "y"
        if ia32:
            default_on = config.get("CONFIG_IA32_EMULATION_DEFAULT_DISABLED") != "y"
            arg = next((a.split("=", 1)[1] for a in reversed(cmdline) if a.startswith("ia32_emulation=")), None)
            ia32 = default_on if arg is None else arg.lower() in ("1", "y", "yes", "on", "true")
        if not ia32:
            out.append("i386")
    elif machine == "aarch64" and config.get("CONFIG_COMPAT") != "y":
        out.append("arm")
    return tuple(out)


def _stat_fields(pid: int, proc: str) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of /proc/PID/stat, or None when it is gone."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")
    return head.partition("(")[2], tail.split()


def process_start(pid: int, *, proc: str = "/proc") -> int | None:
    """The start time of process `pid` in clock ticks after boot (what runc records as init_process_start)."""
    fields = _stat_fields(pid, proc)
    if fields is None or len(fields[1]) < 20 or fields[1][0] in ("Z", "X"):
        return None
    try:
        return int(fields[1][19])
    except ValueError:
        return None


class ProcessTable:
    """Every process on the host with its pid namespace, read once (for the processes of many containers)."""

    def __init__(self, *, proc: str = "/proc") -> None:
        self.proc = proc
        self.pidns: dict[int, int] = {}
        self.comm: dict[int, str] = {}
        for name in os.listdir(proc):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                link = os.readlink(os.path.join(proc, name, "ns", "pid"))
            except OSError:
                continue  # gone, or a kernel thread
            m = _NS_LINK.match(link)
            if m:
                self.pidns[pid] = int(m.group(1))
        self.host_pidns = read_namespaces("self", proc=proc).get("pid")
        self.by_ns: dict[int, list[int]] = {}
        for pid, ns in self.pidns.items():
            self.by_ns.setdefault(ns, []).append(pid)

    def members(self, init_pid: int, *, shared_pidns: bool = False) -> list[int]:
        """The processes of the container whose init is `init_pid` (init first).

        Those in init's pid namespace when it has one of its own; else (the host's, or one that
        other containers share, as a pod's containers may) those in exactly init's cgroups.
        """
        ns = self.pidns.get(init_pid)
        if ns is not None and ns != self.host_pidns and not shared_pidns:
            pids = sorted(self.by_ns.get(ns, []))
        else:
            mine = self._cgroup(init_pid)
            pids = sorted(p for p in self.pidns if mine is not None and self._cgroup(p) == mine)
        return [init_pid] + [p for p in pids if p != init_pid]

    def _cgroup(self, pid: int) -> str | None:
        try:
            with open(os.path.join(self.proc, str(pid), "cgroup"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def parent(self, pid: int) -> int:
        """The parent pid (0 when unknown or gone)."""
        fields = _stat_fields(pid, self.proc)
        try:
            return int(fields[1][1]) if fields and len(fields[1]) > 1 else 0
        except ValueError:
            return 0

    def name(self, pid: int) -> str:
        if pid not in self.comm:
            fields = _stat_fields(pid, self.proc)
            self.comm[pid] = fields[0] if fields else ""
        return self.comm[pid]


# ---------------------------------------------------------------------------------------------------------
# cgroup limits
# ---------------------------------------------------------------------------------------------------------

_V1_FILES = {"memory": ("memory.limit_in_bytes",), "pids": ("pids.max",),
             "cpu": ("cpu.cfs_quota_us", "cpu.cfs_period_us")}
_V2_FILES = {"memory": ("memory.max",), "pids": ("pids.max",), "cpu": ("cpu.max",)}


def _relative(path: str, mount_root: str) -> str | None:
    """`path` (as /proc/PID/cgroup shows it) below a mount whose root is `mount_root`, or None."""
    if any(part == ".." for part in path.split("/")):
        return None  # outside the reader's cgroup namespace
    if mount_root == "/":
        return path
    if path == mount_root:
        return "/"
    if path.startswith(mount_root.rstrip("/") + "/"):
        return path[len(mount_root.rstrip("/")):]
    return None


def _join(base: str, path: str) -> str:
    return os.path.join(base, path.lstrip("/")) if path.strip("/") else base


def self_cgroup_mounts(proc: str = "/proc") -> tuple[MountEntry, ...]:
    """The cgroup mounts this process sees (read once by a caller that reads many containers' limits)."""
    try:
        with open(os.path.join(proc, "self", "mountinfo"), encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
        return tuple(m for m in parse_mountinfo(text) if m.fs_type in ("cgroup", "cgroup2"))
    except (OSError, ValueError):
        return ()


def _v1_dirs(ctrl: str, entry: CgroupEntry, mounts: tuple[MountEntry, ...], cgroup_root: str) -> list[str]:
    dirs = []
    for m in mounts:
        if m.fs_type == "cgroup" and ctrl in m.super_options:
            rel = _relative(entry.path, m.root)
            if rel is not None:
                dirs.append(_join(m.mount_point, rel))
    rel = _relative(entry.path, "/")
    if rel is not None:
        for name in dict.fromkeys((",".join(entry.controllers), ctrl)):
            dirs.append(_join(os.path.join(cgroup_root, name), rel))
    return dirs


def _v2_dirs(entry: CgroupEntry, mounts: tuple[MountEntry, ...], cgroup_root: str) -> list[str]:
    dirs = []
    for m in mounts:
        if m.fs_type == "cgroup2":
            rel = _relative(entry.path, m.root)
            if rel is not None:
                dirs.append(_join(m.mount_point, rel))
    rel = _relative(entry.path, "/")
    if rel is not None:
        if os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
            dirs.append(_join(cgroup_root, rel))
        dirs.append(_join(os.path.join(cgroup_root, "unified"), rel))
    return dirs


def _locate(ctrl: str, entries: tuple[CgroupEntry, ...], mounts: tuple[MountEntry, ...],
            cgroup_root: str) -> tuple[str, str, bool] | str:
    """(version, directory, is the hierarchy's root) for `ctrl`, or the reason it cannot be found."""
    v1 = next((e for e in entries if e.hierarchy_id != 0 and ctrl in e.controllers), None)
    if v1 is not None:
        for d in _v1_dirs(ctrl, v1, mounts, cgroup_root):
            if os.path.isdir(d):
                return "v1", d, v1.path == "/"
    v2 = next((e for e in entries if e.hierarchy_id == 0), None)
    if v2 is not None:
        for d in _v2_dirs(v2, mounts, cgroup_root):
            if not os.path.isdir(d):
                continue
            if os.path.exists(os.path.join(d, _V2_FILES[ctrl][0])):
                return "v2", d, False
            if v2.path == "/" and ctrl in _read_controllers(d):
                return "v2", d, True  # the root cgroup has no limit files and is unlimited
    if v1 is not None:
        return f"the v1 {','.join(v1.controllers)} hierarchy (cgroup {v1.path}) is not mounted under {cgroup_root}"
    if v2 is not None:
        return f"the {ctrl} controller is not enabled for cgroup {v2.path} (cgroup v2)"
    return f"the process is in no {ctrl} cgroup"


def _read_controllers(d: str) -> set[str]:
    try:
        with open(os.path.join(d, "cgroup.controllers"), encoding="ascii") as f:
            return set(f.read().split())
    except OSError:
        return set()


def _read_value(pid: int, d: str, name: str) -> str | None:
    """The file's stripped contents, None if it does not exist."""
    path = os.path.join(d, name)
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        if not os.path.isdir(d):
            raise InspectError(f"cgroup {d} of process {pid} is gone (has the container exited?)") from None
        return None
    except OSError as e:
        raise _fail(pid, path, e) from None


def _number(path: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InspectError(f"{path}: not a number: {text!r}") from None


def read_cgroup_limits(pid: int, *, proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup",
                       self_mounts: tuple[MountEntry, ...] | None = None) -> CgroupLimits:
    """Memory, pids and CPU limits of the cgroups process `pid` is in (None = unlimited).

    A controller whose files cannot be found is listed in `unavailable` with the reason,
    rather than reported as unlimited.
    """
    _check_pid(pid)
    base = _exists_or_fail(pid, proc)
    try:
        entries = parse_cgroup_file(_read(pid, os.path.join(base, "cgroup")))
    except ValueError as e:
        raise InspectError(f"process {pid}: {e}") from None
    mounts = self_mounts if self_mounts is not None else self_cgroup_mounts(proc)
    values: dict[str, int | None] = {}
    versions: dict[str, str] = {}
    paths: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    for ctrl in ("memory", "pids", "cpu"):
        where = _locate(ctrl, entries, mounts, cgroup_root)
        if isinstance(where, str):
            unavailable[ctrl] = where
            continue
        version, d, is_root = where
        versions[ctrl], paths[ctrl] = version, d
        files = (_V1_FILES if version == "v1" else _V2_FILES)[ctrl]
        raw = [_read_value(pid, d, f) for f in files]
        if any(r is None for r in raw):
            if is_root:
                continue  # a hierarchy's root cgroup has no limit files: unlimited
            missing = [f for f, r in zip(files, raw) if r is None]
            unavailable[ctrl] = f"{', '.join(os.path.join(d, f) for f in missing)} does not exist"
            continue
        texts = [r for r in raw if r is not None]
        path = os.path.join(d, files[0])
        if ctrl == "memory":
            if texts[0] == "max":
                values["memory"] = None
            else:
                n = _number(path, texts[0])
                values["memory"] = None if version == "v1" and n >= V1_UNLIMITED_MIN else n
        elif ctrl == "pids":
            values["pids"] = None if texts[0] == "max" else _number(path, texts[0])
        elif version == "v1":
            quota = _number(path, texts[0])
            values["cpu_quota"] = None if quota < 0 else quota
            values["cpu_period"] = _number(os.path.join(d, files[1]), texts[1])
        else:
            parts = texts[0].split()
            if len(parts) != 2:
                raise InspectError(f"{path}: expected 'QUOTA PERIOD', got {texts[0]!r}")
            values["cpu_quota"] = None if parts[0] == "max" else _number(path, parts[0])
            values["cpu_period"] = _number(path, parts[1])
    version = next((versions[c] for c in ("memory", "pids", "cpu") if c in versions),
                   "v1" if any(e.hierarchy_id != 0 for e in entries) else "v2")
    return CgroupLimits(
        version=version,
        memory_limit=values.get("memory"),
        pids_max=values.get("pids"),
        cpu_quota=values.get("cpu_quota"),
        cpu_period=values.get("cpu_period"),
        versions=versions,
        paths=paths,
        unavailable=unavailable,
    )
