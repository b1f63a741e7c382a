"""The profile applied to a parsed runc command line (sandbox.core.runc_cli): decisions, never patches.

Pure: takes the profile, the parsed invocation and facts the edge gathered (what each
descriptor passed with --preserve-fds is), returns decisions, and builds the process an
`exec` without --process would run, as runc 1.1.5's getProcess builds it (exec.go).  The
shim then emits a canonical argv from the decided values; the process itself is decided
by the transform (sandbox.core.transform), as config.json's process is.
"""

from __future__ import annotations

from ..errors import UsageError
from .decisions import Decision, pointer
from .runc_cli import GLOBAL_FLAGS, PROFILE, REFUSE, SUBCOMMAND_ACTIONS, SUBCOMMAND_FLAGS, go_bool, go_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .profile import Profile
    from .runc_cli import Invocation

CONTROL = "runc_flags"
UINT32_MAX = (1 << 32) - 1
# Character devices a preserved descriptor may be (major, minor; minor None: any): the ones
# every container has anyway.
STANDARD_CHAR_DEVICES = {(1, 3): "/dev/null", (1, 5): "/dev/zero", (1, 7): "/dev/full", (1, 8): "/dev/random",
                         (1, 9): "/dev/urandom", (5, 0): "/dev/tty", (5, 2): "/dev/ptmx"}
PTS_MAJORS = range(136, 144)
# exec flags that are runc's own business, not the process's: passed on as they are.
RUNNER_FLAGS = ("console-socket", "detach", "pid-file", "preserve-fds", "cgroup", "ignore-paused")
# Flags runc does not read when exec is given --process (exec.go getProcess): dropped.
PROCESS_FLAGS = ("cwd", "env", "tty", "user", "additional-gids", "process-label", "apparmor", "no-new-privs", "cap")


class FdFact:
    """One descriptor the caller passes on with --preserve-fds, as the edge saw it."""

    __slots__ = ("fd", "kind", "path", "rdev")

    def __init__(self, fd: int, kind: str, path: str = "", rdev: tuple[int, int] = (0, 0)) -> None:
        self.fd = fd
        self.kind = kind  # reg dir chr blk fifo sock lnk missing other
        self.path = path  # readlink of /proc/<pid>/fd/<fd>
        self.rdev = rdev


def _decide(profile: Profile, sub: str, flag: str, action: str, before: Any, after: Any, reason: str,
            key: str = CONTROL) -> Decision:
    return Decision(CONTROL, pointer(sub, f"--{flag}"), action, before, after, reason, f"{profile.rule}: {key}",  # type: ignore[arg-type]
                    applied=profile.mode != "complain")


def _turned_on(spec_kind: str, value: Any) -> bool:
    if spec_kind == "bool":
        return bool(value)
    return go_bool(value) is True if isinstance(value, str) else bool(value)


def flag_decisions(profile: Profile, inv: Invocation, fds: list[FdFact] | None = None) -> list[Decision]:
    """Decisions on the flags of a hardened subcommand that are not the exec'd process's or update's resources."""
    sub = inv.subcommand or ""
    out: list[Decision] = []
    whole = SUBCOMMAND_ACTIONS.get(sub)
    if whole and whole[0] == REFUSE:
        out.append(Decision(CONTROL, pointer(sub), "refuse", sub, None, f"runc {sub} is refused: {whole[1]}",
                            f"{profile.rule}: {CONTROL}", applied=profile.mode != "complain"))
    for scope, specs, values in (("global", GLOBAL_FLAGS, inv.global_values),
                                 (sub, SUBCOMMAND_FLAGS.get(sub, ()), inv.options)):
        for spec in specs:
            if spec.action == REFUSE and spec.name in values and _turned_on(spec.kind, values[spec.name]):
                v = values[spec.name]
                shown = f"--{spec.name}" + ("" if v is True else f"={v}")
                out.append(_decide(profile, scope, spec.name, "refuse", v, None, f"{shown} is refused: {spec.why}"))
    n = inv.option("preserve-fds", 0)
    if n > 0:
        out += fd_decisions(profile, sub, fds or [])
    for path in inv.option("cgroup", []) if sub == "exec" else []:
        why = sub_cgroup_problem(path, len(inv.option("cgroup")))
        if why:
            out.append(_decide(profile, sub, "cgroup", "refuse", path, None, f"--cgroup {path}: {why}"))
    return out


def sub_cgroup_problem(arg: str, count: int) -> str | None:
    """Why `exec --cgroup arg` would leave the container's cgroup (or runc would refuse it)."""
    parts = arg.split(":", 2)
    if len(parts) > 2:
        return "runc refuses more than one ':'"
    if len(parts) == 1 and count != 1:
        return "runc refuses a path without a controller when several are given"
    path = parts[-1]
    if any(p == ".." for p in path.split("/")):
        return ("'..' leaves the container's cgroup (runc 1.1.5 only checks that the joined path starts with "
                "the container's, so a sibling whose name extends it would do)")
    return None


