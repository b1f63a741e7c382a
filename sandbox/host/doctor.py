"""`sandbox doctor`: what this host supports, what it lacks, and what that means for the profiles.

Two halves.  The probes (edge) read the host once and return plain data: runc and its known CVEs,
cgroups, namespaces, user namespaces and subordinate ids, idmapped mounts (a real
open_tree + mount_setattr), seccomp, LSMs, Landlock, nftables, the engines and whether they run
sandbox-runc, the operator config, the audit log's directory, the daemon.  `assess` (pure) holds
that against what each profile needs (`profile_needs`, read from the profile itself, not from its
name) and gives every check a status and a sentence about the profiles, plus the verdict: a
profile that needs something missing here cannot be enforced; `sandbox doctor` exits 1 when that
is the default profile.

Doctor only reads: it creates nothing sandbox would create at first use (audit or cache
directories), runs engines only with --version, and reads engine configuration files as files.
"""

from __future__ import annotations

import os
import subprocess

from .._record import field, record, replace
from .engines import last_flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from ..core.profile import Profile
    from .opconfig import OperatorConfig


# status, from best to worst: what `assess` gives a check
OK, NOTE, WARN, MISSING, FAIL = "ok", "note", "warn", "missing", "fail"
_RANK = {OK: 0, NOTE: 1, WARN: 2, MISSING: 3, FAIL: 4}

# SCMP_ACT_* -> the kernel's name in /proc/sys/kernel/seccomp/actions_avail
KERNEL_ACTIONS = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_LOG": "log", "SCMP_ACT_NOTIFY": "user_notif",
                  "SCMP_ACT_TRACE": "trace", "SCMP_ACT_ERRNO": "errno", "SCMP_ACT_TRAP": "trap",
                  "SCMP_ACT_KILL": "kill_thread", "SCMP_ACT_KILL_THREAD": "kill_thread",
                  "SCMP_ACT_KILL_PROCESS": "kill_process"}
# runtime-spec namespace type -> /proc/PID/ns name
NS_PROC = {"pid": "pid", "ipc": "ipc", "uts": "uts", "mount": "mnt", "network": "net", "user": "user",
           "cgroup": "cgroup", "time": "time"}
# profile resource limit -> the cgroup controller that enforces it
LIMIT_CONTROLLERS = {"memory": "memory", "pids": "pids", "cpu": "cpu"}
ENGINES = ("podman", "containerd", "docker")
SHIM = "sandbox-runc"


@record
class Check:
    """One line of the report: what was found, and (after `assess`) its status and meaning."""

    name: str
    found: str
    # feature -> why it is not available here / why it is only partly available
    missing: dict[str, str] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # worth acting on whatever the profiles need
    note: str = ""  # what it means when no profile needs anything this check covers
    covers: tuple[str, ...] = ()  # feature prefixes this check answers for ("cgroup:", "runc")
    data: dict[str, Any] = field(default_factory=dict)
    status: str = OK
    impact: str = ""


@record
class Report:
    checks: tuple[Check, ...]
    default_profile: str
    # profile -> the reasons it cannot be enforced here ([] = it can)
    unmet: dict[str, list[str]]
    degraded: dict[str, list[str]]
    summary: str

    @property
    def exit_code(self) -> int:
        return 1 if self.unmet.get(self.default_profile) else 0

    @property
    def attention(self) -> bool:
        """Something is missing or worth a look (the demo prints the summary line first then)."""
        return any(_RANK[c.status] >= _RANK[WARN] for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "default_profile": self.default_profile,
            "exit_code": self.exit_code,
            "profiles": {p: {"enforceable": not r, "unmet": r, "degraded": self.degraded.get(p, [])}
                         for p, r in self.unmet.items()},
            "checks": [{"name": c.name, "status": c.status, "found": c.found, "impact": c.impact,
                        "warnings": list(c.warnings), "data": c.data} for c in self.checks],
        }


# ---------------------------------------------------------------------------------------------------------
# What a profile needs from the host (pure)
# ---------------------------------------------------------------------------------------------------------

def seccomp_actions(profile: Profile, runtime_default: dict[str, Any] | None = None) -> set[str]:
    """The SCMP_ACT_* actions the profile's filter can contain (its base list, its rules, its default)."""
    pol = profile.seccomp
    if pol.base == "none" and not pol.deny and not pol.rules:
        return set()
    base = pol.base_profile if pol.base_profile is not None else (
        runtime_default if pol.base == "runtime-default" else None)
    acts = {pol.default_action}
    if pol.deny:
        acts.add("SCMP_ACT_ERRNO")
    for entry in [*((base or {}).get("syscalls") or []), *pol.rules]:
        if isinstance(entry, dict) and isinstance(entry.get("action"), str):
            acts.add(entry["action"])
    if isinstance((base or {}).get("defaultAction"), str):
        acts.add(base["defaultAction"])  # type: ignore[index]
    return acts


def profile_needs(profile: Profile, runtime_default: dict[str, Any] | None = None) -> dict[str, str]:
    """feature -> what the profile uses it for.  Features: runc, audit, opconfig, ns:KIND, userns,
    seccomp:ACTION (kernel name), cgroup:CONTROLLER, swap, lsm:apparmor, lsm:selinux."""
    needs = {"runc": "runc starts its containers",
             "audit": "its decisions are written to the audit log before runc runs",
             "opconfig": "sandbox-runc reads the operator config on every create"}
    kinds = set(profile.namespaces.required)
    if profile.user.user_namespace == "required":
        kinds.add("user")
    for kind in sorted(kinds):
        needs[f"ns:{kind}"] = f"private {kind} namespace"
    if "user" in kinds:
        maps = profile.user.uid_mappings
        where = (f" (root inside is host uid {maps[0].host_id})" if maps[0].container_id == 0 else "") if maps \
            else " (root inside gets a 65536-id host range of its own from the operator's id_pool)"
        needs["userns"] = f"a user namespace{where}"
    for act in sorted(seccomp_actions(profile, runtime_default)):
        kernel = KERNEL_ACTIONS.get(act, act)
        needs[f"seccomp:{kernel}"] = f"seccomp action {act}"
    for limit, ctrl in LIMIT_CONTROLLERS.items():
        lim = getattr(profile.resources, limit)
        if lim.max is not None or lim.default is not None:
            needs[f"cgroup:{ctrl}"] = f"its {limit} limit"
            if limit == "memory":
                needs["swap"] = "swap bounded by its memory limit"
    uses = [w for w, on in (("complain mode's syscall records", profile.mode == "complain"),
                            ("its exec trail", profile.monitor.exec_trail),
                            ("its recorded denials", profile.monitor.denials)) if on]
    if uses:
        needs["agent"] = f"the sandbox agent ({', '.join(uses)})"
        needs["seccomp:user_notif"] = "seccomp user notification (the routes to the agent)"
    if profile.lsm.apparmor:
        needs["lsm:apparmor"] = f"AppArmor profile {profile.lsm.apparmor!r}"
    if profile.lsm.selinux:
        needs["lsm:selinux"] = f"SELinux label {profile.lsm.selinux!r}"
    return needs


