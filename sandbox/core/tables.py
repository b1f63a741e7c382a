"""Pure lookup tables: capability names, seccomp actions and architectures, syscall names.

Each table has a `known_*()` companion that feeds "did you mean" messages and
`sandbox profile schema`.  Syscall names come from libseccomp's own tables (via
pyseccomp, loaded lazily): runc silently drops names it does not know, so a typo
in a deny list would silently allow the syscall unless we check here.
"""

from __future__ import annotations

import errno as _errno

# Kernel capability numbers (include/uapi/linux/capability.h).
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
CAPABILITY_NUMBERS: dict[str, int] = {name: i for i, name in enumerate(CAPABILITIES)}

# Docker's default capability set (moby oci/caps/defaults.go), the `baseline` bound.
DOCKER_DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
    "CAP_SETUID", "CAP_SYS_CHROOT",
)

# Capabilities that amount to root on the host or an easy escape; lint flags them.
DANGEROUS_CAPABILITIES: frozenset[str] = frozenset({
    "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH",
    "CAP_NET_ADMIN", "CAP_SYS_BOOT", "CAP_BPF", "CAP_PERFMON", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE",
    "CAP_SYS_TIME", "CAP_SYSLOG", "CAP_CHECKPOINT_RESTORE", "CAP_LINUX_IMMUTABLE",
})

CAPABILITY_SETS: tuple[str, ...] = ("bounding", "effective", "permitted", "inheritable", "ambient")

# Seccomp actions as the OCI spec spells them, least to most strict.  The rank
# decides which default action wins when two filters are intersected.
SECCOMP_ACTION_RANK: dict[str, int] = {
    "SCMP_ACT_ALLOW": 0,
    "SCMP_ACT_LOG": 1,
    "SCMP_ACT_NOTIFY": 2,
    "SCMP_ACT_TRACE": 3,
    "SCMP_ACT_ERRNO": 4,
    "SCMP_ACT_TRAP": 5,
    "SCMP_ACT_KILL": 6,
    "SCMP_ACT_KILL_THREAD": 6,
    "SCMP_ACT_KILL_PROCESS": 7,
}
# Actions that let a syscall run (or let a supervisor decide to).
SECCOMP_PERMISSIVE_ACTIONS: frozenset[str] = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"})

# Short names accepted in profiles for `seccomp.default_action`.
SECCOMP_ACTION_ALIASES: dict[str, str] = {
    "errno": "SCMP_ACT_ERRNO",
    "kill": "SCMP_ACT_KILL_PROCESS",
    "kill_process": "SCMP_ACT_KILL_PROCESS",
    "kill_thread": "SCMP_ACT_KILL_THREAD",
    "trap": "SCMP_ACT_TRAP",
    "log": "SCMP_ACT_LOG",
    "allow": "SCMP_ACT_ALLOW",
}

SECCOMP_OPERATORS: frozenset[str] = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})

# seccomp(2) flags; SPEC_ALLOW turns off the speculative-store-bypass mitigation.
SECCOMP_LOOSENING_FLAGS: frozenset[str] = frozenset({"SECCOMP_FILTER_FLAG_SPEC_ALLOW"})

# Host machine (uname -m) -> (Docker arch name, native SCMP arch, sub-architectures).
ARCHITECTURES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
}
DOCKER_ARCH_NAMES: frozenset[str] = frozenset({
    "amd64", "x86", "x32", "arm64", "arm", "mips", "mips64", "mips64n32", "mipsel", "mipsel64",
    "mipsel64n32", "ppc", "ppc64", "ppc64le", "riscv64", "s390", "s390x",
})

NAMESPACES: tuple[str, ...] = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

HOOK_STAGES: tuple[str, ...] = (
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
)

# Hook stages whose path is resolved, and run, on the host side (runtime namespace, or runc init
# before pivot_root with every capability).  startContainer hooks run inside the container, after
# its capabilities are dropped and its seccomp filter is loaded: their path is a container path.
HOST_HOOK_STAGES: tuple[str, ...] = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")

# Hooks the engines themselves put into every container, by the engine binary's name: the stages
# it uses and the shape of its arguments (each a literal, or `<hex64>`, `<hex12>`, `<abs>` for an
# absolute path after a literal prefix, `<id>` for the container id; `?` marks an optional one).
# Docker (daemon/oci_linux.go) adds `/proc/<dockerd pid>/exe libnetwork-setkey
# -exec-root=<exec root> <container id> <short controller id>` as a prestart hook; refusing it
# would make Docker unusable.  Whether a hook is an engine's is decided by identity (see
# transform/hostpath.py), the name only picks the shape to compare with.
ENGINE_HOOKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dockerd": (("prestart",), ("libnetwork-setkey", "?-exec-root=<abs>", "<id>", "<hex12>")),
}

