"""The tamper-evident audit log: one JSON record per line, each chained to the one before by hash.

Every record carries `prev` (the `hash` of the record before it, "0"*64 at the start of a chain)
and `hash`, the SHA-256 (or, with a key, HMAC-SHA256) of its own canonical JSON without `hash`.
Lines are written in exactly that canonical form, so any changed byte is caught: an edited record
fails its hash, a removed or reordered record breaks `prev`/`seq`, a crash or cut mid-record leaves
a line without its newline.

What the chain cannot show: records cut from the end at a line boundary (the rest is still a valid
chain), and a whole rotated-away oldest file.  For the first, keep an anchor elsewhere (the last
`seq`, e.g. from monitoring) and check it with `verify_files(..., expect_seq=N)` /
`sandbox audit verify --expect-seq N`.  Without a key anyone who can write the file can rebuild the
whole chain; the HMAC key (root-only file) is what makes the log tamper-evident against them.

Layout: the pure part (record building, hashing, verification over lines) comes first and touches
no files; the edge (`AuditLog`, `seal`, `verify_files`, `read_records`) does the I/O.
"""

from __future__ import annotations

import os
import time

from .. import _fastjson as json
from .._record import record
from ..digest import sha256_hex
from ..errors import AuditError, AuditIntegrityError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any


DEFAULT_PATH = "/var/log/sandbox/audit.jsonl"
DEFAULT_DIR = os.path.dirname(DEFAULT_PATH)  # made at first use (0700) however the log is named
GENESIS = "0" * 64
EVENTS = frozenset({"profile_resolved", "decision", "refused", "created", "started", "verified", "exited",
                    "deleted", "error", "rotated", "sealed",
                    # the sandbox agent (sandbox/runtime/agent.py): attached/detached, notified syscalls, execs
                    "monitor", "syscall", "exec"})
_HEADER = ("container_id", "bundle", "profile", "profile_sha256")
_EVENT_KEYS = frozenset({"event", "decision", "data", *_HEADER})
_HEX = frozenset("0123456789abcdef")


# -- pure: records and hashing -------------------------------------------------------------------

