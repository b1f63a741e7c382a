"""JSON read the way runc reads it: Go's encoding/json into the runtime-spec's structs.

runc decodes `exec --process FILE` into specs.Process and `update --resources FILE|-` into
specs.LinuxResources with encoding/json, which is not how Python reads JSON:

* an object key matches a struct field case-insensitively (`NoNewPrivileges`,
  `NONEWPRIVILEGES`, even with U+017F for `s` and U+212A for `k`), so two keys can name
  one field and runc uses the last;
* keys that name no field are ignored;
* a number must fit the field's Go type (`1.0` or `1e3` is no uint32; `-0` is no uint);
* `null` clears a pointer, slice or map and leaves anything else as it was.

`decode` reads a document into exactly the fields runc sees, under their canonical names.
What runc would read differently from a plain reading (two keys for one field) or refuse
(a type it cannot decode) raises GoJSONError; sandbox then refuses rather than guesses.
Pure: data in, data out.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class GoJSONError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '(top level)'}: {message}")
        self.path = path


class Number(str):
    """A JSON number's text, kept as written: its Go type decides whether it is valid."""


class Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def loads(text: str) -> Any:
    """Parse JSON keeping every key of every object and every number's text."""

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    return json.loads(text, object_pairs_hook=Pairs, parse_int=Number, parse_float=Number, parse_constant=constant)


# Schema types: ("bool",) ("string",) ("int", bits) ("uint", bits) ("ptr", T) ("slice", T) ("map", T)
# ("struct", {name: T}).
BOOL = ("bool",)
STRING = ("string",)
INT64 = ("int", 64)
UINT16 = ("uint", 16)
UINT32 = ("uint", 32)
UINT64 = ("uint", 64)


