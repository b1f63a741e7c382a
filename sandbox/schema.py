"""A JSON Schema (draft 2020-12) for profiles, so editors can validate YAML as it is typed."""

from __future__ import annotations

from typing import Any

from . import tables


def profile_schema() -> dict[str, Any]:
    caps = sorted({*tables.CAPABILITIES, *(c[4:] for c in tables.CAPABILITIES)})
    path = {"type": "string", "pattern": "^/"}
    str_list = {"type": "array", "items": {"type": "string"}}
    idmap = {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["container_id", "host_id", "size"],
        "properties": {k: {"type": "integer", "minimum": 0, "maximum": 4294967295}
                       for k in ("container_id", "host_id", "size")}}}
    size = {"oneOf": [{"type": "integer", "minimum": 0},
                      {"type": "string", "pattern": r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T|k|B)?$"}]}
    cpu = {"oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": r"^(\d+m|\d+(\.\d+)?)$"}]}

    def limit(kind: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "properties": {"max": kind, "default": kind}}

    def obj(props: dict[str, Any], desc: str = "") -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "properties": props, "description": desc}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sandbox.invalid/schemas/profile-v1.json",
        "title": "sandbox security profile",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "name"],
        "properties": {
            "apiVersion": {"const": "sandbox/v1"},
            "kind": {"const": "Profile"},
            "name": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"},
            "extends": {"type": "string", "description": "a built-in name, a name in a profile directory, or a path"},
            "description": {"type": "string"},
            "mode": {"enum": ["enforce", "complain"]},
            "capabilities": {"oneOf": [
                {"type": "array", "items": {"enum": caps}},
                obj({"allow": {"type": "array", "items": {"enum": caps}}})]},
            "no_new_privileges": {"type": "boolean"},
            "user": obj({"run_as_non_root": {"type": "boolean"},
                         "user_namespace": {"enum": ["required", "optional"]},
                         "uid_mappings": idmap, "gid_mappings": idmap}),
            "seccomp": obj({
                "base": {"type": "string", "description": "runtime-default, none, or a path to a seccomp JSON"},
                "default_action": {"enum": [k for k in tables.SECCOMP_ACTION_ALIASES if k != "allow"]
                                   + [a for a in tables.SECCOMP_ACTION_RANK if a != "SCMP_ACT_ALLOW"]},
                "default_errno": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 4095},
                                            {"enum": list(tables.known_errnos())}]},
                "deny": str_list, "allow": str_list,
                "rules": {"type": "array", "items": {"type": "object", "required": ["names", "action"]}}}),
            "filesystem": obj({
                "readonly_rootfs": {"type": "boolean"},
                "tmpfs": {"type": "array", "items": obj({
                    "path": path, "size": size, "options": str_list, "mode": {"type": "integer"}})},
                "forbidden_host_paths": {"type": "array", "items": {"oneOf": [
                    path, obj({"path": path, "match": {"enum": ["exact", "subtree"]}})]}},
                "allowed_host_paths": {"type": "array", "items": path},
                "bind_mounts": obj({"readonly": {"type": "boolean"}, "nosuid_nodev": {"type": "boolean"}}),
                "readonly_system_mounts": {"type": "boolean"},
                "masked_paths": {"type": "array", "items": path},
                "readonly_paths": {"type": "array", "items": path},
                "mount_types": {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._+-]*$"}},
                "rootfs_dirs": {"type": "array", "items": path}}),
            "namespaces": obj({"required": {"type": "array", "items": {"enum": list(tables.NAMESPACES)}}}),
            "resources": obj({"memory": limit(size), "pids": limit({"type": "integer", "minimum": 1}),
                              "cpu": limit(cpu)}),
            "devices": obj({"allow": {"type": "array", "items": {"type": "string", "pattern": "^/dev/"}}}),
            "sysctls": obj({"allow": str_list}),
            "hooks": obj({"allow": {"type": "array", "items": path}, "allow_engine_hooks": {"type": "boolean"}}),
            "process": obj({
                "oom_score_adj_min": {"oneOf": [{"type": "integer", "minimum": -1000, "maximum": 1000},
                                                {"type": "null"}]},
                "rlimits": {"type": "object", "additionalProperties": False,
                            "properties": {n: {"type": "integer", "minimum": 0} for n in tables.RLIMITS}}}),
            "apparmor": {"type": ["string", "null"]},
            "selinux": {"type": ["string", "null"]},
            "unknown_config_fields": {"enum": ["refuse", "warn"]},
            "runc_mitigations": {"type": "boolean"},
        },
    }