def rfc3339_ns(ns: int) -> str:
    """UTC RFC 3339 with nanoseconds: 2024-05-01T12:34:56.123456789Z."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def canonical(obj: Any) -> bytes:
    """The bytes that are hashed, and (with `hash` included) the bytes of the line itself.

    A lone surrogate (only possible from malformed input) cannot be UTF-8; written as its \\uXXXX
    escape it is still valid JSON that parses back to the same string, so the form stays canonical.
    """
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def digest(body: dict[str, Any], key: bytes | None = None) -> str:
    data = canonical(body)
    if key is None:
        return sha256_hex(data)
    import hmac  # only HMAC users pay for it

    return hmac.new(key, data, "sha256").hexdigest()


def _plain(value: Any) -> Any:
    # Round-trip payloads through JSON so the record we return is exactly what verify will parse
    # (tuples become lists, int keys strings, odd objects their str()).
    return json.loads(json.dumps(value, default=str))



def build_records(events: Iterable[dict[str, Any]], *, seq: int, prev: str, ts_ns: int, host: str,
                  key: bytes | None = None) -> list[dict[str, Any]]:
    """Chain `events` after the record (`seq`, `prev`=its hash); seq 0 and GENESIS start a chain."""
    ts = rfc3339_ns(ts_ns)
    out = []
    for e in events:
        event = e.get("event")
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        if not _EVENT_KEYS.issuperset(e):
            raise ValueError(f"unknown audit record fields: {sorted(set(e) - _EVENT_KEYS)}")
        seq += 1
        rec: dict[str, Any] = {"ts": ts, "seq": seq, "host": host}
        rec.update((k, str(e.get(k) or "")) for k in _HEADER)
        rec["event"] = event
        if event == "decision":
            d = e["decision"]
            rec["decision"] = _plain(d.to_dict() if hasattr(d, "to_dict") else d)
        else:
            rec["data"] = _plain(e.get("data") or {})
        if key is not None:
            rec["mac"] = True
        rec["prev"] = prev
        rec["hash"] = prev = digest(rec, key)
        out.append(rec)
    return out


def encode(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(canonical(r) + b"\n" for r in records)


def parse_record(line: bytes) -> dict[str, Any] | None:
    """A complete line (with its newline) holding a JSON record with seq/prev/hash, else None."""
    if not line.endswith(b"\n"):
        return None
    try:
        rec = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    if (not isinstance(rec, dict) or type(rec.get("seq")) is not int or not _is_hex64(rec.get("prev"))
            or not _is_hex64(rec.get("hash"))):
        return None
    return rec


def _is_hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and _HEX.issuperset(v)


# -- pure: verification ---------------------------------------------------------------------------

@record(frozen=False)
class VerifyResult:
    ok: bool
    records: int
    first_bad_line: int | None = None
    file: str | None = None
    reason: str | None = None
    last_seq: int | None = None  # where the chain stands, to continue into the next file
    last_hash: str | None = None


def verify_lines(lines: Iterable[bytes], *, key: bytes | None = None, prev: str | None = None,
                 start_line: int = 1, file: str = "", seq: int | None = None) -> VerifyResult:
    """Check that `lines` (each with its newline) form one unbroken chain.

    `prev`/`seq` are the hash and seq of the record just before these lines (from the previous
    file); None means these lines start what we have, so the first record must start a chain
    (prev GENESIS, seq 1) or be a `rotated` record whose predecessor file is gone.
    """
    n = 0
    for lineno, line in enumerate(lines, start_line):
        rec, reason = _check_line(line, key, prev, seq, file)
        if rec is None:
            return VerifyResult(False, n, lineno, file or None, reason, seq, prev)
        prev, seq = rec["hash"], rec["seq"]
        n += 1
    return VerifyResult(True, n, None, file or None, None, seq, prev)


def _check_line(line: bytes, key: bytes | None, prev: str | None, seq: int | None,
                file: str) -> tuple[dict[str, Any] | None, str]:
    """The record on `line` if it continues the chain after (`prev`, `seq`), else None and why not."""
    if not line.endswith(b"\n"):
        return None, ("torn line: no trailing newline (crash or cut tail; "
                      f"run `sandbox audit seal {file or 'PATH'}`)")
    try:
        rec = json.loads(line.decode("utf-8"))
    except ValueError as e:
        return None, f"invalid JSON: {e}"
    if not isinstance(rec, dict) or not _is_hex64(rec.get("hash")) or not _is_hex64(rec.get("prev")) \
            or type(rec.get("seq")) is not int:
        return None, "not an audit record: seq, prev or hash missing or malformed"
    if key is None and rec.get("mac"):
        return None, "record is HMAC-protected: verify with --key-file"
    if key is not None and rec.get("mac") is not True:
        return None, "record has no HMAC although a key was given: forged, or written before the key"
    claimed = rec.pop("hash")
    if digest(rec, key) != claimed:
        return None, ("hash mismatch: record was edited" if key is None else
                      "HMAC mismatch: record was edited or the key is wrong")
    rec["hash"] = claimed
    # Same record, other bytes (spacing, escapes, key order) is still an edit of the log.
    if canonical(rec) + b"\n" != line:
        return None, "hash mismatch: record was edited (bytes differ from its canonical form)"
    if prev is None:
        if rec["prev"] == GENESIS and rec["seq"] != 1:
            return None, f"chain starts at seq {rec['seq']}, not 1: records removed from the start"
        if rec["prev"] != GENESIS and rec.get("event") != "rotated":
            return None, "prev points to a record that is not here: records removed from the start"
    elif rec["prev"] != prev:
        return None, "prev mismatch: a record before this one was removed, reordered or edited"
    if seq is not None and rec["seq"] != seq + 1:
        return None, f"seq gap: expected {seq + 1}, found {rec['seq']}: records removed or reordered"
    return rec, ""


# -- edge: keys and files ---------------------------------------------------------------------------

def _oserror(what: str, path: str, e: OSError) -> AuditError:
    import errno

    name = errno.errorcode.get(e.errno or 0, "")
    return AuditError(f"{what} {path}: {e.strerror or e}" + (f" ({name})" if name else ""))


def load_key(path: str, *, owners: tuple[int, ...] = (0,)) -> bytes:
    """Read an HMAC key from a regular file owned by one of `owners` that group and others cannot touch."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise _oserror("cannot read audit HMAC key", path, e) from None
    try:
        st = os.fstat(fd)  # of what we opened, not of what the path points to later
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"audit HMAC key {path} is not a regular file")
        if st.st_uid not in owners:
            who = "root" if owners == (0,) else "root or you"
            raise AuditError(f"audit HMAC key {path} is owned by uid {st.st_uid}, must be owned by {who}")
        if st.st_mode & 0o077:
            raise AuditError(f"audit HMAC key {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                             "group and others must have no access (chmod 600)")
        key = os.read(fd, 1 << 16).rstrip(b"\r\n")  # tolerate `openssl rand -hex 32 > key`
    finally:
        os.close(fd)
    if not key:
        raise AuditError(f"audit HMAC key {path} is empty")
    return key


def _last_line(fd: int, end: int) -> bytes:
    """The last line of the first `end` bytes (with its newline, if any), read backwards from `end`."""
    buf, pos, chunk = b"", end, 4096  # records are usually well under 4 KiB
    while pos > 0:
        n = min(chunk, pos)
        pos -= n
        buf = os.pread(fd, n, pos) + buf
        i = buf.rfind(b"\n", 0, len(buf) - 1)
        if i >= 0:
            return buf[i + 1:]
        chunk = min(chunk * 2, 1 << 20)
    return buf


def _good_end(fd: int, size: int) -> tuple[int, dict[str, Any] | None]:
    """Offset where the last complete record ends, and that record (None if there is none).

    Walks back over every bad line: for `seal`, not for the append path, which only looks at the last.
    """
    end = size
    while end > 0:
        line = _last_line(fd, end)
        rec = parse_record(line)
        if rec is not None:
            return end, rec
        end -= len(line)
    return 0, None


def _fsync_dir(path: str) -> None:
    import errno

    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # some filesystems cannot sync a directory
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, size: int, data: bytes) -> None:
    """Append `data` and fsync; on any failure cut the file back to `size` so no partial line stays."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass  # the torn tail is then caught by the next append and by verify
        raise


class AuditLog:
    """Appends chained records to one JSON Lines file, safely across processes."""

    def __init__(self, path: str, *, hmac_key_file: str | None = None, on_failure: str = "fail",
                 max_bytes: int | None = None, keep: int = 5, create_dir: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
        if on_failure not in ("fail", "warn"):
            raise ValueError("on_failure must be 'fail' or 'warn'")
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = path
        self.on_failure = on_failure
        self.max_bytes = max_bytes
        self.keep = keep
        self.create_dir = create_dir
        self.warn = warn  # where an on_failure=warn warning goes (default: stderr)
        self.key = load_key(hmac_key_file) if hmac_key_file else None  # misconfiguration: always fatal
        self.host = os.uname().nodename

    def append(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write `events` as one contiguous batch; return the records written ([] if warned)."""
        if not events:
            return []
        try:
            return self._append(events)
        except AuditIntegrityError:
            raise  # a torn tail may be tampering: never skipped, even with on_failure=warn
        except AuditError as e:
            if self.on_failure != "warn":
                raise
            msg = f"{e}; continuing without audit (on_audit_failure: warn)"
            if self.warn is not None:
                self.warn(msg)
            else:
                import sys

                sys.stderr.write(f"sandbox: warning: {msg}\n")
            return []

    def seal(self) -> dict[str, Any]:
        """Save a torn tail aside, cut it off and append a `sealed` record; {} if nothing is torn."""
        try:
            fd = self._open_locked(create=False)
        except OSError as e:
            raise _oserror("cannot open audit log", self.path, e) from None
        try:
            size = os.fstat(fd).st_size
            good, last = _good_end(fd, size)
            if good == size:
                return {}
            self._check_mac(last)
            torn = os.pread(fd, size - good, good)
            now = time.time_ns()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9)) + f".{now % 10**9:09d}Z"
            saved = f"{self.path}.torn-{stamp}"
            sfd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _write_all(sfd, 0, torn)
            except OSError:
                os.unlink(saved)
                raise
            finally:
                os.close(sfd)
            _fsync_dir(os.path.dirname(self.path))
            os.ftruncate(fd, good)  # the torn bytes are safe in `saved` now
            data = {"torn_bytes": len(torn), "saved_to": saved}
            [rec] = self._chain(last, [{"event": "sealed", "data": data}])
            _write_all(fd, good, encode([rec]))
            return rec
        except OSError as e:
            raise _oserror("cannot seal audit log", self.path, e) from None
        finally:
            os.close(fd)

    # -- internals --------------------------------------------------------------------------------

    def _append(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rotated = False
        while True:
            try:
                fd = self._open_locked(create=True)
            except OSError as e:
                raise _oserror("cannot write audit log", self.path, e) from None
            try:
                size = os.fstat(fd).st_size
                tail = _last_line(fd, size)
                last = parse_record(tail)
                if tail and last is None:
                    raise AuditIntegrityError(
                        f"audit log {self.path} ends with a torn record ({len(tail)} bytes); refusing to "
                        "append. Check it with `sandbox audit verify`, then run "
                        f"`sandbox audit seal {self.path}`")
                self._check_mac(last)
                # Rotate at most once per call, so a tiny max_bytes cannot loop.
                if self.max_bytes is not None and last is not None and size >= self.max_bytes and not rotated:
                    self._rotate(last)
                    rotated = True
                    continue  # the fd is closed below; reopen the new file
                records = self._chain(last, events)
                _write_all(fd, size, encode(records))
                return records
            except OSError as e:
                raise _oserror("cannot write audit log", self.path, e) from None
            finally:
                os.close(fd)  # also releases the lock

    def _chain(self, last: dict[str, Any] | None, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seq, prev = (last["seq"], last["hash"]) if last else (0, GENESIS)
        return build_records(events, seq=seq, prev=prev, ts_ns=time.time_ns(), host=self.host, key=self.key)

    def _check_mac(self, last: dict[str, Any] | None) -> None:
        # A chain must be all-HMAC or all-plain, or verify could never pass it.
        if last is None or bool(last.get("mac")) == (self.key is not None):
            return
        if self.key is None:
            raise AuditError(f"audit log {self.path} is HMAC-protected but no key is configured "
                             "(audit_hmac_key_file / --key-file)")
        raise AuditError(f"audit log {self.path} has plain hashes but an HMAC key is configured; "
                         "move it aside to start an HMAC-protected log")

    def _open_locked(self, *, create: bool) -> int:
        """Open and exclusively lock the file that is `path` right now (rotation may swap it)."""
        import fcntl

        while True:
            fd = self._open(create)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    cur = os.stat(self.path)
                except FileNotFoundError:
                    cur = None
            except BaseException:
                os.close(fd)
                raise
            if cur is not None and (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
                return fd
            os.close(fd)  # we locked a file that was rotated away meanwhile: retry on the new one

    def _open(self, create: bool) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            return os.open(self.path, flags)
        except FileNotFoundError:
            if not create:
                raise
        d = os.path.dirname(self.path)
        if d and (self.create_dir or d == DEFAULT_DIR):
            from ..host.dirs import ensure_dir

            ensure_dir(d, 0o700)  # root's own: records name every container's workload and profile
        elif d and not os.path.isdir(d):
            raise AuditError(f"cannot write audit log {self.path}: directory {d} does not exist")
        fd = os.open(self.path, flags | os.O_CREAT, 0o600)
        try:
            _fsync_dir(d)  # make the new file's name durable too
        except OSError:
            os.close(fd)
            raise
        return fd

    def _rotate(self, last: dict[str, Any]) -> None:
        """path -> path.1 (shifting .1 -> .2 ... .keep), new path starting with a `rotated` record.

        The new file is complete before it appears, and `path` always exists, so a process that
        opens `path` at any moment gets either the old file (and retries after the lock) or the new.
        """
        base, d = self.path, os.path.dirname(self.path)
        tmp = f"{base}.rotating-{os.getpid()}"
        first = self._chain(last, [{"event": "rotated", "data": {
            "previous_file": os.path.basename(base) + ".1", "previous_seq": last["seq"]}}])
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                _write_all(fd, 0, encode(first))
            finally:
                os.close(fd)
            one = f"{base}.1"
            # After a crash between link and replace, path.1 already is this file: do not shift again.
            if not (os.path.exists(one) and os.path.samefile(base, one)):
                for i in range(self.keep - 1, 0, -1):
                    if os.path.exists(f"{base}.{i}"):
                        os.replace(f"{base}.{i}", f"{base}.{i + 1}")  # drops the oldest, path.keep
                if os.path.lexists(one):  # only with keep=1: the oldest is path.1 itself
                    os.unlink(one)
                os.link(base, one)
            os.replace(tmp, base)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(d)


def seal(path: str, *, hmac_key_file: str | None = None) -> dict[str, Any]:
    """The documented way to continue after a crash left a torn last line in `path`.

    The torn bytes go to `path.torn-<timestamp>` (nothing is lost), are cut off, and a `sealed`
    record chained to the last good record says how many bytes and where they went.  Returns that
    record, or {} if the log ends cleanly.  Needs the HMAC key if the log uses one.
    """
    return AuditLog(path, hmac_key_file=hmac_key_file).seal()


# -- edge: reading ----------------------------------------------------------------------------------

def rotated_set(path: str) -> list[str]:
    """`path` and its rotated siblings `path.N` found on disk, oldest first."""
    d, name = os.path.split(path)
    try:
        entries = os.listdir(d or ".")
    except OSError:
        entries = []
    nums = sorted((int(e[len(name) + 1:]) for e in entries
                   if e.startswith(name + ".") and e[len(name) + 1:].isdigit()), reverse=True)
    out = [f"{path}.{n}" for n in nums]
    if os.path.exists(path):
        out.append(path)
    return out


def _lines(path: str) -> Iterator[bytes]:
    """The lines of `path` as they were when a writer last finished (a batch in flight is not seen)."""
    import fcntl

    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH)  # writers hold LOCK_EX for a whole batch, so size is a boundary
        size = os.fstat(f.fileno()).st_size
        fcntl.flock(f, fcntl.LOCK_UN)
        pos = 0
        while pos < size:
            line = f.readline(size - pos)
            if not line:
                return  # truncated meanwhile
            pos += len(line)
            yield line


def verify_files(paths: list[str], *, key: bytes | None = None,
                 expect_seq: int | None = None) -> VerifyResult:
    """Verify files that form one chain, oldest first (`path.N ... path.1, path`)."""
    total, prev, seq = 0, None, None
    for path in paths:
        try:
            r = verify_lines(_lines(path), key=key, prev=prev, seq=seq, file=path)
        except OSError as e:
            return VerifyResult(False, total, None, path, f"cannot read: {e.strerror or e}", seq, prev)
        total += r.records
        if not r.ok:
            r.records = total
            return r
        if r.records:
            prev, seq = r.last_hash, r.last_seq
    if expect_seq is not None and (seq or 0) < expect_seq:
        reason = f"last seq is {seq or 0}, expected at least {expect_seq}: records were cut from the end"
        return VerifyResult(False, total, None, paths[-1] if paths else None, reason, seq, prev)
    return VerifyResult(True, total, None, None, None, seq, prev)


def read_records(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Every record of `paths` in order (for `show`; does not check the chain, `verify` does)."""
    for path in paths:
        try:
            for n, line in enumerate(_lines(path), 1):
                try:
                    rec = json.loads(line.decode("utf-8"))
                except ValueError:
                    rec = None
                if not isinstance(rec, dict) or not line.endswith(b"\n"):
                    raise AuditError(f"{path}:{n}: not a complete audit record (run `sandbox audit verify`)")
                yield rec
        except OSError as e:
            raise _oserror("cannot read audit log", path, e) from None
