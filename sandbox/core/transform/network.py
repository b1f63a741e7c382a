"""Network policy: sandbox's own createRuntime hook loads the profile's nftables rules.

The rules (`sandbox.core.netrules`) go into the annotation `org.sandbox-runtime.network`; the hook
(`sandbox.runtime.nethook`, installed as `sandbox-nethook`) gets them from the state runc hands it and
loads them inside the container's network namespace before the workload starts.  If it cannot,
the container does not start.

Which namespace gets rules: a new one, and one joined by path (Docker's `--network
container:`, podman's `--network ns:`; the hook accepts a table already there only if it holds
the same rules).  A Kubernetes pod's containers join their pod's namespace, whose sandbox
(pause) container got the rules: they get none of their own.  A container that would share
the host's network namespace is refused: rules loaded there would be the host's.
"""

from __future__ import annotations

from .. import netrules
from ..decisions import pointer
from ..hostfacts import NETWORK_HOOK as HOOK_NAME
from .context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HOOK_STAGE = "createRuntime"
HOOK_TIMEOUT = 10  # seconds; runc kills a hook that takes longer, and the create fails
HOOK_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)
# (annotation, value) that mark a Kubernetes pod's application container (CRI: containerd, CRI-O)
CRI_POD_MEMBER = (("io.kubernetes.cri.container-type", "container"), ("io.kubernetes.cri-o.ContainerType", "container"))


def network(ctx: Context) -> None:
    pol = ctx.profile.network
    found = ctx.config.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    mine = _own_hooks(ctx)
    if not pol.enforced:
        _remove(ctx, mine, annotations, "the profile has no network section")
        return
    ns_index, ns = _network_namespace(ctx)
    if ns is None:
        ctx.decide("network", pointer("linux", "namespaces"), "refuse", None, None,
                   "the container would share the host's network namespace; its network rules can only be "
                   "loaded into a namespace of its own", "network")
        return
    holders = [name for name, caps in sorted(_capability_sets(ctx).items()) if "CAP_NET_ADMIN" in caps]
    if holders:
        ctx.decide("network", pointer("process", "capabilities"), "refuse", "CAP_NET_ADMIN", None,
                   f"CAP_NET_ADMIN ({', '.join(holders)}) would let the workload change or remove its own network "
                   "rules", "network")
        return
    joined = ns.get("path") or ""
    if joined and any(annotations.get(k) == v for k, v in CRI_POD_MEMBER):
        _remove(ctx, mine, annotations, "the container joins its pod's network namespace")
        ctx.decide("network", pointer("linux", "namespaces", ns_index, "path"), "keep", joined, joined,
                   "joins its pod's network namespace, whose sandbox container carries the rules", "network")
        return
    program = hook_program(ctx)
    if not program:
        ctx.decide("network", pointer("hooks", HOOK_STAGE), "refuse", None, None,
                   f"the network rules cannot be loaded: sandbox's own hook program {HOOK_NAME} was not found "
                   "beside sandbox, or it, what it runs or a directory above them is not owned by root or is "
                   "writable by others", "network")
        return
    rules = netrules.ruleset(pol, _resolvers(ctx), ctx.host.node_addresses)
    if rules is None:  # pol.enforced guarantees rules; keep mypy and readers sure of it
        return
    _annotate(ctx, annotations, rules)
    _hook(ctx, program, mine, rules)


def hook_program(ctx: Context) -> str:
    """The resolved path of sandbox's network hook program among sandbox's own hook programs
    (host.OWN_HOOK_PROGRAMS, trust-checked by the probe), "" when it is not one of them."""
    return next((p for p in sorted(ctx.host.own_hooks) if p.rsplit("/", 1)[-1] == HOOK_NAME), "")


def _capability_sets(ctx: Context) -> dict[str, list[Any]]:
    caps = ctx.get("process", "capabilities")
    return {k: v for k, v in caps.items() if isinstance(v, list)} if isinstance(caps, dict) else {}


def _network_namespace(ctx: Context) -> tuple[int, dict[str, Any] | None]:
    for i, ns in enumerate(ctx.get("linux", "namespaces") or []):
        if isinstance(ns, dict) and ns.get("type") == "network":
            return i, ns
    return -1, None


def _own_hooks(ctx: Context) -> list[tuple[str, int, dict[str, Any]]]:
    """Entries in any stage that run sandbox's own network hook program (its path resolved on the host)."""
    out: list[tuple[str, int, dict[str, Any]]] = []
    own = hook_program(ctx)
    stages = ctx.config.get("hooks")
    if not own or not isinstance(stages, dict):
        return out
    for stage in sorted(stages):
        for i, hook in enumerate(stages[stage] if isinstance(stages[stage], list) else []):
            path = hook.get("path") if isinstance(hook, dict) else None
            if isinstance(path, str) and own in (path, ctx.host.realpaths.get(path)):
                out.append((stage, i, hook))
    return out