# ---------------------------------------------------------------------------------------------------------
# Assessment (pure)
# ---------------------------------------------------------------------------------------------------------

def _names(profiles: Iterable[str]) -> str:
    ps = list(profiles)
    return ps[0] if len(ps) == 1 else ", ".join(ps[:-1]) + " and " + ps[-1]


# "private pid namespace", "private ipc namespace" -> "private pid and ipc namespaces"
_GROUPS = (("private ", " namespace", "private ", " namespaces"),
           ("seccomp action ", "", "seccomp actions ", ""),
           ("its ", " limit", "its ", " limits"))


def _phrase(whys: Iterable[str]) -> str:
    groups: dict[int, list[str]] = {}
    rest: list[str] = []
    for w in whys:
        for i, (pre, suf, _, _) in enumerate(_GROUPS):
            if w.startswith(pre) and w.endswith(suf) and " " not in w[len(pre):len(w) - len(suf)]:
                groups.setdefault(i, []).append(w[len(pre):len(w) - len(suf)])
                break
        else:
            rest.append(w)
    out = []
    for i, items in sorted(groups.items()):
        pre, suf, pre_n, suf_n = _GROUPS[i]
        out.append(f"{pre}{items[0]}{suf}" if len(items) == 1 else f"{pre_n}{_names(items)}{suf_n}")
    return ", ".join(out + rest)


def _covered(check: Check, feature: str) -> bool:
    return any(feature == c or (c.endswith(":") and feature.startswith(c)) for c in check.covers)


def assess(checks: Iterable[Check], needs: dict[str, dict[str, str]], default_profile: str) -> Report:
    """Statuses, impact sentences and the per-profile verdict for `checks` against `needs`
    (profile name -> profile_needs()).  The default profile is among `needs`."""
    out: list[Check] = []
    unmet: dict[str, list[str]] = {p: [] for p in needs}
    degraded: dict[str, list[str]] = {p: [] for p in needs}
    for c in checks:
        users: dict[str, list[str]] = {}  # profile -> what it uses from this check
        blocked: dict[str, list[str]] = {}
        weak: dict[str, list[str]] = {}
        for prof, feats in needs.items():
            for feat, why in feats.items():
                if not _covered(c, feat):
                    continue
                users.setdefault(prof, []).append(why)
                if feat in c.missing:
                    blocked.setdefault(prof, []).append(f"{why}: {c.missing[feat]}")
                elif feat in c.degraded:
                    weak.setdefault(prof, []).append(f"{why}: {c.degraded[feat]}")
        for prof, reasons in blocked.items():
            unmet[prof].extend(f"{c.name}: {r}" for r in reasons)
        for prof, reasons in weak.items():
            degraded[prof].extend(f"{c.name}: {r}" for r in reasons)
        if default_profile in blocked:
            status = FAIL
        elif blocked:
            status = MISSING
        elif weak or c.warnings:
            status = WARN
        elif c.missing or c.degraded:
            status = NOTE  # something is absent, but no profile here needs it
        else:
            status = OK
        parts = []
        if blocked:
            parts.append("; ".join(f"{p} cannot be enforced ({'; '.join(r)})" for p, r in blocked.items()))
        if weak:
            parts.append("; ".join(f"{p} runs without part of it ({'; '.join(r)})" for p, r in weak.items()))
        fine: dict[tuple[str, ...], list[str]] = {}  # profiles that need the same things, together
        for p in users:
            if p not in blocked and p not in weak:
                fine.setdefault(tuple(sorted(users[p])), []).append(p)
        if fine:
            parts.append("; ".join(f"{_names(ps)}: {_phrase(whys)}" for whys, ps in fine.items()) + " — available")
        if c.note:
            parts.append(c.note)
        parts.extend(c.warnings)
        out.append(replace(c, status=status, impact="; ".join(parts)))
    return Report(tuple(out), default_profile, unmet, degraded, _summary(out, unmet, default_profile))


def _summary(checks: list[Check], unmet: dict[str, list[str]], default_profile: str) -> str:
    ok = [p for p, r in unmet.items() if not r]
    bad = [p for p, r in unmet.items() if r]
    counts = {s: sum(1 for c in checks if c.status == s) for s in (WARN, NOTE)}
    tail = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    if not bad:
        head = f"{_names(ok)} can be enforced here (default profile: {default_profile})"
    else:
        first = {p: unmet[p][0] for p in bad}
        why = "; ".join(f"{p}: {r}" for p, r in first.items())
        can = f"; {_names(ok)} can" if ok else ""
        head = f"{_names(bad)} cannot be enforced here ({why}){can}"
        if default_profile in bad:
            head = f"the default profile {default_profile} cannot be enforced here: " + head
    return f"sandbox doctor: {head}" + (f"; {tail}" if tail else "") + (
        "; run `sandbox doctor` for details" if bad or counts[WARN] else "")


# ---------------------------------------------------------------------------------------------------------
# runc and its known CVEs
# ---------------------------------------------------------------------------------------------------------

def runc_cves(version: str, package: str | None) -> list[dict[str, Any]] | None:
    """The known CVEs of this runc: the one place doctor asks.

    Returns one dict per CVE the table knows, `{"id": "CVE-…", "affected": True | False | None,
    "mitigation": "what sandbox does about it under restricted/strict" | None}`, judged for the
    upstream `version` (1.1.5+ds1) and the distribution package (Debian 1.1.5+ds1-1+deb12u1,
    whose backports matter), from the runc CVE table (sandbox/core/runc_cves.py, docs/security.md).
    """
    from ..core.runc_cves import status

    return [{"id": cve.id, "affected": verdict == "affected", "mitigation": cve.mitigation or None}
            for cve, verdict in status(version, package)]


