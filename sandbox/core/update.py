"""`runc update` under a profile: a limit raised after start is a bypass, so it is clamped.

runc 1.1.5's update (update.go) builds one specs.LinuxResources, from `--resources` (a file
or `-`, read by encoding/json into a structure that starts all zero) or from its flags, and
writes all of it: 0 means "leave as it is", -1 (memory, swap, CPU quota) or any negative
pids limit means unlimited.  sandbox builds the same structure (`resources_from_flags`,
`resources_from_json`), clamps it (`clamp_resources`) and hands runc exactly that as a new
`--resources` file, so what was checked is what runc applies.

Pure: takes the profile and the requested resources, returns the clamped ones and decisions.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import UsageError
from .decisions import Decision, pointer
from .profile import Profile
from .runc_cli import Invocation, go_int, go_uint

CONTROL = "resources"
# What runc update applies (update.go): nothing else of LinuxResources is read.
USED = {
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP"),
    "cpu": ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems"),
    "blockIO": ("weight",),
    "pids": ("limit",),
}
# flag -> (section, field, how runc parses it)
FLAG_FIELDS = {
    "blkio-weight": ("blockIO", "weight", "int"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpu-share": ("cpu", "shares", "uint"),
    "cpu-quota": ("cpu", "quota", "sint"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "sint"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "memory": ("memory", "limit", "ram"),
    "memory-swap": ("memory", "swap", "ram"),
    "kernel-memory": ("memory", "kernel", "ram"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "ram"),
    "memory-reservation": ("memory", "reservation", "ram"),
    "pids-limit": ("pids", "limit", "int"),
}
INT64_MAX = (1 << 63) - 1
_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", re.ASCII)
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def zero_resources() -> dict[str, Any]:
    """The structure runc update starts from: every field it applies, all zero."""
    return {"memory": dict.fromkeys(USED["memory"], 0),
            "cpu": {**dict.fromkeys(USED["cpu"][:5], 0), "cpus": "", "mems": ""},
            "blockIO": {"weight": 0}, "pids": {"limit": 0}}


def ram_in_bytes(s: str) -> int | None:
    """docker/go-units RAMInBytes as runc 1.1.5 vendors it (binary units; "1.5g" is 1.5 GiB)."""
    m = _SIZE.fullmatch(s)
    if not m:
        return None
    try:
        size = float(m.group(1))
    except ValueError:  # "1.2.3" passes the pattern, not ParseFloat
        return None
    size *= _BINARY.get((m.group(2) or "").lower(), 1)
    if not -INT64_MAX <= size <= INT64_MAX:
        return None  # Go's int64() of it is undefined (amd64: the minimum int64)
    return int(size)


def parse_docker_size(s: str) -> int | None:
    """A memory value as runc update reads it: -1 (unlimited) or RAMInBytes."""
    return -1 if s == "-1" else ram_in_bytes(s)


def resources_from_flags(inv: Invocation) -> dict[str, Any]:
    """What runc update builds from its flags (update.go), or UsageError where runc would fail."""
    r = zero_resources()
    for flag, (section, field, how) in FLAG_FIELDS.items():
        if flag not in inv.options:
            continue
        raw = inv.options[flag]
        if how == "int":  # cli.IntFlag, already parsed
            value = raw
            if flag == "blkio-weight" and not 0 <= value <= 0xFFFF:
                raise UsageError(f"--blkio-weight {value} is refused: runc would wrap it around to "
                                 f"{value & 0xFFFF}")
        elif raw == "":
            continue  # runc: an empty string leaves the field alone
        elif how == "str":
            value = raw
        elif how == "ram":
            value = parse_docker_size(raw)
        else:
            value = go_uint(raw, 10) if how == "uint" else go_int(raw, 10)
        if value is None:
            raise UsageError(f"runc would refuse --{flag} {raw!r}: invalid value for {flag}")
        r[section][field] = value
    return r


def resources_from_json(decoded: dict[str, Any]) -> dict[str, Any]:
    """runc update's structure after encoding/json decoded `--resources` into it (gojson.RESOURCES)."""
    r = zero_resources()
    for section, fields in USED.items():
        if section not in decoded:
            continue
        sub = decoded[section]
        if sub is None:
            raise UsageError(f"--resources: {section} is null; runc update would crash on it")
        for field in fields:
            if field in sub:
                if sub[field] is None:
                    raise UsageError(f"--resources: {section}.{field} is null; runc update would crash on it")
                r[section][field] = sub[field]
    if decoded.get("unified"):
        r["unified"] = dict(decoded["unified"])
    return r


def _decision(profile: Profile, ptr: str, action: str, before: Any, after: Any, why: str, key: str) -> Decision:
    return Decision(CONTROL, ptr, action, before, after, why, f"{profile.rule}: {key}",  # type: ignore[arg-type]
                    applied=profile.mode != "complain")


