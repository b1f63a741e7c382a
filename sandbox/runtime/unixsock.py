"""Root-only unix sockets, shared by the sandbox daemon and the sandbox agent.

Both services listen on a socket only root can reach: in a directory owned by the service's
uid that no one else may write, mode 0600, and they serve a peer only when its `SO_PEERCRED`
uid is their own.  Their clients use a socket only where nobody but root could have put it
(`trusted_socket_problem`), and check the listening peer's credentials the same way.

The request protocol is the daemon's: NUL-separated `key=value` records, one request per
connection; the client shuts down its write side, the service answers and closes.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable


IO_TIMEOUT = 10.0


class SocketError(Exception):
    """A socket directory or path that is not safe to serve on (the caller wraps it for the user)."""


def encode(records: list[tuple[str, str]]) -> bytes:
    for k, v in records:
        if "\0" in k or "\0" in v or "=" in k:
            raise ValueError(f"record {k!r} cannot be encoded")
    return b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in records)


def decode(data: bytes) -> list[tuple[str, str]]:
    out = []
    for rec in data.split(b"\0"):
        if rec:
            k, sep, v = rec.decode("utf-8", "surrogateescape").partition("=")
            if not sep:
                raise ValueError(f"malformed record {k[:40]!r}")
            out.append((k, v))
    return out


def first(records: list[tuple[str, str]], key: str, default: str = "") -> str:
    return next((v for k, v in records if k == key), default)


def every(records: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in records if k == key]


def peer_creds(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end."""
    import socket
    import struct

    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def bind_protected(path: str, is_alive: Callable[[str], bool], backlog: int = 128) -> socket.socket:
    """Listen on `path` in a directory only our uid may write; the socket is 0600.

    A socket file left by a service that died is replaced; one that answers (`is_alive`) is not.
    """
    import socket
    import stat

    from ..host.dirs import ensure_dir

    d = os.path.dirname(path) or "."
    ensure_dir(d, 0o700)  # whatever the umask
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SocketError(f"{d}: the socket directory must be a directory owned by uid {os.geteuid()} that no "
                          "one else may write")
    if os.path.lexists(path):
        if is_alive(path):
            raise SocketError(f"{path}: already listening there")
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(path)
    except OSError:
        s.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    s.listen(backlog)
    return s


def trusted_socket_problem(path: str) -> str | None:
    """Why a client must not use `path` (None: it may): as sandbox-runc checks the daemon's socket."""
    import stat

    d = os.path.dirname(path) or "."
    try:
        dst, sst = os.lstat(d), os.lstat(path)
    except FileNotFoundError:
        return f"nothing listens at {path}"
    except OSError as e:
        return f"cannot reach {path}: {e.strerror}"
    uid = os.geteuid()
    if not stat.S_ISDIR(dst.st_mode) or dst.st_uid != uid or dst.st_mode & 0o022:
        return f"{d} is not a directory owned by uid {uid} that no one else may write"
    if not stat.S_ISSOCK(sst.st_mode) or sst.st_uid != uid:
        return f"{path} is not a socket owned by uid {uid}"
    return None


def call(path: str, records: list[tuple[str, str]], timeout: float = IO_TIMEOUT) -> list[tuple[str, str]] | None:
    """One request; None when nobody answers, or when the listener is not our uid."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(timeout)
            s.connect(path)
            if peer_creds(s)[1] != os.geteuid():
                return None
            s.sendall(encode(records))
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while b := s.recv(65536):
                chunks.append(b)
    except OSError:
        return None
    data = b"".join(chunks)
    try:
        return decode(data) if data else None
    except ValueError:
        return None


def ping(path: str, timeout: float = 2.0) -> dict[str, str] | None:
    reply = call(path, [("op", "ping")], timeout=timeout)
    return dict(reply) if reply and first(reply, "status") == "ok" else None
