"""The kernel as the oracle for seccomp filters: what does a real process get for one syscall?

`kernel_outcome(programs, nr, args)` forks a child, installs the classic-BPF programs (raw
`struct sock_filter` bytes, oldest first) with seccomp(2) after setting no_new_privs, makes the
call `syscall(nr, args...)` through libc, and reports what happened:

    ("allow", None)   the call ran (getppid returned the parent's pid)
    ("errno", n)      it returned -1 with errno n (n == 0: it returned 0 without running)
    ("trap", None)    SIGSYS was delivered and the process lived (SECCOMP_RET_TRAP)
    ("kill", None)    the process died of SIGSYS (KILL_THREAD / KILL_PROCESS, or an unknown action)

`expected_outcome(ret)` is what the same return value must produce, from sandbox.seccomp_bpf's
decoding.  The programs must let the child's own housekeeping (write, exit_group, rt_sigreturn,
memory management) through: the tests' filters only decide `nr`.

The children are forked by a small server process (a fresh interpreter started on first use), not
by the test process: a pytest process may hold threads (grpc's, from the CRI suite) whose locks
a fork would copy held.
"""

import ctypes
import errno
import os
import signal
import struct

from sandbox import seccomp_bpf as bpf

SYS_GETPPID = 110  # x86_64
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
PR_SET_NO_NEW_PRIVS = 38
HARNESS = ("write", "exit_group", "exit", "rt_sigreturn", "rt_sigprocmask", "brk", "mmap", "munmap", "mprotect",
           "madvise", "futex", "getpid", "gettid", "sigaltstack", "close")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _no_core():
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a seccomp kill dumps core otherwise


def _child(programs, nr, args, w):
    _no_core()
    trapped = [0]

    def on_sigsys(_sig, _frame):
        trapped[0] = 1

    signal.signal(signal.SIGSYS, on_sigsys)
    bufs = [ctypes.create_string_buffer(p, len(p)) for p in programs]
    progs = [_Fprog(len(p) // 8, ctypes.addressof(b)) for p, b in zip(programs, bufs)]
    cargs = [ctypes.c_ulong(a & (2**64 - 1)) for a in args] + [ctypes.c_ulong(0)] * (6 - len(args))
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        os._exit(90)
    for prog in progs:
        if _libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(0),
                         ctypes.byref(prog)) != 0:
            os.write(w, struct.pack("=qqq", 0, ctypes.get_errno(), 2))
            os._exit(91)
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *cargs)
    err = ctypes.get_errno()
    os.write(w, struct.pack("=qqq", ret, err, trapped[0]))
    os._exit(0)


def kernel_outcome(programs, nr=SYS_GETPPID, args=()):
    answer = _ask({"op": "outcome", "programs": [p.hex() for p in programs], "nr": nr, "args": list(args)})
    return tuple(answer)


def kernel_accepts(program):
    """Whether seccomp(2) installs `program` (raw bytes) rather than refusing it with EINVAL."""
    return _ask({"op": "accepts", "program": program.hex()})


_SERVER = []


def _ask(request):
    import json
    import select
    import subprocess
    import sys

    if not _SERVER or _SERVER[0].poll() is not None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        _SERVER[:] = [subprocess.Popen([sys.executable, "-c", "from tests.seccomp_oracle import serve; serve()"],
                                       cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE)]
    server = _SERVER[0]
    server.stdin.write((json.dumps(request) + "\n").encode())
    server.stdin.flush()
    if not select.select([server.stdout], [], [], 60)[0]:
        server.kill()
        raise AssertionError("the seccomp oracle did not answer within 60 s")
    line = server.stdout.readline()
    if not line:
        raise AssertionError("the seccomp oracle ended")
    answer = json.loads(line)
    if "error" in answer:
        raise AssertionError(answer["error"])
    return answer["result"]


def serve():
    """The oracle server: one JSON request per line on stdin, one answer per line on stdout."""
    import json
    import sys

    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "outcome":
                result = list(_outcome([bytes.fromhex(p) for p in req["programs"]], req["nr"], req["args"]))
            else:
                result = _accepts(bytes.fromhex(req["program"]))
            answer = {"result": result}
        except AssertionError as e:
            answer = {"error": str(e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _outcome(programs, nr, args):
    import select

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _child(list(programs), nr, list(args), w)
        finally:
            os._exit(92)
    os.close(w)
    data = b""
    try:
        while select.select([r], [], [], 10)[0]:
            chunk = os.read(r, 64)
            if not chunk:
                break
            data += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the child hung after its filters were installed")
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        if os.WTERMSIG(status) == signal.SIGSYS and not data:
            return ("kill", None)
        raise AssertionError(f"the child died of signal {os.WTERMSIG(status)}")
    if len(data) != 24:
        raise AssertionError(f"the child exited {os.WEXITSTATUS(status)} without a result")
    ret, err, flag = struct.unpack("=qqq", data)
    if flag == 2:
        raise AssertionError(f"the kernel refused a filter: {os.strerror(err)}")
    if flag:
        return ("trap", None)
    if ret == os.getpid():
        return ("allow", None)
    if ret == -1:
        return ("errno", err)
    if ret == 0:
        return ("errno", 0)
    raise AssertionError(f"getppid returned {ret}")


def _accepts(program):
    """An installed filter may deny the child everything (even exiting), so the child reports only a
    refusal; silence means the filter went in, and the child is then killed."""
    import select

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _no_core()
            buf = ctypes.create_string_buffer(program, len(program))
            prog = _Fprog(len(program) // 8, ctypes.addressof(buf))
            _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            rc = _libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(0),
                               ctypes.byref(prog))
            if rc != 0:
                os.write(w, b"E" if ctypes.get_errno() == errno.EINVAL else b"?")
        finally:
            os._exit(0)
    os.close(w)
    try:
        answer = os.read(r, 1) if select.select([r], [], [], 0.5)[0] else b""
    finally:
        os.close(r)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    if answer == b"?":
        raise AssertionError("seccomp(2) failed with another error than EINVAL")
    return answer != b"E"


def expected_outcome(ret):
    """What a process gets for a return value, by sandbox.seccomp_bpf's decoding (no tracer, no listener)."""
    name, data = bpf.action(ret)
    if name in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        return ("allow", None)
    if name == "SCMP_ACT_ERRNO":
        return ("errno", data)
    if name in ("SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY"):
        return ("errno", errno.ENOSYS)  # no tracer attached / no listener
    if name == "SCMP_ACT_TRAP":
        return ("trap", None)
    return ("kill", None)


def install_filter(raw):
    """Install `raw` on the calling process (after no_new_privs); it stays for everything it execs."""
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _Fprog(len(raw) // 8, ctypes.addressof(buf))
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if _libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(0),
                     ctypes.byref(prog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")


def compile_filter(default, rules, errno_ret=1):
    """libseccomp's filter (x86_64, i386, x32) with `default` and {syscall name: action}, as raw bytes."""
    import tempfile

    import pyseccomp

    def act(name):
        return {"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_ERRNO": pyseccomp.ERRNO(errno_ret),
                "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS}[name]

    f = pyseccomp.SyscallFilter(act(default))
    f.add_arch(pyseccomp.Arch.X86)
    f.add_arch(pyseccomp.Arch.X32)
    for name, action in rules.items():
        f.add_rule(act(action), name)
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        return t.read()
