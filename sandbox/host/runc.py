"""Find and drive the real runc.

On the hot path of every container start: nothing heavy is imported at module
level (`subprocess`, `json`, `signal` are imported where used).

Finding runc guards against recursion: when sandbox-runc is installed under the
name `runc` earlier on PATH (so that engines pick it up), the real runc is the
first `runc` on PATH that is *not* our shim.  A candidate is our shim if its
real path is the running program (`sys.argv[0]`), its real name is one of
`self_names`, or its first 4 KiB contain the marker `SANDBOX-RUNC-SHIM`.

Runc's global flags (--root, --log, --log-format) go before the subcommand, as
runc requires.  Failures raise RuncError carrying runc's own last error line.

Signals in `run_foreground`: `runc run` (not detached) already forwards every
signal *it* receives to the container's init.  Signals raised by the terminal
(Ctrl-C, Ctrl-\\, hang-up) reach the whole foreground process group, runc
included, so forwarding those too would deliver them twice.  We therefore
forward only SIGINT/SIGTERM/SIGHUP/SIGQUIT that were sent to *this* process
alone (kill(2) and friends: si_code != SI_KERNEL), with `runc kill ID SIG`; if
the container does not exist yet, the signal goes to the runc process itself.
"""

from __future__ import annotations

import os
import sys

from ..errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, RuncError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


SHIM_MARKER = b"SANDBOX-RUNC-SHIM"
_SI_KERNEL = 0x80
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")

__all__ = ["SHIM_MARKER", "Runc", "find_runc", "is_shim"]


# -- finding runc ------------------------------------------------------------------------------

def _error(message: str, code: int) -> RuncError:
    err = RuncError(message)
    err.exit_code = code
    return err


def is_shim(path: str, self_names: tuple[str, ...] = ("sandbox-runc",)) -> bool:
    """True if `path` is sandbox-runc rather than the real runc."""
    real = os.path.realpath(path)
    if sys.argv and sys.argv[0] and real == os.path.realpath(sys.argv[0]):
        return True
    if os.path.basename(real) in self_names or os.path.basename(path) in self_names:
        return True
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        if not _is_regular_fd(fd):
            return False
        head = os.read(fd, 1 << 16)  # the compiled dispatcher keeps the marker in .rodata
    except OSError:
        return False
    finally:
        os.close(fd)
    return SHIM_MARKER in head


