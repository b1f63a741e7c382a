"""What a new profile loosens and tightens compared with an old one (for code review in CI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import tables
from .profile import Limit, Profile


@dataclass(frozen=True)
class Change:
    direction: str  # loosen | tighten
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.direction:<7} {self.field}: {self.message}"


def _sets(out: list[Change], field: str, old: Any, new: Any, what: str, more_is_looser: bool = True) -> None:
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if added:
        out.append(Change("loosen" if more_is_looser else "tighten", field, f"{what} added: {', '.join(added)}"))
    if removed:
        out.append(Change("tighten" if more_is_looser else "loosen", field,
                          f"{what} removed: {', '.join(removed)}"))


def _flag(out: list[Change], field: str, old: bool, new: bool, strict_when: bool) -> None:
    if old != new:
        out.append(Change("tighten" if new == strict_when else "loosen", field, f"{old} -> {new}"))


def _limit(out: list[Change], field: str, old: Limit, new: Limit) -> None:
    for part in ("max", "default"):
        a, b = getattr(old, part), getattr(new, part)
        if a == b:
            continue
        if b is None or (a is not None and b > a):
            out.append(Change("loosen", f"{field}.{part}", f"{a} -> {b if b is not None else 'unlimited'}"))
        else:
            out.append(Change("tighten", f"{field}.{part}", f"{a if a is not None else 'unlimited'} -> {b}"))


def allowed_syscalls(p: Profile, arch: str = "x86_64") -> tuple[str, set[str]]:
    """(default action, syscalls allowed under any condition) for the profile's own capabilities."""
    from .hostfacts import HostFacts
    from .transform.context import Context
    from .transform.seccomp import profile_filter

    res = profile_filter(Context(p, {}, HostFacts(arch=arch)), set(p.capabilities))
    if res is None:
        return "SCMP_ACT_ALLOW", set()
    default, table = res
    return default[0], {n for n, rules in table.items()
                        if any(r[0] in tables.SECCOMP_PERMISSIVE_ACTIONS for r in rules)}


def _host_paths(out: list[Change], old: Profile, new: Profile) -> None:
    """Compare what each profile lets a bind mount reach, by probing every path either one names."""
    from .transform.hostpath import forbidden_reason

    probes: set[str] = set()
    for p in (old, new):
        for path in [h.path for h in p.filesystem.forbidden_host_paths] + list(p.filesystem.allowed_host_paths):
            probes.update({path, path.rstrip("/") + "/x"})
    opened, closed = [], []
    for path in sorted(probes):
        was = forbidden_reason(path, old.filesystem.forbidden_host_paths, old.filesystem.allowed_host_paths)
        now = forbidden_reason(path, new.filesystem.forbidden_host_paths, new.filesystem.allowed_host_paths)
        if was and not now:
            opened.append(path)
        elif now and not was:
            closed.append(path)
    if opened:
        out.append(Change("loosen", "filesystem.host_paths", f"bind mounts now allowed from: {', '.join(opened)}"))
    if closed:
        out.append(Change("tighten", "filesystem.host_paths", f"bind mounts now refused from: {', '.join(closed)}"))


def _subtrees(out: list[Change], field: str, old: tuple[str, ...], new: tuple[str, ...], opened: str,
              closed: str) -> None:
    """Lists of allowed subtrees: a new entry not inside an old one loosens; an old one no longer covered tightens."""
    from .transform.hostpath import within

    added = [d for d in new if not any(within(d, o) for o in old)]
    removed = [o for o in old if not any(within(o, n) for n in new)]
    if added:
        out.append(Change("loosen", field, f"{opened}: {', '.join(added)}"))
    if removed:
        out.append(Change("tighten", field, f"{closed}: {', '.join(removed)}"))


def _process(out: list[Change], old: Profile, new: Profile) -> None:
    a, b = old.process.oom_score_adj_min, new.process.oom_score_adj_min
    if a != b:
        looser = b is None or (a is not None and b < a)
        out.append(Change("loosen" if looser else "tighten", "process.oom_score_adj_min", f"{a} -> {b}"))
    ra, rb = dict(old.process.rlimits), dict(new.process.rlimits)
    for name in sorted({*ra, *rb}):
        x, y = ra.get(name), rb.get(name)
        if x != y:
            looser = y is None or (x is not None and y > x)
            out.append(Change("loosen" if looser else "tighten", f"process.rlimits.{name}",
                              f"{x if x is not None else 'unbounded'} -> {y if y is not None else 'unbounded'}"))


