"""The profile -> OCI config transform: `apply(profile, config, host) -> Outcome`.

Pure: takes data, returns data.  Each control is a small function over a shared
context; the order below is the order of the decisions.  Tighten only: the
result is never less strict than the bundle asked for nor than the profile
demands, and applying the same profile twice equals applying it once.
"""

from __future__ import annotations

import marshal

from ..._record import replace
from ..decisions import Outcome
from ..hostfacts import HostFacts
from .context import Context
from .devices import devices
from .fields import cgroups, config_fields, process_fields
from .hooks import hooks
from .mounts import mounts, rootfs
from .namespaces import namespaces
from .network import network
from .process import capabilities, lsm, no_new_privileges
from .resources import resources
from .seccomp import agent_routes, ours, seccomp, unroute
from .sysctls import sysctls
from .user import user, userns_runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..profile import Profile


# config_fields first (it reads the bundle's own fields), user before namespaces (it needs to know
# whether the bundle had a user namespace), capabilities before seccomp (capability-conditional
# syscalls follow the final set), hooks before network (which adds sandbox's own hook after the
# bundle's have been judged), process after capabilities (it empties the inheritable set),
# userns_runtime last (it needs the final root.readonly, mounts and namespaces).
STEPS: tuple[Callable[[Context], None], ...] = (
    config_fields, user, namespaces, capabilities, no_new_privileges, seccomp, rootfs, mounts, resources, devices,
    sysctls, hooks, network, lsm, process_fields, cgroups, userns_runtime,
)


def apply(profile: Profile, config: dict[str, Any], host: HostFacts | None = None, *,
          learn: bool = False) -> Outcome:
    """Harden `config` (an OCI runtime-spec config.json as data) under `profile`.

    Unknown fields are kept as they are.  In complain mode the decisions are
    recorded with applied=False and the config is returned unchanged, but for
    the routes to the sandbox agent (what the profile would deny, recorded and
    let run: `transform.seccomp.agent_routes`).  `learn` (for `sandbox learn`):
    enforce the profile, but hand every syscall the bundle allows to the agent.
    """
    host = host or HostFacts()
    linux = config.get("linux")
    if isinstance(linux, dict) and ours(linux.get("seccomp"), host):
        config = unroute(config)
    ctx = Context(profile, _copy(config), host)
    for step in STEPS:
        step(ctx)
    linux = config.get("linux")
    own = linux.get("seccomp") if isinstance(linux, dict) else None
    own = own if isinstance(own, dict) else None
    if profile.mode == "complain" and not learn:
        judged = [replace(d, applied=False) for d in ctx.decisions]
        ctx.decisions = []
        out = _copy(config)
        agent_routes(ctx, out, own)
        return Outcome(config=out, decisions=judged + ctx.decisions)
    agent_routes(ctx, ctx.config, own, learn=learn)
    return Outcome(config=ctx.config, decisions=ctx.decisions, prep=ctx.prep)


def needs_agent(profile: Profile) -> bool:
    """Whether applying `profile` routes syscalls to the sandbox agent (and so asks whether it answers)."""
    return profile.mode == "complain" or profile.monitor.exec_trail or profile.monitor.denials


def _copy(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of JSON data; marshal is an order of magnitude faster than copy.deepcopy."""
    try:
        out: dict[str, Any] = marshal.loads(marshal.dumps(config))  # noqa: S302 - our own bytes
        return out
    except ValueError:  # not plain JSON data (a test passing tuples, say)
        import copy

        return copy.deepcopy(config)
