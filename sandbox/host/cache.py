"""A cache of compiled profiles and operator configs, so a container start does not re-parse YAML.

`sandbox-runc create` runs on every container start; parsing and validating a
profile chain (YAML, libseccomp name checks) costs many times the budget.  An
entry holds the resolved object as plain data (marshal) and the list of every
file that went into it with the SHA-256 of its bytes.  An entry is used only if
each of those files still has exactly those bytes, so an edited profile is
re-read at once, and only from a directory that the current user owns and no
one else can write (root: /var/cache/sandbox/compiled, mode 0700), so the cache
is no way around a profile.  Anything unexpected means: load from the files.
"""

from __future__ import annotations

import marshal
import os
import sys

from ..digest import sha256_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..core.profile import Profile
    from .opconfig import OperatorConfig

FORMAT = 5  # bump when the profile model changes: an entry holds the model as plain data
DEFAULT_DIR = "/var/cache/sandbox/compiled"


def cache_dir() -> str | None:
    """The cache directory if it is safe to use (created on first use), else None."""
    path = os.environ.get("SANDBOX_CACHE_DIR") or (DEFAULT_DIR if os.geteuid() == 0 else _user_dir())
    if not path or path == "off":
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            from .dirs import ensure_dir

            ensure_dir(path, 0o700)  # parents 0755: /var/cache/sandbox also holds the demo rootfs
            st = os.lstat(path)
        except OSError:
            return None
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return path


def _user_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandbox", "compiled") if base.startswith("/") else ""


def _fingerprint(path: str) -> tuple[int, ...] | None:
    """Identity of a file as it is now: changing its bytes changes ctime, which only root can forge."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _stable_fingerprint(path: str, data: bytes) -> tuple[int, ...] | None:
    """A fingerprint to trust later, or None (then the bytes are hashed on every use).

    File times tick coarsely, so a file changed within the last seconds could change
    again without its fingerprint changing (git's "racy" files): those get none.
    """
    import time

    fp = _fingerprint(path)
    if fp is None or time.time_ns() - fp[4] < 3_000_000_000 or _read(path) != data:
        return None
    return fp


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    except OSError:
        return None
    finally:
        os.close(fd)


def _entry_path(directory: str, kind: str, key: str) -> str:
    return os.path.join(directory, f"{kind}-{sha256_hex(key.encode())[:32]}.bin")


def lookup(kind: str, key: str) -> Any:
    """The cached value for `key` if every file it came from is unchanged, else None."""
    directory = cache_dir()
    if directory is None:
        return None
    raw = _read(_entry_path(directory, kind, key))
    if raw is None:
        return None
    try:
        entry = marshal.loads(raw)  # noqa: S302 - written by us, in a directory only we can write
        if entry["format"] != (FORMAT, sys.hexversion) or entry["key"] != key:
            return None
        for path, digest, fingerprint in entry["deps"]:
            if fingerprint is not None and _fingerprint(path) == fingerprint:
                continue  # unchanged since the entry was written, when its bytes hashed to `digest`
            data = _read(path)
            if data is None or sha256_hex(data) != digest:
                return None
        return entry["value"]
    except (ValueError, EOFError, TypeError, KeyError):
        return None


def store(kind: str, key: str, value: Any, deps: list[tuple[str, bytes]]) -> None:
    """Remember `value`; failures are ignored (the cache is only ever a shortcut)."""
    directory = cache_dir()
    if directory is None:
        return
    files = {p: d for p, d in deps}
    entry = {"format": (FORMAT, sys.hexversion), "key": key, "value": value,
             "deps": sorted((p, sha256_hex(d), _stable_fingerprint(p, d)) for p, d in files.items())}
    path = _entry_path(directory, kind, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(entry))
        os.replace(tmp, path)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _cached(kind: str, key: str, build: Callable[[], Any], to_plain: Callable[[Any], Any],
            from_plain: Callable[[Any], Any]) -> Any:
    hit = lookup(kind, key)
    if hit is not None:
        try:
            return from_plain(hit)
        except (TypeError, KeyError, ValueError):
            pass
    from ..core import loader

    loader.READS = []
    try:
        value = build()
        deps = loader.READS
    finally:
        loader.READS = None
    store(kind, key, to_plain(value), deps)
    return value


def profile_key(ref: str, search_dirs: tuple[str, ...] = ()) -> str:
    """The cache key of profile `ref`: a name resolves through the search directories, whose contents
    may change, and falls back to this installation's built-in profiles (two installs share the cache);
    the model's fields are part of it too (a cached profile of another shape is not ours)."""
    listing = []
    for d in search_dirs:
        try:
            listing.append((d, sorted(os.listdir(d))))
        except OSError:
            listing.append((d, []))
    return repr((ref, os.getcwd() if "/" in ref and not ref.startswith("/") else "", listing,
                 os.path.dirname(os.path.abspath(__file__)), model_signature()))


def load_profile(ref: str, search_dirs: tuple[str, ...] = ()) -> Profile:
    """loader.load_profile through the cache."""
    from ..core.profile import from_plain, to_plain

    def build() -> Profile:
        from ..core.loader import load_profile as load

        return load(ref, search_dirs=search_dirs)

    key = profile_key(ref, search_dirs)
    profile: Profile = _cached("profile", key, build, to_plain, from_plain)
    return profile


def model_signature() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The profile model's classes and their fields: a cached profile of another shape is not ours."""
    from ..core.profile import _MODEL

    return tuple((name, cls.__record_fields__) for name, cls in _MODEL.items())  # type: ignore[attr-defined]


def load_operator_config(path: str) -> OperatorConfig:
    """opconfig's parse of `path` through the cache (the trust checks run every time, by the caller)."""
    from .opconfig import OperatorConfig, parse_operator_config

    def build() -> OperatorConfig:
        return parse_operator_config(path)

    def to_plain(c: OperatorConfig) -> Any:
        from .._record import fields

        return {n: getattr(c, n) for n in fields(c)}

    def from_plain(d: dict[str, Any]) -> OperatorConfig:
        return OperatorConfig(**d)

    config: OperatorConfig = _cached("opconfig", repr(("opconfig", path)), build, to_plain, from_plain)
    return config