def cve_summary(findings: list[dict[str, Any]] | None) -> tuple[str, list[str]]:
    """(a phrase for the runc line, warnings) from runc_cves()."""
    if findings is None:
        return "known-CVE status: unknown (no runc CVE table in this build; see docs/security.md)", []
    affected = [f for f in findings if f.get("affected")]
    unknown = [f["id"] for f in findings if f.get("affected") is None]
    if not affected and not unknown:
        return f"none of the {len(findings)} known runc CVEs affects this build", []
    # the table says "partial: …" where sandbox narrows a flaw without closing it
    partly = [f["id"] for f in affected if (f.get("mitigation") or "").startswith("partial")]
    mitigated = [f["id"] for f in affected if f.get("mitigation") and f["id"] not in partly]
    bare = [f["id"] for f in affected if not f.get("mitigation")]
    parts = []
    if mitigated:
        parts.append(f"affected by {', '.join(mitigated)}, mitigated by sandbox (runc_mitigations, on in every "
                     "built-in profile)")
    if partly:
        parts.append(f"affected by {', '.join(partly)}, only partly mitigated by sandbox")
    if bare:
        parts.append(f"affected by {', '.join(bare)} with no mitigation in sandbox")
    if unknown:
        parts.append(f"not established for {', '.join(unknown)}")
    warnings = [f"upgrade runc: {', '.join(bare)} affect it and sandbox cannot mitigate them"] if bare else []
    if partly:
        warnings.append(f"upgrade runc: sandbox only narrows {', '.join(partly)} (docs/security.md)")
    return "; ".join(parts), warnings


def parse_runc_version(text: str) -> dict[str, str]:
    """`runc --version` -> {"version": "1.1.5+ds1", "commit": ..., "spec": ..., "go": ..., "libseccomp": ...}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if line.startswith("runc version "):
            out["version"] = line[len("runc version "):].strip()
        elif sep and key.strip() in ("commit", "spec", "go", "libseccomp"):
            out[key.strip()] = val.strip()
    return out


def version_tuple(v: str) -> tuple[int, ...]:
    nums = []
    for part in v.split("+")[0].split("-")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        nums.append(int(digits))
    return tuple(nums)


def _run(argv: list[str], timeout: float = 10.0) -> str | None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def debian_package(path: str, info_dir: str = "/var/lib/dpkg/info") -> tuple[str, str] | None:
    """(package, version) that installed `path`, from dpkg's database; None off Debian or if no package owns it."""
    real = os.path.realpath(path)
    name = os.path.basename(real)
    pkg = None
    for lst in (f"{name}.list", *(f for f in _listdir(info_dir) if f.startswith(f"{name}:") and f.endswith(".list"))):
        text = _read(os.path.join(info_dir, lst))  # the package named like the binary first: no full scan
        if text and {path, real} & set(text.splitlines()):
            pkg = lst[: -len(".list")]
            break
    if pkg is None:
        owner = _run(["dpkg-query", "-S", real]) or _run(["dpkg-query", "-S", path])  # usrmerge: /bin vs /usr/bin
        if not owner or ":" not in owner:
            return None
        pkg = owner.split(": ", 1)[0].strip()
    ver = _run(["dpkg-query", "-W", "-f", "${Version}", pkg])
    return (pkg, ver.strip()) if ver else None


def check_runc(op: OperatorConfig | None) -> Check:
    from ..errors import SandboxError
    from .runc import find_runc

    covers = ("runc",)
    try:
        path = find_runc(op.runc if op else None)
    except SandboxError as e:
        return Check("runc", "not found", missing={"runc": str(e)}, covers=covers, data={"error": str(e)})
    text = _run([path, "--version"])
    if text is None:
        return Check("runc", f"{path}: `runc --version` failed", covers=covers,
                     missing={"runc": f"{path} does not run"}, data={"path": path})
    info = parse_runc_version(text)
    version = info.get("version", "")
    deb = debian_package(path)
    data: dict[str, Any] = {"path": path, **info, "package": None}
    found = f"{path}: runc {version or '?'}"
    if deb:
        data["package"] = {"name": deb[0], "version": deb[1]}
        found += f" (Debian package {deb[0]} {deb[1]})"
    if info.get("libseccomp"):
        found += f", libseccomp {info['libseccomp']}"
    findings = runc_cves(version, deb[1] if deb else None)
    phrase, warnings = cve_summary(findings)
    data["cves"] = findings
    if version and version_tuple(version) < (1, 1):
        warnings.append(f"sandbox is built against runc 1.1's flags and behaviour; {version} is older")
    elif not version:
        warnings.append("cannot tell runc's version from `runc --version`")
    return Check("runc", f"{found}; {phrase}", warnings=tuple(warnings), covers=covers, data=data)


# ---------------------------------------------------------------------------------------------------------
# cgroups, namespaces, user namespaces
# ---------------------------------------------------------------------------------------------------------

def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cgroup_controllers(proc_cgroups: str | None, mountinfo: str | None, version: str,
                       root_controllers: str | None) -> dict[str, str]:
    """controller -> where it can be used ("v1 /sys/fs/cgroup/memory", "v2"), for the enabled ones."""
    from .inspect import parse_mountinfo

    out: dict[str, str] = {}
    if version in ("v1", "hybrid"):
        enabled = set()
        for line in (proc_cgroups or "").splitlines():
            f = line.split()
            if len(f) == 4 and not line.startswith("#") and f[3] == "1":
                enabled.add(f[0])
        for m in parse_mountinfo(mountinfo or "") if mountinfo else ():
            if m.fs_type == "cgroup":
                for opt in m.super_options:
                    if opt in enabled and opt not in out:
                        out[opt] = f"v1 {m.mount_point}"
    if version in ("v2", "hybrid"):
        for name in (root_controllers or "").split():
            out.setdefault(name, "v2")
    return out


