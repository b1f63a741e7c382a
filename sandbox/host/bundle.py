"""OCI bundles on disk: read config.json safely, write it back atomically, make new ones.

This module is on the hot path of every container start, so it imports nothing
heavy at module level (`json` and `secrets` are imported where they are used).

Reading refuses what would hang, exhaust memory or be silently misread: a
config.json that is not a regular file (a FIFO, a device, a directory), one
larger than 16 MiB, bytes that are not UTF-8, JSON syntax errors (reported as
`file:line:col`), duplicate keys (Go's encoding/json, and so runc, keeps the
last one; we refuse rather than guess which one a profile was checked against),
NaN/Infinity (runc cannot read them), and nesting deeper than any OCI config
needs.

Writing never leaves a partial or empty config.json behind: the new content is
written to `.config.json.sandbox-XXXXXXXX` in the same directory with the old
file's mode and ownership, fsynced, renamed over config.json, and the directory
fsynced.  A temporary file is removed on every error; only a SIGKILL between
its creation and the rename can leave one behind (config.json is intact then).
"""

from __future__ import annotations

import os
import stat

from ..errors import BundleError, Location

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# OCI configs nest about 6 deep (linux.seccomp.syscalls[].args[].value); 64 leaves
# room for annotations-like extensions and keeps every recursive walk far from
# Python's recursion limit.
MAX_DEPTH = 64
TEMP_PREFIX = ".config.json.sandbox-"

__all__ = [
    "CONFIG_NAME",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "make_bundle",
    "read_config",
    "read_json_file",
    "spec_for_rootfs",
    "write_config_atomic",
]


# -- reading -------------------------------------------------------------------------------