def _is_regular_fd(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _check_one(path: str, origin: str, self_names: tuple[str, ...]) -> str:
    """Validate a runc path given explicitly (argument or $SANDBOX_RUNC)."""
    if "/" not in path:
        return _search_path(path, self_names, origin=f"{origin} {path!r}")
    if not os.path.exists(path):
        raise _error(f"runc not found: {path} ({origin}) does not exist", EXIT_NOT_FOUND)
    if is_shim(path, self_names):
        raise _error(f"runc at {path} ({origin}) is sandbox-runc itself, not the real runc", EXIT_CANNOT_INVOKE)
    if not _usable(path):
        what = "not a regular file" if not os.path.isfile(path) else "not executable"
        raise _error(f"runc at {path} ({origin}) is {what}", EXIT_CANNOT_INVOKE)
    return os.path.abspath(path)


def _search_path(name: str, self_names: tuple[str, ...], origin: str = "PATH") -> str:
    skipped: list[str] = []
    unusable: list[str] = []
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if not os.path.exists(cand):
            continue
        if is_shim(cand, self_names):
            skipped.append(cand)
            continue
        if not _usable(cand):
            unusable.append(cand)
            continue
        return os.path.abspath(cand)
    if unusable:
        raise _error(f"runc at {unusable[0]} is not executable", EXIT_CANNOT_INVOKE)
    why = f"only sandbox-runc itself was found ({', '.join(skipped)})" if skipped else f"no {name!r} on PATH"
    raise _error(f"runc not found: {why}; install runc or set SANDBOX_RUNC or runc: in the operator config",
                 EXIT_NOT_FOUND)


def find_runc(explicit: str | None = None, *, self_names: tuple[str, ...] = ("sandbox-runc",)) -> str:
    """The real runc: `explicit`, else $SANDBOX_RUNC, else the first non-shim `runc` on PATH.

    Raises RuncError with exit_code EXIT_NOT_FOUND (missing) or
    EXIT_CANNOT_INVOKE (present but not executable, or our own shim).
    """
    if explicit:
        return _check_one(explicit, "given", self_names)
    env = os.environ.get("SANDBOX_RUNC")
    if env:
        return _check_one(env, "from SANDBOX_RUNC", self_names)
    return _search_path("runc", self_names)


# -- driving runc ------------------------------------------------------------------------------

def _go_unquote(s: str) -> str:
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _error_line(text: str) -> str:
    """runc's own message from its stderr or log: the last line, logrus decoration removed."""
    import re

    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    # prefer the last error-level record if there is one
    for ln in reversed(lines):
        if '"level":"error"' in ln or "level=error" in ln or "level=fatal" in ln or '"level":"fatal"' in ln:
            line = ln
            break
    else:
        line = lines[-1]
    if line.startswith("{"):
        import json

        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and isinstance(rec.get("msg"), str):
                return str(rec["msg"])
        except ValueError:
            pass
    m = re.search(r'\bmsg="((?:[^"\\]|\\.)*)"', line)
    if m:
        return _go_unquote(m.group(1))
    m = re.search(r"\bmsg=(\S+)", line)
    if m:
        return m.group(1)
    return line


class Runc:
    """The real runc, with the global flags every call shares."""

    def __init__(self, path: str, *, root: str | None = None, log: str | None = None,
                 log_format: str | None = None) -> None:
        self.path = path
        self.root = root
        self.log = log
        self.log_format = log_format

    def global_args(self) -> list[str]:
        args: list[str] = []
        if self.root:
            args += ["--root", self.root]
        if self.log:
            args += ["--log", self.log]
        if self.log_format:
            args += ["--log-format", self.log_format]
        return args

    def argv(self, *args: str) -> list[str]:
        """The full command line for a runc subcommand (global flags first)."""
        return [self.path, *self.global_args(), *args]

    # -- captured calls ---------------------------------------------------------------------
    def _call(self, *args: str, what: str) -> str:
        import subprocess

        try:
            res = subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL, capture_output=True, check=False)
        except FileNotFoundError:
            raise _error(f"runc not found: {self.path}", EXIT_NOT_FOUND) from None
        except OSError as e:
            raise _error(f"cannot execute runc at {self.path}: {e.strerror}", EXIT_CANNOT_INVOKE) from None
        if res.returncode != 0:
            msg = _error_line(res.stderr.decode("utf-8", "replace")) or f"exit status {res.returncode}"
            raise RuncError(f"runc {what} failed: {msg}")
        return res.stdout.decode("utf-8", "replace")

    def state(self, id: str) -> dict[str, Any]:
        import json

        out = self._call("state", id, what=f"state {id}")
        try:
            state = json.loads(out)
        except ValueError:
            raise RuncError(f"runc state {id}: output is not JSON") from None
        if not isinstance(state, dict):
            raise RuncError(f"runc state {id}: output is not a JSON object")
        return state

    def start(self, id: str) -> None:
        self._call("start", id, what=f"start {id}")

    def kill(self, id: str, signal: str | int = "TERM", all: bool = False) -> None:
        self._call("kill", *(["--all"] if all else []), id, str(signal), what=f"kill {id}")

    def delete(self, id: str, force: bool = False) -> None:
        self._call("delete", *(["--force"] if force else []), id, what=f"delete {id}")

    def cleanup(self, id: str) -> None:
        """`runc delete --force ID`; a container that does not exist is not an error."""
        try:
            self.delete(id, force=True)
        except RuncError as e:
            if "does not exist" not in e.message:
                raise

    def deleting(self, id: str) -> _Deleting:
        """Context manager: whatever happens inside, `cleanup(id)` runs on the way out."""
        return _Deleting(self, id)

    # -- calls whose standard streams are the workload's -------------------------------------
    def create(self, id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None) -> None:
        """`runc create`: the container's init inherits our stdin/stdout/stderr.

        runc's stderr cannot be captured (the container would hold the pipe), so its
        error message is read from the --log file (a temporary one if none is set).
        """
        import subprocess

        args = ["create", "--bundle", bundle]
        if pid_file:
            args += ["--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        args.append(id)
        tmp_log = None
        runner = self
        if not self.log:
            import tempfile

            fd, tmp_log = tempfile.mkstemp(prefix="sandbox-runc-", suffix=".log")
            os.close(fd)
            runner = Runc(self.path, root=self.root, log=tmp_log, log_format="json")
        try:
            start = _size(runner.log)
            try:
                code = subprocess.run(runner.argv(*args), check=False).returncode
            except FileNotFoundError:
                raise _error(f"runc not found: {self.path}", EXIT_NOT_FOUND) from None
            except OSError as e:
                raise _error(f"cannot execute runc at {self.path}: {e.strerror}", EXIT_CANNOT_INVOKE) from None
            if code != 0:
                msg = _error_line(_read_from(runner.log, start)) or f"exit status {code}"
                raise RuncError(f"runc create {id} failed: {msg}")
        finally:
            if tmp_log:
                try:
                    os.unlink(tmp_log)
                except OSError:
                    pass

    def run_foreground(self, id: str, bundle: str) -> int:
        """`runc run --bundle BUNDLE ID` with our standard streams; the workload's exit code.

        A workload killed by signal N gives 128+N (runc run reports it so; if runc
        itself dies by a signal, the same mapping applies).  See the module doc
        for which signals are forwarded and how.
        """
        import signal
        import threading

        argv = self.argv("run", "--bundle", bundle, id)
        sigs = {getattr(signal, n) for n in _FORWARDED}
        waitset = sigs | {signal.SIGCHLD}
        main = threading.current_thread() is threading.main_thread()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waitset) if main else None
        try:
            try:
                pid = os.posix_spawn(self.path, argv, os.environ, setsigmask=(),
                                     setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *sigs))
            except FileNotFoundError:
                raise _error(f"runc not found: {self.path}", EXIT_NOT_FOUND) from None
            except OSError as e:
                raise _error(f"cannot execute runc at {self.path}: {e.strerror}", EXIT_CANNOT_INVOKE) from None
            while True:
                try:
                    got, status = os.waitpid(pid, 0 if not main else os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): status unknown
                    return 125
                if got == pid:
                    code = os.waitstatus_to_exitcode(status)
                    return 128 - code if code < 0 else code
                info = signal.sigtimedwait(waitset, 1.0)
                if info is None or info.si_signo == signal.SIGCHLD:
                    continue
                if info.si_code == _SI_KERNEL:
                    continue  # from the terminal: runc, in our process group, got it too
                self._forward(id, pid, info.si_signo)
        finally:
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _forward(self, id: str, runc_pid: int, signo: int) -> None:
        import signal

        try:
            self.kill(id, signal.Signals(signo).name.removeprefix("SIG"))
        except RuncError:
            # not created yet (or already gone): runc run itself forwards or aborts
            try:
                os.kill(runc_pid, signo)
            except ProcessLookupError:
                pass


def _size(path: str | None) -> int:
    if not path:
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _read_from(path: str | None, offset: int, limit: int = 64 * 1024) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            f.seek(max(offset, end - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class _Deleting:
    # a class, not contextlib.contextmanager: contextlib is a noticeable import on the hot path
    def __init__(self, runc: Runc, id: str) -> None:
        self.runc, self.id = runc, id

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.runc.cleanup(self.id)
