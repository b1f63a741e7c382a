"""The sandbox daemon: a warm process that does sandbox-runc's create/run hardening.

Every `sandbox-runc create` otherwise starts Python (≈12 ms here) and imports the hardening
path (≈8 ms) before it can do ≈5 ms of real work; an engine pays that on every container.
With the daemon listening, the compiled dispatcher (csrc/sandbox-runc.c) sends the request
here, gets an answer, and runs runc itself, so runc stays a child of the engine's process
(containerd-shim and conmon reap the container as a subreaper of their own). The work done is
`sandbox.runtime.shim`'s, step for step; only where it runs changes.

Protocol: a unix stream socket, one request per connection, NUL-separated `key=value` records;
the client shuts down its write side, the daemon answers and closes.
  op=harden cwd= env=SANDBOX_*=… (repeated, SANDBOX_RUNC among them) arg=… (repeated)
      -> status=ok ticket= cid= arg=… SAID  |  status=refused code= SAID  |  status=fallback why=
  op=outcome ticket= code=        -> status=ok [cleanup=1] SAID  |  status=error code= SAID [cleanup=1]
`arg=` (repeated) is the command line the client runs runc with: the one rebuilt from the parsed
argv (sandbox.core.runc_cli), never the client's own.
SAID is what is to be told, in order: `error=`/`warning=` records (one line each for runc's
--log file) and `stderr=` (the text for stderr).  The daemon writes the audit record (it is
the one that did the work, with the operator's audit log and key, before it answers); the
client writes --log and stderr, because both are the engine's: a --log path is the engine's
view (relative to the client's working directory, through its root), and stderr is the
client's own descriptor.
  op=ping                         -> status=ok pid= served= socket=
  op=stop                         -> status=ok, then the daemon exits
`cleanup=1` asks the client to `runc delete --force` the container it created (runc is only
ever run by the client, with the engine's environment).  `fallback` (and no answer at all)
tells the client to take the Python path, which is always correct, only slower. The daemon
serves only peers with its own uid (root) in its own mount namespace, and stops serving
(answers fallback, then exits) once its own code has changed on disk, so an upgrade never runs
old hardening code.
"""

from __future__ import annotations

import os
import sys

from ..errors import SandboxError
from .unixsock import call, decode, encode, ping
from .unixsock import every as _all
from .unixsock import first as _first

