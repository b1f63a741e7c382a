"""Probing seccomp rule tables: argument values worth trying, and the real kernel as an oracle.

`probe_args` derives argument vectors from the conditions of the rules (each value, its
neighbours, the mask's boundaries) so a property test hits the edges of every condition.

`kernel_outcomes` installs a filter in a forked child exactly as runc 1.1 would (libseccomp through
pyseccomp; rules whose action is the default's skipped; a rule with two conditions on one argument
split into one rule per condition) with the syscall's rules put on getppid(2), then calls
getppid with each argument vector through syscall(2).  getppid ignores its arguments but the
filter checks them, so the kernel's answer is the filter's answer.  Every other syscall is
allowed so the child can report.

`program_outcome` is the same oracle one level down, for sandbox.core.seccomp_bpf: it installs raw
classic-BPF programs (`struct sock_filter` bytes, oldest first) with seccomp(2) and makes one call;
`bpf_outcome` is what a filter's return value must produce.  `program_accepts` asks whether the
kernel takes a program at all; `install_filter` and `compile_filter` make the filtered processes of
the verify tests.

Every child is forked from the test process (tests/conftest.py keeps gRPC's fork handlers out), its
answer read with a deadline, and then always SIGKILLed and reaped: a child may outlive its answer
(a library's thread survives _exit's exit(2) when a filter denies exit_group), and nothing here
waits for it to end by itself.
"""

import ctypes
import errno as _errno
import itertools
import os
import random
import resource
import signal
import struct

MASK64 = (1 << 64) - 1
NR_GETPPID = 110  # x86_64
COMPILE_SECONDS = 20
KILLING = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP")


def _values(cond):
    _, v, v2, op = cond
    v &= MASK64
    v2 &= MASK64
    if op == "SCMP_CMP_MASKED_EQ":
        low = v & -v
        free = MASK64 ^ v
        out = {v2, v2 | free, (v2 ^ low) & MASK64, v2 | (free & -free), v}
    else:
        out = {v, (v - 1) & MASK64, (v + 1) & MASK64}
    return out


def probe_values(rule_lists, index):
    """Interesting values of argument `index` for these rule lists (plus 0 and 2**64-1)."""
    vals = {0, MASK64, 1 << 63, 0xFFFFFFFF}
    for rules in rule_lists:
        for r in rules:
            for c in r[2]:
                if c[0] == index:
                    vals |= _values(c)
    return sorted(vals)


def probe_args(rule_lists, limit=400, seed=0):
    """Argument vectors (6 values each) for the arguments the rules mention, every combination of
    their probe values when there are at most `limit`, else a seeded sample of `limit`."""
    indexes = sorted({c[0] for rules in rule_lists for r in rules for c in r[2]})
    if not indexes:
        return [(0,) * 6]
    per = [probe_values(rule_lists, i) for i in indexes]
    total = 1
    for p in per:
        total *= len(p)
    if total <= limit:
        combos = list(itertools.product(*per))
    else:
        rnd = random.Random(seed)
        combos = [tuple(rnd.choice(p) for p in per) for _ in range(limit)]
    out = []
    for combo in combos:
        args = [0] * 6
        for i, v in zip(indexes, combo):
            args[i] = v
        out.append(tuple(args))
    return out


def expected_outcome(verdict):
    """What a process sees for a seccomp verdict: "allow", ("errno", n) or "SIGSYS"."""
    action, err = verdict
    if action in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        return "allow"
    if action == "SCMP_ACT_ERRNO":
        return ("errno", 1 if err is None else err)
    if action == "SCMP_ACT_TRACE":
        return ("errno", _errno.ENOSYS)  # no tracer attached: the call fails with ENOSYS
    if action in KILLING:
        return "SIGSYS"
    raise ValueError(action)


def _action(sc, action, err):
    if action == "SCMP_ACT_ALLOW":
        return sc.ALLOW
    if action == "SCMP_ACT_LOG":
        return sc.LOG
    if action == "SCMP_ACT_ERRNO":
        return sc.ERRNO(1 if err is None else err)
    if action == "SCMP_ACT_TRACE":
        return sc.TRACE(1 if err is None else err)
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return sc.KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return sc.KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return sc.TRAP
    raise ValueError(action)


_OPS = {"SCMP_CMP_EQ": "EQ", "SCMP_CMP_NE": "NE", "SCMP_CMP_LT": "LT", "SCMP_CMP_LE": "LE",
        "SCMP_CMP_GT": "GT", "SCMP_CMP_GE": "GE", "SCMP_CMP_MASKED_EQ": "MASKED_EQ"}


