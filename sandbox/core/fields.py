"""Every profile field, declared once.

A `Field` names its YAML path, its kind (how a value is checked, turned into the
model, and described in JSON Schema), its default, its documentation, its merge
rule for `extends` and how a change to it is judged by `sandbox profile diff`.
From this one table come:

- validation with positions (`sandbox.core.loader` walks the table; unknown keys get a
  "did you mean" from the keys declared at that level),
- the defaults at the root of every `extends` chain and the additive lists,
- the model (`sandbox.core.profile`): each field names the attribute it fills,
- the JSON Schema (`sandbox profile schema`),
- `diff` (and so the floor an annotation-selected profile may not go below),
- the reference tables in docs/profile-reference.md (`scripts/profile-reference.py`
  writes them; a test checks that the committed document equals the generated one),
- the lint rules' cross-reference (each rule in `sandbox.core.lint` names its field).

Adding a field: add one `Field(...)` below, in the section it belongs to, and the
typed attribute it names on the model record in `sandbox/core/profile.py` (the transform
reads that).  `tests/unit/test_fields.py` fails until both exist and the reference
document is regenerated.  Pure: no file is read here (the loader hands the
seccomp-file check in through the `Checker`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import tables

if TYPE_CHECKING:
    from .profile import Profile

Path = tuple[str | int, ...]
API_VERSION = "sandbox/v1"


class Checker(Protocol):
    """What a kind needs from the loader to report problems at their position."""

    def err(self, path: Path, msg: str, hint: str | None = None) -> None: ...

    def warn(self, path: Path, msg: str) -> None: ...

    def keys(self, data: dict[str, Any], path: Path, allowed: tuple[str, ...]) -> None: ...

    def typed(self, value: Any, path: Path, kind: type | tuple[type, ...], what: str) -> bool: ...

    def str_list(self, value: Any, path: Path) -> list[str]: ...

    def seccomp_file_problem(self, path: str) -> str | None: ...


def typename(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing (null)"}.get(type(v), type(v).__name__)


def _hint(word: str, choices: Any) -> str | None:
    dym = tables.did_you_mean(word, choices)
    return f"did you mean {dym!r}?" if dym else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- kinds: how one value is checked, built and described ------------------------------------

class Kind:
    """A value's type.  `check` reports problems, `build` turns a checked value into the model's."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        raise NotImplementedError

    def build(self, value: Any) -> Any:
        return value

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def keys(self) -> tuple[str, ...]:
        """Keys a mapping value of this kind may have (for the fuzz tests and the docs)."""
        return ()


class Const(Kind):
    def __init__(self, value: str) -> None:
        self.value = value

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if value != self.value:
            c.err(path, f"must be {self.value!r}, got {value!r}")

    def schema(self) -> dict[str, Any]:
        return {"const": self.value}


_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")


class Name(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            c.err(path, "must be a lower-case name of letters, digits, '.', '_' or '-' (at most 64)")

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": _NAME_RE.pattern}


class Str(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        if not isinstance(value, str):
            c.err(path, f"expected a string, got {typename(value)}")

    def build(self, value: Any) -> str:
        return value or ""

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}


class Label(Kind):
    """An LSM label, or null for none."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if value is not None:
            c.typed(value, path, str, "a label string")

    def schema(self) -> dict[str, Any]:
        return {"type": ["string", "null"]}


class Bool(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        c.typed(value, path, bool, "true or false")

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


class Choice(Kind):
    def __init__(self, *options: str) -> None:
        self.options = options

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if value not in self.options:
            c.err(path, f"must be {' or '.join(repr(o) for o in self.options)}, got {value!r}")

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.options)}


class Strings(Kind):
    """A list of strings, each optionally checked by `item` (which reports its own errors)."""

    def __init__(self, item: Callable[[Checker, str, Path], None] | None = None,
                 item_schema: dict[str, Any] | None = None, normalize: bool = False) -> None:
        self.item = item
        self.item_schema = item_schema or {"type": "string"}
        self.normalize = normalize

    def check(self, c: Checker, value: Any, path: Path) -> None:
        items = c.str_list(value, path)
        if self.item:
            for i, s in enumerate(items):
                self.item(c, s, (*path, i))

    def build(self, value: Any) -> tuple[str, ...]:
        return tuple(posixpath.normpath(p) for p in value) if self.normalize else tuple(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item_schema}


def mappings(c: Checker, value: Any, path: Path, what: str, item: str,
             keys: tuple[str, ...]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each mapping of a list of mappings with its path, the list, the items and their keys checked."""
    if not c.typed(value, path, list, what):
        return
    for i, m in enumerate(value):
        if c.typed(m, (*path, i), dict, item):
            c.keys(m, (*path, i), keys)
            yield (*path, i), m


def check_abs_path(c: Checker, value: Any, path: Path) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        c.err(path, "expected an absolute path")


PATH_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^/"}


def AbsPaths(normalize: bool = False) -> Strings:  # noqa: N802 - reads as a kind
    return Strings(check_abs_path, PATH_SCHEMA, normalize)


_MOUNT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


def _check_mount_type(c: Checker, value: str, path: Path) -> None:
    if not _MOUNT_TYPE_RE.match(value):
        c.err(path, f"expected a filesystem type name such as ext4, got {value!r}")
    elif value in tables.MOUNT_TYPES:
        c.warn(path, f"{value} is allowed already")


class OomScoreAdj(Kind):
    """An integer from -1000 to 1000, or null for no floor."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if value is not None and not (_is_int(value) and -1000 <= value <= 1000):
            c.err(path, "expected an integer from -1000 to 1000, or null")

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "integer", "minimum": -1000, "maximum": 1000}, {"type": "null"}]}


class Rlimits(Kind):
    """`{RLIMIT_*: maximum}`; built as sorted (name, maximum) pairs."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if not c.typed(value, path, dict, "a mapping of RLIMIT_* names to maxima"):
            return
        for name, top in value.items():
            if name not in tables.RLIMITS:
                c.err((*path, name), f"unknown rlimit {name!r}", _hint(name, tables.RLIMITS))
            elif not (_is_int(top) and top >= 0):
                c.err((*path, name), "expected a non-negative integer")

    def build(self, value: Any) -> tuple[tuple[str, int], ...]:
        return tuple(sorted((value or {}).items()))

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False,
                "properties": {n: {"type": "integer", "minimum": 0} for n in tables.RLIMITS}}


