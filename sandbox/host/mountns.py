"""The runtime's own mount namespace, and a rootfs the container's mapped root can reach.

When a profile adds a user namespace the bundle did not have, runc 1.1 bind-mounts
the rootfs from inside that new user namespace, where the mapped root cannot
traverse the engine's 0700/0710 directories, and sees every root-owned file of the
image as owned by nobody.  Before runc runs, sandbox-runc therefore

1. moves itself into a mount namespace of its own (`unshare(CLONE_NEWNS)`, every
   mount a slave of the host's, so nothing propagates back to the host), which runc
   and then the container inherit; and
2. mounts there, at a fixed path (`ROOTFS_TARGET`), an *idmapped* view of the engine's
   rootfs: a plain directory gets an idmapped bind (`open_tree` + `mount_setattr
   (MOUNT_ATTR_IDMAP)` + `move_mount`); an overlay mount (which the kernel will not
   idmap) is rebuilt read-only from idmapped clones of its layers (overlayfs accepts
   idmapped layers since 5.19).  Either way the image's root-owned files belong to
   the container's root.

Nothing is mounted in the host's mount namespace, so nothing can outlive the
container there, not even when sandbox-runc is killed half-way: the namespace dies
with the last process in it (runc's; the container has its own copy).

`enter_netns` makes runc start inside a network namespace the engine made (and
that the container's user namespace does not own), for the same reason.

Everything here raises `PolicyRefusal` with a reason that says what to change when
the kernel or the filesystem cannot do it.  Linux only; x86_64 and aarch64 share the
syscall numbers used.
"""

from __future__ import annotations

import os

from ..errors import PolicyRefusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..core.decisions import RootfsPrep, RuntimePrep
    from ..core.profile import IdMapping

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_O_CLOEXEC = 0o2000000
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_IDMAP = 0x00100000
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_SLAVE = 1 << 19

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _fail(what: str, err: int, hint: str) -> PolicyRefusal:
    return PolicyRefusal(f"refused by sandbox: {what}: {os.strerror(err)}; {hint}")


# -- namespaces -----------------------------------------------------------------------------------

def enter_private_mount_ns() -> None:
    """Give this process a mount namespace of its own whose mounts receive the host's but
    never propagate back (as `unshare --mount --propagation slave`)."""
    import ctypes

    libc = _c()
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise _fail("cannot make a mount namespace for the runtime", _errno(),
                    "sandbox-runc needs CAP_SYS_ADMIN (run the engine as root)")
    if libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_SLAVE), None) != 0:
        raise _fail("cannot make the runtime's mounts slaves of the host's", _errno(),
                    "the host's / must be a mount point")


_ENTER_FLAGS = {"network": _CLONE_NEWNET, "ipc": 0x08000000, "uts": 0x04000000}


def enter_namespace(kind: str, path: str) -> None:
    """Join the `kind` (network, ipc, uts) namespace at `path`; runc then starts the container in it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _fail(f"cannot open the {kind} namespace {path}", e.errno or 0,
                    "the engine's namespace must still exist") from None
    try:
        if _c().setns(fd, _ENTER_FLAGS[kind]) != 0:
            raise _fail(f"cannot enter the {kind} namespace {path}", _errno(),
                        "the engine's namespace must still exist")
    finally:
        os.close(fd)


def userns_fd(uid_mappings: tuple[IdMapping, ...], gid_mappings: tuple[IdMapping, ...]) -> int:
    """An fd of a new user namespace with these mappings (what MOUNT_ATTR_IDMAP takes)."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a user namespace, kept alive until the parent has opened it
        try:
            os.close(ready_r)
            os.close(hold_w)
            ok = _c().unshare(_CLONE_NEWUSER) == 0
            os.write(ready_w, b"1" if ok else b"0")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise PolicyRefusal("refused by sandbox: cannot create a user namespace for an idmapped mount; "
                                "user namespaces must be enabled (user.max_user_namespaces > 0)")
        for name, maps in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
            text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _fail("cannot set up the id mapping for an idmapped mount", e.errno or 0,
                    "check the id mapping") from None
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


# -- mounts ---------------------------------------------------------------------------------------

def _mount_attr(attr_set: int, userns: int) -> Any:
    import ctypes

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    return MountAttr(attr_set, 0, 0, userns)