# glibc's UNSECURE_ENVVARS (sysdeps/generic/unsecvars.h) plus LD_*: what the dynamic loader drops
# for setuid programs because they make a program load or read what the caller chose.  A hook's
# env carrying one would run the allow-listed binary with the bundle author's code.
UNSECURE_ENV_PREFIXES: tuple[str, ...] = ("LD_",)
UNSECURE_ENV: frozenset[str] = frozenset({
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
})

# -- mounts (runc 1.1.5 libcontainer/specconv and rootfs_linux.go) ------------------------------------

# Options runc itself turns into mount flags, propagation, mount_setattr(2) attributes or its own
# extensions; every other option string becomes filesystem data passed to the kernel.
MOUNT_FLAG_OPTIONS: frozenset[str] = frozenset({
    "acl", "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion", "lazytime",
    "loud", "mand", "noacl", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
    "norelatime", "nostrictatime", "nosuid", "nosymfollow", "rbind", "relatime", "remount", "ro", "rw",
    "silent", "strictatime", "suid", "sync", "symfollow",
    "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
    "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnodiratime", "rdiratime",
    "rrelatime", "rnorelatime", "rnoatime", "ratime", "rstrictatime", "rnostrictatime", "rnosymfollow",
    "rsymfollow",
    "tmpcopyup",
})
# A flag and the options that undo it when they come later (runc applies options in order).
MOUNT_FLAG_CLEARS: dict[str, tuple[str, ...]] = {
    "nosuid": ("suid", "rsuid"), "nodev": ("dev", "rdev"), "noexec": ("exec", "rexec"), "ro": ("rw", "rrw"),
}
# Propagation that would carry mounts between the container and the host -> its one-way form.
SHARED_PROPAGATION: dict[str, str] = {"shared": "slave", "rshared": "rslave"}

# The filesystem types a container needs, with the one destination each may be mounted at (None:
# anywhere) and the filesystem data options it may carry (`key` or `key=`; for overlay, the
# directory options are host paths and go through the host-path gate).  `bind` is recognised by
# its options (`bind`/`rbind`), whatever the type says, as runc does.  A second proc or sysfs
# elsewhere would be one without the masked and read-only paths, so they are pinned.
MOUNT_TYPES: dict[str, tuple[str | None, frozenset[str]]] = {
    "proc": ("/proc", frozenset({"hidepid=", "gid=", "subset="})),
    "sysfs": ("/sys", frozenset()),
    "tmpfs": (None, frozenset({"size=", "nr_blocks=", "nr_inodes=", "mode=", "uid=", "gid=", "huge=", "inode32",
                               "inode64", "noswap"})),
    "devpts": ("/dev/pts", frozenset({"newinstance", "ptmxmode=", "mode=", "gid=", "uid=", "max="})),
    "mqueue": ("/dev/mqueue", frozenset()),
    "cgroup": ("/sys/fs/cgroup", frozenset()),
    "cgroup2": ("/sys/fs/cgroup", frozenset()),
    "bind": (None, frozenset()),
    "overlay": (None, frozenset({"lowerdir=", "upperdir=", "workdir=", "userxattr", "volatile", "index=off",
                                 "redirect_dir=off", "redirect_dir=nofollow", "metacopy=off", "xino=off",
                                 "xino=auto", "xino=on", "uuid=off", "uuid=null", "uuid=auto", "uuid=on",
                                 "nfs_export=off"})),
}
OVERLAY_DIR_OPTIONS: tuple[str, ...] = ("lowerdir", "upperdir", "workdir")
# Mounted by runc before pivot_root at a path it creates (proc and sysfs must be on a plain
# directory): a symlink there would take the mount elsewhere (CVE-2019-16884, CVE-2023-27561/28642).
SYSTEM_MOUNT_TYPES: frozenset[str] = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue"})

# Where engines and sandbox keep container root filesystems: the default of filesystem.rootfs_dirs.
ROOTFS_DIRS: tuple[str, ...] = (
    "/var/lib/docker", "/var/lib/containers/storage", "/run/containers/storage", "/var/lib/containerd",
    "/run/containerd/io.containerd.runtime.v2.task", "/var/lib/sandbox", "/var/cache/sandbox", "/run/sandbox",
    "/tmp", "/var/tmp",  # noqa: S108 - directories (strictly) inside which a rootfs may be
)