def _check_device(c: Checker, value: str, path: Path) -> None:
    if not value.startswith("/dev/"):
        c.err(path, "expected a device path under /dev/")


def _check_namespace(c: Checker, ns: str, path: Path) -> None:
    if ns not in tables.NAMESPACES:
        c.err(path, f"unknown namespace {ns!r}", _hint(ns, tables.NAMESPACES))


class Capabilities(Kind):
    """Capability names, `CAP_` optional, as a list or as `{allow: [...]}`."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if isinstance(value, dict):
            c.keys(value, path, ("allow",))
            value = value.get("allow", [])
            path = (*path, "allow")
        for i, name in enumerate(c.str_list(value, path)):
            if tables.normalize_capability(name) is None:
                full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
                c.err((*path, i), f"unknown capability {name!r}", _hint(full, tables.CAPABILITIES))

    def build(self, value: Any) -> tuple[str, ...]:
        names = value.get("allow", []) if isinstance(value, dict) else value
        return tuple(sorted({tables.normalize_capability(n) or n for n in names}))

    def schema(self) -> dict[str, Any]:
        caps = sorted({*tables.CAPABILITIES, *(c[4:] for c in tables.CAPABILITIES)})
        items = {"type": "array", "items": {"enum": caps}}
        return {"oneOf": [items, _obj({"allow": items})]}


class IdMappings(Kind):
    KEYS = ("container_id", "host_id", "size")

    def check(self, c: Checker, value: Any, path: Path) -> None:
        for mp, m in mappings(c, value, path, "a list of mappings", "a mapping with container_id, host_id, size",
                              self.KEYS):
            for f in self.KEYS:
                val: Any = m.get(f)
                if not _is_int(val) or val < 0 or val > 2**32 - 1:
                    c.err((*mp, f), "expected an id from 0 to 4294967295")
            if m.get("size") == 0:
                c.err((*mp, "size"), "size must be at least 1")

    def build(self, value: Any) -> Any:
        from .profile import IdMapping

        return tuple(IdMapping(m["container_id"], m["host_id"], m["size"]) for m in value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": list(self.KEYS),
            "properties": {k: {"type": "integer", "minimum": 0, "maximum": 4294967295} for k in self.KEYS}}}

    def keys(self) -> tuple[str, ...]:
        return self.KEYS


# `seccomp.base` values that name no file: sandbox's Docker-equivalent allow-list, an allow-list
# with nothing on it (only `seccomp.allow` and `seccomp.rules` allow), no filter at all.
SECCOMP_BASE_NAMES = ("runtime-default", "empty", "none")


class SeccompBase(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        if c.typed(value, path, str, "runtime-default, empty, none or a file path") and value not in \
                SECCOMP_BASE_NAMES:
            problem = c.seccomp_file_problem(value)
            if problem:
                c.err(path, problem)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "runtime-default, empty, none, or a path to a seccomp JSON"}


def seccomp_action(a: str) -> str | None:
    """`errno`, `kill` ... or an SCMP_ACT_* name -> the SCMP_ACT_* name."""
    if a in tables.SECCOMP_ACTION_RANK:
        return a
    return tables.SECCOMP_ACTION_ALIASES.get(a.lower())


class SeccompAction(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        if not isinstance(value, str) or seccomp_action(value) in (None, "SCMP_ACT_ALLOW"):
            choices = [k for k in tables.SECCOMP_ACTION_ALIASES if k != "allow"]
            c.err(path, f"must be one of {', '.join(choices)} (or an SCMP_ACT_* name "
                  f"other than SCMP_ACT_ALLOW), got {value!r}")

    def build(self, value: Any) -> str:
        return seccomp_action(value) or "SCMP_ACT_ERRNO"

    def schema(self) -> dict[str, Any]:
        return {"enum": [k for k in tables.SECCOMP_ACTION_ALIASES if k != "allow"]
                + [a for a in tables.SECCOMP_ACTION_RANK if a != "SCMP_ACT_ALLOW"]}


class Errno(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        if tables.errno_number(value) is None:
            c.err(path, f"unknown errno {value!r}", _hint(str(value).upper(), tables.known_errnos())
                  or "a name such as EPERM, or a number from 1 to 4095")

    def build(self, value: Any) -> int:
        return tables.errno_number(value) or 1

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 4095}, {"enum": list(tables.known_errnos())}]}


class Syscalls(Kind):
    """Syscall names, checked against libseccomp's tables for the checked architectures."""

    def __init__(self, family_warning: bool = False) -> None:
        self.family_warning = family_warning

    def check(self, c: Checker, value: Any, path: Path) -> None:
        check_syscall_names(c, c.str_list(value, path), path)
        if self.family_warning and isinstance(value, list):
            for name, rest in tables.missing_family_members(tuple(x for x in value if isinstance(x, str))):
                c.warn(path, f"{name!r} is denied but {', '.join(rest)} also reach that operation and are not denied")

    def build(self, value: Any) -> tuple[str, ...]:
        return tuple(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}


def check_syscall_names(c: Checker, names: list[str], path: Path) -> None:
    for i, name in enumerate(names):
        arches = tables.syscall_arches(name)
        checked = [a for a in tables.CHECKED_ARCHES if a in arches]
        if not checked:
            c.err((*path, i), f"unknown syscall {name!r} (not known to libseccomp on x86_64 or aarch64)",
                  _hint(name, tables.known_syscalls()))
        elif len(checked) < len(tables.CHECKED_ARCHES):
            missing = sorted(set(tables.CHECKED_ARCHES) - set(checked))
            c.warn((*path, i), f"syscall {name!r} does not exist on {', '.join(missing)}")


