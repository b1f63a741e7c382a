"""`runc update` under a profile: a limit raised after start is a bypass, so it is clamped.

Pure: takes the profile and the requested resources, returns the clamped ones and decisions.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .decisions import Decision, pointer
from .profile import Profile
from .runc_cli import Invocation

_DOCKER_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _decision(profile: Profile, ptr: str, before: Any, after: Any, why: str, key: str) -> Decision:
    return Decision("resources", ptr, "tighten", before, after, why, f"{profile.rule}: {key}")


def _clamp(value: int | None, maximum: int | None) -> int | None:
    """The clamped value, or None when no change is needed. -1 (unlimited) counts as above any maximum."""
    if maximum is None or value is None or value == 0:
        return None  # 0: "do not change" for runc update
    if value < 0 or value > maximum:
        return maximum
    return None


def clamp_resources(profile: Profile, res: dict[str, Any]) -> tuple[dict[str, Any], list[Decision]]:
    new = copy.deepcopy(res)
    out: list[Decision] = []
    pol = profile.resources
    mem = new.get("memory") if isinstance(new.get("memory"), dict) else None
    if mem is not None and isinstance(mem.get("limit"), int):
        c = _clamp(mem["limit"], pol.memory.max)
        if c is not None:
            out.append(_decision(profile, pointer("memory", "limit"), mem["limit"], c,
                                 f"memory limit above the profile's maximum of {c}", "resources.memory"))
            mem["limit"] = c
            if isinstance(mem.get("swap"), int) and (mem["swap"] < 0 or mem["swap"] > c):
                mem["swap"] = c
    pids = new.get("pids") if isinstance(new.get("pids"), dict) else None
    if pids is not None and isinstance(pids.get("limit"), int):
        c = _clamp(pids["limit"], pol.pids.max)
        if c is not None:
            out.append(_decision(profile, pointer("pids", "limit"), pids["limit"], c,
                                 f"pids limit above the profile's maximum of {c}", "resources.pids"))
            pids["limit"] = c
    cpu = new.get("cpu") if isinstance(new.get("cpu"), dict) else None
    if cpu is not None and pol.cpu.max is not None and isinstance(cpu.get("quota"), int):
        period = cpu.get("period") if isinstance(cpu.get("period"), int) and cpu["period"] > 0 else 100_000
        max_quota = pol.cpu.max * period // 1000
        c = _clamp(cpu["quota"], max_quota)
        if c is not None:
            out.append(_decision(profile, pointer("cpu", "quota"), cpu["quota"], c,
                                 f"CPU quota above the profile's maximum of {pol.cpu.max / 1000:g} CPUs",
                                 "resources.cpu"))
            cpu["quota"] = c
    return new, out


def parse_docker_size(s: str) -> int | None:
    m = re.fullmatch(r"\s*(-?\d+)\s*([bkmgt]?)b?\s*", s.lower())
    return int(m.group(1)) * _DOCKER_UNITS[m.group(2)] if m else None


def clamp_flags(profile: Profile, inv: Invocation, argv: list[str]) -> tuple[list[str], list[Decision]]:
    """Clamp --memory, --memory-swap, --pids-limit and --cpu-quota given as flags."""
    pol = profile.resources
    out = list(argv)
    decisions: list[Decision] = []
    period_s = inv.flag("cpu-period")
    period = int(period_s) if period_s and period_s.isdigit() and int(period_s) > 0 else 100_000
    limits = {
        "memory": (pol.memory.max, "resources.memory"),
        "memory-swap": (pol.memory.max, "resources.memory"),
        "pids-limit": (pol.pids.max, "resources.pids"),
        "cpu-quota": (pol.cpu.max * period // 1000 if pol.cpu.max else None, "resources.cpu"),
    }
    for f in inv.flags:
        if f.name not in limits or f.value is None:
            continue
        maximum, key = limits[f.name]
        value = parse_docker_size(f.value) if f.name.startswith("memory") else _int(f.value)
        c = _clamp(value, maximum)
        if c is None:
            continue
        decisions.append(_decision(profile, f"/update/{f.name}", f.value, c,
                                   f"--{f.name} above the profile's maximum of {c}", key))
        if f.end - f.start == 2:
            out[f.start + 1] = str(c)
        else:
            out[f.start] = f"--{f.name}={c}"
    return out, decisions


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None