def fd_decisions(profile: Profile, sub: str, fds: list[FdFact]) -> list[Decision]:
    from .transform.mounts import forbidden_reason

    fs = profile.filesystem
    out = []
    for f in fds:
        what = f"descriptor {f.fd}" + (f" ({f.path})" if f.path else "")
        why = None
        if f.kind == "missing":
            why = "it is not open"
        elif f.kind in ("dir", "blk", "lnk", "other"):
            why = {"dir": "a directory is a handle outside the container's root (the CVE-2024-21626 shape)",
                   "blk": "a block device gives the host's storage to the container",
                   "lnk": "an O_PATH handle to a symlink reaches the host's file tree",
                   "other": "it is not a kind of file a container may be handed"}[f.kind]
        elif f.kind == "chr":
            if f.rdev not in STANDARD_CHAR_DEVICES and f.rdev[0] not in PTS_MAJORS:
                why = f"character device {f.rdev[0]}:{f.rdev[1]} is not one every container has"
        elif f.kind == "reg" and f.path.startswith("/") and not f.path.endswith(" (deleted)"):
            why = forbidden_reason(f.path, fs.forbidden_host_paths, fs.allowed_host_paths)
            if why:
                why = f"a file handed over is a bind mount of it: {why}"
        if why:
            out.append(_decide(profile, sub, "preserve-fds", "refuse", what, None, f"{what}: {why}",
                               "filesystem.forbidden_host_paths" if f.kind == "reg" else CONTROL))
        else:
            out.append(_decide(profile, sub, "preserve-fds", "keep", what, what,
                               f"{what}: a {f.kind} may be handed to the container"))
    return out


def _uint32(text: str, what: str, wrap: bool) -> int:
    """strconv.Atoi as runc uses it, then uint32(): a value that would wrap around is refused."""
    n = go_int(text, 10)
    if n is None:
        raise UsageError(f"runc would refuse {what} {text!r}: not an integer")
    if not 0 <= n <= UINT32_MAX and not wrap:
        raise UsageError(f"{what} {text!r} is refused: runc would wrap it around to {n & UINT32_MAX}")
    return n & UINT32_MAX


def exec_process(base: dict[str, Any] | None, inv: Invocation, *, wrap: bool = False) -> dict[str, Any]:
    """The process `runc exec` builds from config.json's process and its flags (exec.go getProcess).

    A uid, gid or additional gid outside uint32 raises UsageError; with `wrap`, it is wrapped
    around as runc's uint32() does (what plain runc would run, for the tests' model of it).
    """
    import copy

    p: dict[str, Any] = copy.deepcopy(base) if base else {}
    o = inv.options
    p["args"] = list(inv.args[1:])
    if o.get("cwd"):
        p["cwd"] = o["cwd"]
    if o.get("apparmor"):
        p["apparmorProfile"] = o["apparmor"]
    if o.get("process-label"):
        p["selinuxLabel"] = o["process-label"]
    caps = o.get("cap") or []
    if caps:
        c = p.setdefault("capabilities", {})  # (runc itself would crash on a process without capabilities)
        for s in ("bounding", "effective", "permitted", "ambient"):
            c[s] = [*(c.get(s) or []), *caps]
    p["env"] = [*(p.get("env") or []), *(o.get("env") or [])]
    p["terminal"] = bool(o.get("tty", False))
    if "no-new-privs" in o:
        p["noNewPrivileges"] = o["no-new-privs"]
    user = dict(p.get("user") or {})
    if o.get("user"):
        uid, sep, gid = o["user"].partition(":")
        if sep:
            user["gid"] = _uint32(gid, "--user gid", wrap)
        user["uid"] = _uint32(uid, "--user uid", wrap)
    for g in o.get("additional-gids") or []:
        if g < 0:
            raise UsageError(f"runc would refuse --additional-gids {g}: additional-gids must be a positive number")
        if g > UINT32_MAX and not wrap:
            raise UsageError(f"--additional-gids {g} is refused: runc would wrap it around to {g & UINT32_MAX}")
        user["additionalGids"] = [*(user.get("additionalGids") or []), g & UINT32_MAX]
    p["user"] = user
    return p


def lsm_decisions(profile: Profile, container: dict[str, Any] | None, proc: dict[str, Any]) -> list[Decision]:
    """An exec'd process keeps the container's AppArmor profile and SELinux label (the profile's, when it
    sets one, is already both): a different one, from a flag or a process file, is refused."""
    out = []
    for field, flag in (("apparmorProfile", "apparmor"), ("selinuxLabel", "process-label")):
        want = (container or {}).get(field) or ""
        got = proc.get(field) or ""
        if got != want:
            out.append(_decide(profile, "exec", flag, "refuse", got, want,
                               f"process.{field} {got!r} differs from the container's {want!r}: an exec'd process "
                               "stays in the container's LSM confinement", "lsm"))
    return out


def ignored_with_process(profile: Profile, inv: Invocation) -> list[Decision]:
    """With --process, runc reads the process from the file and ignores these flags: they are dropped."""
    return [_decide(profile, "exec", name, "drop", inv.options[name], None,
                    f"--{name} is ignored by runc when --process is given; not passed on")
            for name in PROCESS_FLAGS if name in inv.options]


def profile_flags(sub: str) -> list[str]:
    return [s.name for s in SUBCOMMAND_FLAGS[sub] if s.action == PROFILE]