class SeccompRules(Kind):
    def check(self, c: Checker, value: Any, path: Path) -> None:
        if c.typed(value, path, list, "a list of OCI seccomp rules"):
            for problem in check_seccomp_data({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": value}):
                c.err(path, problem)

    def build(self, value: Any) -> tuple[dict[str, Any], ...]:
        return tuple(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "object", "required": ["names", "action"]}}

    def keys(self) -> tuple[str, ...]:
        return ("names", "action", "args", "index", "value", "op", "errnoRet")


def check_seccomp_data(data: Any) -> list[str]:
    """Problems with an OCI/Docker seccomp document, as `field: message` strings."""
    out: list[str] = []
    if not isinstance(data, dict):
        return ["top level: expected a JSON object"]
    if data.get("defaultAction") not in tables.SECCOMP_ACTION_RANK:
        out.append(f"defaultAction: unknown action {data.get('defaultAction')!r}")
    calls = data.get("syscalls", [])
    if not isinstance(calls, list):
        return [*out, "syscalls: expected a list"]
    for i, call in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(call, dict):
            out.append(f"{where}: expected an object")
            continue
        names = call.get("names", [call["name"]] if isinstance(call.get("name"), str) else None)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            out.append(f"{where}.names: expected a list of syscall names")
            continue
        for n in names:
            if not tables.syscall_arches(n):
                dym = tables.did_you_mean(n, tables.known_syscalls())
                out.append(f"{where}.names: unknown syscall {n!r}" + (f" (did you mean {dym!r}?)" if dym else ""))
        action = call.get("action")
        if action not in tables.SECCOMP_ACTION_RANK:
            out.append(f"{where}.action: unknown action {action!r}")
        args = call.get("args") or []
        if not isinstance(args, list):
            out.append(f"{where}.args: expected a list")
            continue
        seen: set[int] = set()
        for j, a in enumerate(args):
            if not isinstance(a, dict) or not _is_int(a.get("index")) or not 0 <= a["index"] <= 5:
                out.append(f"{where}.args[{j}]: expected an object with index 0..5")
                continue
            if a.get("op") not in tables.SECCOMP_OPERATORS:
                out.append(f"{where}.args[{j}].op: unknown operator {a.get('op')!r}")
            if a["index"] in seen and action in tables.SECCOMP_PERMISSIVE_ACTIONS:
                # runc turns several conditions on one argument into separate rules (OR), which
                # allows more than the rule says.
                out.append(f"{where}.args[{j}]: a second condition on argument {a['index']} in an allowing "
                           "rule; runc ORs such conditions, which would allow more than written")
            seen.add(a["index"])
    return out


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k|B)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "K": 1000, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
               "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
SIZE_SCHEMA: dict[str, Any] = {"oneOf": [{"type": "integer", "minimum": 0},
                                         {"type": "string", "pattern": r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T|k|B)?$"}]}


def parse_size(value: Any) -> int | None:
    """`512Mi` -> 536870912 (Kubernetes quantities); plain integers are bytes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _SIZE_RE.match(value)
    if not m:
        return None
    n = float(m.group(1)) * _SIZE_UNITS[m.group(2)]
    return int(n) if n < 2**63 else None


def parse_cpu(value: Any) -> int | None:
    """`500m` -> 500 millicpus, `1.5` -> 1500, `2` -> 2000."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(round(value * 1000)) if 0 < value < 1e6 else None
    if isinstance(value, str):
        v = value.strip()
        try:
            if v.endswith("m"):
                n = int(v[:-1])
                return n if 0 < n < 10**9 else None
            return parse_cpu(float(v))
        except ValueError:
            return None
    return None


def parse_count(value: Any) -> int | None:
    return value if _is_int(value) and value > 0 else None


class Tmpfs(Kind):
    KEYS = ("path", "size", "options", "mode")

    def check(self, c: Checker, value: Any, path: Path) -> None:
        for tp, t in mappings(c, value, path, "a list of tmpfs mounts", "a mapping with path, size, options",
                              self.KEYS):
            check_abs_path(c, t.get("path"), (*tp, "path"))
            if "size" in t and parse_size(t["size"]) is None:
                c.err((*tp, "size"), f"expected a size such as 64Mi, got {t['size']!r}")
            if "options" in t:
                for j, o in enumerate(c.str_list(t["options"], (*tp, "options"))):
                    if o.startswith("size="):
                        c.err((*tp, "options", j), "give the size with the `size` key")
            if "mode" in t and not (_is_int(t["mode"]) and 0 <= t["mode"] <= 0o7777):
                c.err((*tp, "mode"), "expected a file mode such as 01777")

    def build(self, value: Any) -> Any:
        from .profile import TmpfsMount

        return tuple(TmpfsMount(path=posixpath.normpath(t["path"]),
                                size=parse_size(t["size"]) if "size" in t else None,
                                options=tuple(t.get("options", ("nosuid", "nodev", "noexec"))),
                                mode=t.get("mode", 0o1777)) for t in value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": _obj({"path": PATH_SCHEMA, "size": SIZE_SCHEMA,
                                                "options": {"type": "array", "items": {"type": "string"}},
                                                "mode": {"type": "integer"}})}

    def keys(self) -> tuple[str, ...]:
        return self.KEYS