def ptr(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return ("ptr", t)


def slice_of(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return ("slice", t)


def map_of(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return ("map", t)


def struct(fields: dict[str, tuple[Any, ...]]) -> tuple[Any, ...]:
    return ("struct", fields)


_CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# runtime-spec v1.0.2 (what runc 1.1.5 vendors), specs-go/config.go
PROCESS = struct({
    "terminal": BOOL,
    "consoleSize": ptr(struct({"height": UINT64, "width": UINT64})),
    "user": struct({"uid": UINT32, "gid": UINT32, "umask": ptr(UINT32), "additionalGids": slice_of(UINT32),
                    "username": STRING}),
    "args": slice_of(STRING),
    "commandLine": STRING,
    "env": slice_of(STRING),
    "cwd": STRING,
    "capabilities": ptr(struct({s: slice_of(STRING) for s in _CAP_SETS})),
    "rlimits": slice_of(struct({"type": STRING, "hard": UINT64, "soft": UINT64})),
    "noNewPrivileges": BOOL,
    "apparmorProfile": STRING,
    "oomScoreAdj": ptr(INT64),
    "selinuxLabel": STRING,
})

_BLKIO_DEVICE = {"major": INT64, "minor": INT64}
_THROTTLE = slice_of(struct({**_BLKIO_DEVICE, "rate": UINT64}))
RESOURCES = struct({
    "devices": slice_of(struct({"allow": BOOL, "type": STRING, "major": ptr(INT64), "minor": ptr(INT64),
                                "access": STRING})),
    "memory": ptr(struct({"limit": ptr(INT64), "reservation": ptr(INT64), "swap": ptr(INT64), "kernel": ptr(INT64),
                          "kernelTCP": ptr(INT64), "swappiness": ptr(UINT64), "disableOOMKiller": ptr(BOOL),
                          "useHierarchy": ptr(BOOL)})),
    "cpu": ptr(struct({"shares": ptr(UINT64), "quota": ptr(INT64), "period": ptr(UINT64),
                       "realtimeRuntime": ptr(INT64), "realtimePeriod": ptr(UINT64), "cpus": STRING, "mems": STRING})),
    "pids": ptr(struct({"limit": INT64})),
    "blockIO": ptr(struct({"weight": ptr(UINT16), "leafWeight": ptr(UINT16),
                           "weightDevice": slice_of(struct({**_BLKIO_DEVICE, "weight": ptr(UINT16),
                                                            "leafWeight": ptr(UINT16)})),
                           "throttleReadBpsDevice": _THROTTLE, "throttleWriteBpsDevice": _THROTTLE,
                           "throttleReadIOPSDevice": _THROTTLE, "throttleWriteIOPSDevice": _THROTTLE})),
    "hugepageLimits": slice_of(struct({"pageSize": STRING, "limit": UINT64})),
    "network": ptr(struct({"classID": ptr(UINT32),
                           "priorities": slice_of(struct({"name": STRING, "priority": UINT32}))})),
    "rdma": map_of(struct({"hcaHandles": ptr(UINT32), "hcaObjects": ptr(UINT32)})),
    "unified": map_of(STRING),
})

# config.json, as far as exec needs it: the process runc would start
SPEC_PROCESS = struct({"process": ptr(PROCESS)})

_KEEP = object()  # `null` for a type it cannot clear: the field keeps its value


def fold(key: str) -> str:
    """Go's case folding as encoding/json applies it to ASCII field names."""
    return "".join(("s" if c == "\u017f" else "k" if c == "\u212a" else c.lower() if c.isascii() else c)
                   for c in key)


def decode(value: Any, schema: tuple[Any, ...], path: str = "") -> Any:
    """`value` (from `loads`) as runc sees it under `schema`: plain dicts, lists, ints, strs, bools.

    A pointer, slice or map cleared by `null` is None; a struct field that is absent (or `null`
    where Go cannot clear it) is left out.
    """
    out = _decode(value, schema, path)
    return None if out is _KEEP else out


def _decode(value: Any, schema: tuple[Any, ...], path: str) -> Any:
    kind = schema[0]
    if value is None:
        return None if kind in ("ptr", "slice", "map") else _KEEP
    if kind == "ptr":
        return _decode(value, schema[1], path)
    if kind == "bool":
        if not isinstance(value, bool):
            raise GoJSONError(path, f"{_what(value)} is not a boolean")
        return value
    if kind == "string":
        if not isinstance(value, str) or isinstance(value, Number):
            raise GoJSONError(path, f"{_what(value)} is not a string")
        return str(value)
    if kind in ("int", "uint"):
        return _number(value, kind, schema[1], path)
    if kind == "slice":
        if not isinstance(value, list) or isinstance(value, Pairs):
            raise GoJSONError(path, f"{_what(value)} is not an array")
        out = []
        for i, v in enumerate(value):
            d = _decode(v, schema[1], f"{path}/{i}")
            out.append(_zero(schema[1]) if d is _KEEP else d)
        return out
    if not isinstance(value, Pairs):
        raise GoJSONError(path, f"{_what(value)} is not an object")
    if kind == "map":
        m: dict[str, Any] = {}
        for k, v in value:
            if k in m:
                raise GoJSONError(f"{path}/{k}", "the key appears twice (runc would use the last one)")
            d = _decode(v, schema[1], f"{path}/{k}")
            m[k] = _zero(schema[1]) if d is _KEEP else d
        return m
    fields: dict[str, tuple[Any, ...]] = schema[1]
    folded = {fold(f): f for f in fields}
    st: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for k, v in value:
        name = k if k in fields else folded.get(fold(k))
        if name is None:
            continue  # runc ignores a key that names no field
        if name in seen:
            raise GoJSONError(f"{path}/{k}", f"{json.dumps(seen[name])} and {json.dumps(k)} both set {name} "
                                             "(runc matches keys case-insensitively and would use the last)")
        seen[name] = k
        d = _decode(v, fields[name], f"{path}/{name}")
        if d is not _KEEP:
            st[name] = d  # None: a pointer, slice or map explicitly cleared by `null`
    return st


def _zero(schema: tuple[Any, ...]) -> Any:
    return {"bool": False, "string": "", "int": 0, "uint": 0, "struct": {}}.get(schema[0])


def _number(value: Any, kind: str, bits: int, path: str) -> int:
    if not isinstance(value, Number):
        raise GoJSONError(path, f"{_what(value)} is not a number")
    text = str(value)
    digits = text[1:] if text.startswith("-") else text
    if not digits.isdigit() or not digits.isascii() or (kind == "uint" and text.startswith("-")):
        raise GoJSONError(path, f"{text} is not a{'n unsigned' if kind == 'uint' else 'n'} integer")
    n = int(text)
    lo, hi = (0, (1 << bits) - 1) if kind == "uint" else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if not lo <= n <= hi:
        raise GoJSONError(path, f"{text} does not fit a{'n unsigned' if kind == 'uint' else ''} {bits}-bit integer")
    return n


def _what(value: Any) -> str:
    if isinstance(value, Number):
        return f"the number {value}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Pairs):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)
