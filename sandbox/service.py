"""Glue between the pure core and the edges, shared by `sandbox check/apply/run` and the shim."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .decisions import Decision, Outcome
    from .errors import BundleError
    from .profile import Profile



def resolve_profile(ref: str, search_dirs: tuple[str, ...] = ()) -> Profile:
    from .cache import load_profile

    return load_profile(ref, search_dirs)


def bundle_problems(profile: Profile, problems: list[BundleError]) -> list[Decision]:
    """What `read_config(..., problems=...)` tolerated, as decisions for complain mode.

    Under an enforcing profile the first problem is raised, as reading strictly would have.
    """
    if not problems:
        return []
    if profile.mode != "complain":
        raise problems[0]
    from .decisions import Decision, pointer

    out = []
    for e in problems:
        ptr = pointer(*e.field.split(".")) if e.field else ""
        out.append(Decision("bundle", ptr, "refuse", None, None,
                            f"{e.field + ': ' if e.field else ''}{e.message} (runc runs it; an enforcing profile "
                            "refuses it)", profile.rule, applied=False))
    return out


def harden(profile: Profile, config: dict[str, Any], bundle_dir: str | None, container_id: str = "", *,
           named_root: str = "", named_root_subtree: bool = False, learn_agent: str | None = None) -> Outcome:
    """Probe the host paths `config` names, then apply the profile (pure).

    `container_id` is the id runc is given (it decides which cgroup and engine-hook arguments are the
    container's own); "" when a bundle is checked on its own.  `named_root`: the rootfs (or bundle
    directory, `named_root_subtree`) the person named on `sandbox run`'s command line.
    `learn_agent`: the socket of `sandbox learn`'s own agent; the profile is applied for learning.
    """
    from .host import probe
    from .transform import apply, needs_agent

    facts = probe(config, bundle_dir, container_id, named_root, named_root_subtree,
                  agent=needs_agent(profile) and learn_agent is None)
    if learn_agent is None:
        return apply(profile, config, facts)
    from ._record import replace

    return apply(profile, config, replace(facts, agent=learn_agent, agent_socket=learn_agent, agent_problem=""),
                 learn=True)


def apply_profile_to_config(profile_ref: str, config: dict[str, Any], bundle_dir: str | None = None) -> dict[str, Any]:
    """What `profile_ref` makes of `config` (relative paths in it are relative to `bundle_dir`); a refusal
    raises PolicyRefusal (for `sandbox verify --profile`)."""
    from . import formats
    from .errors import PolicyRefusal

    profile = resolve_profile(profile_ref)
    outcome = harden(profile, config, bundle_dir)
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