def _build(default, rules):
    """The libseccomp filter runc 1.1 builds (libcontainer/seccomp/seccomp_linux.go, matchCall)."""
    import pyseccomp as sc

    dflt = _action(sc, default[0], default[1])
    f = sc.SyscallFilter(dflt)
    if dflt != sc.ALLOW:
        for nr in range(0, 460):  # everything else runs: the child must report and exit
            if nr != NR_GETPPID:
                try:
                    f.add_rule(sc.ALLOW, nr)
                except OSError:
                    pass  # not a syscall on this architecture
    for action, err, conds in rules:
        act = _action(sc, action, err)
        if act == dflt:
            continue  # runc: "This rule is redundant, silently skip it"
        args = [sc.Arg(i, getattr(sc, _OPS[op]), v & MASK64, v2 & MASK64) for i, v, v2, op in conds]
        if len({c[0] for c in conds}) != len(conds):
            for a in args:  # runc: "Revert to old behavior", one rule per condition
                f.add_rule(act, NR_GETPPID, a)
        elif args:
            f.add_rule(act, NR_GETPPID, *args)
        else:
            f.add_rule(act, NR_GETPPID)
    return f


class CompileTimeout(RuntimeError):
    """libseccomp did not finish compiling the filter (runc would hang the same way)."""


def _child(default, rules, probes, start, wfd):
    signal.alarm(COMPILE_SECONDS)  # libseccomp can take exponential time on some rule sets
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    ppid = os.getppid()  # before the filter: getppid itself is what it filters
    try:
        _build(default, rules).load()
    except Exception as e:  # noqa: BLE001 - reported to the parent
        os.write(wfd, f"load-error {type(e).__name__} {e}\n".encode())
        os._exit(3)
    signal.alarm(0)
    os.write(wfd, b"loaded\n")
    for k in range(start, len(probes)):
        ctypes.set_errno(0)
        res = libc.syscall(NR_GETPPID, *[ctypes.c_ulong(a) for a in probes[k]])
        e = ctypes.get_errno()
        line = "allow" if res == ppid else f"errno {e}" if res == -1 else f"odd {res}"
        os.write(wfd, f"{k} {line}\n".encode())
    os.write(wfd, b"end\n")
    os._exit(0)


def kernel_outcomes(default, rules, probes):
    """The kernel's outcome ("allow", ("errno", n), "SIGSYS") for getppid(*args) for each probe,
    under the filter runc would build from `default` and this syscall's `rules`.

    Raises RuntimeError when libseccomp refuses the rules (runc would not start the container).
    """
    probes = list(probes)
    out = [None] * len(probes)
    start = 0
    while start < len(probes):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            try:
                _child(default, rules, probes, start, w)
            finally:
                os._exit(4)
        os.close(w)
        text = _read_answer(r).decode()
        status = _kill_and_reap(pid)
        if text.startswith("load-error"):
            raise RuntimeError(text.strip())
        if not text.startswith("loaded"):
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
                raise CompileTimeout(f"libseccomp took more than {COMPILE_SECONDS}s for {rules!r}")
            raise RuntimeError(f"the probe child died before loading the filter (status {status:#x})")
        text = text[len("loaded\n"):]
        last = start - 1
        for line in text.splitlines():
            if line == "end":
                break
            k, _, what = line.partition(" ")
            k = int(k)
            last = k
            if what == "allow":
                out[k] = "allow"
            elif what.startswith("errno "):
                out[k] = ("errno", int(what.split()[1]))
            else:
                raise RuntimeError(f"unexpected result {line!r}")
        nxt = last + 1
        if nxt < len(probes) and not text.endswith("end\n"):
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            # SIGKILL: ours, after the deadline; anything but SIGSYS means the probe did not answer
            out[nxt] = "SIGSYS" if sig == signal.SIGSYS else f"no answer (status {status:#x})"
            nxt += 1
        start = nxt
    return out


ANSWER_SECONDS = COMPILE_SECONDS + 10


def _read_answer(fd, done=lambda data: data.endswith(b"end\n"), seconds=ANSWER_SECONDS):
    """What the child wrote, until `done(data)`, EOF or the deadline (never waits on the child), as bytes.
    Closes `fd`."""
    import select
    import time

    deadline = time.monotonic() + seconds
    data = b""
    try:
        while not done(data):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            b = os.read(fd, 65536)
            if not b:
                break
            data += b
    finally:
        os.close(fd)
    return data


