"""The sandbox agent: runc hands it each monitored container's seccomp notifications.

A container whose profile needs runtime monitoring (complain mode, `monitor.exec_trail`,
`monitor.denials`, `sandbox learn`) gets a filter that routes some syscalls with
SCMP_ACT_NOTIFY and `linux.seccomp.listenerPath` set to this agent's socket.  During `create`
(and every `exec`) runc connects there and sends, in one message, the container's state JSON
(with the transform's `listenerMetadata`) and the filter's notification descriptor
(SCM_RIGHTS).  From then on each routed syscall of the container blocks until the agent
answers it: "continue" (SECCOMP_USER_NOTIF_FLAG_CONTINUE) or an errno.  What to answer and what
to record is `sandbox.core.monitor`'s; this module is the I/O around it.

One thread serves every container from one epoll loop and never blocks on one of them: the
listening socket, the connections being read, every notification descriptor (one
SECCOMP_IOCTL_NOTIF_RECV per readiness, which cannot block: a notification withdrawn in the
meantime gives ENOENT) and timers.  A second thread writes the audit records, in batches,
through `sandbox.audit.log.AuditLog` (the locked, hash-chained appender), so an fsync never delays
an answer.  A descriptor reports EPOLLHUP once no process uses its filter any more: it is
closed and the container's counts are written.  Memory is bounded: containers (descriptors),
connections, records waiting to be written, execs being followed and each container's tally
have fixed caps.

Why a separate service and not the sandbox daemon: the daemon is optional, exits when its code
changes on disk (so an upgrade never hardens with old code) and serves one create at a time,
each taking milliseconds; the agent holds every monitored container's descriptors for as long
as the container lives (if it exits they are gone: the routed syscalls fail with ENOSYS), and
must answer a blocked syscall in microseconds whatever else is going on.  The two share the
socket protection (`sandbox.runtime.unixsock`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import sys

from ..core.monitor import AUDIT_ARCHES, answer
from ..errors import SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

    from ..core.monitor import Answer, Meta, Tally, TokenBucket


# <linux/seccomp.h>
NOTIF_RECV = 0xC0502100  # SECCOMP_IOWR(0, struct seccomp_notif)
NOTIF_SEND = 0xC0182101  # SECCOMP_IOWR(1, struct seccomp_notif_resp)
NOTIF_ID_VALID = 0x40082102  # SECCOMP_IOW(2, __u64)
FLAG_CONTINUE = 1  # SECCOMP_USER_NOTIF_FLAG_CONTINUE
_NOTIF = struct.Struct("=QIIiIQ6Q")  # struct seccomp_notif: id, pid, flags, data {nr, arch, ip, args[6]}
_RESP = struct.Struct("=QqiI")  # struct seccomp_notif_resp: id, val, error, flags
NOTIFY_FD_LINK = "anon_inode:seccomp notify"

MAX_MESSAGE = 1 << 20  # runc's state JSON (annotations included)
CONN_TIMEOUT = 5.0  # a connection that has not said what it wants by then is dropped
MAX_CONNS = 256
MAX_PENDING_EXECS = 512
EXEC_BURST, EXEC_RATE = 256, 64.0  # exec records per container: a burst, then per second
# when to look again at a process after its exec was let run (seconds after the notification)
FOLLOW = (*(i * 0.0001 for i in range(1, 21)), 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
          0.075, 0.1, 0.15, 0.25)
SPIN = 0.001  # epoll_wait counts in milliseconds: a timer due sooner is waited for with nanosleep
TRACE_POLL, TRACE_FOR = 0.00005, 0.05  # a traced exec: looked for every 50 µs, for up to 50 ms


class AgentError(SandboxError):
    pass


def _now() -> float:
    import time

    return time.monotonic()


def _stamp() -> str:
    import time

    from ..audit.log import rfc3339_ns

    return rfc3339_ns(time.time_ns())


# -- what the kernel says about a process ------------------------------------------------------------

def read_stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, starttime) from /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    left, right = raw.find(b"("), raw.rfind(b")")
    if left < 0 or right < 0:
        return None
    comm = raw[left + 1:right].decode("utf-8", "replace")
    rest = raw[right + 2:].split()
    try:
        return comm, rest[0].decode(), int(rest[1]), int(rest[19])
    except (IndexError, ValueError):
        return None


def identity(pid: int, starttime: int | None = None, argv: bool = True) -> dict[str, Any] | None:
    """exe, comm and argv of a process, read from the kernel; None if it is gone or (with
    `starttime`) is no longer the same process.  A zombie has only its comm left."""
    st = read_stat(pid)
    if st is None or (starttime is not None and st[3] != starttime):
        return None
    out: dict[str, Any] = {"comm": st[0]}
    try:
        out["exe"] = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        out["exe"] = None
    if argv:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read(4096)
            out["argv"] = [a.decode("utf-8", "replace")[:256] for a in raw.split(b"\0")[:32] if a] if raw else None
        except OSError:
            out["argv"] = None
    again = read_stat(pid)  # still the same process after the reads?
    if again is None or again[3] != st[3]:
        return None
    if again[1] == "Z":
        out["zombie"] = True
    return out


def tgid_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return pid


# -- ptrace, to see what an exec ran -------------------------------------------------------------------
#
# The program an exec runs is read from the kernel after the exec (the filename is a pointer argument,
# never read).  A program can run and exit in less than a millisecond, so the agent seizes the calling
# process (PTRACE_SEIZE with PTRACE_O_TRACEEXEC, no stop) before letting the exec run: the exec then
# stops it (PTRACE_EVENT_EXEC) until the agent has read /proc/PID/{exe,cmdline,stat} and detached.  A
# signal that arrives meanwhile is passed on; an exec that fails leaves nothing to stop at, and the
# process is interrupted and let go after TRACE_FOR.  Only a single-threaded caller is seized (an exec
# from another thread changes its thread id); one already traced, or a host that forbids ptrace, gets
# the fallback: polling /proc after the exec, which can miss a program that exits at once.

PTRACE_CONT, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 7, 17, 0x4206, 0x4207
PTRACE_O_TRACEEXEC, PTRACE_EVENT_EXEC, PTRACE_EVENT_STOP = 0x10, 4, 128
WALL = 0x40000000  # __WALL: wait for tracees that are not our children


class _Ptrace:
    def __init__(self) -> None:
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.ctypes = ctypes

    def __call__(self, req: int, pid: int, data: int = 0) -> bool:
        return int(self.libc.ptrace(req, pid, None, self.ctypes.c_void_p(data))) == 0


# -- per-container state ---------------------------------------------------------------------------------

class Container:
    __slots__ = ("key", "state", "meta", "fds", "tally", "bucket", "execs", "exec_n", "unrecorded", "plans")

    def __init__(self, key: tuple[str, str], state: dict[str, Any], meta: Meta) -> None:
        from collections import deque

        from ..core.monitor import Tally, TokenBucket

        self.key = key
        self.state = state
        self.meta = meta
        self.fds: set[int] = set()
        self.tally: Tally = Tally()
        self.bucket: TokenBucket = TokenBucket(EXEC_RATE, EXEC_BURST)
        self.execs: deque[PendingExec] = deque()  # in notification order: records are written in that order
        self.exec_n = 0
        self.unrecorded = 0  # execs beyond the rate limit: counted, not recorded
        # syscall -> (the answer when it does not depend on the call's arguments, else None; the argument
        # positions its rules look at): worked out once per container and syscall
        self.plans: dict[str, tuple[Answer | None, tuple[int, ...]]] = {}

    def plan(self, name: str) -> tuple[Answer | None, tuple[int, ...]]:
        got = self.plans.get(name)
        if got is None:
            from ..core.monitor import EXEC_SYSCALLS, condition_indexes

            idx = condition_indexes(self.meta, name)
            fixed = None if idx or (self.meta.exec and name in EXEC_SYSCALLS) else answer(self.meta, name, ())
            got = self.plans[name] = (fixed, idx)
        return got


class PendingExec:
    """An exec let run, whose program the agent reads from the kernel once it has happened."""

    __slots__ = ("c", "n", "syscall", "pid", "tgid", "starttime", "ans", "caller", "parent", "notified", "t0",
                 "step", "program", "seen", "done", "traced")

    def __init__(self, c: Container, n: int, syscall: str, pid: int, ans: Answer) -> None:
        self.c, self.n, self.syscall, self.pid, self.ans = c, n, syscall, pid, ans
        self.tgid = pid
        self.starttime: int | None = None
        self.caller: dict[str, Any] = {}
        self.parent: dict[str, Any] = {}
        self.notified = _stamp()
        self.t0 = _now()
        self.step = 0
        self.program: dict[str, Any] | None = None
        self.seen = ""
        self.done = False
        self.traced = False  # seized with PTRACE_O_TRACEEXEC: the exec stops it until the agent has looked

    def due(self) -> float:
        if self.traced:
            return self.t0 + min(self.step * TRACE_POLL, TRACE_FOR)
        return self.t0 + FOLLOW[min(self.step, len(FOLLOW) - 1)]

    def finish(self, program: dict[str, Any] | None, seen: str) -> None:
        self.program, self.seen, self.done = program, seen, True


# -- the audit writer ----------------------------------------------------------------------------------

class Recorder:
    """Writes records on its own thread, in batches, through the audit log's locked appender.

    `put` never blocks: when the queue is full the record is dropped and counted (`lost`); the
    rate limits keep that for floods the agent could not have written anyway.
    """

    def __init__(self, append: Callable[[list[dict[str, Any]]], Any], max_queue: int = 20000,
                 on_error: Callable[[str], None] | None = None) -> None:
        import queue
        import threading

        self.append = append
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self.lost = 0
        self.written = 0
        self.failing = ""  # the last write's error, "" once a write succeeds again
        self.on_error = on_error
        self.thread = threading.Thread(target=self._run, name="sandbox-agent-audit", daemon=True)
        self.thread.start()

    def put(self, rec: dict[str, Any]) -> None:
        import queue

        try:
            self.q.put_nowait(rec)
        except queue.Full:
            self.lost += 1

    def close(self, timeout: float = 30.0) -> None:
        self.q.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        import queue
        import time

        stop = False
        while not stop:
            first = self.q.get()
            batch: list[dict[str, Any]] = []
            if first is None:
                stop = True
            else:
                batch.append(first)
            while len(batch) < 512:
                try:
                    more = self.q.get(timeout=0.02) if not stop else self.q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    continue
                batch.append(more)
            for attempt in range(3):
                if not batch:
                    break
                try:
                    self.append(batch)
                    self.written += len(batch)
                    self.failing = ""
                    break
                except Exception as e:  # noqa: BLE001 - reported, counted; the agent keeps answering
                    self.failing = str(e)
                    if self.on_error is not None:
                        self.on_error(f"cannot write audit records: {e}")
                    if attempt == 2:
                        self.lost += len(batch)
                    else:
                        time.sleep(0.5)


def audit_appender(audit_log: str | None = None) -> tuple[Callable[[list[dict[str, Any]]], Any], str]:
    """The operator's audit log (or `audit_log`), as the shim writes it: (append, on_audit_failure)."""
    from ..audit.log import AuditLog
    from ..host.opconfig import load_operator_config

    op = load_operator_config()
    log = AuditLog(audit_log or op.audit_log, on_failure="fail", hmac_key_file=op.audit_hmac_key_file,
                   max_bytes=op.audit_max_bytes, create_dir=True)
    return log.append, op.on_audit_failure


