"""Glue between the pure core and the edges, shared by `sandbox check/apply/run` and the shim."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .decisions import Outcome
    from .profile import Profile



def resolve_profile(ref: str, search_dirs: tuple[str, ...] = ()) -> Profile:
    from .cache import load_profile

    return load_profile(ref, search_dirs)


def harden(profile: Profile, config: dict[str, Any], bundle_dir: str | None, *,
           learn_agent: str | None = None) -> Outcome:
    """Probe the host paths `config` names, then apply the profile (pure).

    `learn_agent`: the socket of `sandbox learn`'s own agent; the profile is applied for learning.
    """
    from .host import probe
    from .transform import apply, needs_agent

    if learn_agent is None:
        return apply(profile, config, probe(config, bundle_dir, agent=needs_agent(profile)))
    from ._record import replace

    facts = replace(probe(config, bundle_dir), agent=learn_agent, agent_socket=learn_agent, agent_problem="")
    return apply(profile, config, facts, learn=True)


def apply_profile_to_config(profile_ref: str, config: dict[str, Any]) -> dict[str, Any]:
    """What `profile_ref` makes of `config`; a refusal raises PolicyRefusal (for `sandbox verify --profile`)."""
    from . import formats
    from .errors import PolicyRefusal

    profile = resolve_profile(profile_ref)
    outcome = harden(profile, config, None)
    if outcome.refused:
        raise PolicyRefusal(formats.refusal_message(profile, outcome), profile=profile.name)
    return outcome.config


def record_verification(container_id: str, bundle: str, profile_ref: str | None, checks: list[Any],
                        audit_log: str | None = None) -> None:
    """Write a `verified` record to the operator's audit log (or `audit_log`)."""
    from .audit import AuditLog
    from .opconfig import load_operator_config
    from .verify import failed, to_json

    op = load_operator_config()
    log = AuditLog(audit_log or op.audit_log, on_failure=op.on_audit_failure, hmac_key_file=op.audit_hmac_key_file,
                   max_bytes=op.audit_max_bytes, create_dir=audit_log is None)
    log.append([{"event": "verified", "container_id": container_id, "bundle": bundle, "profile": profile_ref or "",
                 "data": {"passed": not failed(checks), "checks": to_json(checks)}}])