def _kill_and_reap(pid):
    """SIGKILL the child (it may linger: a thread another library started survives _exit's exit(2)) and
    return its wait status."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return os.waitpid(pid, 0)[1]


# -- raw classic-BPF programs ----------------------------------------------------------------------------

SYS_SECCOMP = 317  # x86_64
SECCOMP_SET_MODE_FILTER = 1
PR_SET_NO_NEW_PRIVS = 38
# what a child needs between installing filters and reporting (seccomp: to stack the next one)
HARNESS = ("write", "exit_group", "exit", "rt_sigreturn", "rt_sigprocmask", "brk", "mmap", "munmap", "mprotect",
           "madvise", "futex", "sigaltstack", "seccomp")
_ANSWER = struct.Struct("=qqq")  # return value, errno, flag (1: SIGSYS trapped, 2: the kernel refused a filter)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp_set_filter(raw, nnp=True):
    """seccomp(SECCOMP_SET_MODE_FILTER, 0, raw), after no_new_privs unless `nnp` is False (a filter already
    installed may deny prctl): 0, or the errno."""
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _Fprog(len(raw) // 8, ctypes.addressof(buf))
    if nnp and _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return ctypes.get_errno()
    if _libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(0),
                     ctypes.byref(prog)) != 0:
        return ctypes.get_errno()
    return 0


def _program_child(programs, nr, args, w):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a seccomp kill dumps core otherwise
    trapped = [0]

    def on_sigsys(_sig, _frame):
        trapped[0] = 1

    signal.signal(signal.SIGSYS, on_sigsys)
    cargs = [ctypes.c_ulong(a & MASK64) for a in args] + [ctypes.c_ulong(0)] * (6 - len(args))
    for i, raw in enumerate(programs):
        err = _seccomp_set_filter(raw, nnp=i == 0)
        if err:
            os.write(w, _ANSWER.pack(0, err, 2))
            os._exit(91)
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *cargs)
    err = ctypes.get_errno()
    os.write(w, _ANSWER.pack(ret, err, trapped[0]))
    os._exit(0)


def program_outcome(programs, nr=NR_GETPPID, args=()):
    """What a process gets for `syscall(nr, *args)` under `programs` (raw bytes, oldest first):
    ("allow", None) the call ran (getppid returned the parent's pid); ("errno", n) it returned -1 with
    errno n (n == 0: it returned 0 without running); ("trap", None) SIGSYS was delivered and the
    process lived; ("kill", None) it died of SIGSYS.  The programs must let the child's housekeeping
    (HARNESS) through: they only decide `nr`."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            _program_child(list(programs), nr, list(args), w)
        finally:
            os._exit(92)
    os.close(w)
    data = _read_answer(r, done=lambda d: len(d) >= _ANSWER.size, seconds=10)
    status = _kill_and_reap(pid)
    if len(data) != _ANSWER.size:
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS and not data:
            return ("kill", None)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            raise AssertionError("the child did not answer within 10 s of its filters being installed")
        raise AssertionError(f"the child ended without an answer (status {status:#x})")
    ret, err, flag = _ANSWER.unpack(data)
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


def program_accepts(program, seconds=2.0):
    """Whether seccomp(2) installs `program` (raw bytes) rather than refusing it with EINVAL.

    An installed filter may deny the child everything (even writing), so the child reports only a
    refusal; silence until the deadline means the filter went in."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            err = _seccomp_set_filter(program)
            if err:
                os.write(w, b"E" if err == _errno.EINVAL else b"?")
        finally:
            os._exit(0)
    os.close(w)
    answer = _read_answer(r, done=lambda d: len(d) >= 1, seconds=seconds)
    _kill_and_reap(pid)
    if answer == b"?":
        raise AssertionError("seccomp(2) failed with another error than EINVAL")
    return answer != b"E"


def bpf_outcome(ret):
    """What a process gets for a filter's return value, by sandbox.core.seccomp_bpf's decoding (no tracer, no
    listener), in `program_outcome`'s words."""
    from sandbox.core import seccomp_bpf

    name, data = seccomp_bpf.action(ret)
    if name in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        return ("allow", None)
    if name == "SCMP_ACT_ERRNO":
        return ("errno", data)
    if name in ("SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY"):
        return ("errno", _errno.ENOSYS)  # no tracer attached / no listener
    if name == "SCMP_ACT_TRAP":
        return ("trap", None)
    return ("kill", None)


def install_filter(raw):
    """Install `raw` on the calling process (after no_new_privs); it stays for everything it execs."""
    err = _seccomp_set_filter(raw)
    if err:
        raise OSError(err, "seccomp(SECCOMP_SET_MODE_FILTER)")


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