# -- the agent ---------------------------------------------------------------------------------------------

class Agent:
    """The event loop; `serve_forever` until SIGTERM (when installed), `op=stop` or `stop()`."""

    def __init__(self, path: str, record: Callable[[list[dict[str, Any]]], Any], *, fail_closed: bool = True,
                 max_fds: int = 4096, flush_interval: float = 5.0, signals: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.record = record
        self.max_fds = max_fds
        self.flush_interval = flush_interval
        self.fail_closed = fail_closed  # on_audit_failure: fail
        self.signals = signals
        self.log = log or (lambda m: _write_stderr(f"sandbox agent: {m}\n"))
        self.sock: socket.socket | None = None
        # made by serve_forever, in the process that serves (`sandbox agent start` forks after bind)
        self.recorder: Recorder = None  # type: ignore[assignment]
        self.ep: Any = None
        self.wake_fd = -1
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.conns: dict[int, tuple[socket.socket, bytearray, list[int], float]] = {}
        self.targets: dict[int, Container] = {}
        self.containers: dict[tuple[str, str], Container] = {}
        self.pending: list[PendingExec] = []
        self.names: dict[tuple[int, int], str] = {}
        self.signatures: dict[str, list[list[str]]] | None = None
        self.stopping = False
        self.next_flush = 0.0
        self.stats = {"notifications": 0, "continued": 0, "failed": 0, "withdrawn": 0, "attached": 0, "refused": 0}
        self.listeners: list[Callable[[Container, str], None]] = []  # told when a container detaches
        self.ptrace: _Ptrace | None = None
        try:
            self.ptrace = _Ptrace()
        except OSError:
            pass

    # -- life cycle ------------------------------------------------------------------------------------
    def bind(self) -> None:
        from .unixsock import SocketError, bind_protected, ping

        try:
            self.sock = bind_protected(self.path, lambda p: ping(p) is not None)
        except SocketError as e:
            raise AgentError(f"sandbox agent: {e}") from None
        self._bound_ino = os.lstat(self.path).st_ino
        self.sock.setblocking(False)

    def close_listener(self) -> None:
        """Close our copy of the socket without removing it (a forked agent serves it)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def stop(self) -> None:
        """Ask the loop to finish (from any thread)."""
        self.stopping = True
        if self.wake_fd >= 0:
            try:
                os.eventfd_write(self.wake_fd, 1)
            except OSError:
                pass

    def serve_forever(self) -> None:
        assert self.sock is not None, "bind() first"
        self.recorder = Recorder(self.record, on_error=self.log)
        self.ep = select.epoll()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._watch(self.sock.fileno(), select.EPOLLIN, self._accept)
        self._watch(self.wake_fd, select.EPOLLIN, self._woken)
        _raise_nofile()
        self.recorder.put({"event": "monitor", "data": {"action": "agent started", "pid": os.getpid(),
                                                         "socket": self.path}})
        if self.signals:
            import signal

            def stop(_sig: int, _frame: object) -> None:
                self.stop()

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        self.next_flush = _now() + self.flush_interval
        try:
            import time

            while not self.stopping:
                timeout = self._timeout()
                if 0 < timeout < SPIN:
                    time.sleep(timeout)
                    timeout = 0
                try:
                    events = self.ep.poll(timeout)
                except InterruptedError:
                    continue
                for fd, ev in events:
                    handler = self.handlers.get(fd)
                    if handler is not None:
                        try:
                            handler(ev)
                        except Exception as e:  # noqa: BLE001 - one descriptor's trouble, not the agent's
                            self.log(f"fd {fd}: {e.__class__.__name__}: {e}")
                self._timers()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        for p in self.pending:
            self._release(p)
            if not p.done:
                p.finish(None, "the agent stopped before the program could be read")
        for c in list(self.containers.values()):
            self._detach(c, "the sandbox agent stopped")
        for fd in list(self.conns):
            self._drop_conn(fd)
        self.recorder.put({"event": "monitor", "data": {"action": "agent stopped", "pid": os.getpid(),
                                                         **self.stats}})
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                if os.lstat(self.path).st_ino == self._bound_ino:
                    os.unlink(self.path)
            except OSError:
                pass
        self.recorder.close()
        self.ep.close()
        os.close(self.wake_fd)

    def _watch(self, fd: int, mask: int, handler: Callable[[int], None]) -> None:
        self.ep.register(fd, mask)
        self.handlers[fd] = handler

    def _unwatch(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def _woken(self, _ev: int) -> None:
        try:
            os.eventfd_read(self.wake_fd)
        except OSError:
            pass

    # -- connections -------------------------------------------------------------------------------------
    def _accept(self, _ev: int) -> None:
        import functools

        from .unixsock import peer_creds

        assert self.sock is not None
        for _ in range(64):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: the connection waits in the backlog
                self.log(f"accept: {e}")
                return
            try:
                uid = peer_creds(conn)[1]
            except OSError:
                uid = -1
            if uid != os.geteuid() or len(self.conns) >= MAX_CONNS:
                conn.close()  # only root's runc (and root's clients) may talk to the agent
                continue
            conn.setblocking(False)
            fd = conn.fileno()
            self.conns[fd] = (conn, bytearray(), [], _now() + CONN_TIMEOUT)
            self._watch(fd, select.EPOLLIN, functools.partial(self._read_conn_ev, fd))

    def _read_conn_ev(self, fd: int, _ev: int) -> None:
        self._read_conn(fd)

    def _read_conn(self, fd: int) -> None:
        import socket

        conn, buf, fds, _deadline = self.conns[fd]
        try:
            data, anc, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(8 * 4), socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop_conn(fd)
            return
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(raw) // 4
                fds.extend(int.from_bytes(raw[i * 4:i * 4 + 4], sys.byteorder, signed=True) for i in range(n))
        buf.extend(data)
        if len(buf) > MAX_MESSAGE:
            self._drop_conn(fd)
            return
        if buf[:1] == b"{":
            doc = _complete_json(bytes(buf))
            if doc is not None:
                self._from_runc(fd, doc)
            elif not data:
                self._drop_conn(fd)
            return
        if not data:  # a request: the client has shut down its write side
            self._answer_request(fd)

    def _drop_conn(self, fd: int) -> None:
        conn, _buf, fds, _deadline = self.conns.pop(fd)
        self._unwatch(fd)
        for f in fds:
            _close(f)
        conn.close()

    def _answer_request(self, fd: int) -> None:
        from .unixsock import decode, encode, first

        conn, buf, _fds, _deadline = self.conns[fd]
        try:
            req = decode(bytes(buf))
        except ValueError:
            req = []
        op = first(req, "op")
        if op == "ping":
            reply = [("status", "ok"), ("service", "agent"), ("pid", str(os.getpid())), ("socket", self.path)]
        elif op == "status":
            reply = [("status", "ok"), ("service", "agent"), ("pid", str(os.getpid())),
                     ("containers", str(len(self.containers))), ("descriptors", str(len(self.targets))),
                     ("pending_execs", str(len(self.pending))), ("records_written", str(self.recorder.written)),
                     ("records_lost", str(self.recorder.lost)), ("audit_failing", self.recorder.failing),
                     *((k, str(v)) for k, v in self.stats.items())]
        elif op == "stop":
            reply = [("status", "ok")]
            self.stop()
        else:
            reply = [("status", "error"), ("why", f"unknown op {op!r}")]
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(encode(reply))
        except OSError:
            pass
        self._drop_conn(fd)

    # -- a container's descriptor, from runc -----------------------------------------------------------------
    def _from_runc(self, fd: int, doc: Any) -> None:
        import functools

        from ..core.monitor import attached, parse_meta

        _conn, _buf, fds, _deadline = self.conns[fd]
        received, fds[:] = list(fds), []
        self._drop_conn(fd)
        state = doc.get("state") if isinstance(doc, dict) else None
        state = state if isinstance(state, dict) else {}
        problem = ""
        if not isinstance(doc, dict) or doc.get("fds") != ["seccompFd"] or len(received) != 1:
            problem = f"expected one seccomp descriptor with the container's state, got {len(received)} descriptors"
        elif not isinstance(state.get("id"), str) or not state["id"]:
            problem = "the state names no container"
        elif _fd_link(received[0]) != NOTIFY_FD_LINK:
            problem = "the descriptor is not a seccomp notification descriptor"
        meta = parse_meta(doc.get("metadata")) if isinstance(doc, dict) and not problem else None
        if not problem and meta is None:
            problem = "the filter's listenerMetadata is not the sandbox transform's: nothing says what to answer"
        if not problem and len(self.targets) >= self.max_fds:
            problem = f"the agent already holds {self.max_fds} descriptors (sandbox agent --max-fds)"
        if problem or meta is None:
            for f in received:
                _close(f)  # the container's routed syscalls now fail with ENOSYS: fail closed
            self.stats["refused"] += 1
            self.recorder.put({"container_id": str(state.get("id") or ""), "bundle": str(state.get("bundle") or ""),
                               "event": "error", "data": {"reason": f"sandbox agent refused a descriptor: {problem}"}})
            return
        nfd = received[0]
        key = (state["id"], str(state.get("bundle") or ""))
        c = self.containers.get(key)
        if c is None or c.meta != meta:
            if c is not None:
                self._detach(c, "a new container with this id and bundle")
            c = self.containers[key] = Container(key, state, meta)
        c.fds.add(nfd)
        self.targets[nfd] = c
        self._watch(nfd, select.EPOLLIN, functools.partial(self._notified, nfd))
        self.stats["attached"] += 1
        pid = doc.get("pid") if isinstance(doc.get("pid"), int) else 0
        self.recorder.put(attached(state, meta, pid))

    # -- notifications -------------------------------------------------------------------------------------
    def _notified(self, fd: int, ev: int) -> None:
        c = self.targets.get(fd)
        if c is None:
            return
        if ev & select.EPOLLIN:
            buf = bytearray(80)
            try:
                fcntl.ioctl(fd, NOTIF_RECV, buf, True)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EINTR):
                    return  # withdrawn (its task was killed) or interrupted: the fd stays while others use it
                self._close_target(fd, f"SECCOMP_IOCTL_NOTIF_RECV: {e.strerror}")
                return
            self._handle(fd, c, buf)
        elif ev & (select.EPOLLHUP | select.EPOLLERR):
            self._close_target(fd, "every process of the filter has exited")

    def _handle(self, fd: int, c: Container, buf: bytearray) -> None:
        """Answer quickly: while its notification waits, a task can be interrupted by a signal, and
        runc's filter (no SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV) then fails the call with EINTR; the
        shorter the wait, the rarer that is.  Only what is recorded in full (the first call of its
        kind, an exec's caller) is read from /proc before the answer, while the task still waits."""
        nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf)
        self.stats["notifications"] += 1
        name = self._name(arch, nr)
        fixed, idx = c.plan(name)
        ans = fixed or answer(c.meta, name, args, audit_failing=self.fail_closed and bool(self.recorder.failing))
        pending = self._exec_before(c, fd, nid, pid, name, ans) if ans.record == "exec" else None
        rec = self._syscall_first(c, pid, name, AUDIT_ARCHES.get(arch, hex(arch)), nr, args, ans, idx) \
            if ans.record == "syscall" else None
        if not self._send(fd, nid, ans.errno):
            # withdrawn: its task was killed, or interrupted by a signal (then the call fails with EINTR
            # or, with SA_RESTART, comes again as a new notification): nothing ran, nothing to record
            self.stats["withdrawn"] += 1
            return
        if rec is not None:
            self.recorder.put(rec)
        if pending is not None:
            self._follow(pending)

    def _send(self, fd: int, nid: int, err: int) -> bool:
        """Answer; False when the notification is no longer there (ENOENT)."""
        resp = _RESP.pack(nid, 0, -err if err else 0, 0 if err else FLAG_CONTINUE)
        try:
            fcntl.ioctl(fd, NOTIF_SEND, resp)
        except OSError:
            return False
        self.stats["failed" if err else "continued"] += 1
        return True

    def _valid(self, fd: int, nid: int) -> bool:
        """Whether notification `nid` still waits: what was read of its pid was read of its task."""
        try:
            fcntl.ioctl(fd, NOTIF_ID_VALID, struct.pack("=Q", nid))
            return True
        except OSError:
            return False

    def _syscall_first(self, c: Container, pid: int, name: str, arch: str, nr: int, args: list[int],
                       ans: Answer, idx: tuple[int, ...]) -> dict[str, Any] | None:
        """Count the call; the first of its kind is recorded in full, its process read while it waits."""
        key = (arch, name, *(args[i] for i in idx)) if idx else (arch, name)
        if not c.tally.add(name, key):
            return None
        from ..core.monitor import arguments, syscall_record

        who = identity(pid, argv=False) or {}
        return syscall_record(c.state, c.meta, name=name, arch=arch, nr=nr, pid=pid,
                              process={"exe": who.get("exe"), "comm": who.get("comm")},
                              args=arguments(self._signature(name), args), ans=ans)

    def _exec_before(self, c: Container, fd: int, nid: int, pid: int, name: str, ans: Answer) -> PendingExec | None:
        """Who asks for the exec (read while it waits: the exec replaces it); None beyond the rate limit."""
        if not c.bucket.take(_now()) or len(self.pending) >= MAX_PENDING_EXECS:
            c.tally.add(name, ("exec", name))
            c.unrecorded += 1
            return None
        c.exec_n += 1
        p = PendingExec(c, c.exec_n, name, pid, ans)
        p.tgid = tgid_of(pid)
        st = read_stat(p.tgid)
        p.starttime = st[3] if st else None
        p.caller = {"pid": p.tgid, **(identity(p.tgid, p.starttime) or {"exe": None, "comm": None, "argv": None})}
        if st is not None:
            pst = read_stat(st[2])
            p.parent = {"pid": st[2], **(identity(st[2], pst[3] if pst else None, argv=False) or
                                          {"exe": None, "comm": None})}
        if not self._valid(fd, nid):
            c.exec_n -= 1
            return None  # withdrawn while we read (a signal): it comes again, or fails; nothing ran
        c.tally.add(name, ("exec", name))
        if not ans.errno and pid == p.tgid and self.ptrace is not None and \
                self.ptrace(PTRACE_SEIZE, pid, PTRACE_O_TRACEEXEC):
            p.traced = True
        if ans.errno:
            p.finish(None, "not run: failed by the agent (the audit log cannot be written)")
        return p

    def _follow(self, p: PendingExec) -> None:
        p.c.execs.append(p)
        if not p.done:
            self.pending.append(p)
        self._emit_execs(p.c)

    def _check_exec(self, p: PendingExec) -> None:
        from ..core.monitor import changed

        if p.traced:
            self._check_traced(p)
            return
        now = identity(p.tgid, p.starttime)
        if now is None:
            p.finish(None, "exited before the program could be read")
        elif now.get("zombie"):
            if now["comm"] != p.caller.get("comm"):
                p.finish({"comm": now["comm"]}, "exited before its program could be read; only its name was left")
            else:
                p.finish(None, "exited before the program could be read")
        elif changed(p.caller, now):
            p.finish({k: now.get(k) for k in ("exe", "comm", "argv")}, "after the exec")
        else:
            p.step += 1
            if p.step >= len(FOLLOW):
                p.finish(None, "unchanged: the exec failed, or ran the same program with the same arguments")

    def _check_traced(self, p: PendingExec) -> None:
        """One look at a seized caller: its exec stop, a signal to pass on, its end, or time to let go."""
        assert self.ptrace is not None
        p.step += 1
        try:
            got, status = os.waitpid(p.pid, os.WNOHANG | WALL)
        except ChildProcessError:
            got, status = -1, 0
        if got == 0:
            if _now() - p.t0 >= TRACE_FOR:  # the exec failed: nothing will stop; interrupt it to let go
                self.ptrace(PTRACE_INTERRUPT, p.pid)
                p.step = 0  # keep looking for the stop the interrupt causes
                p.t0 = _now() - TRACE_FOR + 0.005
                p.seen = "interrupted"
            return
        if got < 0 or not os.WIFSTOPPED(status):
            p.traced = False
            p.finish(None, "exited: the exec failed")
            return
        event, sig = status >> 16 & 0xFF, os.WSTOPSIG(status)
        if event == PTRACE_EVENT_EXEC:
            now = identity(p.pid)
            self.ptrace(PTRACE_DETACH, p.pid)
            p.traced = False
            p.finish({k: now.get(k) for k in ("exe", "comm", "argv")} if now else None, "at the exec (traced)")
        elif event == PTRACE_EVENT_STOP or p.seen == "interrupted":
            # a group stop (SIGSTOP and friends) or our interrupt: let go, leaving a stopped process stopped
            self.ptrace(PTRACE_DETACH, p.pid)
            p.traced = False
            if p.seen == "interrupted":
                p.finish(None, "unchanged: the exec failed")
            else:
                p.step = 0
        else:
            self.ptrace(PTRACE_CONT, p.pid, sig)  # a signal arrived while seized: deliver it

    def _emit_execs(self, c: Container) -> None:
        from ..core.monitor import exec_record

        while c.execs and c.execs[0].done:
            p = c.execs.popleft()
            self.recorder.put(exec_record(c.state, c.meta, syscall=p.syscall, n=p.n, pid=p.tgid, ans=p.ans,
                                          caller=p.caller, parent=p.parent, program=p.program, seen=p.seen,
                                          notified=p.notified))

    def _release(self, p: PendingExec) -> None:
        """Stop tracing `p` (it is let go where it is; a process that is gone needs nothing)."""
        if p.traced and self.ptrace is not None:
            self.ptrace(PTRACE_INTERRUPT, p.pid)
            for _ in range(200):
                try:
                    got, _st = os.waitpid(p.pid, os.WNOHANG | WALL)
                except ChildProcessError:
                    break
                if got:
                    break
                import time

                time.sleep(0.0005)
            self.ptrace(PTRACE_DETACH, p.pid)
            p.traced = False

    # -- timers -------------------------------------------------------------------------------------------
    def _timeout(self) -> float:
        due = [self.next_flush]
        if self.pending:
            due.append(min(p.due() for p in self.pending))
        if self.conns:
            due.append(min(d for *_x, d in self.conns.values()))
        return max(0.0, min(due) - _now())

    def _timers(self) -> None:
        now = _now()
        if self.pending:
            touched = set()
            for p in self.pending:
                if not p.done and p.due() <= now:
                    self._check_exec(p)
                if p.done:
                    touched.add(p.c.key)
            self.pending = [p for p in self.pending if not p.done]
            for key in touched:
                c = self.containers.get(key)
                if c is not None:
                    self._emit_execs(c)
        for fd, (*_x, deadline) in list(self.conns.items()):
            if deadline <= now:
                self._drop_conn(fd)
        if now >= self.next_flush:
            self.next_flush = now + self.flush_interval
            for c in self.containers.values():
                self._flush_counts(c)

    def _flush_counts(self, c: Container, final: bool = False) -> None:
        from ..core.monitor import counts_record

        counts = c.tally.take()
        extra = {"exec_unrecorded": c.unrecorded} if c.unrecorded else {}
        if counts or extra:
            self.recorder.put(counts_record(c.state, c.meta, counts, final=final, extra=extra))
        c.unrecorded = 0

    # -- the end of a descriptor, of a container ------------------------------------------------------------
    def _close_target(self, fd: int, why: str) -> None:
        c = self.targets.pop(fd, None)
        self._unwatch(fd)
        _close(fd)
        if c is None:
            return
        c.fds.discard(fd)
        if not c.fds:
            self._detach(c, why)

    def _detach(self, c: Container, why: str) -> None:
        from ..core.monitor import detached

        for fd in list(c.fds):
            self.targets.pop(fd, None)
            self._unwatch(fd)
            _close(fd)
        c.fds.clear()
        for p in c.execs:
            self._release(p)
            if not p.done:
                p.finish(None, "exited before the program could be read")
        self.pending = [p for p in self.pending if p.c is not c]
        self._emit_execs(c)
        self._flush_counts(c, final=True)
        self.recorder.put(detached(c.state, c.meta, c.tally, why))
        self.containers.pop(c.key, None)
        for tell in self.listeners:
            tell(c, why)

    # -- names -------------------------------------------------------------------------------------------------
    def _name(self, arch: int, nr: int) -> str:
        key = (arch, nr)
        name = self.names.get(key)
        if name is None:
            import pyseccomp

            try:
                raw = pyseccomp.resolve_syscall(arch, nr)
                name = raw.decode() if isinstance(raw, bytes) and raw else f"syscall#{nr}"
            except (ValueError, OSError):
                name = f"syscall#{nr}"
            if len(self.names) < 8192:
                self.names[key] = name
        return name

    def _signature(self, name: str) -> list[list[str]] | None:
        if self.signatures is None:
            from .. import _fastjson as json
            from ..core.loader import package_file

            try:
                with open(package_file("data", "syscall-signatures.json"), encoding="ascii") as f:
                    self.signatures = json.loads(f.read())
            except (OSError, ValueError):
                self.signatures = {}
        return self.signatures.get(name)


def _complete_json(data: bytes) -> Any:
    """The JSON document in `data` if it is complete, else None."""
    from .. import _fastjson as json

    try:
        return json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return None


def _fd_link(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _raise_nofile() -> None:
    """Every monitored container holds a descriptor here: take the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass


def _write_stderr(text: str) -> None:
    from .shim import write_stderr

    write_stderr(text)


def run_in_thread(path: str, record: Callable[[list[dict[str, Any]]], Any], **kw: Any) -> tuple[Agent, Any]:
    """A private agent on a background thread (for `sandbox learn` and the tests): (agent, thread)."""
    import threading

    agent = Agent(path, record, signals=False, **kw)
    agent.bind()
    t = threading.Thread(target=agent.serve_forever, name="sandbox-agent", daemon=True)
    t.start()
    return agent, t