class HostPaths(Kind):
    """Paths (subtree match) or `{path, match: exact|subtree}`."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if not c.typed(value, path, list, "a list of paths"):
            return
        for i, e in enumerate(value):
            ep = (*path, i)
            if isinstance(e, dict):
                c.keys(e, ep, ("path", "match"))
                check_abs_path(c, e.get("path"), (*ep, "path"))
                if e.get("match", "subtree") not in ("exact", "subtree"):
                    c.err((*ep, "match"), "must be 'exact' or 'subtree'")
            else:
                check_abs_path(c, e, ep)

    def build(self, value: Any) -> Any:
        from .profile import HostPath

        return tuple(HostPath(posixpath.normpath(e["path"]), e.get("match", "subtree")) if isinstance(e, dict)
                     else HostPath(posixpath.normpath(e)) for e in value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"oneOf": [
            PATH_SCHEMA, _obj({"path": PATH_SCHEMA, "match": {"enum": ["exact", "subtree"]}})]}}

    def keys(self) -> tuple[str, ...]:
        return ("path", "match")


class LimitKind(Kind):
    """`{max, default}` of one resource."""

    def __init__(self, parse: Callable[[Any], int | None], what: str, value_schema: dict[str, Any]) -> None:
        self.parse = parse
        self.what = what
        self.value_schema = value_schema

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if not c.typed(value, path, dict, "a mapping with max and/or default"):
            return
        c.keys(value, path, ("max", "default"))
        vals = {}
        for f in ("max", "default"):
            if f in value:
                vals[f] = self.parse(value[f])
                if vals[f] is None:
                    c.err((*path, f), f"expected {self.what}, got {value[f]!r}")
        mx, df = vals.get("max"), vals.get("default")
        if mx is not None and df is not None and df > mx:
            c.err((*path, "default"), "the default is larger than the maximum")

    def build(self, value: Any) -> Any:
        from .profile import Limit

        r = value or {}
        return Limit(max=self.parse(r["max"]) if "max" in r else None,
                     default=self.parse(r["default"]) if "default" in r else None)

    def schema(self) -> dict[str, Any]:
        return _obj({"max": self.value_schema, "default": self.value_schema})

    def keys(self) -> tuple[str, ...]:
        return ("max", "default")


# --- network ---------------------------------------------------------------------------------

def _check_network(c: Checker, value: Any, path: Path, *, node: bool = False) -> str | None:
    """The canonical form of a network (`10.0.0.0/8`, `fd00::/8`; an address is a /32 or /128)."""
    import ipaddress

    if node and value == "node":
        return "node"
    what = "an address or network such as 10.0.0.0/8 or fd00::/8" + (", or node" if node else "")
    if not isinstance(value, str) or "%" in value:
        c.err(path, f"expected {what}, got {value!r}")
        return None
    try:
        ipaddress.ip_network(value, strict=True)
        return value
    except ValueError as e:
        try:
            loose = str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            c.err(path, f"expected {what}, got {value!r}", "did you mean 'node'?" if node and
                  tables.did_you_mean(value, ["node"]) else None)
            return None
        c.err(path, f"{value} has host bits set ({e})", f"did you mean {loose!r}?")
        return None


def _parse_port(value: Any) -> tuple[int, int] | None:
    if _is_int(value):
        return (value, value) if 1 <= value <= 65535 else None
    if isinstance(value, str):
        lo, sep, hi = value.strip().partition("-")
        if lo.strip().isdigit() and (not sep or hi.strip().isdigit()):
            a, b = int(lo), int(hi) if sep else int(lo)
            return (a, b) if 1 <= a <= b <= 65535 else None
    return None


class NetRules(Kind):
    """An allow-list of `{cidr, ports, protocol}`; absent: the direction is not filtered."""

    KEYS = ("cidr", "ports", "protocol")

    def check(self, c: Checker, value: Any, path: Path) -> None:
        for rp, r in mappings(c, value, path, "a list of {cidr, ports, protocol} (an empty list allows nothing)",
                              "a mapping with cidr, ports and/or protocol", self.KEYS):
            if "cidr" in r:
                _check_network(c, r["cidr"], (*rp, "cidr"))
            proto = r.get("protocol")
            if "protocol" in r and proto not in ("tcp", "udp", "icmp"):
                c.err((*rp, "protocol"), f"must be 'tcp', 'udp' or 'icmp', got {proto!r}",
                      _hint(str(proto).lower(), ("tcp", "udp", "icmp")))
            if "ports" in r and c.typed(r["ports"], (*rp, "ports"), list, "a list of ports and ranges"):
                if proto == "icmp":
                    c.err((*rp, "ports"), "icmp has no ports")
                if not r["ports"]:
                    c.err((*rp, "ports"), "an empty list of ports matches nothing; leave the key out for every port")
                for j, port in enumerate(r["ports"]):
                    if _parse_port(port) is None:
                        c.err((*rp, "ports", j), f"expected a port from 1 to 65535 or a range such as 8000-8100, "
                              f"got {port!r}")

    def build(self, value: Any) -> Any:
        from .netrules import canonical_network, merge_ports
        from .profile import NetRule

        if value is None:
            return None
        out = []
        for r in value:
            ports = merge_ports([p for p in (_parse_port(x) for x in r.get("ports", [])) if p])
            out.append(NetRule(cidr=canonical_network(r["cidr"]) or "" if "cidr" in r else "",
                               protocol=r.get("protocol", "tcp" if ports else ""), ports=ports))
        return tuple(out)

    def schema(self) -> dict[str, Any]:
        port = {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
                          {"type": "string", "pattern": r"^\d{1,5}(-\d{1,5})?$"}]}
        return {"type": "array", "items": _obj({"cidr": {"type": "string"},
                                                "ports": {"type": "array", "items": port, "minItems": 1},
                                                "protocol": {"enum": ["tcp", "udp", "icmp"]}})}

    def keys(self) -> tuple[str, ...]:
        return self.KEYS


class Resolvers(Kind):
    """DNS server addresses; absent: the nameservers of the bundle's resolv.conf."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        import ipaddress

        for i, addr in enumerate(c.str_list(value, path)):
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                c.err((*path, i), f"expected an IP address such as 10.96.0.10 or fd00::53, got {addr!r}")

    def build(self, value: Any) -> Any:
        from .netrules import canonical_network

        if value is None:
            return None
        return tuple(dict.fromkeys((canonical_network(a) or a).rpartition("/")[0] for a in value))

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}


class DenyRanges(Kind):
    """Networks, and `node` for the node's own addresses."""

    def check(self, c: Checker, value: Any, path: Path) -> None:
        if c.typed(value, path, list, "a list of networks (and node)"):
            for i, v in enumerate(value):
                _check_network(c, v, (*path, i), node=True)

    def build(self, value: Any) -> tuple[str, ...]:
        from .netrules import canonical_network

        return tuple(dict.fromkeys(v if v == "node" else canonical_network(v) or v for v in value))

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}


def _rule_list_changes(direction: str) -> Callable[[Profile, Profile], Iterator[Finding]]:
    def compare(old: Profile, new: Profile) -> Iterator[Finding]:
        from .netrules import describe_rule

        a, b = getattr(old.network, direction), getattr(new.network, direction)
        name = f"network.{direction}"
        if a is None and b is not None:
            yield ("tighten", name, f"now an allow-list ({len(b)} entries); everything else is dropped")
        elif a is not None and b is None:
            yield ("loosen", name, "no longer filtered")
        elif a is not None and b is not None:
            yield from member_changes(name, [describe_rule(r) for r in a], [describe_rule(r) for r in b],
                                      "allowed")
    return compare


def _dns_changes(old: Profile, new: Profile) -> Iterator[Finding]:
    a, b = old.network.dns, new.network.dns
    if a is None and b is not None:
        yield ("tighten", "network.dns", f"resolvers pinned to {', '.join(b) or 'none'} (was: the bundle's)")
    elif a is not None and b is None:
        yield ("loosen", "network.dns", "resolvers taken from the bundle's resolv.conf (were pinned)")
    elif a is not None and b is not None:
        yield from member_changes("network.dns", a, b, "resolvers")