__all__ = ["Daemon", "DaemonError", "call", "decode", "encode", "ping", "socket_path"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import io
    import socket


DEFAULT_SOCKET = "/run/sandbox/daemon.sock"
MAX_REQUEST = 1 << 20
IO_TIMEOUT = 10.0


class DaemonError(SandboxError):
    pass


def socket_path() -> str:
    return os.environ.get("SANDBOX_DAEMON_SOCKET") or DEFAULT_SOCKET


def code_fingerprint() -> tuple[tuple[str, int, int, int], ...]:
    """What the installed package's code looks like on disk; a change means an upgrade."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the sandbox package
    out = []
    for d, dirs, names in os.walk(here):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for n in sorted(names):
            if n.endswith((".py", ".json", ".yaml")):
                st = os.stat(os.path.join(d, n))
                out.append((os.path.join(d, n), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _mount_ns(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


class Daemon:
    def __init__(self, path: str, *, idle_timeout: float = 0.0) -> None:
        self.path = path
        self.idle_timeout = idle_timeout
        self.served = 0
        self.stopping = False
        self.busy = False
        self.fingerprint = code_fingerprint()
        self.mnt_ns = _mount_ns("self")
        self.sock: socket.socket | None = None
        self.reply_fds: list[int] = []  # sent with the answer in hand, then closed

    # -- life cycle ------------------------------------------------------------------------------
    def bind(self) -> None:
        from .unixsock import SocketError, bind_protected

        try:
            self.sock = bind_protected(self.path, lambda p: ping(p) is not None)
        except SocketError as e:
            raise DaemonError(f"sandbox daemon: {e}") from None
        self._bound_ino = os.lstat(self.path).st_ino
        # the first request must not pay for the imports: that is the point of the daemon

    def serve_forever(self) -> None:
        import signal

        assert self.sock is not None

        def stop(_sig: int, _frame: object) -> None:
            self.stopping = True
            if not self.busy:  # a request in hand is finished first: no half-recorded create
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.sock.settimeout(self.idle_timeout or None)
        try:
            while not self.stopping:
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    break  # idle: the next create takes the Python path until someone starts us again
                except InterruptedError:
                    continue
                with conn:
                    self.busy = True
                    try:
                        self.handle(conn)
                    except Exception as e:  # one bad request (no answer: its client falls back), not the daemon
                        from .shim import write_stderr

                        write_stderr(f"sandbox daemon: request dropped: {e.__class__.__name__}: {e}\n")
                    finally:
                        self.busy = False
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close_listener(self) -> None:
        """Close our copy of the socket without removing it (a forked daemon serves it)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        if self.sock is not None:
            self.close_listener()
            try:
                if os.lstat(self.path).st_ino == self._bound_ino:  # not a successor's socket
                    os.unlink(self.path)
            except OSError:
                pass

    # -- one request --------------------------------------------------------------------------------
    def handle(self, conn: object) -> None:
        import socket

        from .unixsock import peer_creds

        assert isinstance(conn, socket.socket)
        conn.settimeout(IO_TIMEOUT)
        pid, uid, _gid = peer_creds(conn)
        if uid != os.geteuid():
            return  # no answer: the client takes the Python path, which runs with its own rights
        chunks, size = [], 0
        while True:
            b = conn.recv(65536)
            if not b:
                break
            size += len(b)
            if size > MAX_REQUEST:
                raise ValueError("request too large")
            chunks.append(b)
        req = decode(b"".join(chunks))
        self.reply_fds = []
        try:
            data = encode(self.answer(req, pid))
            if self.reply_fds:  # a detached rootfs view for the client to attach (SCM_RIGHTS)
                import array

                sent = conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.reply_fds))])
                data = data[sent:]
            conn.sendall(data)
        finally:
            for fd in self.reply_fds:
                os.close(fd)

    def answer(self, req: list[tuple[str, str]], pid: int) -> list[tuple[str, str]]:
        op = _first(req, "op")
        if op == "ping":
            return [("status", "ok"), ("service", "daemon"), ("pid", str(os.getpid())), ("served", str(self.served)),
                    ("socket", self.path)]
        if op == "stop":
            self.stopping = True
            return [("status", "ok")]
        try:
            if _mount_ns(pid) != self.mnt_ns:
                return [("status", "fallback"), ("why", "client in another mount namespace")]
        except OSError:
            return [("status", "fallback"), ("why", "client gone")]
        if op == "harden" and code_fingerprint() != self.fingerprint:
            self.stopping = True  # never harden with code that is no longer the installed one
            return [("status", "fallback"), ("why", "sandbox was upgraded; the daemon exits")]
        self.served += 1
        if op == "harden":
            return self.harden(req, pid)
        if op == "outcome":
            return self.outcome(req)
        return [("status", "fallback"), ("why", f"unknown op {op!r}")]

    def harden(self, req: list[tuple[str, str]], client_pid: int = 0) -> list[tuple[str, str]]:
        from .. import _fastjson as json
        from ..core.runc_cli import parse
        from .shim import _Shim

        args, env, cwd = _all(req, "arg"), _all(req, "env"), _first(req, "cwd", "/")
        inv = parse(args)
        if inv.route != "hardened" or inv.subcommand not in ("create", "run"):
            return [("status", "fallback"), ("why", f"{inv.subcommand} is not served by the daemon")]
        if inv.error or inv.help:
            return [("status", "fallback"), ("why", "a command line runc refuses or a help request")]
        shim = _Shim(inv)
        shim.served_by = "daemon"
        shim.fd_pid = client_pid or None  # runc inherits the client's descriptors, not ours
        shim.creator_pid = client_pid  # the client runs runc: its life keeps an id range in use
        bundle = ""
        prep_records: list[tuple[str, str]] = []

        def prepare() -> int:
            nonlocal bundle
            shim.load()
            bundle = shim.prepare_bundle()
            prep = shim.prep
            if prep is not None:
                # a user namespace sandbox adds: the client attaches this view in a mount namespace of
                # the runc it starts, and enters these namespaces (sandbox/host/mountns.py, csrc/sandbox-runc.c)
                if prep.rootfs is not None:
                    from ..host.mountns import detached_rootfs

                    try:
                        self.reply_fds.append(detached_rootfs(prep.rootfs, prep.uid_mappings, prep.gid_mappings))
                    except BaseException:
                        shim.release_ids()
                        raise
                    prep_records.append(("mount_target", prep.rootfs.target))
                prep_records.extend(("enter", f"{kind}:{path}") for kind, path in prep.enter)
            return 0

        shim.said = []
        with _ClientContext(env, cwd) as err:
            code = shim.guarded(prepare)
        if code != 0:
            return [("status", "refused"), ("code", str(code)), *_said(shim.said, err.getvalue())]
        ticket = json.dumps({"argv": args, "env": env, "cwd": cwd, "bundle": bundle,
                             "profile": shim.profile.name, "sha256": shim.profile.sha256})
        # the client runs runc with this argv, not its own: what was decided is what runs
        return [("status", "ok"), ("ticket", ticket), ("cid", inv.container_id or ""),
                *_said(shim.said, err.getvalue()), *prep_records, *(("arg", a) for a in shim.runc_argv)]

    def outcome(self, req: list[tuple[str, str]]) -> list[tuple[str, str]]:
        from types import SimpleNamespace

        from .. import _fastjson as json
        from ..core.runc_cli import parse
        from .shim import _Shim

        t = json.loads(_first(req, "ticket"))
        runc_code = int(_first(req, "code", "1"))
        shim = _Shim(parse(t["argv"]))
        shim.served_by = "daemon"
        shim.said = []

        def finish() -> int:
            shim.load()
            shim.profile = SimpleNamespace(name=t["profile"], sha256=t["sha256"])
            shim.bundle = t["bundle"]
            shim.finish_bundle(t["bundle"], runc_code)
            return 0

        with _ClientContext(t["env"], t["cwd"]) as err:
            code = shim.guarded(finish)
        cleanup = [("cleanup", "1")] if shim.cleanup_wanted else []
        if code != 0:
            return [("status", "error"), ("code", str(code)), *_said(shim.said, err.getvalue()), *cleanup]
        return [("status", "ok"), *_said(shim.said, err.getvalue()), *cleanup]


