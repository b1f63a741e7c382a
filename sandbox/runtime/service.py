"""Glue between the pure core and the edges, shared by `sandbox check/apply/run` and the shim."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..core.decisions import Decision, Outcome
    from ..core.profile import Profile
    from ..errors import BundleError



def resolve_profile(ref: str, search_dirs: tuple[str, ...] = ()) -> Profile:
    from ..host.cache import load_profile

    return load_profile(ref, search_dirs)


def bundle_problems(profile: Profile, problems: list[BundleError]) -> list[Decision]:
    """What `read_config(..., problems=...)` tolerated, as decisions for complain mode.

    Under an enforcing profile the first problem is raised, as reading strictly would have.
    """
    if not problems:
        return []
    if profile.mode != "complain":
        raise problems[0]
    from ..core.decisions import Decision, pointer

    out = []
    for e in problems:
        ptr = pointer(*e.field.split(".")) if e.field else ""
        out.append(Decision("bundle", ptr, "refuse", None, None,
                            f"{e.field + ': ' if e.field else ''}{e.message} (runc runs it; an enforcing profile "
                            "refuses it)", profile.rule, applied=False))
    return out


def harden(profile: Profile, config: dict[str, Any], bundle_dir: str | None, container_id: str = "", *,
           named_root: str = "", named_root_subtree: bool = False, learn_agent: str | None = None,
           **facts: Any) -> Outcome:
    """Probe the host paths `config` names, then apply the profile (pure).

    `container_id` is the id runc is given (it decides which cgroup and engine-hook arguments are the
    container's own); "" when a bundle is checked on its own.  `named_root`: the rootfs (or bundle
    directory, `named_root_subtree`) the person named on `sandbox run`'s command line.  `facts`: what
    else the caller knows for the probe (`sandbox.host.probe.probe`'s keyword arguments: whether a user
    namespace is added, the id range allocated, the pod's user namespace, the engines' directories).
    `learn_agent`: the socket of `sandbox learn`'s own agent; the profile is applied for learning.
    """
    from ..core.transform import apply, needs_agent
    from ..host.probe import probe

    probed = probe(config, bundle_dir, container_id, named_root, named_root_subtree,
                   network=profile.network.enforced, agent=needs_agent(profile) and learn_agent is None, **facts)
    if learn_agent is None:
        return apply(profile, config, probed)
    from .._record import replace

    return apply(profile, config, replace(probed, agent=learn_agent, agent_socket=learn_agent, agent_problem=""),
                 learn=True)


def harden_with_engine_dirs(op: Any, profile: Profile, config: dict[str, Any], bundle_dir: str | None,
                            **facts: Any) -> Outcome:
    """`harden` for a create: the engines' per-container directories found on this host (cached) are
    allowed bind sources; a bind mount refused with a cached list is judged again with a fresh one
    (an engine may have started, or moved, since)."""
    from ..host.engines import engine_dirs

    dirs, fresh = engine_dirs(op)
    outcome = harden(profile, config, bundle_dir, engine_dirs=dirs, **facts)
    if not fresh and any(d.control == "mounts" for d in outcome.refusals):
        dirs, _ = engine_dirs(op, fresh=True)
        outcome = harden(profile, config, bundle_dir, engine_dirs=dirs, **facts)
    return outcome


def userns_facts(op: Any, profile: Profile, config: dict[str, Any], runc_root: str, container_id: str,
                 creator: int | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """For a create whose profile adds a user namespace: the probe's keyword arguments (the id range,
    the pod's or a new one from the operator's pool, and the pod's user namespace to join) and the
    allocation made (None when the profile or bundle names its own mapping).  `creator`: the process
    that will run runc create (default: this one)."""
    from ..core.transform.user import needs_id_range
    from ..host.idpool import allocate, pod_of, pod_userns

    facts: dict[str, Any] = {"userns": True}
    if not needs_id_range(profile, config):
        return facts, None
    pod = pod_of(config)
    rng = allocate(op, runc_root=runc_root, container_id=container_id, pod=pod[0] if pod else None,
                   creator=creator)
    facts["id_range"] = rng
    if pod and not pod[1]:
        facts["pod_userns"] = pod_userns(runc_root, pod[0], rng)
    return facts, {"runc_root": runc_root, "container_id": container_id, "pod": pod[0] if pod else None,
                   "range": rng}


def release_ids(op: Any, allocation: dict[str, Any]) -> None:
    """The container of `allocation` was not created: its id range is free for others again."""
    from ..host.idpool import release

    release(op, runc_root=allocation["runc_root"], container_id=allocation["container_id"], pod=allocation["pod"])


def reapply(op: Any, profile: Profile, config: dict[str, Any], bundle_dir: str | None) -> Outcome:
    """What `profile` demands of a running container whose config.json is `config`: the profile applied
    to it again as at its create (relative paths against `bundle_dir`, the engines' directories allowed).

    A config.json sandbox-runc hardened while adding a user namespace names as `root.path` the rootfs
    view it mounted in runc's own mount namespace (`ROOTFS_TARGET`); a create refuses that path, and the
    host cannot resolve it, but the engine's rootfs behind it passed the gate when the container was
    created and no kernel control depends on the path, so those refusals do not count here.
    """
    from ..core.decisions import ROOTFS_TARGET, Outcome

    outcome = harden_with_engine_dirs(op, profile, config, bundle_dir)
    root, annotations = config.get("root"), config.get("annotations")
    if (isinstance(root, dict) and root.get("path") == ROOTFS_TARGET and isinstance(annotations, dict)
            and any(isinstance(k, str) and k.endswith(".applied") for k in annotations)):
        kept = [d for d in outcome.decisions if not (d.action == "refuse" and d.pointer == "/root/path")]
        outcome = Outcome(outcome.config, kept, outcome.prep)
    return outcome


def apply_profile_to_config(profile_ref: str, config: dict[str, Any], bundle_dir: str | None = None) -> dict[str, Any]:
    """What `profile_ref` demands of a running container whose config.json is `config` (`reapply`); a
    refusal raises PolicyRefusal (for `sandbox verify --profile`)."""
    from ..core import formats
    from ..errors import PolicyRefusal
    from ..host.opconfig import load_operator_config

    profile = resolve_profile(profile_ref)
    outcome = reapply(load_operator_config(), profile, config, bundle_dir)
    if outcome.refused:
        raise PolicyRefusal(formats.refusal_message(profile, outcome), profile=profile.name)
    return outcome.config


def record_verification(container_id: str, bundle: str, profile_ref: str | None, checks: list[Any],
                        audit_log: str | None = None) -> None:
    """Write a `verified` record to the operator's audit log (or `audit_log`)."""
    from ..audit.log import AuditLog
    from ..core.verify import failed, to_json
    from ..host.opconfig import load_operator_config

    op = load_operator_config()
    log = AuditLog(audit_log or op.audit_log, on_failure=op.on_audit_failure, hmac_key_file=op.audit_hmac_key_file,
                   max_bytes=op.audit_max_bytes, create_dir=audit_log is None)
    log.append([{"event": "verified", "container_id": container_id, "bundle": bundle, "profile": profile_ref or "",
                 "data": {"passed": not failed(checks), "checks": to_json(checks)}}])