def check_cgroups(root: str = "/sys/fs/cgroup") -> Check:
    from .probe import cgroup_version, swap_accounting

    version = cgroup_version(root)
    unified = os.path.join(root, "unified") if version == "hybrid" else root
    root_ctrls = _read(os.path.join(unified, "cgroup.controllers")) if version != "v1" else None
    ctrls = cgroup_controllers(_read("/proc/cgroups"), _read("/proc/self/mountinfo"), version, root_ctrls)
    swap = swap_accounting(root)
    missing = {f"cgroup:{c}": f"the {c} controller is not enabled and mounted" for c in
               LIMIT_CONTROLLERS.values() if c not in ctrls}
    degraded = {} if swap else {"swap": "no swap accounting in the memory cgroup (memory.memsw.* absent): "
                                        "swap use is not bounded"}
    v1 = sorted(c for c, w in ctrls.items() if w.startswith("v1"))
    v2 = sorted(c for c, w in ctrls.items() if w == "v2")
    if version == "hybrid":
        found = (f"hybrid: v1 controllers {' '.join(v1) or 'none'}; v2 tree at {unified} with "
                 f"{'controllers ' + ' '.join(v2) if v2 else 'no controllers'}")
    elif version == "v1":
        found = f"v1: controllers {' '.join(v1) or 'none'}"
    else:
        found = f"v2 (unified): controllers {' '.join(v2) or 'none'}"
    found += "; swap accounting " + ("yes" if swap else "no")
    return Check("cgroups", found, missing=missing, degraded=degraded, covers=("cgroup:", "swap"),
                 data={"version": version, "controllers": ctrls, "swap_accounting": swap})


def check_namespaces(proc: str = "/proc") -> Check:
    try:
        have = set(os.listdir(os.path.join(proc, "self", "ns")))
    except OSError as e:
        have = set()
        err = e.strerror
    else:
        err = None
    missing = {f"ns:{kind}": f"this kernel has no {name} namespaces" for kind, name in NS_PROC.items()
               if name not in have}
    kinds = sorted(k for k, n in NS_PROC.items() if n in have)
    found = ("available: " + " ".join(kinds)) if kinds else f"cannot list {proc}/self/ns ({err})"
    return Check("namespaces", found, missing=missing, covers=("ns:",), data={"available": kinds})


def parse_subid(text: str | None) -> list[dict[str, Any]]:
    out = []
    for line in (text or "").splitlines():
        f = line.strip().split(":")
        if len(f) == 3 and not line.startswith("#") and f[1].isdigit() and f[2].isdigit():
            out.append({"user": f[0], "start": int(f[1]), "count": int(f[2])})
    return out


def check_userns(profile_maps: dict[str, tuple[int, int]], proc: str = "/proc",
                 etc: str = "/etc") -> Check:
    """`profile_maps`: profile -> (first host uid, count) of the id mapping it gives a user namespace."""
    raw = _read(os.path.join(proc, "sys", "user", "max_user_namespaces"))
    maxns = int(raw) if raw and raw.strip().isdigit() else None
    subuid = parse_subid(_read(os.path.join(etc, "subuid")))
    subgid = parse_subid(_read(os.path.join(etc, "subgid")))
    missing = {}
    if not os.path.exists(os.path.join(proc, "self", "ns", "user")):
        missing["userns"] = "the kernel has no user namespaces"
    elif maxns == 0:
        missing["userns"] = "user.max_user_namespaces is 0"
    warnings = []
    for prof, (start, count) in sorted(profile_maps.items()):
        for r in subuid:
            if r["start"] < start + count and start < r["start"] + r["count"]:
                warnings.append(f"{prof}'s host uids {start}-{start + count - 1} overlap {r['user']}'s /etc/subuid "
                                f"range {r['start']}-{r['start'] + r['count'] - 1}: that user's rootless containers "
                                "share host ids with these containers")

    def ranges(rs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['user']} {r['start']}+{r['count']}" for r in rs) or "no ranges"

    found = (f"max_user_namespaces {maxns if maxns is not None else 'unreadable'}; /etc/subuid: {ranges(subuid)}; "
             f"/etc/subgid: {ranges(subgid)}")
    note = ""
    if profile_maps and not warnings:
        spans = "; ".join(f"{p} maps root to host uids {s}-{s + n - 1}" for p, (s, n) in sorted(profile_maps.items()))
        note = f"{spans}, delegated to no user in /etc/subuid"
    return Check("user namespaces", found, missing=missing, warnings=tuple(warnings), note=note, covers=("userns",),
                 data={"max_user_namespaces": maxns, "subuid": subuid, "subgid": subgid})


# ---------------------------------------------------------------------------------------------------------
# Kernel features probed with system calls
# ---------------------------------------------------------------------------------------------------------

SYS_OPEN_TREE = 428  # the same number on every architecture since 5.1 (unified syscall table)
SYS_MOUNT_SETATTR = 442
SYS_LANDLOCK_CREATE_RULESET = 444
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
AT_FDCWD = -100
MOUNT_ATTR_IDMAP = 0x00100000
CLONE_NEWUSER = 0x10000000
LANDLOCK_CREATE_RULESET_VERSION = 1


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _syscall(nr: int, *args: Any) -> int:
    import ctypes

    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = int(libc.syscall(ctypes.c_long(nr), *args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def landlock_abi() -> tuple[int | None, str]:
    """The Landlock ABI version (landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)), or
    None and why not."""
    import ctypes
    import errno

    try:
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.c_void_p(None), ctypes.c_size_t(0),
                        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)), ""
    except OSError as e:
        why = {errno.ENOSYS: "the kernel has no Landlock (ENOSYS)",
               errno.EOPNOTSUPP: "Landlock is built in but disabled at boot (EOPNOTSUPP; lsm= on the kernel "
                                 "command line)"}.get(e.errno or 0, f"landlock_create_ruleset failed: {e.strerror}")
        return None, why


def check_landlock() -> Check:
    abi, why = landlock_abi()
    note = ("runc 1.1 and the built-in profiles do not use Landlock; a workload can still confine itself with it"
            if abi else "runc 1.1 and the built-in profiles do not use Landlock")
    found = f"ABI {abi} (landlock_create_ruleset version query)" if abi else f"absent: {why}"
    return Check("Landlock", found, note=note, missing={} if abi else {"landlock": why},
                 data={"abi": abi, "error": why or None})


def _mount_fs_type(path: str) -> str:
    from .inspect import parse_mountinfo

    real = os.path.realpath(path)
    best, fstype = "", "?"
    for m in parse_mountinfo(_read("/proc/self/mountinfo") or ""):
        mp = m.mount_point.rstrip("/") or "/"
        if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, fstype = mp, m.fs_type
    return fstype


