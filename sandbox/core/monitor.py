"""What the sandbox agent answers, records and counts: the pure half of `sandbox.runtime.agent`.

The transform tells the agent, through runc's `listenerMetadata`, what each container's routes
mean (`Meta`).  For every notification the agent asks `answer()` what to reply and what to
record.  Records are rate-limited per container and syscall: the first call of a syscall (for
a syscall whose verdict depends on arguments, of each distinct value of the arguments the
rules look at) is recorded in full, later calls only as counts (`Tally`), so a busy workload
cannot fill the disk; exec records, which are each worth reading, pass through a token bucket.
Every structure here is bounded.

Pointer arguments are never read: an argument the kernel declares as a pointer is recorded as
"unread", and no answer depends on memory the workload can change between the check and the
syscall (docs/security.md, "The agent and TOCTOU").  Pure: data in, data out.
"""

from __future__ import annotations

from .._record import field, record
from .seccomp_eval import allows, verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .seccomp_eval import Rule, Verdict

UNREAD = "unread"
EXEC_SYSCALLS = frozenset({"execve", "execveat"})
MAX_KEYS = 512  # distinct first-occurrence keys kept per container; beyond, calls are only counted
MAX_NAMES = 1024  # distinct syscall names counted per container (every name libseccomp knows fits)
EPERM = 1
# AUDIT_ARCH_* (the `arch` of a notification) -> the name used in records and profiles' checks
AUDIT_ARCHES = {0xC000003E: "x86_64", 0x40000003: "x86", 0xC00000B7: "aarch64", 0x40000028: "arm"}


@record
class Meta:
    """A container's routes, as the transform described them (`transform.seccomp.listener_metadata`)."""

    profile: str
    sha256: str
    mode: str  # enforce | complain | learn
    routes: tuple[str, ...] = ()
    exec: bool = False  # execve/execveat are routed for the exec trail
    errno: Mapping[str, int] = field(default_factory=dict)  # denial routes: syscall -> the filter's errno
    default: Rule | None = None  # complain mode: the enforced filter's default rule
    would: Mapping[str, list[Rule]] = field(default_factory=dict)  # complain mode: its rules per syscall
    caps: tuple[str, ...] = ()  # the bounding set enforcement leaves (what the `would` rules were resolved for)


def parse_meta(text: Any) -> Meta | None:
    """The metadata runc passed, or None when it is not the transform's (the agent then refuses the fd)."""
    from .. import _fastjson as json

    if not isinstance(text, str):
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("v") != 1 or d.get("mode") not in ("enforce", "complain", "learn"):
        return None
    try:
        errno = {str(k): int(v) for k, v in (d.get("errno") or {}).items() if 0 < int(v) < 4096}
        default = _rule(d["default"] + [[]]) if d.get("default") else None
        would = {str(n): [_rule(r) for r in rules] for n, rules in (d.get("would") or {}).items()}
        return Meta(profile=str(d.get("profile", "")), sha256=str(d.get("sha256", "")), mode=d["mode"],
                    routes=tuple(str(r) for r in d.get("routes") or ()), exec=bool(d.get("exec")), errno=errno,
                    default=default, would=would, caps=tuple(str(c) for c in d.get("caps") or ()))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None


def _rule(r: Any) -> Rule:
    action, errno, conds = r[0], r[1], r[2]
    if not isinstance(action, str) or not (errno is None or isinstance(errno, int)):
        raise ValueError("bad rule")
    return action, errno, tuple((int(c[0]), int(c[1]), int(c[2]), str(c[3])) for c in conds)


def would(meta: Meta, name: str, args: Sequence[int]) -> Verdict | None:
    """What enforcement would do with this call (complain mode), from its integer arguments."""
    if meta.default is None:
        return None
    return verdict(meta.default, meta.would.get(name, ()), args)


def action_text(v: Verdict) -> str:
    from .tables import errno_name

    return f"{v[0]}({errno_name(v[1])})" if v[1] is not None else v[0]


@record
class Answer:
    """What to reply to one notification, and what to record."""

    errno: int = 0  # 0: continue (SECCOMP_USER_NOTIF_FLAG_CONTINUE), else fail the call with it
    record: str = ""  # "" | syscall | exec: the kind of record the call gets
    would: str = ""  # complain mode: the verdict enforcement would give (action text)


