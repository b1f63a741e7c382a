"""Does a running container's kernel state match what its config.json asked for?  Pure.

`expected_from_config` reads the controls out of an OCI runtime-spec config;
`compare` holds them against the kernel's view of the container's init process
(`ProcState`, `CgroupLimits`, read by the edge module `sandbox.host.inspect`) and
returns one `Check` per control.  Nothing here reads a file: the edge passes in
whatever the comparison needs (host namespaces, which paths are absent in the
container, the namespaces joined by path, the kernel's last capability).

The kernel-state value types live here, not in `sandbox.host.inspect`, so that this
pure module need not import the edge; `sandbox.host.inspect` re-exports them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from .tables import CAPABILITIES, CAPABILITY_NUMBERS, CAPABILITY_SETS

# OCI namespace type -> the name of its /proc/PID/ns link.
NAMESPACE_PROC_NAMES: dict[str, str] = {
    "pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt", "user": "user",
    "cgroup": "cgroup", "time": "time",
}
# The kernel may round a memory limit down to a page; 64 KiB covers every page size Linux uses here.
_MAX_PAGE = 65536
_DEFAULT_CFS_PERIOD = 100000


# ---------------------------------------------------------------------------------------------------------
# The kernel's view of a process (filled in by sandbox.host.inspect)
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/PID/mountinfo, escapes (\\040 and friends) decoded."""

    mount_point: str
    options: tuple[str, ...] = ()  # per-mount options: ro, nosuid, ...
    fs_type: str = ""
    source: str = ""
    super_options: tuple[str, ...] = ()  # per-superblock options
    root: str = "/"  # the path inside the filesystem that is mounted here ("/null" for a /dev/null bind)
    mount_id: int = 0
    parent_id: int = 0


@dataclass(frozen=True)
class CgroupEntry:
    """One line of /proc/PID/cgroup: `hierarchy:controllers:path` (v2 is `0::/path`)."""

    hierarchy_id: int
    controllers: tuple[str, ...]  # () for the v2 line; "name=systemd" style names kept as they are
    path: str


@dataclass(frozen=True)
class ProcState:
    """Security-relevant state of one process, as the kernel reports it."""

    pid: int
    cap_inh: tuple[str, ...] = ()  # sorted CAP_* names
    cap_prm: tuple[str, ...] = ()
    cap_eff: tuple[str, ...] = ()
    cap_bnd: tuple[str, ...] = ()
    cap_amb: tuple[str, ...] = ()
    no_new_privs: bool | None = False  # None: the kernel does not report it
    seccomp_mode: int | None = 0  # 0 off, 1 strict, 2 filter; None: kernel without seccomp
    seccomp_filters: int | None = 0  # None: kernel too old to report it (< 5.9)
    uid_map: tuple[tuple[int, int, int], ...] = ()  # (inside, outside, count)
    gid_map: tuple[tuple[int, int, int], ...] = ()
    namespaces: Mapping[str, int] = field(default_factory=dict)  # /proc/PID/ns name -> inode
    mounts: tuple[MountEntry, ...] = ()
    cgroups: tuple[CgroupEntry, ...] = ()
    uids: tuple[int, ...] = ()  # real, effective, saved, filesystem
    gids: tuple[int, ...] = ()
    # runc's init, waiting for `start` (a created container): the workload's execve(2) has not happened,
    # so the capability sets are still exactly the configured ones
    before_exec: bool = False

    def capability_set(self, oci_name: str) -> tuple[str, ...]:
        """The set named as config.json names it: bounding, effective, permitted, inheritable, ambient."""
        return {"bounding": self.cap_bnd, "effective": self.cap_eff, "permitted": self.cap_prm,
                "inheritable": self.cap_inh, "ambient": self.cap_amb}[oci_name]

    def mount_at(self, path: str) -> MountEntry | None:
        """The mount visible at `path` (the top of the stack when several are mounted there), or None."""
        return top_mount(self._mounts_by_point.get(_norm(path), ()), path)

    @cached_property
    def _mounts_by_point(self) -> dict[str, list[MountEntry]]:
        by: dict[str, list[MountEntry]] = {}
        for m in self.mounts:
            by.setdefault(_norm(m.mount_point), []).append(m)
        return by