def probe_idmapped_mount(directory: str | None = None) -> dict[str, Any]:
    """Really try it: clone a temporary directory's mount with open_tree(OPEN_TREE_CLONE) and give the
    detached copy an id mapping with mount_setattr(MOUNT_ATTR_IDMAP) from a fresh user namespace.
    The copy is never attached anywhere; closing its fd frees it.  Cleans up the directory and the child."""
    import ctypes
    import shutil
    import tempfile

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    tmp = tempfile.mkdtemp(prefix="sandbox-doctor-idmap-", dir=directory)
    result: dict[str, Any] = {"supported": False, "dir": os.path.dirname(tmp), "fs_type": _mount_fs_type(tmp),
                              "error": None}
    child, fds = 0, []
    try:
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        fds += [ready_r, ready_w, done_r, done_w]
        child = os.fork()
        if child == 0:  # pragma: no cover - the child: a user namespace to map ids from, until told to go
            try:
                ok = _libc().unshare(CLONE_NEWUSER) == 0
                os.write(ready_w, b"1" if ok else b"0")
                os.read(done_r, 1)
            finally:
                os._exit(0)
        if os.read(ready_r, 1) != b"1":
            raise OSError(0, "cannot create a user namespace")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child}/{name}", "w", encoding="ascii") as f:
                f.write("0 100000 65536\n")
        userns = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        fds.append(userns)
        tree = _syscall(SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(tmp)),
                        ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC))
        fds.append(tree)
        attr = MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns)
        _syscall(SYS_MOUNT_SETATTR, ctypes.c_int(tree), ctypes.c_char_p(b""), ctypes.c_uint(AT_EMPTY_PATH),
                 ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        result["supported"] = True
    except OSError as e:
        import errno

        result["error"] = {errno.ENOSYS: "the kernel has no open_tree/mount_setattr (ENOSYS)",
                           errno.EINVAL: f"{result['fs_type']} cannot be idmapped here (EINVAL)",
                           errno.EPERM: "not permitted (EPERM; needs root)"}.get(
                               e.errno or 0, e.strerror or str(e))
    finally:
        if child:
            try:
                os.write(fds[3], b"x")
            except OSError:
                pass
            os.waitpid(child, 0)
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def check_idmapped_mounts() -> Check:
    r = probe_idmapped_mount()
    where = f"a temporary directory on {r['fs_type']} in {r['dir']}"
    found = (f"supported (open_tree + mount_setattr MOUNT_ATTR_IDMAP on {where})" if r["supported"]
             else f"not available: {r['error']} (probed on {where})")
    note = ("runc 1.1 and the built-in profiles do not use them; newer runtimes map a shared rootfs into a "
            "user namespace with them instead of chown-ing a copy")
    return Check("idmapped mounts", found, note=note, data=r,
                 missing={} if r["supported"] else {"idmapped": str(r["error"])})


def check_seccomp(proc: str = "/proc") -> Check:
    avail_text = _read(os.path.join(proc, "sys", "kernel", "seccomp", "actions_avail"))
    status = _read(os.path.join(proc, "self", "status")) or ""
    has_filter = "Seccomp_filters:" in status or "Seccomp:" in status
    avail = avail_text.split() if avail_text else []
    if not avail:
        why = "seccomp is not available in this kernel" if not has_filter else \
            f"cannot read {proc}/sys/kernel/seccomp/actions_avail"
        missing = {f"seccomp:{a}": why for a in set(KERNEL_ACTIONS.values())}
        return Check("seccomp", why, missing=missing, covers=("seccomp:",), data={"actions_avail": []})
    missing = {f"seccomp:{a}": f"the kernel lacks the {a} action" for a in set(KERNEL_ACTIONS.values())
               if a not in avail}
    notif = "user_notif" in avail
    found = (f"filter mode; actions {' '.join(avail)}; user notification "
             f"{'available' if notif else 'not available'} (the sandbox agent's routes use it)")
    return Check("seccomp", found, missing=missing, covers=("seccomp:",),
                 data={"actions_avail": avail, "user_notif": notif})


def check_lsm() -> Check:
    from .probe import probe

    facts = probe()
    active = _read("/sys/kernel/security/lsm")
    config = None
    try:
        import gzip

        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("CONFIG_LSM="):
                    config = line.split("=", 1)[1].strip().strip('"')
                    break
    except OSError:
        pass
    missing = {}
    if not facts.apparmor:
        missing["lsm:apparmor"] = "AppArmor is not enabled on this host"
    if not facts.selinux:
        missing["lsm:selinux"] = "SELinux is not enabled on this host"
    found = (f"AppArmor {'enabled' if facts.apparmor else 'not enabled'}, "
             f"SELinux {'enabled' if facts.selinux else 'not enabled'}; active LSMs: "
             + (active.strip().replace(",", " ") if active else "unknown (securityfs is not mounted)")
             + (f"; built into the kernel: {config.replace(',', ' ')}" if config else ""))
    note = ("no built-in profile sets an AppArmor or SELinux label; a profile that does runs without it here, "
            "with a warning decision")
    # a label a profile asks for that this host cannot apply is skipped by the transform (a warning), not refused
    return Check("LSMs", found, degraded=missing, note=note, covers=("lsm:",),
                 data={"apparmor": facts.apparmor, "selinux": facts.selinux,
                       "active": active.strip().split(",") if active else None,
                       "config_lsm": config.split(",") if config else None})


def check_nftables() -> Check:
    import shutil

    nft = shutil.which("nft")
    if not nft:
        return Check("nftables", "nft not found (apt-get install nftables)", missing={"nftables": "no nft"},
                     note="the built-in profiles do not need it; network policies do", data={"nft": None})
    version = (_run([nft, "--version"]) or "").strip()
    listed = _run([nft, "-j", "list", "tables"])  # read-only: names of the host's tables
    kernel = listed is not None
    found = f"{version or 'nft'} at {nft}; kernel nf_tables: {'yes' if kernel else 'not usable'}"
    return Check("nftables", found, missing={} if kernel else {"nftables": "the kernel's nf_tables is not usable"},
                 note="the built-in profiles do not need it (a private, empty network namespace); network "
                      "policies do", data={"nft": nft, "version": version, "kernel": kernel})


# ---------------------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------------------

def points_at_shim(path: str | None) -> bool:
    """True if `path` (a runtime binary an engine is configured with) is sandbox-runc, by its resolved name."""
    if not path:
        return False
    import shutil

    full = path if "/" in path else shutil.which(path)
    return full is not None and os.path.basename(os.path.realpath(full)) == SHIM


def engine_processes() -> dict[str, list[dict[str, Any]]]:
    """Running engine daemons (containerd, dockerd, podman system service): pid and argv, via psutil."""
    import psutil

    names = {"containerd": "containerd", "dockerd": "docker", "podman": "podman"}
    out: dict[str, list[dict[str, Any]]] = {}
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        name = p.info.get("name") or ""
        cmd = p.info.get("cmdline") or []
        if name not in names or (name == "podman" and "service" not in cmd):
            continue
        out.setdefault(names[name], []).append({"pid": p.info["pid"], "cmdline": cmd})
    return out


def containerd_runtimes(doc: dict[str, Any]) -> tuple[dict[str, str | None], str | None]:
    """containerd config (version 2, CRI plugin) -> (runtime name -> binary, default runtime name)."""
    cri = ((doc.get("plugins") or {}).get("io.containerd.grpc.v1.cri") or {}).get("containerd") or {}
    runtimes = {}
    for name, rt in (cri.get("runtimes") or {}).items():
        if isinstance(rt, dict):
            opts = rt.get("options") or {}
            runtimes[name] = opts.get("BinaryName") or "runc"  # the runc shim's default
    return runtimes, cri.get("default_runtime_name") or ("runc" if runtimes or cri else None)


def docker_runtimes(doc: dict[str, Any], argv: Sequence[str] = ()) -> tuple[dict[str, str | None], str]:
    """daemon.json and dockerd's argv (--add-runtime NAME=PATH, --default-runtime) -> (runtimes, default)."""
    runtimes: dict[str, str | None] = {"runc": "runc"}
    for name, rt in (doc.get("runtimes") or {}).items():
        runtimes[name] = rt.get("path") if isinstance(rt, dict) else None
    argv = list(argv)
    for i, a in enumerate(argv):
        spec = argv[i + 1] if a == "--add-runtime" and i + 1 < len(argv) else (
            a[len("--add-runtime="):] if a.startswith("--add-runtime=") else None)
        if spec and "=" in spec:
            k, v = spec.split("=", 1)
            runtimes[k] = v
    default = last_flag(argv, "--default-runtime") or doc.get("default-runtime") or "runc"
    return runtimes, default


# containers/common's built-in runtime paths; with no `runtime =` set, podman takes the first of these found
_PODMAN_BUILTIN = {name: [f"{d}/{name}" for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
                                                  "/sbin", "/bin")] for name in ("crun", "runc")}