def _remove(ctx: Context, mine: list[tuple[str, int, dict[str, Any]]], annotations: dict[str, Any],
            why: str) -> None:
    """Sandbox's hook and annotation are sandbox's to add: a bundle's own copies go."""
    for stage, i, hook in reversed(mine):
        del ctx.config["hooks"][stage][i]
        ctx.decide("network", pointer("hooks", stage, i), "drop", hook, None,
                   f"sandbox's network hook is added by sandbox alone ({why})", "network")
    if netrules.ANNOTATION in annotations:
        before = annotations.pop(netrules.ANNOTATION)
        ctx.decide("network", pointer("annotations", netrules.ANNOTATION), "drop", before, None,
                   f"the network rules annotation is written by sandbox alone ({why})", "network")


def _resolvers(ctx: Context) -> tuple[str, ...]:
    pol = ctx.profile.network
    if pol.dns is not None:
        return pol.dns
    denied = [d for d in pol.deny_always if d != netrules.NODE]
    out = []
    for r in ctx.host.resolvers:
        inside = [d for d in denied if netrules.contains(d, r)]
        if inside or (netrules.NODE in pol.deny_always and r in ctx.host.node_addresses):
            ctx.decide("network", pointer("annotations", netrules.ANNOTATION), "warn", r, None,
                       f"resolver {r} of the bundle's resolv.conf lies in deny_always ({(inside or ['node'])[0]}) "
                       "and stays unreachable; name it in network.dns to allow it", "network.dns")
        else:
            out.append(r)
    if not ctx.host.resolvers and pol.egress is not None:
        where = ctx.host.resolvers_source or "the bundle (no resolv.conf found)"
        ctx.decide("network", pointer("annotations", netrules.ANNOTATION), "warn", None, None,
                   f"no nameserver in {where}: the container can reach no DNS server", "network.dns")
    return tuple(out)


def _annotate(ctx: Context, annotations: dict[str, Any], rules: netrules.Ruleset) -> None:
    text = netrules.canonical(rules.document).decode("utf-8")
    summary = {"sha256": rules.sha256, "ruleset": rules.text}
    ptr = pointer("annotations", netrules.ANNOTATION)
    if annotations.get(netrules.ANNOTATION) == text:
        ctx.decide("network", ptr, "keep", summary, summary, "the container's network rules", "network")
        return
    before = annotations.get(netrules.ANNOTATION)
    ctx.section("annotations")[netrules.ANNOTATION] = text
    ctx.decide("network", ptr, "set", None if before is None else "(another ruleset)", summary,
               f"the container's network rules ({rules.rules} rules, nftables table inet sandbox), "
               "for sandbox's own hook to load", "network")


def _hook(ctx: Context, program: str, mine: list[tuple[str, int, dict[str, Any]]], rules: netrules.Ruleset) -> None:
    runtime_netns = ["--runtime-netns", ctx.host.runtime_netns] if ctx.host.runtime_netns else []
    want = {"path": program, "args": [HOOK_NAME, "--sha256", rules.sha256, *runtime_netns], "env": list(HOOK_ENV),
            "timeout": HOOK_TIMEOUT}
    if [(s, h) for s, _, h in mine] == [(HOOK_STAGE, want)]:
        _, i, _ = mine[0]
        ctx.decide("network", pointer("hooks", HOOK_STAGE, i), "keep", want, want,
                   "sandbox's own hook loads the network rules before the workload starts", "network")
        return
    for stage, i, hook in reversed(mine):
        del ctx.config["hooks"][stage][i]
        ctx.decide("network", pointer("hooks", stage, i), "drop", hook, None,
                   "a copy of sandbox's network hook that sandbox did not write", "network")
    stage_hooks = ctx.section("hooks").setdefault(HOOK_STAGE, [])
    if not isinstance(stage_hooks, list):
        stage_hooks = ctx.config["hooks"][HOOK_STAGE] = []
    stage_hooks.append(want)
    ctx.decide("network", pointer("hooks", HOOK_STAGE, len(stage_hooks) - 1), "tighten", None, want,
               f"sandbox's own hook loads the network rules (sha256 {rules.sha256[:16]}) into the container's "
               "network namespace before the workload starts; if it cannot, the container does not start",
               "network")