# The host's own system trees: never a container's root, even one named on sandbox's command line
# (`sandbox run --rootfs /usr` would hand the container the host's programs, writable under baseline).
HOST_SYSTEM_TREES: tuple[str, ...] = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys", "/usr",
)
# Top-level directories that hold everyone's files: not a root themselves (a directory below may be).
HOST_TOP_DIRS: tuple[str, ...] = (
    "/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp",  # noqa: S108 - names, never opened
)

# -- process ---------------------------------------------------------------------------------------------

# The rlimits runc 1.1 knows (libcontainer/specconv rlimitMap); any other name makes runc fail.
RLIMITS: tuple[str, ...] = (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
    "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
)

# AppArmor profiles and SELinux types that switch confinement off (Pod Security "baseline" forbids them).
UNCONFINED_APPARMOR: frozenset[str] = frozenset({"unconfined"})
SELINUX_CONTAINER_TYPES: frozenset[str] = frozenset({"container_t", "container_init_t", "container_kvm_t",
                                                    "container_engine_t"})

# -- cgroups -----------------------------------------------------------------------------------------------

# cgroup v2 files `linux.resources.unified` may write (runc writes any file name it is given into the
# container's cgroup: `cgroup.procs` would move host processes in, `cgroup.subtree_control` and
# `cgroup.type` reshape the tree).  Each maps to the profile limit it would override, if any.
UNIFIED_KEYS: dict[str, str | None] = {
    "memory.max": "memory", "memory.swap.max": "memory", "memory.high": "memory", "memory.low": None,
    "memory.min": None, "memory.oom.group": None, "memory.swap.high": "memory", "memory.zswap.max": None,
    "pids.max": "pids", "cpu.max": "cpu", "cpu.weight": None, "cpu.weight.nice": None, "cpu.idle": None,
    "cpu.uclamp.min": None, "cpu.uclamp.max": None, "cpuset.cpus": None, "cpuset.mems": None,
    "io.weight": None, "io.max": None, "io.latency": None, "io.bfq.weight": None, "hugetlb.2MB.max": None,
    "hugetlb.1GB.max": None, "rdma.max": None,
}

# Kubernetes' "safe" sysctl set: namespaced, cannot affect other pods or the node.
SAFE_SYSCTLS: tuple[str, ...] = (
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
)

# Docker's default masked and read-only paths (moby oci/defaults.go).
DOCKER_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DOCKER_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

# Character devices every container gets (runc creates them; cgroup rules allow them).
STANDARD_DEVICES: dict[str, tuple[str, int, int]] = {
    "/dev/null": ("c", 1, 3), "/dev/zero": ("c", 1, 5), "/dev/full": ("c", 1, 7),
    "/dev/random": ("c", 1, 8), "/dev/urandom": ("c", 1, 9), "/dev/tty": ("c", 5, 0),
    "/dev/console": ("c", 5, 1), "/dev/ptmx": ("c", 5, 2),
}
# Pseudo-terminal slaves (major 136) are safe too.
PTS_MAJOR = 136


def normalize_capability(name: str) -> str | None:
    """`net_bind_service`, `NET_BIND_SERVICE` and `CAP_NET_BIND_SERVICE` are one capability."""
    n = name.strip().upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    return n if n in CAPABILITY_NUMBERS else None