@dataclass(frozen=True)
class CgroupLimits:
    """Limits of the cgroup(s) a process is in.  None means unlimited."""

    version: str  # "v1" | "v2": of the memory controller (else pids, else cpu)
    memory_limit: int | None = None  # bytes
    pids_max: int | None = None
    cpu_quota: int | None = None  # microseconds per period
    cpu_period: int | None = None
    versions: Mapping[str, str] = field(default_factory=dict)  # controller -> "v1" | "v2"
    paths: Mapping[str, str] = field(default_factory=dict)  # controller -> cgroup directory read
    unavailable: Mapping[str, str] = field(default_factory=dict)  # controller -> why it could not be read


def top_mount(mounts: Collection[MountEntry], path: str) -> MountEntry | None:
    path = _norm(path)
    here = [m for m in mounts if _norm(m.mount_point) == path]
    if not here:
        return None
    # A mount stacked on another at the same point has that one as its parent.
    parents = {m.parent_id for m in here}
    tops = [m for m in here if m.mount_id not in parents]
    return (tops or here)[-1]


@dataclass(frozen=True)
class SeccompFilters:
    """A task's installed seccomp programs as the kernel returned them (PTRACE_SECCOMP_GET_FILTER)."""

    programs: tuple[bytes, ...] | None  # raw sock_filter arrays, oldest first; None: not read (see error)
    error: str = ""
    machine: str = "x86_64"  # uname -m: which ABIs a task can use
    absent_abis: tuple[str, ...] = ()  # compat ABIs this kernel does not run (x32 without CONFIG_X86_X32_ABI)


@dataclass(frozen=True)
class OtherProcess:
    """A process in the container other than its init (one run by `runc exec`, or a child)."""

    state: ProcState
    comm: str = ""
    seccomp: SeccompFilters | None = None


# Evidence.facts key: `nft -j list ruleset` inside the container's network namespace (None: not readable)
NFT_RULESET = "nft_ruleset"


@dataclass(frozen=True)
class Evidence:
    """Everything the kernel told us about one container, for the controls to judge.

    A new control reads what it needs from here (`facts` holds kernel facts by name for
    controls added later, so that adding one does not change this signature).
    """

    expected: Expected
    state: ProcState
    limits: CgroupLimits
    host_namespaces: Mapping[str, int]
    absent_paths: frozenset[str] = frozenset()
    namespace_paths: Mapping[str, int] = field(default_factory=dict)
    cap_last_cap: int | None = None
    seccomp: SeccompFilters | None = None  # None: not read; the count in /proc/PID/status is all there is
    processes: tuple[OtherProcess, ...] | None = None  # None: not looked at (only init is checked)
    facts: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# What the config asks for
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    capabilities: Mapping[str, tuple[str, ...]]  # OCI set name -> sorted names (absent set = empty)
    unknown_capabilities: tuple[str, ...] = ()  # names runc would ignore
    no_new_privileges: bool = False
    seccomp: bool = False
    uid_mappings: tuple[tuple[int, int, int], ...] = ()  # (containerID, hostID, size)
    gid_mappings: tuple[tuple[int, int, int], ...] = ()
    namespaces: Mapping[str, str | None] = field(default_factory=dict)  # OCI type -> path, None = a new one
    readonly_root: bool = False
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    memory_limit: int | None = None  # None: no limit asked for
    pids_limit: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    seccomp_section: Mapping[str, Any] | None = None  # linux.seccomp as the config states it
    uid: int = 0  # process.user.uid: the user the container's process runs as, in its user namespace
    annotations: Mapping[str, Any] = field(default_factory=dict)  # the config's annotations (e.g. `.applied`)

    @property
    def new_user_namespace(self) -> bool:
        return "user" in self.namespaces and not self.namespaces["user"]


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _mappings(v: Any) -> tuple[tuple[int, int, int], ...]:
    out = []
    for m in _l(v):
        m = _d(m)
        c, h, s = _int(m.get("containerID")), _int(m.get("hostID")), _int(m.get("size"))
        if c is not None and h is not None and s is not None:
            out.append((c, h, s))
    return tuple(out)


def _paths(v: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_norm(p) for p in _l(v) if isinstance(p, str) and p.startswith("/")))