def clone(path: str, *, recursive: bool = True) -> int:
    """A detached copy of the mount tree at `path` (a bind mount not yet attached): its fd."""
    import ctypes

    flags = _OPEN_TREE_CLONE | _O_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    fd = _c().syscall(_SYS_OPEN_TREE, -100, os.fsencode(path), ctypes.c_uint(flags))
    if fd < 0:
        raise _fail(f"cannot clone the mount at {path}", _errno(), "the engine's rootfs must exist")
    return int(fd)


def idmapped_clone(path: str, userns: int, *, recursive: bool = False, readonly: bool = False) -> int:
    """A detached, idmapped copy of the mount tree at `path`: its fd."""
    import ctypes

    libc = _c()
    fd = clone(path, recursive=recursive)
    attr = _mount_attr(_MOUNT_ATTR_IDMAP | (_MOUNT_ATTR_RDONLY if readonly else 0), userns)
    at = _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0)
    if libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", ctypes.c_uint(at), ctypes.byref(attr),
                    ctypes.c_size_t(ctypes.sizeof(attr))) != 0:
        err = _errno()
        os.close(fd)
        raise _fail(f"cannot make an idmapped mount of {path} ({filesystem_of(path)})", err,
                    "the kernel supports idmapped mounts only on some filesystems (ext4, xfs, btrfs, tmpfs "
                    "since 6.3, ...): keep the engine's storage on one of them, or let the engine create the "
                    "user namespace itself (dockerd --userns-remap)")
    return int(fd)


def attach(fd: int, target: str) -> None:
    """Attach the detached mount `fd` at `target` (in this process's mount namespace)."""
    import ctypes

    if _c().syscall(_SYS_MOVE_MOUNT, fd, b"", -100, os.fsencode(target),
                    ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH)) != 0:
        raise _fail(f"cannot attach the container's rootfs at {target}", _errno(),
                    f"{target} must be an empty directory")


_UPPER_SIZE = "4m"


def filesystem_of(path: str) -> str:
    """The filesystem type holding `path`, from /proc/self/mountinfo (for messages)."""
    m = mount_at_or_above(path)
    return m[1] if m else "unknown filesystem"


# -- /proc/self/mountinfo -------------------------------------------------------------------------

def _unescape(s: str) -> str:
    """mountinfo's octal escapes (\\040 space, \\011 tab, \\012 newline, \\134 backslash)."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 0 and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[str, str, str, str]]:
    """(mount point, fs type, super options, per-mount options) of every mount, in the kernel's order."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            try:
                sep = fields.index("-", 6)
            except ValueError:
                continue
            super_opts = fields[sep + 3].rstrip("\n") if len(fields) > sep + 3 else ""
            out.append((_unescape(fields[4]), _unescape(fields[sep + 1]), super_opts, fields[5]))
    return out


def mount_at_or_above(path: str, table: list[tuple[str, str, str, str]] | None = None) \
        -> tuple[str, str, str, str] | None:
    """The mount (point, fs type, super options, per-mount options) that holds `path`: the last one
    mounted at the longest mount point that is `path` or a parent of it."""
    best: tuple[str, str, str, str] | None = None
    for m in mounts() if table is None else table:
        mp = m[0]
        if path == mp or mp == "/" or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best[0]):
                best = m
    return best