def _obj(props: dict[str, Any], desc: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if desc:
        out["description"] = desc
    return out


# --- diff rules: which way a change goes -----------------------------------------------------

# (direction, field, message): `sandbox.core.diff` turns these into Change records
Finding = tuple[str, str, str]


def model_value(profile: Profile, field: Field) -> Any:
    """The field's value in the model (or, for a field that fills no attribute, in the resolved YAML)."""
    if field.attr is None:
        return get(profile.resolved, field.path)
    value: Any = profile
    for part in field.attr_path.split("."):
        value = getattr(value, part)
    return value


class DiffRule:
    """How a change of one field is judged: loosen or tighten."""

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        raise NotImplementedError

    def loosens(self) -> str:
        """When a change loosens, for the reference tables."""
        raise NotImplementedError


class Flag(DiffRule):
    """A boolean; `strict` is the value that tightens."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        a, b = model_value(old, field), model_value(new, field)
        if a != b:
            yield ("tighten" if b == self.strict else "loosen", field.name, f"{a} -> {b}")

    def loosens(self) -> str:
        return f"set to `{str(not self.strict).lower()}`"


class Ranked(DiffRule):
    """A choice whose options go from loosest to strictest."""

    def __init__(self, *order: str) -> None:
        self.order = order

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        a, b = model_value(old, field), model_value(new, field)
        if a != b:
            looser = self.order.index(b) < self.order.index(a)
            yield ("loosen" if looser else "tighten", field.name, f"{a} -> {b}")

    def loosens(self) -> str:
        return f"moved towards `{self.order[0]}`"


class Members(DiffRule):
    """A set: an added member loosens (`more="looser"`) or tightens (`more="tighter"`)."""

    def __init__(self, what: str, more: str = "looser", key: Callable[[Any], str] | None = None) -> None:
        self.what = what
        self.more = more
        self.key = key

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        a, b = model_value(old, field), model_value(new, field)
        yield from member_changes(field.name, [self.key(x) for x in a] if self.key else a,
                                  [self.key(x) for x in b] if self.key else b, self.what, self.more == "looser")

    def loosens(self) -> str:
        return "an entry added" if self.more == "looser" else "an entry removed"


def member_changes(name: str, old: Any, new: Any, what: str, more_is_looser: bool = True) -> Iterator[Finding]:
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if added:
        yield ("loosen" if more_is_looser else "tighten", name, f"{what} added: {', '.join(added)}")
    if removed:
        yield ("tighten" if more_is_looser else "loosen", name, f"{what} removed: {', '.join(removed)}")


class Limits(DiffRule):
    """`{max, default}`: higher or unlimited loosens."""

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        o, n = model_value(old, field), model_value(new, field)
        for part in ("max", "default"):
            a, b = getattr(o, part), getattr(n, part)
            if a == b:
                continue
            if b is None or (a is not None and b > a):
                yield ("loosen", f"{field.name}.{part}", f"{a} -> {b if b is not None else 'unlimited'}")
            else:
                yield ("tighten", f"{field.name}.{part}", f"{a if a is not None else 'unlimited'} -> {b}")

    def loosens(self) -> str:
        return "raised or removed"


class Custom(DiffRule):
    """A comparison written for a field, or for a group of fields (`covers`) judged together."""

    def __init__(self, fn: Callable[[Profile, Profile], Iterator[Finding]], loosens: str) -> None:
        self.fn = fn
        self._loosens = loosens

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        return self.fn(old, new)

    def loosens(self) -> str:
        return self._loosens


class JudgedWith(DiffRule):
    """A field whose changes another field's rule judges (seccomp's keys are one filter)."""

    def __init__(self, other: str) -> None:
        self.other = other

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        return iter(())

    def loosens(self) -> str:
        return f"see `{self.other}`"


class NoEffect(DiffRule):
    """Names and text: no effect on what a container may do."""

    def compare(self, field: Field, old: Profile, new: Profile) -> Iterator[Finding]:
        return iter(())

    def loosens(self) -> str:
        return "—"


def _seccomp_changes(old: Profile, new: Profile) -> Iterator[Finding]:
    """The seccomp keys are judged together, by the syscalls each profile's filter allows."""
    from .diff import allowed_syscalls

    od, oa = allowed_syscalls(old)
    nd, na = allowed_syscalls(new)
    if od != nd:
        looser = tables.SECCOMP_ACTION_RANK[nd] < tables.SECCOMP_ACTION_RANK[od]
        yield ("loosen" if looser else "tighten", "seccomp.default_action", f"{od} -> {nd}")
    if od == nd == "SCMP_ACT_ALLOW":
        # deny-lists: more denied is tighter
        yield from member_changes("seccomp.deny", old.seccomp.deny, new.seccomp.deny, "denied syscalls", False)
    else:
        yield from member_changes("seccomp", oa, na, "allowed syscalls")


def _host_path_changes(old: Profile, new: Profile) -> Iterator[Finding]:
    """Compare what each profile lets a bind mount reach, by probing every path either one names."""
    from .transform.hostpath import forbidden_reason

    probes: set[str] = set()
    for p in (old, new):
        for path in [h.path for h in p.filesystem.forbidden_host_paths] + list(p.filesystem.allowed_host_paths):
            probes.update({path, path.rstrip("/") + "/x"})
    opened, closed = [], []
    for path in sorted(probes):
        was = forbidden_reason(path, old.filesystem.forbidden_host_paths, old.filesystem.allowed_host_paths)
        now = forbidden_reason(path, new.filesystem.forbidden_host_paths, new.filesystem.allowed_host_paths)
        if was and not now:
            opened.append(path)
        elif now and not was:
            closed.append(path)
    if opened:
        yield ("loosen", "filesystem.host_paths", f"bind mounts now allowed from: {', '.join(opened)}")
    if closed:
        yield ("tighten", "filesystem.host_paths", f"bind mounts now refused from: {', '.join(closed)}")


def _rootfs_dir_changes(old: Profile, new: Profile) -> Iterator[Finding]:
    """Allowed subtrees: a new one not inside an old one loosens; an old one no longer covered tightens."""
    from .transform.hostpath import within

    a, b = old.filesystem.rootfs_dirs, new.filesystem.rootfs_dirs
    added = [d for d in b if not any(within(d, o) for o in a)]
    removed = [o for o in a if not any(within(o, n) for n in b)]
    if added:
        yield ("loosen", "filesystem.rootfs_dirs", f"root filesystems now allowed in: {', '.join(added)}")
    if removed:
        yield ("tighten", "filesystem.rootfs_dirs", f"root filesystems no longer allowed in: {', '.join(removed)}")


