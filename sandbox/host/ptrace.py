"""Read the seccomp filters installed on running tasks from the kernel.  Edge.

The kernel hands a task's classic-BPF seccomp programs to a tracer that holds CAP_SYS_ADMIN
and is not itself under seccomp: `PTRACE_SEIZE` (attaches without a signal or a stop),
`PTRACE_INTERRUPT` (a ptrace-stop, which PTRACE_SECCOMP_GET_FILTER needs), then
`PTRACE_SECCOMP_GET_FILTER` index by index (0 is the oldest filter) until ENOENT, then
`PTRACE_DETACH`.  The stop lasts as long as the copies: tens of microseconds.

Not disturbing the workload:
- a task that already has a tracer (TracerPid) is refused, not attached;
- a signal that arrives while attached is reported to us as a signal-delivery-stop; it is handed
  back to the task on detach, so none is lost;
- the attaching is done by a helper process (a fresh interpreter, `serve`).  If anything goes
  wrong (an exception, a task that does not stop in time, Ctrl-C), the helper dies, and the
  kernel detaches a dead tracer's tracees itself and lets them run: no task is ever left stopped.
- a task blocked in epoll_wait(2) (or reading inotify) returns EINTR when it is stopped, as under
  `strace -p` or a debugger's attach; every other call is restarted transparently.

Ctrl-C is held in the helper while a task is stopped, and ends it right after the detach.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InspectError

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_EVENT_STOP = 128
WALL = 0x40000000

_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_HEADER = struct.Struct("=iiiq")  # tid, ok (1) / error (0), payload length, stop window in ns


@dataclass(frozen=True)
class Filters:
    """What one task's filters are, or why they could not be read."""

    tid: int
    programs: tuple[bytes, ...] | None  # raw struct sock_filter arrays, oldest first; None: see error
    error: str = ""
    stopped_ns: int = 0  # how long the task was held in the ptrace-stop (from our wait seeing it to the detach)


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.ptrace = libc.ptrace
        self.ptrace.restype = ctypes.c_long
        self.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.buffer = ctypes.create_string_buffer(8 * 4096)  # BPF_MAXINSNS instructions

    def call(self, request: int, tid: int, addr: int | None = None, data: object = None) -> int:
        ctypes.set_errno(0)
        r = self.ptrace(request, tid, addr, data)
        if r == -1:
            e = ctypes.get_errno()
            if e:
                raise OSError(e, os.strerror(e))
        return int(r)


def self_check() -> str | None:
    """Why this process cannot read filters (None: it can)."""
    if os.geteuid() != 0:
        return "reading seccomp filters needs root (CAP_SYS_ADMIN and CAP_SYS_PTRACE)"
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Seccomp:") and line.split()[1] != "0":
                    return ("sandbox verify runs under a seccomp filter itself, and the kernel gives filters only "
                            "to an unfiltered tracer")
    except OSError as e:
        return f"cannot read /proc/self/status: {e.strerror}"
    return None


def _tracer_of(tid: int) -> int | None:
    """The TracerPid of `tid` (None: gone)."""
    try:
        with open(f"/proc/{tid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
                if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                    return None
    except (OSError, ValueError):
        return None
    return 0


def _read_one(libc: _Libc, tid: int) -> Filters:
    """Attach, stop, copy every filter, detach (in the helper process)."""
    tracer = _tracer_of(tid)
    if tracer is None:
        return Filters(tid, None, f"task {tid} has exited")
    if tracer:
        return Filters(tid, None, f"task {tid} is already traced by process {tracer}; not attaching")
    try:
        libc.call(PTRACE_SEIZE, tid)
    except OSError as e:
        if e.errno == errno.EPERM:
            tracer = _tracer_of(tid)
            why = f"already traced by process {tracer}" if tracer else "not permitted"
            return Filters(tid, None, f"cannot attach to task {tid}: {why}")
        return Filters(tid, None, f"cannot attach to task {tid}: {e.strerror}")
    inject = [0, 0]  # the signal to hand back; when the stop began
    try:
        programs = _stop_and_copy(libc, tid, inject)
    except OSError as e:
        hint = " (the kernel gives filters only to a tracer that is not under seccomp)" if e.errno == errno.EACCES \
            else ""
        return Filters(tid, None, f"cannot read the filters of task {tid}: {e.strerror}{hint}")
    finally:
        try:
            libc.call(PTRACE_DETACH, tid, 0, inject[0])
        except OSError:
            pass  # gone; or never stopped, and then the helper's exit detaches it
        window = time.monotonic_ns() - inject[1] if inject[1] else 0
    if programs is None:
        return Filters(tid, None, f"task {tid} exited while being read")
    return Filters(tid, programs, stopped_ns=window)


def _stop_and_copy(libc: _Libc, tid: int, inject: list[int]) -> tuple[bytes, ...] | None:
    libc.call(PTRACE_INTERRUPT, tid)
    _, status = os.waitpid(tid, WALL)
    if not os.WIFSTOPPED(status):
        return None
    inject[1] = time.monotonic_ns()
    if status >> 16 == 0:  # a signal-delivery-stop: the signal goes back to the task on detach
        inject[0] = os.WSTOPSIG(status)
    # The kernel copies a whole program into the buffer it is given (no size is passed): the
    # buffer holds the largest one it accepts.  Copies first, decoding after the detach.
    copies: list[bytes] = []
    ptrace, addr = libc.ptrace, ctypes.addressof(libc.buffer)
    while True:
        n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, len(copies), addr)
        if n < 0:
            e = ctypes.get_errno()
            if e == errno.ENOENT or (e == errno.EINVAL and not copies):
                return tuple(copies)  # no more (EINVAL: the task is not in filter mode at all)
            raise OSError(e, os.strerror(e))
        copies.append(ctypes.string_at(addr, n * 8))