def expected_from_config(config: dict[str, Any]) -> Expected:
    """The controls an OCI runtime-spec config.json asks runc to set up.

    Mirrors what runc 1.1 does with each field: a missing `process.capabilities`
    (or a missing set in it) means an empty set; unknown capability names are
    ignored; a memory/pids limit of 0 or less and a CPU quota of 0 or less set nothing.
    """
    config = _d(config)
    process = _d(config.get("process"))
    linux = _d(config.get("linux"))
    resources = _d(linux.get("resources"))
    caps_cfg = _d(process.get("capabilities"))
    caps: dict[str, tuple[str, ...]] = {}
    unknown: set[str] = set()
    for name in CAPABILITY_SETS:
        names = {c for c in _l(caps_cfg.get(name)) if isinstance(c, str)}
        unknown |= {c for c in names if c not in CAPABILITY_NUMBERS}
        caps[name] = tuple(sorted(names & set(CAPABILITIES)))
    namespaces: dict[str, str | None] = {}
    for ns in _l(linux.get("namespaces")):
        ns = _d(ns)
        kind = ns.get("type")
        if isinstance(kind, str):
            path = ns.get("path")
            namespaces[kind] = path if isinstance(path, str) and path else None
    memory = _int(_d(resources.get("memory")).get("limit"))
    pids = _int(_d(resources.get("pids")).get("limit"))
    cpu = _d(resources.get("cpu"))
    quota, period = _int(cpu.get("quota")), _int(cpu.get("period"))
    return Expected(
        capabilities=caps,
        unknown_capabilities=tuple(sorted(unknown)),
        no_new_privileges=process.get("noNewPrivileges") is True,
        seccomp=isinstance(linux.get("seccomp"), dict),
        seccomp_section=linux["seccomp"] if isinstance(linux.get("seccomp"), dict) else None,
        uid=_int(_d(process.get("user")).get("uid")) or 0,
        annotations=_d(config.get("annotations")),
        uid_mappings=_mappings(linux.get("uidMappings")),
        gid_mappings=_mappings(linux.get("gidMappings")),
        namespaces=namespaces,
        readonly_root=_d(config.get("root")).get("readonly") is True,
        masked_paths=_paths(linux.get("maskedPaths")),
        readonly_paths=_paths(linux.get("readonlyPaths")),
        memory_limit=memory if memory is not None and memory > 0 else None,
        pids_limit=pids if pids is not None and pids > 0 else None,
        cpu_quota=quota if quota is not None and quota > 0 else None,
        cpu_period=period if quota is not None and quota > 0 and period else None,
    )


# ---------------------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    control: str
    status: str  # PASS | FAIL | SKIP
    expected: str
    actual: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/")) if path else path


def _names(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) if names else "(none)"


def _bytes(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit} ({n})"
    return str(n)


def _maps(m: Collection[tuple[int, int, int]]) -> str:
    return "; ".join(f"{a} {b} {c}" for a, b, c in m) if m else "(none)"


def _check(control: str, ok: bool | None, expected: str, actual: str, detail: str) -> Check:
    status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
    return Check(control, status, expected, actual, detail)


def _capability_checks(exp: Expected, state: ProcState, cap_last_cap: int | None) -> list[Check]:
    out = []
    beyond: set[str] = set()
    want_sets: dict[str, set[str]] = {}
    for name in CAPABILITY_SETS:
        want = set(exp.capabilities.get(name, ()))
        if cap_last_cap is not None:
            beyond |= {c for c in want if CAPABILITY_NUMBERS[c] > cap_last_cap}
            want -= beyond
        want_sets[name] = want
    # The kernel keeps an ambient capability only while it is both permitted and inheritable;
    # runc raises the others without complaint and they do not stick.
    unraisable = want_sets["ambient"] - (want_sets["permitted"] & want_sets["inheritable"])
    want_sets["ambient"] -= unraisable
    # execve(2) by a user other than root (in its user namespace) keeps only the ambient
    # capabilities in the effective and permitted sets; file capabilities of the executable may
    # add some of the bounding set, unless no_new_privs makes the kernel ignore them.
    file_caps: set[str] = set()
    execve = exp.uid != 0 and not state.before_exec
    if execve:
        configured = {n: set(want_sets[n]) for n in ("effective", "permitted")}
        for n in ("effective", "permitted"):
            want_sets[n] = set(want_sets["ambient"])
        if not exp.no_new_privileges:
            file_caps = want_sets["bounding"] - want_sets["ambient"]
    for name in CAPABILITY_SETS:
        want, have = want_sets[name], set(state.capability_set(name))
        notes = []
        if execve and name in ("effective", "permitted") and configured[name] != want:
            notes.append(f"uid {exp.uid} keeps only its ambient capabilities across execve")
        optional = file_caps if name in ("effective", "permitted") else set()
        if have - want and have - want <= optional:
            notes.append(f"from the executable's file capabilities: {_names(have - want)}")
            want = want | (have & optional)
        if name == "ambient" and unraisable:
            notes.append(f"requested but not raisable without permitted+inheritable: {_names(unraisable)}")
        if beyond:
            notes.append(f"unknown to this kernel: {_names(beyond)}")
        if name == "bounding" and exp.unknown_capabilities:
            notes.append(f"ignored by runc as unknown: {_names(exp.unknown_capabilities)}")
        if want == have:
            detail = f"{len(have)} as configured" + (f": {_names(have)}" if have else "")
        else:
            parts = []
            if have - want:
                parts.append(f"extra: {_names(have - want)}")
            if want - have:
                parts.append(f"missing: {_names(want - have)}")
            detail = "; ".join(parts)
        if notes:
            detail += " (" + "; ".join(notes) + ")"
        out.append(_check(f"capabilities.{name}", want == have, _names(want), _names(have), detail))
    return out