def podman_runtimes(docs: list[dict[str, Any]],
                    exists: Callable[[str], bool] = os.path.exists) -> tuple[dict[str, str | None], str | None]:
    """containers.conf files, lowest precedence first -> (runtime name -> first existing path, default name)."""
    runtimes: dict[str, list[str]] = {k: list(v) for k, v in _PODMAN_BUILTIN.items()}
    default = None
    for doc in docs:
        eng = doc.get("engine") or {}
        if isinstance(eng.get("runtime"), str) and eng["runtime"]:
            default = eng["runtime"]
        for name, paths in (eng.get("runtimes") or {}).items():
            if isinstance(paths, list):
                runtimes[name] = [p for p in paths if isinstance(p, str)]
    chosen = {name: next((p for p in paths if exists(p)), None) for name, paths in runtimes.items()}
    if default is None:
        default = next((n for n in _PODMAN_BUILTIN if chosen.get(n)), None)
    elif default.startswith("/"):
        chosen[default] = default  # `runtime = "/path"` names the binary itself
    return {n: p for n, p in chosen.items() if p or n == default}, default


def _load_toml(path: str) -> tuple[dict[str, Any] | None, str | None]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f), None
    except FileNotFoundError:
        return None, None
    except (OSError, tomllib.TOMLDecodeError) as e:
        return None, f"cannot read {path}: {e}"


def _load_json(path: str) -> tuple[dict[str, Any] | None, str | None]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return (doc, None) if isinstance(doc, dict) else (None, f"{path}: not a JSON object")
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"cannot read {path}: {e}"


def _engine_check(engine: str, binary: str | None, version: str, running: list[dict[str, Any]],
                  config: str | None, exists: bool, error: str | None, runtimes: dict[str, str | None],
                  default: str | None, extra: dict[str, Any] | None = None) -> Check:
    name = f"engine {engine}"
    data: dict[str, Any] = {"binary": binary, "version": version, "running": running, "config": config,
                            "config_exists": exists, "runtimes": runtimes, "default_runtime": default, **(extra or {})}
    if not binary:
        return Check(name, "not installed", note="nothing to configure", data=data,
                     missing={"engine": "not installed"})
    shims = sorted(n for n, p in runtimes.items() if points_at_shim(p))
    data["sandbox_runtimes"] = shims
    state = f"running (pid {', '.join(str(r['pid']) for r in running)})" if running else "not running"
    cfg = f"{config}" + ("" if exists else " (absent: built-in defaults)") if config else "no config file"
    rts = ", ".join(f"{n}={p}" for n, p in sorted(runtimes.items())) or "none"
    found = f"{version or binary}, {state}; {cfg}; runtimes {rts}; default {default}"
    warnings: list[str] = []
    if error:
        warnings.append(error)
    for n in shims:
        if not os.access(os.path.realpath(runtimes[n] or ""), os.X_OK):
            warnings.append(f"runtime {n!r} names {runtimes[n]}, which is not an executable file")
    if shims:
        who = "every container" if default in shims else f"containers that ask for runtime {', '.join(shims)}"
        return Check(name, found, warnings=tuple(warnings), data=data,
                     note=f"{who} get the operator's profiles through sandbox-runc")
    return Check(name, found, warnings=tuple(warnings), data=data, missing={"engine": "no sandbox-runc runtime"},
                 note=f"no runtime points at sandbox-runc: {engine}'s containers are not hardened by sandbox "
                      "(docs/integrations.md)")