def serve() -> None:
    """The helper: task ids on stdin (one per line), results on stdout; run as a fresh interpreter."""
    for sig in _HELD:
        signal.signal(sig, signal.SIG_DFL)  # Ctrl-C ends the helper (between tasks), and the kernel detaches
    tids = [int(line) for line in sys.stdin.buffer.read().split()]
    out = sys.stdout.buffer
    libc = _Libc()
    for tid in tids:
        signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)  # held while the task may be stopped
        res = _read_one(libc, tid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        if res.programs is None:
            payload, ok = res.error.encode(), 0
        else:
            payload, ok = b"".join(struct.pack("=i", len(p)) + p for p in res.programs), 1
        out.write(_HEADER.pack(tid, ok, len(payload), res.stopped_ns) + payload)
        out.flush()


def _read_exact(r: int, n: int, deadline: float) -> bytes | str:
    """`n` bytes from the helper, or why not ("timeout" | "eof")."""
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            return "timeout"
        chunk = os.read(r, n - len(data))
        if not chunk:
            return "eof"
        data += chunk
    return data


def _decode(ok: int, tid: int, payload: bytes, window: int) -> Filters:
    if not ok:
        return Filters(tid, None, payload.decode(errors="replace"), window)
    programs, pos = [], 0
    while pos < len(payload):
        (n,) = struct.unpack_from("=i", payload, pos)
        programs.append(payload[pos + 4:pos + 4 + n])
        pos += 4 + n
    return Filters(tid, tuple(programs), stopped_ns=window)


def read_filters(tids: Iterable[int], *, timeout: float = 2.0) -> dict[int, Filters]:
    """The seccomp filters of each task (thread id), read by a helper process.

    A task that does not reach its stop within `timeout` seconds (uninterruptible sleep, a
    frozen cgroup) is reported as unreadable: the helper is killed, which detaches it.
    """
    why = self_check()
    todo = list(dict.fromkeys(tids))
    if why:
        return {t: Filters(t, None, why) for t in todo}
    out: dict[int, Filters] = {}
    while todo:
        helper = _start_helper(todo)
        assert helper.stdout is not None
        r = helper.stdout.fileno()
        failure = ""
        try:
            while todo:
                head = _read_exact(r, _HEADER.size, time.monotonic() + timeout + _START_S)
                if isinstance(head, str):
                    failure = head
                    break
                tid, ok, n, window = _HEADER.unpack(head)
                payload = _read_exact(r, n, time.monotonic() + timeout)
                if isinstance(payload, str):
                    failure = payload
                    break
                out[tid] = _decode(ok, tid, payload, window)
                todo.remove(tid)
        finally:
            _end(helper)
        if todo:  # the helper stopped answering on todo[0]; the others get a new helper
            stuck = todo.pop(0)
            why = (f"did not stop within {timeout:g}s (uninterruptible sleep, or a frozen cgroup)"
                   if failure == "timeout" else "could not be read: the reading process ended unexpectedly")
            out[stuck] = Filters(stuck, None, f"task {stuck} {why}; it was detached and runs on")
    return out


_START_S = 5.0  # a fresh interpreter's start, on a loaded machine


def _start_helper(tids: list[int]) -> subprocess.Popen[bytes]:
    """A fresh interpreter running `serve` (not a fork: this process may have threads whose locks a
    fork would copy held), fed the task ids."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above sandbox/host/
    code = f"import sys; sys.path.insert(0, {package_parent!r}); from sandbox.host.ptrace import serve; serve()"
    helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
    assert helper.stdin is not None
    try:
        helper.stdin.write("".join(f"{t}\n" for t in tids).encode())
        helper.stdin.close()
    except BrokenPipeError:
        pass  # it died at once: reported as unreadable by the reader
    return helper


def _end(helper: subprocess.Popen[bytes]) -> None:
    """Kill the helper (if a task is still stopped, the kernel detaches it) and reap it."""
    try:
        helper.kill()
    except ProcessLookupError:
        pass
    helper.wait()
    if helper.stdout is not None:
        helper.stdout.close()


def read_filters_of(tid: int, *, timeout: float = 2.0) -> tuple[bytes, ...]:
    """One task's filters, oldest first; InspectError when they cannot be read."""
    res = read_filters([tid], timeout=timeout)[tid]
    if res.programs is None:
        raise InspectError(res.error)
    return res.programs