def _nnp_check(exp: Expected, state: ProcState) -> Check:
    actual = "unknown" if state.no_new_privs is None else str(int(state.no_new_privs))
    if not exp.no_new_privileges:
        return _check("no_new_privileges", None, "not required", actual, "the config does not set noNewPrivileges")
    if state.no_new_privs is None:
        return _check("no_new_privileges", None, "1", actual, "the kernel does not report NoNewPrivs (< 4.10)")
    ok = bool(state.no_new_privs)
    return _check("no_new_privileges", ok, "1", actual,
                  "NoNewPrivs is set" if ok else "NoNewPrivs is 0: setuid binaries and file capabilities work")


def _seccomp_count_check(exp: Expected, state: ProcState) -> Check:
    """Only whether a filter is installed (when its content was not read)."""
    actual = f"mode {state.seccomp_mode}, {state.seccomp_filters} filters"
    if state.seccomp_mode is None:
        return _check("seccomp", False, "mode 2, >= 1 filter", actual, "the kernel reports no seccomp support")
    if state.seccomp_mode != 2:
        return _check("seccomp", False, "mode 2, >= 1 filter", actual,
                      f"Seccomp is {state.seccomp_mode}: no filter is installed")
    if state.seccomp_filters is None:
        return _check("seccomp", True, "mode 2, >= 1 filter", actual,
                      "a filter is installed (the kernel does not count filters, < 5.9; content not read)")
    ok = state.seccomp_filters >= 1
    return _check("seccomp", ok, "mode 2, >= 1 filter", actual,
                  f"{state.seccomp_filters} filter(s) installed (content not read)" if ok
                  else "mode 2 but no filters counted")


def _section_text(section: Mapping[str, Any] | None) -> str:
    if not section:
        return "no filter"
    rules = sum(1 for e in section.get("syscalls") or [] if isinstance(e, dict))
    return f"defaultAction {section.get('defaultAction', 'SCMP_ACT_ALLOW')}, {rules} rules"