def _oom_floor_changes(old: Profile, new: Profile) -> Iterator[Finding]:
    a, b = old.process.oom_score_adj_min, new.process.oom_score_adj_min
    if a != b:
        looser = b is None or (a is not None and b < a)
        yield ("loosen" if looser else "tighten", "process.oom_score_adj_min", f"{a} -> {b}")


def _rlimit_changes(old: Profile, new: Profile) -> Iterator[Finding]:
    ra, rb = dict(old.process.rlimits), dict(new.process.rlimits)
    for name in sorted({*ra, *rb}):
        x, y = ra.get(name), rb.get(name)
        if x != y:
            looser = y is None or (x is not None and y > x)
            yield ("loosen" if looser else "tighten", f"process.rlimits.{name}",
                   f"{x if x is not None else 'unbounded'} -> {y if y is not None else 'unbounded'}")


def _label_changes(key: str) -> Callable[[Profile, Profile], Iterator[Finding]]:
    def compare(old: Profile, new: Profile) -> Iterator[Finding]:
        a, b = getattr(old.lsm, key), getattr(new.lsm, key)
        if a != b:
            # a changed label cannot be ranked: review it as a loosening
            yield ("tighten" if (b and not a) else "loosen", key, f"{a} -> {b}")
    return compare


# --- the declaration --------------------------------------------------------------------------

REQUIRED = object()  # a header key every profile document must have
ABSENT = object()  # no default: the key is left out of the resolved profile


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]  # YAML keys from the top of the document
    kind: Kind
    default: Any  # in YAML form, at the root of every extends chain; REQUIRED or ABSENT
    doc: str  # the "meaning" column of the reference (markdown)
    diff: DiffRule
    attr: str | None = ""  # the model attribute it fills, dotted from Profile ("" = the path); None: none
    merge: str = "replace"  # replace | additive (the union of the defaults and every profile in the chain)
    layer: bool = False  # read from each document itself, never merged (apiVersion, kind, extends)
    default_doc: str | None = None  # how the reference shows the default when it is long

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def attr_path(self) -> str:
        return self.attr or self.name

    @property
    def group(self) -> str:
        """The reference table it is shown in: its section, or the header, or its own."""
        if len(self.path) > 1:
            return self.path[0]
        return {"apparmor": "lsm", "selinux": "lsm", "unknown_config_fields": "runc",
                "runc_mitigations": "runc"}.get(self.name, self.name if self.name in (
            "capabilities", "no_new_privileges") else "header")


def _lines(*parts: str) -> str:
    return " ".join(parts)