def answer(meta: Meta, name: str, args: Sequence[int], *, audit_failing: bool = False) -> Answer:
    """Reply and record for `name(args)` in a container described by `meta`.

    Only what the filter routed reaches the agent, and it routes only calls the filter (the
    bundle's, in complain mode) lets run, but for the denial routes: so "continue" never allows
    what the section it was made from denies.  An exec in an enforce-mode exec-trail container
    fails with EPERM while the audit log cannot be written (`audit_failing`): what cannot be
    recorded does not run.
    """
    if name in meta.errno:
        return Answer(errno=meta.errno[name], record="syscall", would=f"SCMP_ACT_ERRNO({_errno(meta.errno[name])})")
    if meta.exec and name in EXEC_SYSCALLS:
        if audit_failing and meta.mode == "enforce":
            return Answer(errno=EPERM, record="exec")
        return Answer(record="exec")
    if meta.mode == "learn":
        return Answer(record="syscall")
    if meta.mode == "complain":
        v = would(meta, name, args)
        if v is not None and not allows(v):
            return Answer(record="syscall", would=action_text(v))
    return Answer()


def _errno(n: int) -> str:
    from .tables import errno_name

    return errno_name(n)


def condition_indexes(meta: Meta, name: str) -> tuple[int, ...]:
    """The argument positions the enforced rules of `name` look at (what makes two calls differ)."""
    return tuple(sorted({c[0] for r in meta.would.get(name, ()) for c in r[2]}))


def arguments(signature: Sequence[Sequence[str]] | None, args: Sequence[int]) -> list[dict[str, Any]]:
    """The call's arguments for a record: integer ones by value, pointers (and the unknown) "unread"."""
    if signature is None:
        return [{"index": i, "value": UNREAD} for i in range(6)]
    out = []
    for i, (name, kind) in enumerate(signature[:6]):
        out.append({"name": name, "value": int(args[i]) if kind == "int" and i < len(args) else UNREAD})
    return out


class Tally:
    """Per-container record budget: which calls are new (recorded in full) and how many came since."""

    def __init__(self, max_keys: int = MAX_KEYS, max_names: int = MAX_NAMES) -> None:
        self.max_keys = max_keys
        self.max_names = max_names
        self.seen: set[tuple[Any, ...]] = set()
        self.named: set[str] = set()  # names with a first record
        self.since: dict[str, int] = {}  # calls per syscall since the last `take`
        self.totals: dict[str, int] = {}
        self.uncounted = 0  # calls of names beyond max_names

    def add(self, name: str, key: tuple[Any, ...]) -> bool:
        """Count a call; True when it is the first of its key (record it in full)."""
        if name in self.totals or len(self.totals) < self.max_names:
            self.totals[name] = self.totals.get(name, 0) + 1
            self.since[name] = self.since.get(name, 0) + 1
        else:
            self.uncounted += 1
        if key in self.seen:
            return False
        if len(self.seen) >= self.max_keys and (name in self.named or len(self.named) >= self.max_names):
            return False  # out of keys: a name recorded before is only counted; a new one still gets its first
        self.seen.add(key)
        self.named.add(name)
        return True

    def take(self) -> dict[str, int]:
        """Counts since the last take (each first call included), and start again."""
        out, self.since = self.since, {}
        return out


class TokenBucket:
    """At most `burst` at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --- records ----------------------------------------------------------------------------------

def header(state: Mapping[str, Any], meta: Meta) -> dict[str, Any]:
    """The audit record header of a container: id and bundle from runc's state, profile from the metadata."""
    return {"container_id": str(state.get("id") or ""), "bundle": str(state.get("bundle") or ""),
            "profile": meta.profile, "profile_sha256": meta.sha256}


def attached(state: Mapping[str, Any], meta: Meta, pid: int) -> dict[str, Any]:
    return {**header(state, meta), "event": "monitor", "data": {
        "action": "attached", "pid": pid, "status": str(state.get("status") or ""), "mode": meta.mode,
        "routes": list(meta.routes), "denials": len(meta.errno), "caps": list(meta.caps)}}


def syscall_record(state: Mapping[str, Any], meta: Meta, *, name: str, arch: str, nr: int, pid: int,
                   process: Mapping[str, Any], args: list[dict[str, Any]], ans: Answer) -> dict[str, Any]:
    data: dict[str, Any] = {"syscall": name, "arch": arch, "nr": nr, "pid": pid, **process, "args": args,
                            "mode": meta.mode, "answer": "continue" if not ans.errno else f"errno {_errno(ans.errno)}",
                            "first": True}
    if ans.would:
        data["would"] = ans.would
    return {**header(state, meta), "event": "syscall", "data": data}