def _over(value: int, maximum: int) -> bool:
    """-1 and every negative value mean unlimited: above any maximum. 0 means unchanged."""
    return value != 0 and (value < 0 or value > maximum)


def clamp_resources(profile: Profile, res: dict[str, Any], current: dict[str, Any] | None = None,
                    swap_accounting: bool = True) -> tuple[dict[str, Any], list[Decision]]:
    """`res` (runc update's structure) within the profile's maxima.

    `current`: config.json's linux.resources (what runc keeps for a value not given);
    `swap_accounting`: whether the memory cgroup bounds swap (sandbox.host.probe.swap_accounting).
    """
    new = copy.deepcopy(res)
    out: list[Decision] = []
    pol = profile.resources
    mem, cpu, pids = new["memory"], new["cpu"], new["pids"]
    if pol.memory.max is not None:
        for field in ("limit", "swap"):
            if _over(mem[field], pol.memory.max):
                out.append(_decision(profile, pointer("memory", field), "tighten", mem[field], pol.memory.max,
                                     f"memory {field} {mem[field]} is above the profile's maximum of "
                                     f"{pol.memory.max}", "resources.memory"))
                mem[field] = pol.memory.max
        if mem["limit"] > 0 and mem["swap"] == 0 and swap_accounting:
            # as at create: memory+swap follows the limit (the kernel refuses a limit above it)
            mem["swap"] = mem["limit"]
            out.append(_decision(profile, pointer("memory", "swap"), "set", 0, mem["limit"],
                                 "memory+swap may not exceed the memory limit", "resources.memory"))
    if pol.pids.max is not None and _over(pids["limit"], pol.pids.max):
        out.append(_decision(profile, pointer("pids", "limit"), "tighten", pids["limit"], pol.pids.max,
                             f"pids limit {pids['limit']} is above the profile's maximum of {pol.pids.max}",
                             "resources.pids"))
        pids["limit"] = pol.pids.max
    if pol.cpu.max is not None:
        out += _clamp_cpu(profile, cpu, (current or {}).get("cpu"))
    limited = [k for k, lim in (("memory", pol.memory.max), ("pids", pol.pids.max), ("cpu", pol.cpu.max))
               if lim is not None]
    if new.get("unified") and limited:
        out.append(_decision(profile, pointer("unified"), "refuse", new["unified"], None,
                             "unified cgroup v2 files are refused under a profile that limits "
                             f"{', '.join(limited)}: they can set any of those limits", "resources"))
    return new, out


def _clamp_cpu(profile: Profile, cpu: dict[str, Any], current: Any) -> list[Decision]:
    """Quota and period are written together, so their ratio stays within the profile's CPU maximum.

    runc keeps the old value of whichever of the two is not given; that old value is taken from
    config.json (else runc's defaults) and written explicitly.
    """
    assert profile.resources.cpu.max is not None
    out: list[Decision] = []
    if cpu["realtimeRuntime"] != 0:
        out.append(_decision(profile, pointer("cpu", "realtimeRuntime"), "refuse", cpu["realtimeRuntime"], None,
                             "realtime CPU time is not limited by the CFS quota; refused under a CPU maximum",
                             "resources.cpu"))
    quota, period = cpu["quota"], cpu["period"]
    if quota == 0 and period == 0:
        return out
    cur = current if isinstance(current, dict) else {}
    cur_period = cur.get("period") if isinstance(cur.get("period"), int) and cur["period"] > 0 else 100_000
    cur_quota = cur.get("quota") if isinstance(cur.get("quota"), int) and cur["quota"] > 0 else None
    if period == 0:
        cpu["period"] = period = cur_period
        out.append(_decision(profile, pointer("cpu", "period"), "set", 0, period,
                             "the CFS period is written with the quota so that their ratio is the one checked",
                             "resources.cpu"))
    max_quota = profile.resources.cpu.max * period // 1000
    if quota == 0:
        quota = cur_quota if cur_quota is not None and cur_quota <= max_quota else max_quota
        cpu["quota"] = quota
        out.append(_decision(profile, pointer("cpu", "quota"), "set", 0, quota,
                             "the CFS quota is written with the period so that their ratio is the one checked",
                             "resources.cpu"))
    elif _over(quota, max_quota):
        out.append(_decision(profile, pointer("cpu", "quota"), "tighten", quota, max_quota,
                             f"CPU quota {quota}/{period} is above the profile's maximum of "
                             f"{profile.resources.cpu.max / 1000:g} CPUs", "resources.cpu"))
        cpu["quota"] = max_quota
    return out


def ignored_with_resources(profile: Profile, inv: Invocation) -> list[Decision]:
    """With --resources, runc update ignores its resource flags: they are dropped, not passed on."""
    return [_decision(profile, pointer("update", f"--{f}"), "drop", inv.options[f], None,
                      f"--{f} is ignored by runc when --resources is given; not passed on", CONTROL)
            for f in FLAG_FIELDS if f in inv.options]