def errno_number(value: str | int) -> int | None:
    """`EPERM`, `eperm` or `1` -> 1."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 4096 else None
    if not isinstance(value, str):
        return None
    v = value.strip().upper()
    if v.isdigit():
        return errno_number(int(v))
    num = getattr(_errno, v, None)
    return num if isinstance(num, int) else None


def errno_name(num: int) -> str:
    return _errno.errorcode.get(num, str(num))


def known_errnos() -> tuple[str, ...]:
    return tuple(sorted(_errno.errorcode.values()))


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return m[0] if m else None


# --- syscalls, from libseccomp -------------------------------------------------

_ARCH_NAMES = ("X86_64", "AARCH64", "X86", "ARM")
CHECKED_ARCHES: tuple[str, ...] = ("x86_64", "aarch64")  # unknown on one of these: a warning


_ARCHES: dict[str, int] = {}
_SYSCALL_ARCHES: dict[str, frozenset[str]] = {}
_KNOWN: list[frozenset[str]] = []


def _libseccomp() -> dict[str, int]:
    if not _ARCHES:
        import pyseccomp

        _ARCHES.update({name: int(getattr(pyseccomp.Arch, name)) for name in _ARCH_NAMES})
    return _ARCHES


def syscall_arches(name: str) -> frozenset[str]:
    """The architectures (of x86_64, aarch64, x86, arm) on which libseccomp knows `name`."""
    if name not in _SYSCALL_ARCHES:
        _SYSCALL_ARCHES[name] = _lookup_arches(name)
    return _SYSCALL_ARCHES[name]


def _lookup_arches(name: str) -> frozenset[str]:
    import pyseccomp

    out = set()
    for arch_name, arch in _libseccomp().items():
        try:
            num = pyseccomp.resolve_syscall(arch, name)
        except (ValueError, OSError):
            continue
        if isinstance(num, int) and num >= 0:
            out.add(arch_name.lower())
    return frozenset(out)


def known_syscalls() -> frozenset[str]:
    """Every syscall name libseccomp knows on the checked architectures (for did-you-mean)."""
    if not _KNOWN:
        _KNOWN.append(_all_syscalls())
    return _KNOWN[0]


def _all_syscalls() -> frozenset[str]:
    import pyseccomp

    names: set[str] = set()
    for arch in _libseccomp().values():
        for num in range(0, 1024):
            try:
                n = pyseccomp.resolve_syscall(arch, num)
            except (ValueError, OSError):
                continue
            if isinstance(n, bytes) and n:
                names.add(n.decode())
    return frozenset(names)


_ON_ARCH: dict[str, frozenset[str]] = {}


def syscalls_on(machine: str) -> frozenset[str]:
    """Every syscall name libseccomp knows for a host of `machine` (uname -m): its native
    architecture and the ones runc adds to the filter beside it (x86 and x32 on x86_64)."""
    if machine not in _ON_ARCH:
        import pyseccomp

        native = ARCHITECTURES.get(machine)
        names: set[str] = set()
        for scmp in ([native[1], *native[2]] if native else []):
            arch = getattr(pyseccomp.Arch, scmp[len("SCMP_ARCH_"):], None)
            if arch is None:
                continue
            for num in range(0, 1024):
                try:
                    n = pyseccomp.resolve_syscall(int(arch), num)
                except (ValueError, OSError):
                    continue
                if isinstance(n, bytes) and n:
                    names.add(n.decode())
        _ON_ARCH[machine] = frozenset(names)
    return _ON_ARCH[machine]


# Syscalls that reach the same kernel operation through another entry point.  A deny
# list that names one but not the others blocks nothing: chmod is denied, fchmodat works.
SYSCALL_FAMILIES: tuple[frozenset[str], ...] = tuple(frozenset(f) for f in (
    {"open", "openat", "openat2", "creat"},
    {"mkdir", "mkdirat"},
    {"mknod", "mknodat"},
    {"chmod", "fchmod", "fchmodat", "fchmodat2"},
    {"chown", "fchown", "lchown", "fchownat", "chown32", "fchown32", "lchown32"},
    {"rename", "renameat", "renameat2"},
    {"unlink", "unlinkat", "rmdir"},
    {"link", "linkat"},
    {"symlink", "symlinkat"},
    {"access", "faccessat", "faccessat2"},
    {"utime", "utimes", "utimensat", "futimesat"},
    {"stat", "lstat", "fstat", "newfstatat", "statx", "fstatat64", "stat64", "lstat64", "fstat64"},
    {"readlink", "readlinkat"},
    {"execve", "execveat"},
    {"clone", "clone3", "fork", "vfork"},
    {"dup2", "dup3"},
    {"pipe", "pipe2"},
    {"accept", "accept4"},
    {"getdents", "getdents64"},
    {"wait4", "waitid"},
    {"umount", "umount2"},
    {"mount", "fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr"},
    {"eventfd", "eventfd2"},
    {"signalfd", "signalfd4"},
    {"inotify_init", "inotify_init1"},
    {"epoll_create", "epoll_create1"},
    {"epoll_wait", "epoll_pwait", "epoll_pwait2"},
    {"select", "pselect6", "_newselect"},
    {"poll", "ppoll"},
    {"setxattr", "lsetxattr", "fsetxattr"},
    {"removexattr", "lremovexattr", "fremovexattr"},
    {"truncate", "ftruncate", "truncate64", "ftruncate64"},
    {"sendfile", "sendfile64"},
    {"kexec_load", "kexec_file_load"},
    {"init_module", "finit_module"},
    {"process_vm_readv", "process_vm_writev", "ptrace"},
    {"keyctl", "add_key", "request_key"},
))


def missing_family_members(denied: set[str] | frozenset[str] | tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(a denied name, its siblings that are not denied) for every incomplete family."""
    out = []
    denied_set = set(denied)
    for fam in SYSCALL_FAMILIES:
        named = sorted(fam & denied_set)
        # only siblings a profile could name (known on a checked architecture)
        rest = sorted(n for n in fam - denied_set if set(CHECKED_ARCHES) & syscall_arches(n))
        if named and rest:
            out.append((named[0], rest))
    return out