def _said(said: list[tuple[str, str]], captured: str) -> list[tuple[str, str]]:
    """What the client is to tell: a --log line per message, then the whole text for stderr."""
    from .shim import stderr_line

    text = captured + "".join(stderr_line(level, msg) for level, msg in said)
    return [*((level, msg.replace("\0", " ")) for level, msg in said), ("stderr", text.replace("\0", " "))]


class _ClientContext:
    """The client's SANDBOX_* environment and working directory, and its stderr captured."""

    def __init__(self, env: list[str], cwd: str) -> None:
        self.env, self.cwd = env, cwd

    def __enter__(self) -> io.StringIO:
        import io

        os.chdir(self.cwd)  # first: if it fails, nothing is changed yet
        self.saved = {k: v for k, v in os.environ.items() if k.startswith("SANDBOX_")}
        for k in self.saved:
            del os.environ[k]
        for e in self.env:
            k, _, v = e.partition("=")
            if k.startswith("SANDBOX_"):
                os.environ[k] = v
        captured = io.StringIO()
        self.stderr, sys.stderr = sys.stderr, captured
        return captured

    def __exit__(self, *exc: object) -> None:
        sys.stderr = self.stderr
        os.chdir("/")
        for k in [k for k in os.environ if k.startswith("SANDBOX_")]:
            del os.environ[k]
        os.environ.update(self.saved)
