"""OCI hooks run on the host as root: only allow-listed binaries and the engines' own hooks may run."""

from __future__ import annotations

import posixpath

from .. import tables
from ..decisions import pointer
from .context import Context


def hooks(ctx: Context) -> None:
    pol = ctx.profile.hooks
    allow = set(pol.allow)
    stages = ctx.config.get("hooks")
    if not isinstance(stages, dict):
        return
    for stage in sorted(stages):
        for i, hook in enumerate(stages[stage] or []):
            if not isinstance(hook, dict):
                continue
            path = hook.get("path")
            if not isinstance(path, str):
                continue
            real = ctx.realpath(path)
            args = hook.get("args") or []
            argv0 = args[0] if args and isinstance(args[0], str) else ""
            ptr = pointer("hooks", stage, i)
            shown = path if real == path else f"{path} ({real})"
            if ctx.host.network_hook and ctx.host.network_hook in (path, real):
                # sandbox itself (trust-checked by the edge); the network step decides whether it stays
                ctx.decide("hooks", ptr, "keep", shown, shown, "sandbox's own network hook", "network")
            elif real in allow or path in allow:
                ctx.decide("hooks", ptr, "keep", shown, shown, "the hook binary is allow-listed", "hooks.allow")
            elif pol.allow_engine_hooks and (posixpath.basename(real), argv0) in tables.ENGINE_HOOKS:
                ctx.decide("hooks", ptr, "keep", shown, shown,
                           f"{posixpath.basename(real)} {argv0} is the engine's own hook", "hooks.allow_engine_hooks")
            else:
                ctx.decide("hooks", ptr, "refuse", shown, None,
                           f"{stage} hook {shown} would run on the host as root and is not allow-listed",
                           "hooks.allow")