def _split_escaped(text: str, sep: str, keep_escapes: bool) -> list[str]:
    """`text` split at `sep`; a backslash escapes the next character (kept escaped if `keep_escapes`)."""
    out: list[str] = []
    cur: list[str] = []
    esc = False
    for ch in text:
        if esc:
            cur.append("\\" + ch if keep_escapes else ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def split_overlay_options(super_opts: str) -> list[tuple[str, str]]:
    """overlayfs super options -> [(name, value)] in order (`lowerdir+` may repeat); a comma or colon
    escaped with a backslash stays escaped in the value (split_layers reads it)."""
    out: list[tuple[str, str]] = []
    for item in _split_escaped(super_opts, ",", keep_escapes=True):
        if item:
            k, _, v = item.partition("=")
            out.append((k, _unescape(v)))
    return out


def split_layers(value: str) -> list[str]:
    """An overlay lowerdir value -> layer paths (`:` separates; `\\:` is a colon in a path)."""
    return [p for p in _split_escaped(value, ":", keep_escapes=False) if p]


# -- the rootfs ------------------------------------------------------------------------------------

def prepare(prep: RuntimePrep) -> None:
    """Do what `prep` says, in a mount namespace of this process's own (runc and the container
    inherit it).  Call it right before running runc, in the process that will run it."""
    enter_private_mount_ns()
    if prep.rootfs is not None:
        prepare_rootfs(prep.rootfs, prep.uid_mappings, prep.gid_mappings)
    for kind, path in prep.enter:
        enter_namespace(kind, path)


def prepare_rootfs(prep: RootfsPrep, uid_mappings: tuple[IdMapping, ...],
                   gid_mappings: tuple[IdMapping, ...]) -> None:
    """Mount the view `prep` describes at `prep.target` (in the current mount namespace, which must
    already be the runtime's own)."""
    fd = detached_rootfs(prep, uid_mappings, gid_mappings)
    try:
        os.makedirs(prep.target, mode=0o755, exist_ok=True)
        attach(fd, prep.target)
    finally:
        os.close(fd)


def detached_rootfs(prep: RootfsPrep, uid_mappings: tuple[IdMapping, ...],
                    gid_mappings: tuple[IdMapping, ...]) -> int:
    """The view `prep` describes as a detached mount (attached nowhere yet): its fd.  The sandbox
    daemon hands it to the client that runs runc, which attaches it in its own mount namespace."""
    if prep.kind == "bind":  # already owned by mapped ids: only out of the engine's directories
        return clone(prep.source)
    userns = userns_fd(uid_mappings, gid_mappings)
    fds: list[int] = []
    try:
        if prep.kind == "idmapped-bind":
            return idmapped_clone(prep.source, userns, recursive=True)
        # overlay: idmapped clones of the engine's layers (its upper layer first, as the topmost lower
        # one), reached through /proc/self/fd, under an upper layer on a small tmpfs of the view's own:
        # runc creates the mount points there; the engine's layers are never written
        layers = []
        for layer in prep.layers:
            fd = idmapped_clone(layer, userns, readonly=True)
            fds.append(fd)
            layers.append(f"/proc/self/fd/{fd}")
        tmp = new_mount("tmpfs", [("size", _UPPER_SIZE), ("mode", "0755")])
        fds.append(tmp)
        os.mkdir("upper", dir_fd=tmp)
        os.mkdir("work", 0o700, dir_fd=tmp)
        top = os.stat(layers[0])  # the image's / as the container's root will own it
        os.chown("upper", top.st_uid, top.st_gid, dir_fd=tmp)
        os.chmod(f"/proc/self/fd/{tmp}/upper", top.st_mode & 0o7777)
        options: list[tuple[str, str | None]] = [
                   ("lowerdir", ":".join(layers)), ("upperdir", f"/proc/self/fd/{tmp}/upper"),
                   ("workdir", f"/proc/self/fd/{tmp}/work")]
        for opt in prep.overlay_options:
            k, sep, v = opt.partition("=")
            options.append((k, v if sep else None))
        return new_mount("overlay", options)
    finally:
        for fd in fds:
            os.close(fd)  # the overlay holds what it needs
        os.close(userns)


_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6


def new_mount(fstype: str, options: list[tuple[str, str | None]]) -> int:
    """A new, detached mount of `fstype` (fsopen + fsconfig + fsmount): its fd."""
    import ctypes

    libc = _c()
    fs = libc.syscall(_SYS_FSOPEN, fstype.encode(), ctypes.c_uint(1))
    if fs < 0:
        raise _fail(f"cannot open a {fstype} filesystem context", _errno(), "the kernel needs the new mount API (5.2)")
    try:
        for key, value in options:
            if value is None:
                rc = libc.syscall(_SYS_FSCONFIG, fs, ctypes.c_uint(_FSCONFIG_SET_FLAG), key.encode(), None, 0)
            else:
                rc = libc.syscall(_SYS_FSCONFIG, fs, ctypes.c_uint(_FSCONFIG_SET_STRING), key.encode(),
                                  value.encode(), 0)
            if rc != 0:
                raise _fail(f"{fstype} refuses the option {key}", _errno(),
                            "overlayfs accepts idmapped layers since Linux 5.19")
        if libc.syscall(_SYS_FSCONFIG, fs, ctypes.c_uint(_FSCONFIG_CMD_CREATE), None, None, 0) != 0:
            raise _fail(f"cannot create the {fstype} mount for the container's rootfs view", _errno(),
                        "overlayfs accepts idmapped layers since Linux 5.19")
        fd = libc.syscall(_SYS_FSMOUNT, fs, ctypes.c_uint(1), ctypes.c_uint(0))
        if fd < 0:
            raise _fail(f"cannot mount the {fstype} filesystem", _errno(), "the kernel needs the new mount API (5.2)")
        return int(fd)
    finally:
        os.close(fs)