def _versions(binaries: dict[str, str | None]) -> dict[str, str]:
    """`NAME --version` of each binary, run side by side: `podman version 4.3.1` /
    `containerd github.com/containerd/containerd 1.6.20~ds1 <rev>` / `Docker version 20.10.24+dfsg1, build
    5d6db84` -> "NAME 4.3.1"."""
    from concurrent.futures import ThreadPoolExecutor

    todo = {n: b for n, b in binaries.items() if b}
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        texts = dict(zip(todo, pool.map(lambda b: _run([b, "--version"]) or "", todo.values())))
    out = {}
    for name in binaries:
        token = next((t.rstrip(",") for t in texts.get(name, "").split() if t[:1].isdigit()), None)
        out[name] = f"{name} {token}" if token else ""
    return out


def check_engines(procs: dict[str, list[dict[str, Any]]] | None = None) -> list[Check]:
    import glob
    import shutil

    if procs is None:
        try:
            procs = engine_processes()
        except Exception:  # psutil cannot list processes here: report engines without their daemons
            procs = {}
    out = []
    podman, ctrd, dockerd = (shutil.which(b) for b in ("podman", "containerd", "dockerd"))
    versions = _versions({"podman": podman, "containerd": ctrd, "dockerd": dockerd})
    # podman: containers.conf, lowest precedence first (containers.conf(5))
    files = ["/usr/share/containers/containers.conf", "/etc/containers/containers.conf",
             *sorted(glob.glob("/etc/containers/containers.conf.d/*.conf"))]
    if os.environ.get("CONTAINERS_CONF"):
        files = [os.environ["CONTAINERS_CONF"]]
    docs, errors, present = [], [], []
    for f in files:
        doc, err = _load_toml(f)
        if doc is not None:
            docs.append(doc)
            present.append(f)
        if err:
            errors.append(err)
    runtimes, default = podman_runtimes(docs)
    version = versions["podman"]
    out.append(_engine_check("podman", podman, version, procs.get("podman", []),
                             ", ".join(present) or files[0], bool(present), "; ".join(errors) or None,
                             runtimes, default))
    # containerd: the running daemon's -c/--config, else the default path
    running = [{**r, "config": last_flag(r["cmdline"][1:], "-c", "--config") or "/etc/containerd/config.toml"}
               for r in procs.get("containerd", [])]
    conf = running[0]["config"] if running else "/etc/containerd/config.toml"
    doc, err = _load_toml(conf)
    runtimes, default = containerd_runtimes(doc or {})
    if not runtimes:
        runtimes, default = {"runc": "runc"}, "runc"
    version = versions["containerd"]
    out.append(_engine_check("containerd", ctrd, version, running, conf, doc is not None, err, runtimes, default))
    # Docker: each running daemon's --config-file (else /etc/docker/daemon.json) and argv; a node can run
    # several dockerds (rootless, a second data root), each with its own runtimes
    running = []
    for r in procs.get("docker", []) or [{"pid": None, "cmdline": ["dockerd"]}]:
        argv = r["cmdline"][1:]
        conf = last_flag(argv, "--config-file") or "/etc/docker/daemon.json"
        doc, err = _load_json(conf)
        runtimes, default = docker_runtimes(doc or {}, argv)
        remap = (doc or {}).get("userns-remap") or last_flag(argv, "--userns-remap")
        running.append({**r, "config": conf, "config_exists": doc is not None, "error": err,
                        "runtimes": runtimes, "default_runtime": default, "userns_remap": remap})
    first = running[0]
    union = {k: v for d in reversed(running) for k, v in d["runtimes"].items()}
    problems = "; ".join(d["error"] for d in running if d["error"]) or None
    live = [d for d in running if d["pid"] is not None]
    out.append(_engine_check("docker", dockerd, versions["dockerd"], live, first["config"],
                             first["config_exists"], problems, union, first["default_runtime"],
                             {"userns_remap": first["userns_remap"]}))
    return out


# ---------------------------------------------------------------------------------------------------------
# Operator config, audit log, daemon
# ---------------------------------------------------------------------------------------------------------

def check_opconfig() -> tuple[Check, OperatorConfig | None]:
    from ..audit.log import load_key
    from ..errors import SandboxError
    from .opconfig import DEFAULT_PATH, check_trusted_file, parse_operator_config

    path = os.environ.get("SANDBOX_CONFIG") or DEFAULT_PATH
    covers = ("opconfig",)
    if not os.path.lexists(path):
        from .opconfig import OperatorConfig, load_operator_config

        try:
            op = load_operator_config()  # raises when SANDBOX_CONFIG names a missing file
        except SandboxError as e:
            return Check("operator config", str(e), missing={"opconfig": str(e)}, covers=covers,
                         data={"path": path, "exists": False, "error": str(e)}), None
        return Check("operator config", f"{path}: absent; the documented defaults apply (default profile "
                     f"{op.default_profile}, audit log {op.audit_log})", covers=covers,
                     data={"path": path, "exists": False}), OperatorConfig()
    try:
        check_trusted_file(path, "operator config")
        op = parse_operator_config(path)
        trusted = [f"{path}: owned by root, not writable by group or others, valid"]
        for d in op.profile_dirs:
            if os.path.isdir(d):
                check_trusted_file(d, "profile directory")
                trusted.append(f"profile directory {d} trusted")
        if op.audit_hmac_key_file:
            load_key(op.audit_hmac_key_file)
            trusted.append(f"HMAC key {op.audit_hmac_key_file} root-only")
        from ..core.loader import load_profile

        load_profile(op.default_profile, search_dirs=op.profile_dirs)
    except SandboxError as e:
        why = f"{e}: sandbox-runc refuses every container until it is fixed (fail closed)"
        return Check("operator config", str(e), missing={"opconfig": why}, covers=covers,
                     data={"path": path, "exists": True, "error": str(e)}), None
    extras = [f"default profile {op.default_profile}"]
    if op.allowed_profiles:
        extras.append(f"annotations may ask for {', '.join(op.allowed_profiles)}")
    if op.floor:
        extras.append(f"floor {op.floor}")
    if op.mode:
        extras.append(f"mode {op.mode} for every profile")
    warnings = (f"mode: {op.mode}: decisions are recorded but not applied",) if op.mode == "complain" else ()
    return Check("operator config", "; ".join(trusted + extras), covers=covers, warnings=warnings,
                 data={"path": path, "exists": True, "default_profile": op.default_profile,
                       "profile_dirs": list(op.profile_dirs), "mode": op.mode}), op


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def check_audit(op: OperatorConfig) -> Check:
    import stat

    path = op.audit_log
    d = os.path.dirname(path) or "."
    covers = ("audit",)
    data: dict[str, Any] = {"path": path, "dir": d, "on_audit_failure": op.on_audit_failure,
                            "max_bytes": op.audit_max_bytes}
    missing, warnings = {}, []
    anc = d
    while not os.path.isdir(anc) and anc not in ("/", ""):
        anc = os.path.dirname(anc)
    try:
        vfs = os.statvfs(anc)
        free = vfs.f_bavail * vfs.f_frsize
        data["free_bytes"] = free
    except OSError:
        free = None
    if os.path.isdir(d):
        st = os.stat(d)
        mode = stat.S_IMODE(st.st_mode)
        data.update(exists=True, mode=f"{mode:04o}", uid=st.st_uid)
        where = f"{d} exists (owner uid {st.st_uid}, mode {mode:04o})"
        if st.st_uid != 0:
            warnings.append(f"{d} is not owned by root")
        if mode & 0o022:
            warnings.append(f"{d} is writable by group or others: they could replace the log")
        elif mode & 0o007:
            warnings.append(f"{d} is readable by others: the records name every workload (chmod 700)")
        if not os.access(d, os.W_OK):
            missing["audit"] = f"{d} is not writable"
    else:
        data["exists"] = False
        where = f"{d} absent: created at first use (0700)"  # by sandbox-runc, and by `sandbox run` for the default
        if not os.access(anc, os.W_OK):
            missing["audit"] = f"{d} cannot be created ({anc} is not writable)"
    if free is not None:
        where += f"; {_human(free)} free"
        low = op.audit_max_bytes or 64 * 1024 * 1024
        if free == 0:
            missing.setdefault("audit", f"no space left on the file system of {d}")
        elif free < low:
            warnings.append(f"less than {_human(low)} (one audit file) free on the file system of {d}")
    if missing and op.on_audit_failure == "warn":
        # containers start anyway, unaudited, with a warning
        return Check("audit log", f"{path}: {where}", degraded=missing, warnings=tuple(warnings), covers=covers,
                     data=data)
    return Check("audit log", f"{path}: {where}", missing=missing, warnings=tuple(warnings), covers=covers,
                 data=data)