FIELDS: tuple[Field, ...] = (
    # header
    Field(("apiVersion",), Const(API_VERSION), REQUIRED, f"`{API_VERSION}`", NoEffect(), attr=None, layer=True),
    Field(("kind",), Const("Profile"), REQUIRED, "`Profile`", NoEffect(), attr=None, layer=True),
    Field(("name",), Name(), REQUIRED, "lower-case letters, digits, `.`, `_`, `-`; at most 64", NoEffect(),
          attr=None),
    Field(("extends",), Str(), ABSENT, _lines(
        "a built-in name (`baseline`, `restricted`, `strict`), a name found in the operator's profile",
        "directories, or a path (relative to this file). Single inheritance; a cycle is an error."),
        NoEffect(), attr=None, layer=True),
    Field(("description",), Str(), ABSENT, "free text", NoEffect(), default_doc='`""`'),
    Field(("mode",), Choice("enforce", "complain"), "enforce", _lines(
        "`complain`: record every decision with `applied: false`, change nothing, refuse nothing"),
        Ranked("complain", "enforce")),
    # capabilities, no_new_privileges
    Field(("capabilities",), Capabilities(), list(tables.DOCKER_DEFAULT_CAPABILITIES), _lines(
        "upper bound on the five capability sets; names with or without `CAP_`, any case;",
        "also `{allow: [...]}`"), Members("capabilities"), default_doc="Docker's 14"),
    Field(("no_new_privileges",), Bool(), True, "`process.noNewPrivileges` is forced on", Flag(True)),
    # user
    Field(("user", "run_as_non_root"), Bool(), False,
          "uid 0 is refused unless a user namespace maps it to a non-root host id", Flag(True)),
    Field(("user", "user_namespace"), Choice("required", "optional"), "optional",
          "`required`: a user namespace is added when missing", Ranked("optional", "required")),
    Field(("user", "uid_mappings"), IdMappings(), [], _lines(
        "`{container_id, host_id, size}` used when the bundle has none; when empty and a user namespace",
        "is required, `sandbox-runc` maps `0 →` a 65536-id range of the container's own (of its pod's,",
        "under Kubernetes) from the operator's `id_pool` (integrations.md); a dry run (`sandbox check`)",
        "shows `0 → 100000`"), NoEffect()),
    Field(("user", "gid_mappings"), IdMappings(), [], "as `uid_mappings`, for group ids", NoEffect()),
    # seccomp
    Field(("seccomp", "base"), SeccompBase(), "runtime-default", _lines(
        "`runtime-default` (sandbox's Docker-equivalent allow-list), `empty` (an allow-list with nothing on it:",
        "only `allow` and `rules` allow; what `sandbox learn` writes), `none`, or the path of an OCI or",
        "Docker seccomp JSON (relative to the profile)"),
        Custom(_seccomp_changes, "the resulting filter allows a syscall it did not, or its default action "
               "is weaker")),
    Field(("seccomp", "default_action"), SeccompAction(), "errno", _lines(
        "`errno`, `kill_process` (`kill`), `kill_thread`, `trap`, `log`, or an `SCMP_ACT_*` name; never",
        "allow"), JudgedWith("seccomp.base")),
    Field(("seccomp", "default_errno"), Errno(), "EPERM", "a name (`EPERM`) or number",
          JudgedWith("seccomp.base")),
    Field(("seccomp", "deny"), Syscalls(family_warning=True), [],
          "syscalls removed from the base, whatever capabilities remain", JudgedWith("seccomp.base")),
    Field(("seccomp", "allow"), Syscalls(), [], "syscalls added unconditionally", JudgedWith("seccomp.base")),
    Field(("seccomp", "rules"), SeccompRules(), [], _lines(
        "OCI-format rules (`names`, `action`, `args`, `errnoRet`) that replace the base's entries for the",
        "syscalls they name"), JudgedWith("seccomp.base")),
    # filesystem
    Field(("filesystem", "readonly_rootfs"), Bool(), False, "force `root.readonly`", Flag(True)),
    Field(("filesystem", "tmpfs"), Tmpfs(), [], _lines(
        "`{path, size, options, mode}`; added, or the bundle's mount at that path is tightened (options",
        "added, size lowered)"), Members("tmpfs mounts", more="tighter", key=lambda t: t.path)),
    Field(("filesystem", "forbidden_host_paths"), HostPaths(), [
        {"path": "/", "match": "exact"},
        "/proc", "/sys", "/dev", "/etc", "/boot",
        "/run/docker.sock", "/run/containerd", "/run/crio", "/run/podman",
        {"path": "/var/lib/kubelet", "match": "exact"},
    ], "paths (`subtree` match) or `{path, match: exact|subtree}` no bind mount may come from",
        Custom(_host_path_changes, "a bind source it refused is now allowed"), merge="additive",
        default_doc="see below"),
    # containerd's CRI binds each pod's /dev/shm and hosts files from here.
    Field(("filesystem", "allowed_host_paths"), AbsPaths(normalize=True),
          ["/run/containerd/io.containerd.grpc.v1.cri/sandboxes"],
          "subtrees excepted from the forbidden subtrees", JudgedWith("filesystem.forbidden_host_paths"),
          default_doc="CRI sandbox dir"),
    Field(("filesystem", "bind_mounts", "readonly"), Bool(), False, "every bind mount gets `ro`", Flag(True),
          attr="filesystem.bind_readonly"),
    Field(("filesystem", "bind_mounts", "nosuid_nodev"), Bool(), True, "every bind mount gets `nosuid,nodev`",
          Flag(True), attr="filesystem.bind_nosuid_nodev"),
    Field(("filesystem", "readonly_system_mounts"), Bool(), True, "`sysfs` and cgroup mounts get `ro`",
          Flag(True)),
    Field(("filesystem", "masked_paths"), AbsPaths(), list(tables.DOCKER_MASKED_PATHS),
          "paths masked in the container, added to the bundle's",
          Members("masked paths", more="tighter"), merge="additive", default_doc="Docker's list"),
    Field(("filesystem", "readonly_paths"), AbsPaths(), list(tables.DOCKER_READONLY_PATHS),
          "paths made read-only in the container, added to the bundle's",
          Members("read-only paths", more="tighter"), merge="additive", default_doc="Docker's list"),
    Field(("filesystem", "mount_types"), Strings(_check_mount_type, {"type": "string",
                                                                      "pattern": _MOUNT_TYPE_RE.pattern}), [],
          _lines("filesystem types a bundle may mount beyond the built-in ones (`proc`, `sysfs`, `tmpfs`,",
                 "`devpts`, `mqueue`, `cgroup`, `cgroup2`, binds, `overlay`); their sources still go through the",
                 "host-path rules"), Members("mount types")),
    Field(("filesystem", "rootfs_dirs"), AbsPaths(normalize=True), list(tables.ROOTFS_DIRS),
          _lines("directories a container's root filesystem must lie strictly inside (the engines' storage,",
                 "sandbox's own, temporary directories); `/`, `/usr`, `/etc` as a root are refused"),
          Custom(_rootfs_dir_changes, "a directory outside the old ones is added"), default_doc="engines' storage"),
    # namespaces
    Field(("namespaces", "required"), Strings(_check_namespace, {"enum": list(tables.NAMESPACES)}),
          ["pid", "ipc", "uts", "mount", "network"], "namespaces a container must have its own of; a missing one "
          "is added", Members("required namespaces", more="tighter")),
    # resources
    Field(("resources", "memory"), LimitKind(parse_size, "a size such as 512Mi", SIZE_SCHEMA), ABSENT,
          "`{max, default}` in bytes or Kubernetes quantities (`512Mi`, `1Gi`, `500M`)", Limits(),
          default_doc="unlimited"),
    Field(("resources", "pids"), LimitKind(parse_count, "a positive integer", {"type": "integer", "minimum": 1}),
          ABSENT, "`{max, default}` number of tasks", Limits(), default_doc="unlimited"),
    Field(("resources", "cpu"), LimitKind(parse_cpu, "CPUs such as 1.5 or 500m", {"oneOf": [
        {"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": r"^(\d+m|\d+(\.\d+)?)$"}]}),
        ABSENT, "`{max, default}` CPUs (`1.5`, `2`, `500m`)", Limits(), default_doc="unlimited"),
    # devices, sysctls, hooks
    Field(("devices", "allow"), Strings(_check_device, {"type": "string", "pattern": "^/dev/"}), [],
          "host device paths a bundle may add", Members("devices")),
    Field(("sysctls", "allow"), Strings(), list(tables.SAFE_SYSCTLS), "sysctl names or glob patterns",
          Members("sysctls"), default_doc="Kubernetes' safe set"),
    Field(("hooks", "allow"), AbsPaths(), [], "host paths of hook binaries (symlinks resolved)", Members("hooks")),
    Field(("hooks", "allow_engine_hooks"), Bool(), True, "the engines' own hooks pass", Flag(False)),
    # network
    Field(("network", "egress"), NetRules(), ABSENT, _lines(
        "allow-list of `{cidr, ports, protocol}` for connections the container opens; once given, everything",
        "else is dropped (`[]`: nothing but DNS); `cidr` absent: anywhere; `ports`: numbers or ranges such as",
        "`8000-8100`; `protocol`: `tcp` (the default when ports are given), `udp` or `icmp`"),
        Custom(_rule_list_changes("egress"), "removed, or an entry added"), default_doc="not filtered"),
    Field(("network", "ingress"), NetRules(), ABSENT, _lines(
        "allow-list of `{cidr, ports, protocol}` for connections to the container (`cidr`: the peer,",
        "`ports`: the container's); once given, everything else is dropped"),
        Custom(_rule_list_changes("ingress"), "removed, or an entry added"), default_doc="not filtered"),
    Field(("network", "dns"), Resolvers(), ABSENT, _lines(
        "the resolvers the container may query (udp and tcp port 53), even inside `deny_always`"),
        Custom(_dns_changes, "removed (the bundle's then count), or a resolver added"),
        default_doc="the bundle's `resolv.conf`"),
    Field(("network", "deny_always"), DenyRanges(), [], _lines(
        "networks the container may never connect to whatever the lists say, and `node` (the node's own",
        "addresses)"), Members("ranges never reachable", more="tighter"), merge="additive"),
    # process
    Field(("process", "oom_score_adj_min"), OomScoreAdj(), None,
          "`process.oomScoreAdj` is raised to at least this (a negative score shields a container from the OOM "
          "killer at the node's expense); null: no floor", Custom(_oom_floor_changes, "lowered or removed")),
    Field(("process", "rlimits"), Rlimits(), {}, "`{RLIMIT_*: maximum}`: the bundle's soft and hard limits are "
          "lowered to these", Custom(_rlimit_changes, "raised or removed"), default_doc="none"),
    # config.json fields and runc
    Field(("unknown_config_fields",), Choice("refuse", "warn"), "refuse", _lines(
        "what happens to a config.json field outside sandbox's table of the fields runc acts on:",
        "`refuse` the bundle, or `warn` and keep it"), Ranked("warn", "refuse")),
    Field(("runc_mitigations",), Bool(), True, _lines(
        "config-level mitigations of known runc vulnerabilities (a fresh `/dev` tmpfs, no cwd through",
        "`/proc/*/fd`, …; docs/security.md)"), Flag(True)),
    # LSM labels
    Field(("apparmor",), Label(), None, "AppArmor profile to set (`process.apparmorProfile`)",
          Custom(_label_changes("apparmor"), "changed or removed (a label cannot be ranked)"), attr="lsm.apparmor",
          default_doc="none"),
    Field(("selinux",), Label(), None, "SELinux label to set (`process.selinuxLabel`)",
          Custom(_label_changes("selinux"), "changed or removed (a label cannot be ranked)"), attr="lsm.selinux",
          default_doc="none"),
    # monitor: the sandbox agent (seccomp user notification, sandbox/runtime/agent.py)
    Field(("monitor", "exec_trail"), Bool(), False, _lines(
        "every `execve`/`execveat` in the container is sent to the sandbox agent, recorded (`exec` audit",
        "records: the program, its caller and parent) and let run. Needs `sandbox agent`: in enforce mode a",
        "container is refused when the agent does not answer"), Flag(True)),
    Field(("monitor", "denials"), Bool(), False, _lines(
        "syscalls the filter denies outright are sent to the agent, which fails them with the filter's errno and",
        "records them (`syscall` audit records). Needs `sandbox agent`, as `exec_trail`"), Flag(True)),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


# --- what the table gives the rest -------------------------------------------------------------

def tree() -> dict[str, Any]:
    """The declared keys as nested mappings; a leaf is its Field."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        node = out
        for key in f.path[:-1]:
            node = node.setdefault(key, {})
        node[f.path[-1]] = f
    return out


def defaults() -> dict[str, Any]:
    """The root of every extends chain: each merged field's default, as YAML data."""
    import copy

    out: dict[str, Any] = {}
    for f in FIELDS:
        if f.layer or f.default is REQUIRED:
            continue
        node = out
        for key in f.path[:-1]:
            node = node.setdefault(key, {})
        if f.default is not ABSENT:
            node[f.path[-1]] = copy.deepcopy(f.default)
    return out


def additive_lists() -> frozenset[tuple[str, ...]]:
    return frozenset(f.path for f in FIELDS if f.merge == "additive")


def sections() -> tuple[str, ...]:
    """Top-level keys that hold mappings of fields, in declaration order."""
    return tuple(dict.fromkeys(f.path[0] for f in FIELDS if len(f.path) > 1))


def check_document(c: Checker, data: dict[str, Any]) -> None:
    """Check one profile document (before merging) against the declaration."""
    _check_level(c, data, (), tree())


def _check_level(c: Checker, data: dict[str, Any], path: tuple[str, ...], level: dict[str, Any]) -> None:
    c.keys(data, path, tuple(level))
    for key, node in level.items():
        here = (*path, key)
        if isinstance(node, Field):
            if key in data:
                node.kind.check(c, data[key], here)
            elif node.default is REQUIRED:
                node.kind.check(c, None, here)
        elif key in data and c.typed(data[key], here, dict, "a mapping"):
            _check_level(c, data[key], here, node)


def get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def build_values(merged: dict[str, Any]) -> dict[str, Any]:
    """Model attribute (dotted) -> value, for every field that fills one, from a checked, merged profile."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        if f.attr is not None:
            out[f.attr_path] = f.kind.build(get(merged, f.path))
    return out


def diff_findings(old: Profile, new: Profile) -> list[Finding]:
    return [x for f in FIELDS for x in f.diff.compare(f, old, new)]


# --- JSON Schema ----------------------------------------------------------------------------

def profile_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for profiles, so editors can validate YAML as it is typed."""

    def level(node: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for key, sub in node.items():
            if isinstance(sub, Field):
                props[key] = {**sub.kind.schema(), "description": _plain(sub.doc)}
            else:
                props[key] = _obj(level(sub))
        return props

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sandbox.invalid/schemas/profile-v1.json",
        "title": "sandbox security profile",
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in FIELDS if f.default is REQUIRED],
        "properties": level(tree()),
    }