class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def _read_bytes(path: str, what: str, limit: int) -> bytes:
    loc = Location(file=path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BundleError(f"{what} does not exist", location=loc) from None
    except OSError as e:
        raise BundleError(f"cannot read {what}: {e.strerror}", location=loc) from None
    _check_regular(st, what, loc, limit)
    # O_NONBLOCK: if the path was swapped for a FIFO after the stat, open() must not
    # wait for a writer; the fstat below then refuses it.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise BundleError(f"cannot open {what}: {e.strerror}", location=loc) from None
    try:
        _check_regular(os.fstat(fd), what, loc, limit)
        chunks = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise BundleError(f"cannot read {what}: {e.strerror}", location=loc) from None
    finally:
        os.close(fd)
    if total > limit:
        raise BundleError(f"{what} is larger than {limit // (1024 * 1024)} MiB", location=loc)
    return b"".join(chunks)


def _check_regular(st: os.stat_result, what: str, loc: Location, limit: int) -> None:
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise BundleError(f"{what} is {kind}, not a regular file", location=loc)
    if st.st_size > limit:
        raise BundleError(f"{what} is larger than {limit // (1024 * 1024)} MiB ({st.st_size} bytes)",
                          location=loc)


def _line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    nl = b"\n" if isinstance(data, bytes) else "\n"
    line = data.count(nl, 0, offset) + 1  # type: ignore[arg-type]
    start = data.rfind(nl, 0, offset) + 1  # type: ignore[arg-type]
    return line, offset - start + 1


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def read_json_file(path: str, what: str | None = None, *, max_bytes: int = MAX_CONFIG_BYTES,
                   problems: list[BundleError] | None = None) -> Any:
    """Parse one JSON file with the same care as config.json (no schema checks).

    `what` names the file in messages (default: its path's base name).  Errors are
    BundleError whose location is the file (with line:col for syntax errors).  With
    `problems`, bytes that are not UTF-8 are read as U+FFFD, as Go's encoding/json
    (and so runc) reads them, and the error is appended there instead of raised.
    """
    what = what or os.path.basename(path) or path
    data = _read_bytes(path, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(data, e.start)
        err = BundleError(f"{what} is not valid UTF-8 (byte 0x{data[e.start]:02x})",
                          location=Location(path, line, col))
        if problems is None:
            raise err from None
        problems.append(err)
        text = data.decode("utf-8", "replace")
    from .. import _fastjson

    try:
        value = _fastjson.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as e:
        raise BundleError(f"duplicate key {_fastjson.dumps(e.key)} (runc would silently use the last one)",
                          location=Location(path)) from None
    except ValueError as e:  # a syntax error (JSONDecodeError), or NaN, Infinity, -Infinity
        if hasattr(e, "lineno") and hasattr(e, "msg"):
            loc = Location(path, e.lineno, getattr(e, "colno", None))
            raise BundleError(f"invalid JSON: {e.msg}", location=loc) from None
        raise BundleError(f"invalid JSON: {e} is not a JSON number", location=Location(path)) from None
    except RecursionError:
        raise BundleError(f"{what} is nested too deeply", location=Location(path)) from None
    if _too_deep(value, MAX_DEPTH):
        raise BundleError(f"{what} is nested more than {MAX_DEPTH} levels deep", location=Location(path))
    return value


def read_config(bundle_dir: str, *, problems: list[BundleError] | None = None) -> dict[str, Any]:
    """Read and minimally validate `<bundle_dir>/config.json`.

    Requires a top-level object with `ociVersion` a string starting with "1.",
    `root.path` a non-empty string, and a `process` object (runc needs it to
    create or run).  Unknown fields are kept as they are.

    With `problems` (complain mode reads this way: it must refuse nothing runc would
    run), what runc 1.1 itself accepts is appended there instead of raised: an
    `ociVersion` that is missing or not 1.x (runc never reads it), a missing or empty
    `root.path` (runc uses the bundle directory), bytes that are not UTF-8 (read as
    U+FFFD, as Go does).  Still raised in every mode: what runc rejects too (invalid
    JSON, NaN, wrong types, no `root` or `process` object), what cannot be read safely
    (not a regular file, over 16 MiB, nested deeper than 64), and what makes sandbox's
    reading differ from runc's (duplicate keys, case-folded twins of a field, NUL
    characters): no engine writes those, and an audit record of a config runc reads
    differently would be false.
    """
    path = os.path.join(bundle_dir, CONFIG_NAME)
    config = read_json_file(path, CONFIG_NAME, problems=problems)
    loc = Location(file=path)

    def tolerable(err: BundleError) -> None:
        if problems is None:
            raise err
        problems.append(err)

    if not isinstance(config, dict):
        raise BundleError(f"top level must be a JSON object, not {_json_type(config)}", location=loc)
    version = config.get("ociVersion")
    if version is not None and not isinstance(version, str):
        raise BundleError(f"must be a string, not {_json_type(version)}", location=loc, field="ociVersion")
    if version is None:
        tolerable(BundleError("missing", location=loc, field="ociVersion"))
    elif not version.startswith("1."):
        tolerable(BundleError(f"unsupported OCI runtime spec version {version!r} (need 1.x)", location=loc,
                              field="ociVersion"))
    root = config.get("root")
    if not isinstance(root, dict):
        raise BundleError("missing" if root is None else f"must be an object, not {_json_type(root)}",
                          location=loc, field="root")
    rpath = root.get("path")
    if rpath is not None and not isinstance(rpath, str):
        raise BundleError(f"must be a string, not {_json_type(rpath)}", location=loc, field="root.path")
    if not rpath:
        tolerable(BundleError("missing" if rpath is None else "must be a non-empty string", location=loc,
                              field="root.path"))
    proc = config.get("process")
    if not isinstance(proc, dict):
        raise BundleError("missing (runc needs it to create a container)" if proc is None
                          else f"must be an object, not {_json_type(proc)}", location=loc, field="process")
    from ..core.ocishape import check

    problem = check(config)
    if problem:
        field, _, message = problem.partition(": ")
        raise BundleError(message, location=loc, field=field)
    return config


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


# -- writing ---------------------------------------------------------------------------------

def write_config_atomic(bundle_dir: str, config: dict[str, Any], *, durable: bool = True) -> None:
    """Replace `<bundle_dir>/config.json` with `config`, atomically (and durably: fsync of the
    file and its directory, unless `durable` is False).

    The new file keeps the old one's permission bits and owner/group (a new
    file gets mode 0600).  If config.json is a symbolic link, the link is
    replaced by a regular file; the link's target is never written.
    """
    from .. import _fastjson

    path = os.path.join(bundle_dir, CONFIG_NAME)
    try:
        # compact: the indenting encoder is pure Python (and imports re); runc does not care
        data = _fastjson.dumps(config, allow_nan=False).encode("utf-8") + b"\n"
    except (TypeError, ValueError) as e:
        raise BundleError(f"cannot serialise config: {e}", location=Location(path)) from None
    except RecursionError:
        raise BundleError("cannot serialise config: nested too deeply", location=Location(path)) from None
    try:
        old: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise BundleError(f"cannot stat: {e.strerror}", location=Location(path)) from None
    if old is not None and not stat.S_ISREG(old.st_mode) and not stat.S_ISLNK(old.st_mode):
        raise BundleError("is not a regular file; refusing to replace it", location=Location(path))
    keep = old if old is not None and stat.S_ISREG(old.st_mode) else None
    _atomic_write(bundle_dir, path, data, keep, durable)


def write_file_atomic(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably (a reader sees the old or the new file, never half)."""
    directory = os.path.dirname(os.path.abspath(path))
    _atomic_write(directory, path, data, None, True, mode)


def _atomic_write(directory: str, path: str, data: bytes, keep: os.stat_result | None, durable: bool,
                  mode: int = 0o600) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    tmp = ""
    fd = -1
    for _ in range(16):
        tmp = os.path.join(directory, TEMP_PREFIX + os.urandom(4).hex())
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise BundleError(f"cannot create a temporary file in {directory}: {e.strerror}",
                              location=Location(path)) from None
    else:
        raise BundleError(f"cannot create a temporary file in {directory}: too many collisions",
                          location=Location(path))
    renamed = False
    try:
        try:
            if keep is not None:
                if (keep.st_uid, keep.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, keep.st_uid, keep.st_gid)
                os.fchmod(fd, stat.S_IMODE(keep.st_mode))  # after chown, which clears set-id bits
            elif mode != 0o600:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        renamed = True
        if durable:
            _fsync_dir(directory)
    except OSError as e:
        raise BundleError(f"cannot write: {e.strerror or e}", location=Location(path)) from None
    finally:
        if not renamed:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- new bundles -------------------------------------------------------------------------------

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEFAULT_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")


def spec_for_rootfs(rootfs: str, args: list[str], *, env: list[str] | None = None, cwd: str = "/",
                    tty: bool = False, hostname: str = "sandbox") -> dict[str, Any]:
    """A config.json dict shaped exactly like `runc spec` (runc 1.1) makes by default.

    Differences from `runc spec`: `root.path` is `rootfs` (as given; a relative
    path is relative to the bundle directory), `process.args` is `args`,
    `process.terminal` is `tty`, `hostname` is `hostname`, `process.cwd` is
    `cwd`.  With `env` given, the environment is `env`, preceded by runc's
    default PATH unless `env` sets PATH itself (TERM=xterm is runc's default only
    when `env` is None).  Every call returns a fresh, independent dict.
    """
    if env is None:
        environ = [DEFAULT_PATH, "TERM=xterm"]
    else:
        environ = list(env)
        if not any(e.startswith("PATH=") for e in environ):
            environ.insert(0, DEFAULT_PATH)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": bool(tty),
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": environ,
            "cwd": cwd,
            "capabilities": {s: list(_DEFAULT_CAPS) for s in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",  # noqa: S108 (a container mount point)
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def make_bundle(state_dir: str, rootfs: str, config: dict[str, Any], *, name: str | None = None) -> str:
    """Create a private (0700) bundle directory under `state_dir` and return its path.

    The directory is `state_dir/name` (which must not exist yet) or, without
    `name`, a fresh `bundle-XXXXXXXX`.  Its config.json is `config` with
    `root.path` set to the absolute path of `rootfs`; `config` itself is not
    modified.
    """
    import tempfile

    if name is not None and (not name or "/" in name or name in (".", "..") or "\0" in name):
        raise BundleError(f"invalid bundle name {name!r}")
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        if name is None:
            bundle = tempfile.mkdtemp(prefix="bundle-", dir=state_dir)
        else:
            bundle = os.path.join(state_dir, name)
            os.mkdir(bundle, 0o700)
        os.chmod(bundle, 0o700)
    except FileExistsError:
        raise BundleError(f"bundle directory {os.path.join(state_dir, name or '')} already exists") from None
    except OSError as e:
        raise BundleError(f"cannot create a bundle under {state_dir}: {e.strerror}") from None
    new = dict(config)
    new["root"] = {**(config.get("root") or {}), "path": os.path.abspath(rootfs)}
    try:
        write_config_atomic(bundle, new)
    except BaseException:
        import shutil

        shutil.rmtree(bundle, ignore_errors=True)
        raise
    return os.path.abspath(bundle)