def check_daemon() -> Check:
    from ..runtime.daemon import ping, socket_path

    sock = socket_path()
    info = ping(sock) if sock != "off" else None
    data: dict[str, Any] = {"socket": sock, "running": info is not None, **(info or {})}
    if info is None:
        note = ("every sandbox-runc create takes the Python path, about 25-35 ms on top of runc; "
                "`sandbox daemon start` keeps that work warm (docs/integrations.md)")
        found = "disabled (SANDBOX_DAEMON_SOCKET=off)" if sock == "off" else f"not running on {sock}"
        return Check("daemon", found, note=note, missing={"daemon": "not running"}, data=data)
    found = f"running on {sock}, pid {info.get('pid')}, {info.get('served', '?')} requests served"
    try:
        import time

        import psutil

        p = psutil.Process(int(info["pid"]))
        rss, up = p.memory_info().rss, time.time() - p.create_time()
        data.update(rss_bytes=rss, uptime_s=round(up))
        found += f", up {int(up // 3600)}h{int(up % 3600 // 60):02d}m, {_human(rss)} resident"
    except Exception:  # noqa: S110 - process facts are extras; the ping already answered
        pass
    return Check("daemon", found, note="creates are hardened by the warm daemon", data=data)


def check_agent() -> Check:
    from ..runtime.agent_client import reachable

    got = reachable()
    data: dict[str, Any] = {"socket": got["agent_socket"], "running": got["agent"] is not None}
    if got["agent"] is None:
        return Check("agent", str(got["agent_problem"]), missing={"agent": "not running"}, covers=("agent",),
                     note="complain mode records no syscalls, and profiles with monitor.* are refused in enforce "
                          "mode, until `sandbox agent start` (docs/integrations.md)", data=data)
    from ..runtime.unixsock import call

    info = dict(call(str(got["agent"]), [("op", "status")], timeout=2.0) or [])
    data.update(info)
    return Check("agent", f"running on {got['agent']}, pid {info.get('pid', '?')}, {info.get('containers', '?')} "
                 f"containers watched, {info.get('records_lost', '?')} records lost", covers=("agent",), data=data)


# ---------------------------------------------------------------------------------------------------------
# Putting it together (edge)
# ---------------------------------------------------------------------------------------------------------

def _profiles(op: OperatorConfig | None) -> tuple[dict[str, Profile], str]:
    from ..core.loader import BUILTIN_PROFILES, load_profile
    from ..errors import SandboxError

    profiles = {name: load_profile(name) for name in BUILTIN_PROFILES}
    default = op.default_profile if op else "baseline"
    if op and default not in profiles:
        try:
            profiles[default] = load_profile(default, search_dirs=op.profile_dirs)
        except SandboxError:
            pass  # the operator config check reports it
    return profiles, default


def run() -> Report:
    """Probe this host and assess it for the built-in profiles and the operator's default."""
    from ..core.loader import builtin_seccomp_profile

    opcheck, op = check_opconfig()
    profiles, default = _profiles(op)
    rd = builtin_seccomp_profile()
    needs = {name: profile_needs(p, rd) for name, p in profiles.items()}
    if default not in needs:  # the operator's default did not load: it can be enforced nowhere
        needs[default] = {"opconfig": f"the default profile {default!r}"}
    from .opconfig import OperatorConfig

    pool = (op or OperatorConfig()).id_pool
    maps: dict[str, tuple[int, int]] = {}
    for name, p in profiles.items():
        if "userns" not in needs[name]:
            continue
        if p.user.uid_mappings:  # the profile's own mapping, else the pool sandbox-runc allocates from
            maps[name] = (p.user.uid_mappings[0].host_id, p.user.uid_mappings[0].size)
        else:
            maps[name] = (min(s for s, _ in pool), max(s + n for s, n in pool) - min(s for s, _ in pool))

    checks = [check_runc(op), check_cgroups(), check_namespaces(), check_userns(maps), check_idmapped_mounts(),
              check_seccomp(), check_lsm(), check_landlock(), check_nftables(), *check_engines(), opcheck,
              check_audit(op or OperatorConfig()), check_daemon(), check_agent()]
    return assess(checks, needs, default)
