"""A JSON Schema (draft 2020-12) for profiles, so editors can validate YAML as it is typed.

Generated from the one declaration of every field (`sandbox.core.fields`).
"""

from __future__ import annotations

from .fields import profile_schema

__all__ = ["profile_schema"]
