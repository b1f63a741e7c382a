"""Glue between the pure core and the edges, shared by `sandbox check/apply/run` and the shim."""

from __future__ import annotations

from typing import Any

from .decisions import Outcome
from .profile import Profile


def resolve_profile(ref: str, search_dirs: tuple[str, ...] = ()) -> Profile:
    from .loader import load_profile

    return load_profile(ref, search_dirs=search_dirs)


def harden(profile: Profile, config: dict[str, Any], bundle_dir: str | None) -> Outcome:
    """Probe the host paths `config` names, then apply the profile (pure)."""
    from .host import probe
    from .transform import apply

    return apply(profile, config, probe(config, bundle_dir))
