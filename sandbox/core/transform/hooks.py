"""OCI hooks run on the host as root: only sandbox's own, allow-listed binaries and the engines' own
hooks (by identity, see transform/hostpath.py) may run."""

from __future__ import annotations

from .. import tables
from ..decisions import pointer
from .context import Context
from .hostpath import gate


def hooks(ctx: Context) -> None:
    stages = ctx.config.get("hooks")
    if not isinstance(stages, dict):
        return
    for stage in sorted(stages):
        entries = stages[stage]
        for i, hook in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(hook, dict):
                continue
            path = hook.get("path")
            ptr = pointer("hooks", stage, i)
            if not isinstance(path, str):
                continue
            if stage == "startContainer":
                ctx.decide("hooks", ptr, "keep", path, path,
                           "a startContainer hook runs inside the container, after its capabilities are dropped and "
                           "its seccomp filter is loaded, as the container's own command", "hooks")
                continue
            if stage not in tables.HOST_HOOK_STAGES:
                continue  # not a stage runc 1.1 runs: the config-field table step answers for it
            v = gate(ctx, "hook", path, hook, stage)
            ctx.decide("hooks", ptr, "keep" if v.ok else "refuse", path, path if v.ok else None, v.reason, v.key)