def _plain(markdown: str) -> str:
    return markdown.replace("`", "")


# --- the reference tables in docs/profile-reference.md --------------------------------------

BEGIN = "<!-- BEGIN GENERATED FIELDS: {} -->"
END = "<!-- END GENERATED FIELDS -->"


def _show(value: Any) -> str:
    import json

    if value is ABSENT or value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def reference_table(group: str, rules: dict[str, list[str]] | None = None) -> str:
    """The markdown table of the fields under `group` (a top-level key, or `header`)."""
    rules = rules or {}
    chosen = [f for f in FIELDS if f.group == group]
    rows = ["| key | default | meaning | loosens when | lint |", "|---|---|---|---|---|"]
    for f in chosen:
        default = "required" if f.default is REQUIRED else (f.default_doc or _show(f.default))
        merge = " *(additive)*" if f.merge == "additive" else ""
        lint = ", ".join(rules.get(f.name, [])) or "—"
        cells = [f"`{f.name}`", default, f.doc + merge, f.diff.loosens(), lint]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if rules.get(group) and group not in BY_NAME:
        rows += ["", f"Lint rules about the section as a whole: {', '.join(rules[group])}."]
    return "\n".join(rows)


def render_reference(text: str, rules: dict[str, list[str]] | None = None) -> str:
    """`text` (docs/profile-reference.md) with every generated block rewritten from the declaration."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = re.fullmatch(BEGIN.format(r"([\w-]+)"), line.strip())
        if m:
            while i < len(lines) and lines[i].strip() != END:
                i += 1
            out.extend([reference_table(m.group(1), rules), END])
        i += 1
    return "\n".join(out)
