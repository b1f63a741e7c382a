"""The shape of the config.json fields sandbox reads, checked before any of them is trusted.

runc decodes config.json with Go's encoding/json, which matches object keys
case-insensitively (Unicode folding: `Seccomp`, even `ſeccomp`, is `seccomp`) and
lets the last of such keys win.  A bundle could therefore hide a second
`Seccomp: null` or `Capabilities` that sandbox never looked at but runc would use.
So: a key that is another spelling of a field, or of a sibling, is refused;
fields sandbox reads must have the types runc expects; strings carry no NUL.
Maps with free-form keys (annotations, sysctl, unified) are exempt from folding.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FREE = "free"  # a map whose keys are data, values strings

_CAPS = {s: [str] for s in ("bounding", "effective", "permitted", "inheritable", "ambient")}
_HOOK = (dict, {"path": str, "args": [str], "env": [str], "timeout": int})
_MAP = (dict, {"containerID": int, "hostID": int, "size": int})

SHAPE: Any = (dict, {
    "ociVersion": str,
    "hostname": str,
    "process": (dict, {
        "terminal": bool,
        "user": (dict, {"uid": int, "gid": int, "umask": int, "additionalGids": [int], "username": str}),
        "args": [str], "env": [str], "cwd": str,
        "capabilities": (dict, _CAPS),
        "noNewPrivileges": bool, "apparmorProfile": str, "selinuxLabel": str, "oomScoreAdj": int,
    }),
    "root": (dict, {"path": str, "readonly": bool}),
    "mounts": [(dict, {"destination": str, "source": str, "type": str, "options": [str]})],
    "hooks": (dict, {s: [_HOOK] for s in ("prestart", "createRuntime", "createContainer", "startContainer",
                                          "poststart", "poststop")}),
    "annotations": _FREE,
    "linux": (dict, {
        "namespaces": [(dict, {"type": str, "path": str})],
        "uidMappings": [_MAP], "gidMappings": [_MAP],
        "devices": [(dict, {"path": str, "type": str, "major": int, "minor": int, "fileMode": int,
                            "uid": int, "gid": int})],
        "sysctl": _FREE,
        "cgroupsPath": str,
        "resources": (dict, {
            "devices": [(dict, {"allow": bool, "type": str, "major": int, "minor": int, "access": str})],
            "memory": (dict, {"limit": int, "swap": int, "reservation": int, "kernel": int, "kernelTCP": int}),
            "pids": (dict, {"limit": int}),
            "cpu": (dict, {"quota": int, "period": int, "shares": int, "cpus": str, "mems": str}),
            "unified": _FREE,
        }),
        "seccomp": (dict, {
            "defaultAction": str, "defaultErrnoRet": int, "architectures": [str], "flags": [str],
            "listenerPath": str, "listenerMetadata": str,
            "syscalls": [(dict, {"names": [str], "action": str, "errnoRet": int,
                                 "args": [(dict, {"index": int, "value": int, "valueTwo": int, "op": str})]})],
        }),
        "maskedPaths": [str], "readonlyPaths": [str],
        "rootfsPropagation": str, "mountLabel": str,
    }),
})

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "an array"}


# A field's path is built only when there is a problem to report: every node of config.json is
# visited on every create, so it travels as a linked pair (parent, key), not as a string.
Path = tuple  # () for the top, else (parent Path, key)


def _text(path: Path) -> str:
    keys: list[str | int] = []
    while path:
        path, key = path
        keys.append(key)
    out = ""
    for key in reversed(keys):
        out = f"{out}[{key}]" if isinstance(key, int) else (f"{out}.{key}" if out else key)
    return out


def check(value: Any, spec: Any = SHAPE, path: Path = ()) -> str | None:
    """The first problem as `field: message`, or None."""
    if value is None and path:
        return None  # JSON null: Go's zero value, what sandbox treats as absent
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{_text(path)}: expected an array"
        for i, item in enumerate(value):
            problem = check(item, spec[0], (path, i))
            if problem:
                return problem
        return None
    if spec == _FREE:
        if not isinstance(value, dict):
            return f"{_text(path)}: expected an object"
        for k, v in value.items():
            if "\x00" in k or (isinstance(v, str) and "\x00" in v):
                return f"{_text((path, k))}: contains a NUL character"
        return None
    if isinstance(spec, tuple):
        if not isinstance(value, dict):
            return f"{_text(path) or 'config.json'}: expected an object"
        return _check_object(value, spec[1], path)
    if spec is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, spec)
    if not ok:
        return f"{_text(path)}: expected {_TYPE_NAMES.get(spec, spec.__name__)}"
    if isinstance(value, str) and "\x00" in value:
        return f"{_text(path)}: contains a NUL character"
    return None


def _check_object(value: dict[str, Any], fields: dict[str, Any], path: Path) -> str | None:
    folded: dict[str, str] = {}
    known = {k.casefold(): k for k in fields}
    for key in value:
        f = key.casefold()
        if f in folded:
            return (f"{_text((path, key))}: runc reads {key!r} and {folded[f]!r} as the same field; "
                    "refusing the ambiguity")
        folded[f] = key
        if f in known and known[f] != key:
            return f"{_text((path, key))}: runc reads this as {known[f]!r}; write it exactly so"
        if "\x00" in key:
            return f"{_text((path, key))}: contains a NUL character"
    for key, item in value.items():
        if key in fields:
            problem = check(item, fields[key], (path, key))
        else:
            problem = _generic(item, (path, key))
        if problem:
            return problem
    return None


def _generic(value: Any, path: Path) -> str | None:
    """Fields sandbox does not read: still no case-folded twins (runc may read them) and no NUL."""
    if isinstance(value, dict):
        return _check_object(value, {}, path)
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = _generic(item, (path, i))
            if problem:
                return problem
    elif isinstance(value, str) and "\x00" in value:
        return f"{_text(path)}: contains a NUL character"
    return None
