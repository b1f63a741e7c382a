"""The busybox demo rootfs: built from Debian's busybox-static, cached, rebuilt when busybox changes.

Layout of the rootfs: bin/ (busybox and a symlink per applet), dev, etc (passwd
and group with root, app 1000 and nobody 65534; hosts), home/app (owned by
1000:1000 when built as root), proc, root, run, sys, tmp (1777), var.
Everything else is owned by the builder (root).

`demo_rootfs()` keeps built trees in a cache directory:

    <cache>/rootfs-<sha256[:16] of busybox>/   one complete tree per busybox build
    <cache>/stamp                              "<sha256> <size> <mtime_ns> <ino>" of the current one

Trees are built in a temporary directory and renamed into place, so a reader
never sees a half-built rootfs.  Older trees are left alone (a running
container may use one) and can be removed by hand.

Command line (used by scripts/build-demo-rootfs.sh):

    python -m sandbox.host.demo build DIR     build a fresh rootfs at DIR
    python -m sandbox.host.demo path          build if needed and print the cached rootfs path
"""

from __future__ import annotations

import os
import stat
import sys

from ..errors import BundleError

BUSYBOX = "/bin/busybox"
NOT_INSTALLED = "busybox-static is not installed: apt-get install busybox-static"

_ETC_USERS = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
_GROUP = """\
root:x:0:
tty:x:5:
app:x:1000:
nogroup:x:65534:
"""
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "home/app": 0o755, "proc": 0o555,
         "root": 0o700, "run": 0o755, "sys": 0o555, "tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777}


def default_cache_dir() -> str:
    if os.geteuid() == 0:
        return "/var/cache/sandbox/demo-rootfs"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandbox", "demo-rootfs")


def _check_busybox(busybox: str) -> os.stat_result:
    try:
        st = os.stat(busybox)
    except OSError:
        raise BundleError(NOT_INSTALLED) from None
    if not stat.S_ISREG(st.st_mode) or not os.access(busybox, os.X_OK):
        raise BundleError(f"{busybox} is not an executable file ({NOT_INSTALLED})")
    if _is_dynamic(busybox):
        raise BundleError(f"{busybox} is dynamically linked and cannot run alone in a rootfs ({NOT_INSTALLED})")
    return st


def _is_dynamic(path: str) -> bool:
    """True if the ELF file at `path` has a PT_INTERP header (needs a dynamic loader)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        end = "<" if head[5] == 1 else ">"
        if is64:
            phoff, = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(end + "I", head, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from(end + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return True
    return False


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _applets(busybox: str) -> list[str]:
    import subprocess

    try:
        out = subprocess.run([busybox, "--list"], capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BundleError(f"cannot list busybox applets with {busybox} --list: {e}") from None
    names = [n.strip() for n in out.decode("ascii", "replace").splitlines()]
    return sorted({n for n in names if n and "/" not in n and n not in (".", "..", "busybox")})


def _populate(root: str, busybox: str) -> None:
    import shutil

    for d, mode in _DIRS.items():
        p = os.path.join(root, d)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
    bb = os.path.join(root, "bin", "busybox")
    shutil.copyfile(busybox, bb)
    os.chmod(bb, 0o755)  # noqa: S103
    for name in _applets(busybox):
        os.symlink("busybox", os.path.join(root, "bin", name))
    for name, text in (("passwd", _ETC_USERS), ("group", _GROUP), ("hosts", _HOSTS)):
        p = os.path.join(root, "etc", name)
        with open(p, "w", encoding="ascii") as f:
            f.write(text)
        os.chmod(p, 0o644)
    if os.geteuid() == 0:
        os.chown(os.path.join(root, "home", "app"), 1000, 1000)
    os.chmod(root, 0o755)  # noqa: S103


def build_rootfs(target: str, busybox: str = BUSYBOX) -> str:
    """Build a fresh demo rootfs at `target` (which must not exist, or be an empty directory).

    The tree is built in a temporary sibling directory and renamed into place.
    Returns the absolute path.
    """
    import shutil
    import tempfile

    _check_busybox(busybox)
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        _populate(tmp, busybox)
        try:
            os.rename(tmp, target)  # replaces an empty directory, fails on a non-empty one
        except OSError as e:
            import errno

            why = "it already exists and is not empty" if e.errno in (errno.ENOTEMPTY, errno.EEXIST) else e.strerror
            raise BundleError(f"cannot build the demo rootfs at {target}: {why}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _stamp_key(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def demo_rootfs(cache_dir: str | None = None, busybox: str = BUSYBOX) -> str:
    """The path of a built demo rootfs in `cache_dir`, building it when missing or busybox changed."""
    import shutil

    cache = os.path.abspath(cache_dir or default_cache_dir())
    st = _check_busybox(busybox)
    stamp = os.path.join(cache, "stamp")
    digest = None
    try:
        with open(stamp, encoding="ascii") as f:
            parts = f.read().split(" ", 1)
        if len(parts) == 2 and parts[1].strip() == _stamp_key(st):
            digest = parts[0]  # same file as last time: no need to hash it again
    except OSError:
        pass
    hashed = digest is None
    if digest is None:
        digest = _sha256(busybox)
    tree = os.path.join(cache, f"rootfs-{digest[:16]}")
    if os.path.isdir(os.path.join(tree, "bin")):
        if hashed:
            _write_stamp(stamp, digest, st)
        return tree
    try:
        from .dirs import ensure_dir

        ensure_dir(cache, 0o755)  # it and its parents: a user-namespaced container root must reach it
    except OSError as e:
        raise BundleError(f"cannot create the demo rootfs cache {cache}: {e.strerror}") from None
    try:
        build_rootfs(tree, busybox)
    except BundleError:
        if not os.path.isdir(os.path.join(tree, "bin")):  # a concurrent build may have won the rename
            raise
    if _sha256(busybox) != digest:  # busybox replaced while we built: do not trust this tree
        shutil.rmtree(tree, ignore_errors=True)
        raise BundleError(f"{busybox} changed while the demo rootfs was being built; try again")
    _write_stamp(stamp, digest, st)
    return tree


def _write_stamp(stamp: str, digest: str, st: os.stat_result) -> None:
    tmp = f"{stamp}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{digest} {_stamp_key(st)}\n")
        os.rename(tmp, stamp)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 2 and args[0] == "build":
            print(build_rootfs(args[1]))
        elif len(args) in (1, 2) and args[0] == "path":
            print(demo_rootfs(args[1] if len(args) == 2 else None))
        else:
            print("usage: python -m sandbox.host.demo build DIR | path [CACHE_DIR]", file=sys.stderr)
            return 2
    except BundleError as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