def counts_record(state: Mapping[str, Any], meta: Meta, counts: Mapping[str, int], *, final: bool = False,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Calls per syscall since the last record of the container (each first call included)."""
    return {**header(state, meta), "event": "syscall", "data": {
        "counts": dict(sorted(counts.items())), "first": False, "mode": meta.mode, **(extra or {})}}


def detached(state: Mapping[str, Any], meta: Meta, tally: Tally, why: str,
             extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data = {"action": "detached", "why": why, "totals": dict(sorted(tally.totals.items())),
            "calls": sum(tally.totals.values()), **(extra or {})}
    if tally.uncounted:
        data["uncounted"] = tally.uncounted
    return {**header(state, meta), "event": "monitor", "data": data}


def exec_record(state: Mapping[str, Any], meta: Meta, *, syscall: str, n: int, pid: int, ans: Answer,
                caller: Mapping[str, Any], parent: Mapping[str, Any], program: Mapping[str, Any] | None,
                seen: str, notified: str) -> dict[str, Any]:
    """One exec: who asked (caller, its parent), what ran (`program`, read from the kernel after the exec)."""
    return {**header(state, meta), "event": "exec", "data": {
        "n": n, "syscall": syscall, "pid": pid, "notified": notified, "filename": UNREAD, "argv": UNREAD,
        "caller": dict(caller), "parent": dict(parent), "program": dict(program) if program else None,
        "seen": seen, "answer": "continue" if not ans.errno else f"errno {_errno(ans.errno)}"}}


def changed(before: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether a process's identity (exe, comm, argv) differs: the exec took place."""
    return any(before.get(k) != now.get(k) for k in ("exe", "comm", "argv"))


# --- reading the records back (`sandbox audit show`) -------------------------------------------------

def _argv(p: Mapping[str, Any] | None) -> str:
    if not p:
        return "?"
    argv = p.get("argv")
    shown = " ".join(argv) if isinstance(argv, list) and argv else p.get("comm") or "?"
    exe = p.get("exe")
    return f"{shown} ({exe})" if exe and not (isinstance(argv, list) and argv and argv[0] == exe) else shown


def describe(rec: Mapping[str, Any]) -> str:
    """One line for a `monitor`, `syscall` or `exec` record, as `sandbox audit show` prints it."""
    d = rec.get("data") or {}
    event = rec.get("event")
    if event == "syscall" and d.get("first"):
        args = ", ".join(f"{a.get('name', a.get('index'))}={a.get('value')}" for a in d.get("args") or [])
        who = f"pid {d.get('pid')} {d.get('comm') or '?'}" + (f" ({d['exe']})" if d.get("exe") else "")
        would = f"; enforcement: {d['would']}" if d.get("would") and d.get("answer") == "continue" else ""
        return f"{d.get('syscall')}({args}) [{d.get('arch')}] by {who}: {d.get('answer')}{would}"
    if event == "syscall":
        counts = ", ".join(f"{n}×{c}" for n, c in (d.get("counts") or {}).items())
        extra = f"; {d['exec_unrecorded']} execs over the rate limit" if d.get("exec_unrecorded") else ""
        return f"calls since the last record: {counts or 'none'}{extra}"
    if event == "exec":
        caller, parent = d.get("caller") or {}, d.get("parent") or {}
        ran = _argv(d.get("program")) if d.get("program") else f"(not seen: {d.get('seen')})"
        return (f"#{d.get('n')} {d.get('syscall')}: {ran} — by pid {caller.get('pid')} {caller.get('comm') or '?'}, "
                f"parent pid {parent.get('pid')} {parent.get('comm') or '?'}"
                + (f"; {d.get('answer')}" if d.get("answer") != "continue" else ""))
    if event == "monitor":
        action = d.get("action")
        if action == "attached":
            return (f"attached: pid {d.get('pid')} ({d.get('status')}), mode {d.get('mode')}, routes "
                    f"{', '.join(d.get('routes') or []) or 'none'}")
        if action == "detached":
            totals = ", ".join(f"{n}×{c}" for n, c in (d.get("totals") or {}).items())
            return f"detached ({d.get('why')}): {d.get('calls', 0)} calls" + (f": {totals}" if totals else "")
        return f"{action}: " + ", ".join(f"{k}={v}" for k, v in d.items() if k != "action")
    return ""