def diff(old: Profile, new: Profile) -> list[Change]:
    out: list[Change] = []
    if old.mode != new.mode:
        out.append(Change("loosen" if new.mode == "complain" else "tighten", "mode", f"{old.mode} -> {new.mode}"))
    _sets(out, "capabilities", old.capabilities, new.capabilities, "capabilities")
    _flag(out, "no_new_privileges", old.no_new_privileges, new.no_new_privileges, True)
    _flag(out, "user.run_as_non_root", old.user.run_as_non_root, new.user.run_as_non_root, True)
    _flag(out, "user.user_namespace", old.user.user_namespace == "required",
          new.user.user_namespace == "required", True)
    od, oa = allowed_syscalls(old)
    nd, na = allowed_syscalls(new)
    if od != nd:
        looser = tables.SECCOMP_ACTION_RANK[nd] < tables.SECCOMP_ACTION_RANK[od]
        out.append(Change("loosen" if looser else "tighten", "seccomp.default_action", f"{od} -> {nd}"))
    if od == nd == "SCMP_ACT_ALLOW":
        # deny-lists: more denied is tighter
        _sets(out, "seccomp.deny", old.seccomp.deny, new.seccomp.deny, "denied syscalls", more_is_looser=False)
    else:
        _sets(out, "seccomp", oa, na, "allowed syscalls")
    fo, fn = old.filesystem, new.filesystem
    _flag(out, "filesystem.readonly_rootfs", fo.readonly_rootfs, fn.readonly_rootfs, True)
    _flag(out, "filesystem.bind_mounts.readonly", fo.bind_readonly, fn.bind_readonly, True)
    _flag(out, "filesystem.bind_mounts.nosuid_nodev", fo.bind_nosuid_nodev, fn.bind_nosuid_nodev, True)
    _flag(out, "filesystem.readonly_system_mounts", fo.readonly_system_mounts, fn.readonly_system_mounts, True)
    _sets(out, "filesystem.tmpfs", [t.path for t in fo.tmpfs], [t.path for t in fn.tmpfs], "tmpfs mounts",
          more_is_looser=False)
    _host_paths(out, old, new)
    _sets(out, "filesystem.masked_paths", fo.masked_paths, fn.masked_paths, "masked paths", more_is_looser=False)
    _sets(out, "filesystem.readonly_paths", fo.readonly_paths, fn.readonly_paths, "read-only paths",
          more_is_looser=False)
    _sets(out, "namespaces.required", old.namespaces.required, new.namespaces.required, "required namespaces",
          more_is_looser=False)
    for part in ("memory", "pids", "cpu"):
        _limit(out, f"resources.{part}", getattr(old.resources, part), getattr(new.resources, part))
    _sets(out, "filesystem.mount_types", fo.mount_types, fn.mount_types, "mount types")
    _subtrees(out, "filesystem.rootfs_dirs", fo.rootfs_dirs, fn.rootfs_dirs, "root filesystems now allowed in",
              "root filesystems no longer allowed in")
    _flag(out, "runc_mitigations", old.runc_mitigations, new.runc_mitigations, True)
    _flag(out, "unknown_config_fields", old.unknown_config_fields == "refuse", new.unknown_config_fields == "refuse",
          True)
    _process(out, old, new)
    _sets(out, "devices.allow", old.devices.allow, new.devices.allow, "devices")
    _sets(out, "sysctls.allow", old.sysctls.allow, new.sysctls.allow, "sysctls")
    _sets(out, "hooks.allow", old.hooks.allow, new.hooks.allow, "hooks")
    _flag(out, "hooks.allow_engine_hooks", old.hooks.allow_engine_hooks, new.hooks.allow_engine_hooks, False)
    if old.lsm != new.lsm:
        for key in ("apparmor", "selinux"):
            a, b = getattr(old.lsm, key), getattr(new.lsm, key)
            if a != b:
                # a changed label cannot be ranked: review it as a loosening
                out.append(Change("tighten" if (b and not a) else "loosen", key, f"{a} -> {b}"))
    return out