_LISTED = 8


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:_LISTED])
    return shown + (f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def seccomp_content(section: Mapping[str, Any] | None, filters: SeccompFilters, control: str = "seccomp",
                    who: str = "") -> Check:
    """What the installed filters allow, proved against what the config's `linux.seccomp` demands."""
    from . import seccomp_proof

    want = _section_text(section)
    if filters.programs is None:
        return _check(control, False, want, "unreadable", f"{who}cannot read the installed filters: {filters.error}")
    if not filters.programs:
        return _check(control, False, want, "no filter", f"{who}no seccomp filter is installed: every syscall runs")
    proof = seccomp_proof.prove_raw(filters.programs, section, filters.machine, filters.absent_abis)
    actual = f"{proof.filters} filter(s), {'+'.join(map(str, proof.instructions))} instructions"
    if proof.unsupported:
        return _check(control, False, want, actual, f"{who}cannot be evaluated exactly: {proof.unsupported}")
    where = ", ".join(proof.abis) + (f"; {', '.join(proof.absent_abis)} not run by this kernel"
                                     if proof.absent_abis else "")
    if proof.weaker:
        allowed = [d.describe() for d in proof.weaker if d.allowed]
        milder = [d.describe() for d in proof.weaker if not d.allowed]
        parts = []
        if allowed:
            parts.append(f"allowed beyond the profile: {_listing(allowed)}")
        if milder:
            parts.append(f"denied more mildly than the profile: {_listing(milder)}")
        return _check(control, False, want, actual, who + " | ".join(parts))
    extra = f"; {proof.stricter} stricter (e.g. runc's ENOSYS stub, a stacked filter)" if proof.stricter else ""
    if proof.errno_only:
        extra += f"; {proof.errno_only} with another errno"
    return _check(control, True, want, actual,
                  f"{who}no call is allowed beyond the profile ({proof.cases} syscall and argument classes on "
                  f"{where}){extra}")


def _seccomp_checks(ev: Evidence) -> list[Check]:
    exp, state = ev.expected, ev.state
    if not exp.seccomp:
        actual = f"mode {state.seccomp_mode}, {state.seccomp_filters} filters"
        return [_check("seccomp", None, "no filter", actual, "the config sets no seccomp filter")]
    if ev.seccomp is None:
        return [_seccomp_count_check(exp, state)]
    return [seccomp_content(exp.seccomp_section, ev.seccomp)]


def _idmap_checks(exp: Expected, state: ProcState) -> list[Check]:
    out = []
    for control, want, have in (("user.uid_map", exp.uid_mappings, state.uid_map),
                                ("user.gid_map", exp.gid_mappings, state.gid_map)):
        if not exp.new_user_namespace:
            why = ("the container joins a user namespace by path" if "user" in exp.namespaces
                   else "no user namespace requested")
            out.append(_check(control, None, "(no user namespace)", _maps(have), why))
            continue
        ok = sorted(want) == sorted(have)
        out.append(_check(control, ok, _maps(want), _maps(have),
                          "mappings as configured" if ok else "the kernel's mappings differ from the config's"))
    return out


def _namespace_checks(exp: Expected, state: ProcState, host: Mapping[str, int],
                      namespace_paths: Mapping[str, int]) -> list[Check]:
    out = []
    for kind, proc_name in NAMESPACE_PROC_NAMES.items():
        control = f"namespaces.{kind}"
        mine = state.namespaces.get(proc_name)
        theirs = host.get(proc_name)
        if mine is None:
            out.append(_check(control, None, "", "unknown", f"the kernel has no {proc_name} namespace link"))
            continue
        if kind in exp.namespaces and exp.namespaces[kind]:
            path = exp.namespaces[kind]
            assert path is not None
            target = namespace_paths.get(path)
            if target is None:
                out.append(_check(control, None, f"joined {path}", str(mine),
                                  f"the namespace at {path} could not be read"))
            else:
                ok = mine == target
                out.append(_check(control, ok, f"{target} ({path})", str(mine),
                                  f"joined the {kind} namespace at {path}" if ok
                                  else f"not in the {kind} namespace at {path}"))
            continue
        if theirs is None:
            out.append(_check(control, None, "", str(mine), f"the host's {kind} namespace could not be read"))
            continue
        if kind in exp.namespaces:
            ok = mine != theirs
            out.append(_check(control, ok, f"not the host's ({theirs})", str(mine),
                              f"its own {kind} namespace" if ok else f"shares the host's {kind} namespace"))
        else:
            ok = mine == theirs
            out.append(_check(control, ok, f"the host's ({theirs})", str(mine),
                              f"the host's {kind} namespace, as configured (none requested)" if ok
                              else f"has its own {kind} namespace, which the config does not request"))
    return out


def _mount_desc(m: MountEntry) -> str:
    src = f"{m.fs_type}:{m.root}" if m.root != "/" else m.fs_type
    return f"{src} {','.join(m.options)}"


def _filesystem_checks(exp: Expected, state: ProcState, absent: Collection[str]) -> list[Check]:
    out = []
    absent = {_norm(p) for p in absent}
    root = state.mount_at("/")
    actual = _mount_desc(root) if root else "(no mount at /)"
    if not exp.readonly_root:
        out.append(_check("filesystem.readonly_root", None, "not required", actual, "root.readonly is not set"))
    else:
        ok = root is not None and "ro" in root.options
        out.append(_check("filesystem.readonly_root", ok, "ro", actual,
                          "the root filesystem is mounted read-only" if ok else "the root filesystem is writable"))
    for path in exp.masked_paths:
        control = f"filesystem.masked:{path}"
        m = state.mount_at(path)
        if m is None:
            if path in absent:
                out.append(_check(control, None, "masked", "absent", "absent in the container (runc skips it)"))
            else:
                out.append(_check(control, False, "masked", "not mounted", f"{path} is visible, not masked"))
            continue
        masked = m.fs_type == "tmpfs" or posixpath.basename(m.root) == "null"
        kind = "/dev/null bound over it" if posixpath.basename(m.root) == "null" else f"{m.fs_type} over it"
        out.append(_check(control, masked, "masked", _mount_desc(m),
                          kind if masked else f"a {m.fs_type} mount is there, which does not mask it"))
    for path in exp.readonly_paths:
        control = f"filesystem.readonly:{path}"
        m = state.mount_at(path)
        if m is None:
            if path in absent:
                out.append(_check(control, None, "ro", "absent", "absent in the container (runc skips it)"))
            else:
                out.append(_check(control, False, "ro", "not mounted", f"{path} has no read-only mount"))
            continue
        ok = "ro" in m.options
        out.append(_check(control, ok, "ro", _mount_desc(m), "mounted read-only" if ok else "mounted writable"))
    return out


def _where(limits: CgroupLimits, ctrl: str) -> str:
    v, p = limits.versions.get(ctrl), limits.paths.get(ctrl)
    return f" [{v} {p}]" if v and p else ""


def _memory_check(exp: Expected, limits: CgroupLimits) -> Check:
    control, have, want = "resources.memory", limits.memory_limit, exp.memory_limit
    if want is None:
        return _check(control, None, "no limit", _bytes(have), "the config sets no memory limit")
    if "memory" in limits.unavailable:
        return _check(control, False, _bytes(want), "unknown",
                      f"cannot read the memory limit: {limits.unavailable['memory']}")
    if have is None:
        ok, detail = False, "no memory limit is set"
    elif have == want:
        ok, detail = True, "as configured"
    elif 0 <= want - have < _MAX_PAGE and have % 4096 == 0:
        ok, detail = True, "as configured, rounded down to a whole page"
    else:
        ok, detail = False, "the limit differs from the config's"
    return _check(control, ok, _bytes(want), _bytes(have), detail + _where(limits, "memory"))


def _pids_check(exp: Expected, limits: CgroupLimits) -> Check:
    control, have, want = "resources.pids", limits.pids_max, exp.pids_limit
    shown = "max" if have is None else str(have)
    if want is None:
        return _check(control, None, "no limit", shown, "the config sets no pids limit")
    if "pids" in limits.unavailable:
        return _check(control, False, str(want), "unknown",
                      f"cannot read the pids limit: {limits.unavailable['pids']}")
    ok = have == want
    detail = ("as configured" if ok else "no pids limit is set" if have is None
              else "the limit differs from the config's")
    return _check(control, ok, str(want), shown, detail + _where(limits, "pids"))


def _cpu_check(exp: Expected, limits: CgroupLimits) -> Check:
    control, quota, period = "resources.cpu", limits.cpu_quota, limits.cpu_period
    shown = f"{'max' if quota is None else quota} {period}"
    if exp.cpu_quota is None:
        return _check(control, None, "no quota", shown, "the config sets no CPU quota")
    if "cpu" in limits.unavailable:
        return _check(control, False, str(exp.cpu_quota), "unknown",
                      f"cannot read the CPU quota: {limits.unavailable['cpu']}")
    want = f"{exp.cpu_quota} {exp.cpu_period if exp.cpu_period else '(period not set)'}"
    if quota is None:
        ok, detail = False, "no CPU quota is set"
    else:
        # runc leaves the period alone when the config sets none
        ok = quota == exp.cpu_quota and (exp.cpu_period is None or period == exp.cpu_period)
        detail = "as configured" if ok else "the quota or period differs from the config's"
        if ok and exp.cpu_period is None and period not in (None, _DEFAULT_CFS_PERIOD):
            detail += f" (period {period}, not the default {_DEFAULT_CFS_PERIOD})"
    return _check(control, ok, want, shown, detail + _where(limits, "cpu"))


def _capabilities(ev: Evidence) -> list[Check]:
    return _capability_checks(ev.expected, ev.state, ev.cap_last_cap)


def _no_new_privileges(ev: Evidence) -> list[Check]:
    return [_nnp_check(ev.expected, ev.state)]


def _user_ids(ev: Evidence) -> list[Check]:
    ranged = id_range_check(ev.expected.annotations, ev.state)
    return [*_idmap_checks(ev.expected, ev.state), *([ranged] if ranged else [])]


def _namespaces(ev: Evidence) -> list[Check]:
    return _namespace_checks(ev.expected, ev.state, ev.host_namespaces, ev.namespace_paths)


def _filesystem(ev: Evidence) -> list[Check]:
    return _filesystem_checks(ev.expected, ev.state, ev.absent_paths)


def _resources(ev: Evidence) -> list[Check]:
    return [_memory_check(ev.expected, ev.limits), _pids_check(ev.expected, ev.limits),
            _cpu_check(ev.expected, ev.limits)]


def _proc_name(p: OtherProcess) -> str:
    return f"pid {p.state.pid}" + (f" ({p.comm})" if p.comm else "")


def _processes(ev: Evidence) -> list[Check]:
    """The container's other processes (runc exec, children): none may hold more than the profile allows."""
    if ev.processes is None:
        return []
    exp, procs = ev.expected, ev.processes
    n = f"{len(procs)} other process(es)"
    ceiling = set(exp.capabilities.get("bounding", ()))
    over = []
    for p in procs:
        extra = set().union(*(set(p.state.capability_set(s)) for s in CAPABILITY_SETS)) - ceiling
        if extra:
            over.append(f"{_proc_name(p)}: {_names(extra)}")
    out = [_check("processes.capabilities", not over, f"within {_names(ceiling)}", n,
                  "no process holds a capability beyond the profile's bounding set" if not over
                  else f"capabilities beyond the profile: {_listing(over)}")]
    if exp.no_new_privileges:
        bad = [_proc_name(p) for p in procs if p.state.no_new_privs is False]
        out.append(_check("processes.no_new_privileges", not bad, "1", n,
                          "every process has NoNewPrivs" if not bad else f"NoNewPrivs is 0 in {_listing(bad)}"))
    own = [k for k in NAMESPACE_PROC_NAMES if k in exp.namespaces and not exp.namespaces[k]]
    shared = []
    for p in procs:
        kinds = [k for k in own if p.state.namespaces.get(NAMESPACE_PROC_NAMES[k]) is not None
                 and p.state.namespaces.get(NAMESPACE_PROC_NAMES[k]) == ev.host_namespaces.get(NAMESPACE_PROC_NAMES[k])]
        if kinds:
            shared.append(f"{_proc_name(p)}: {', '.join(kinds)}")
    out.append(_check("processes.namespaces", not shared, "the container's own", n,
                      "no process is in a host namespace the container should not share" if not shared
                      else f"in the host's namespaces: {_listing(shared)}"))
    if exp.seccomp:
        bad_seccomp = []
        for p in procs:
            if p.seccomp is None:
                continue
            c = seccomp_content(exp.seccomp_section, p.seccomp, "processes.seccomp", f"{_proc_name(p)}: ")
            if c.status == "FAIL":
                bad_seccomp.append(c.detail)
        out.append(_check("processes.seccomp", not bad_seccomp, _section_text(exp.seccomp_section), n,
                          "every process's filters are within the profile" if not bad_seccomp
                          else " || ".join(bad_seccomp)))
    return out


# The controls, one function each, in report order.  A control added later (its own function over
# `Evidence`) is appended here.
def _network(ev: Evidence) -> list[Check]:
    checked = network_check(ev.expected.annotations, ev.facts.get(NFT_RULESET))
    return [checked] if checked else []


CONTROLS: list[Callable[[Evidence], list[Check]]] = [
    _capabilities, _no_new_privileges, _seccomp_checks, _user_ids, _namespaces, _filesystem, _resources,
    _processes, _network,
]


def check_all(ev: Evidence) -> list[Check]:
    """One check per control, in a stable order."""
    return [c for control in CONTROLS for c in control(ev)]


def compare(expected: Expected, state: ProcState, limits: CgroupLimits, host_namespaces: Mapping[str, int], *,
            absent_paths: Collection[str] = (), namespace_paths: Mapping[str, int] | None = None,
            cap_last_cap: int | None = None, seccomp: SeccompFilters | None = None,
            processes: tuple[OtherProcess, ...] | None = None) -> list[Check]:
    """One check per control, in a stable order.

    `host_namespaces`: /proc/self/ns name -> inode of the namespaces runc would inherit.
    `absent_paths`: masked/read-only paths that do not exist in the container
    (runc skips those, so they are reported SKIP rather than FAIL).
    `namespace_paths`: namespace path named in the config -> its inode.
    `cap_last_cap`: /proc/sys/kernel/cap_last_cap; capabilities beyond it cannot be held.
    `seccomp`: init's installed filters (proved by content); None checks only that one is installed.
    `processes`: the container's other processes, each checked against the same ceiling.
    """
    return check_all(Evidence(expected, state, limits, host_namespaces, frozenset(absent_paths),
                              namespace_paths or {}, cap_last_cap, seccomp, processes))


def id_range_check(annotations: Mapping[str, Any], state: ProcState) -> Check | None:
    """The host id range sandbox-runc allocated (`;userns=START:SIZE` in the `.applied` annotation) is what
    the kernel maps container id 0 onwards to, for uids and gids; None when none was allocated."""
    recorded = next((v.split(";userns=", 1)[1] for k, v in annotations.items()
                     if k.endswith(".applied") and isinstance(v, str) and ";userns=" in v), None)
    if recorded is None:
        return None
    start, _, size = recorded.partition(":")
    want = ((0, int(start), int(size)),) if start.isdigit() and size.isdigit() else ()
    ok = bool(want) and tuple(state.uid_map) == want and tuple(state.gid_map) == want
    actual = f"uid {_maps(state.uid_map)}, gid {_maps(state.gid_map)}"
    return _check("user.id_range", ok, _maps(want) or recorded, actual,
                  "the range allocated from the operator's pool" if ok else
                  "the kernel's mappings are not the range sandbox-runc allocated and recorded")


def failed(checks: Collection[Check]) -> list[Check]:
    return [c for c in checks if c.status == "FAIL"]


def summary(checks: Collection[Check]) -> str:
    n = {s: sum(1 for c in checks if c.status == s) for s in ("PASS", "FAIL", "SKIP")}
    return f"{n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped"


def format_text(checks: Collection[Check]) -> str:
    """One `STATUS control: detail` line per check."""
    return "\n".join(f"{c.status} {c.control}: {c.detail}" for c in checks)


def to_json(checks: Collection[Check]) -> list[dict[str, str]]:
    return [c.to_dict() for c in checks]


def network_check(annotations: Mapping[str, Any], listing: dict[str, Any] | None) -> Check | None:
    """The live nftables rules of the container's network namespace against the ruleset its config's
    `annotations` carry; None when they carry none (no network section in the profile, or a pod
    member, which joins its pod's namespace and the rules of the pod's sandbox container).

    `listing`: `nft -j list ruleset` run inside that namespace (read by the edge), None when it
    could not be read.  Handles and counter values are ignored; any other difference fails.
    """
    from .. import _fastjson
    from . import netrules

    text = annotations.get(netrules.ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        want = netrules.normalize(_fastjson.loads(text))
    except ValueError:
        return Check("network", "FAIL", "a readable ruleset", "unreadable", f"the {netrules.ANNOTATION} annotation "
                     "is not a ruleset")
    shown = f"table inet sandbox, sha256 {netrules.digest(_fastjson.loads(text))[:16]}"
    if listing is None:
        return Check("network", "FAIL", shown, "unreadable", "the container's rules could not be read")
    got = netrules.normalize(listing)
    if got == want:
        rules = sum(len(r) for _, r in want.values())
        return Check("network", "PASS", shown, "the same rules", f"{rules} rules in force in the kernel")
    if not netrules.has_table(listing):
        return Check("network", "FAIL", shown, "no table", "no table inet sandbox in the container's network namespace")
    for chain in sorted(set(want) | set(got)):
        if want.get(chain) != got.get(chain):
            return Check("network", "FAIL", shown, "other rules", f"chain {chain} differs from the profile's")
    return Check("network", "FAIL", shown, "other rules", "the rules differ from the profile's")
