"""Load security profiles: safe YAML with node positions, validation, `extends`, built-ins.

Every error names `file:line:col: field.path: message`.  Profiles are parsed
only with a safe loader (the C one when present), aliases are expanded under a
node budget (no billion-laughs), and unknown keys are errors with a
"did you mean".  What each key may hold, its default, its merge rule and the
model attribute it fills are declared once, in `sandbox.core.fields`; this module
reads files and YAML, walks that declaration, merges and builds.

Merge rule for `extends` (documented in docs/profile-reference.md): mappings
merge key by key, the child winning; lists and scalars in the child replace the
parent's, except the additive lists (declared `merge="additive"`), which are the
union of the defaults and every profile in the chain, so no profile can drop a
default masked path or forbidden host path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from .._record import replace
from ..errors import Location, ProfileError, ProfileErrors
from . import fields, tables
from .fields import SECCOMP_BASE_NAMES
from .profile import Profile

API_VERSION = fields.API_VERSION
BUILTIN_PROFILES = ("baseline", "restricted", "strict")
MAX_PROFILE_BYTES = 1 << 20
MAX_NODES = 100_000  # after alias expansion
MAX_DEPTH = 64
MAX_EXTENDS_DEPTH = 16

Path = tuple[str | int, ...]

# Both from the one declaration of every field (sandbox/core/fields.py).
ADDITIVE_LISTS: frozenset[tuple[str, ...]] = fields.additive_lists()
DEFAULTS: dict[str, Any] = fields.defaults()  # the root of every extends chain


@dataclass(frozen=True)
class Warning_:
    """A finding that does not make the profile invalid (e.g. a syscall unknown on one arch)."""

    location: Location
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.field}: warning: {self.message}"


# --- YAML with positions --------------------------------------------------------

class _Doc:
    """Plain data from a YAML document plus the position of every node in it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, Location] = {}
        self._budget = MAX_NODES

    def loc(self, path: Path) -> Location:
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, Location(self.file))


def _yaml_loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, file: str) -> tuple[Any, _Doc]:
    import yaml

    doc = _Doc(file)
    _check_depth(text, file)
    try:
        node = yaml.compose(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        raise ProfileError(f"invalid YAML: {e.problem or e.context}", location=loc) from None
    except yaml.YAMLError as e:
        raise ProfileError(f"invalid YAML: {e}", location=Location(file)) from None
    if node is None:
        raise ProfileError("the file is empty", location=Location(file))
    constructor = yaml.constructor.SafeConstructor()
    return _walk(node, (), doc, constructor, 0), doc


def _check_depth(text: str, file: str) -> None:
    """Refuse deep nesting before composing: libyaml's composer recurses once per level and a
    few tens of thousands of `[` crash the interpreter.  The event stream does not recurse."""
    import yaml

    depth = 0
    try:
        for event in yaml.parse(text, Loader=_yaml_loader()):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
                    raise ProfileError(f"nested deeper than {MAX_DEPTH} levels", location=loc)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # the composer reports it with its position


def _construct(constructor: Any, node: Any, loc: Location, path: Path) -> Any:
    import yaml

    try:
        return constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError, OverflowError) as e:
        # e.g. `!!int abc`, `!!timestamp x`, an integer of more than 4300 digits
        text = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(f"invalid value: {text}", location=loc, field=_dotted(path)) from None


def _walk(node: Any, path: Path, doc: _Doc, constructor: Any, depth: int) -> Any:
    import yaml

    doc._budget -= 1
    mark = node.start_mark
    loc = Location(doc.file, mark.line + 1, mark.column + 1)
    if doc._budget < 0:
        raise ProfileError(f"too many YAML nodes (over {MAX_NODES} after expanding aliases)", location=loc)
    if depth > MAX_DEPTH:
        raise ProfileError(f"nested deeper than {MAX_DEPTH} levels", location=loc)
    doc.positions.setdefault(path, loc)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise ProfileError("mapping keys must be plain strings", location=loc, field=_dotted(path))
            kmark = knode.start_mark
            key = str(_construct(constructor, knode, Location(doc.file, kmark.line + 1, kmark.column + 1), path))
            if key == "<<":
                raise ProfileError("YAML merge keys (<<) are not supported", location=loc, field=_dotted(path))
            kmark = knode.start_mark
            if key in out:
                raise ProfileError(f"duplicate key {key!r}",
                                   location=Location(doc.file, kmark.line + 1, kmark.column + 1),
                                   field=_dotted(path))
            doc.positions[(*path, key)] = Location(doc.file, kmark.line + 1, kmark.column + 1)
            out[key] = _walk(vnode, (*path, key), doc, constructor, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, (*path, i), doc, constructor, depth + 1) for i, v in enumerate(node.value)]
    value = _construct(constructor, node, loc, path)
    if not isinstance(value, str | int | float | bool | type(None)):
        # timestamps, binary: a profile never needs them; refuse rather than guess
        raise ProfileError(f"unsupported YAML value of type {type(value).__name__}", location=loc,
                           field=_dotted(path))
    return value


def _dotted(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# --- reading files ----------------------------------------------------------------

def read_text_file(path: str, what: str = "profile", *, error: type[ProfileError] = ProfileError) -> str:
    """Read a small UTF-8 text file; refuse FIFOs, devices and directories without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{what} file not found", location=Location(path)) from None
    except OSError as e:
        raise error(f"cannot open {what} file: {e.strerror}", location=Location(path)) from None
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} is not a regular file", location=Location(path))
        if st.st_size > MAX_PROFILE_BYTES:
            raise error(f"{what} file is larger than {MAX_PROFILE_BYTES} bytes", location=Location(path))
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
            if sum(map(len, chunks)) > MAX_PROFILE_BYTES:
                raise error(f"{what} file is larger than {MAX_PROFILE_BYTES} bytes", location=Location(path))
    except OSError as e:
        raise error(f"cannot read {what} file: {e.strerror}", location=Location(path)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if READS is not None:
        READS.append((path, data))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} file is not UTF-8 (byte {e.start})", location=Location(path)) from None


# When a list, every file the loader reads is appended as (path, bytes): the
# profile cache keys its entries on exactly these files and their contents.
READS: list[tuple[str, bytes]] | None = None

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # sandbox/, above core/


def package_file(*parts: str) -> str:
    """A data file shipped in the package (profiles/ is installed as sandbox/profiles/).

    Plain paths rather than importlib.resources: this runs on the hot path, and
    the package is always installed as files.
    """
    installed = os.path.join(_PACKAGE_DIR, *parts)
    if parts[0] == "profiles" and not os.path.exists(installed):
        # a source tree that was not installed: profiles/ sits beside sandbox/
        return os.path.join(os.path.dirname(_PACKAGE_DIR), *parts)
    return installed


def builtin_profile_text(name: str) -> tuple[str, str]:
    """(text, pseudo-path) of a built-in profile shipped in the package."""
    return read_text_file(package_file("profiles", f"{name}.yaml")), f"<builtin>/{name}.yaml"


def builtin_seccomp_profile() -> dict[str, Any]:
    return _runtime_default()


_RUNTIME_DEFAULT: dict[str, Any] | None = None
_RUNTIME_DEFAULT_BYTES: list[bytes] = []


def _runtime_default() -> dict[str, Any]:
    global _RUNTIME_DEFAULT
    if _RUNTIME_DEFAULT is None:
        text = read_text_file(package_file("data", "seccomp", "runtime-default.json"), "seccomp profile")
        _RUNTIME_DEFAULT = json.loads(text)
        _RUNTIME_DEFAULT_BYTES.append(text.encode("utf-8"))
    elif READS is not None:
        READS.append((package_file("data", "seccomp", "runtime-default.json"), _RUNTIME_DEFAULT_BYTES[0]))
    return _RUNTIME_DEFAULT


# --- validation -------------------------------------------------------------------

class _Validator:
    """Reports problems at their position in one document (the `fields.Checker` the kinds use)."""

    def __init__(self, doc: _Doc, base_dir: str) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.errors: list[ProfileError] = []
        self.warnings: list[Warning_] = []

    def err(self, path: Path, msg: str, hint: str | None = None) -> None:
        self.errors.append(ProfileError(msg, location=self.doc.loc(path), field=_dotted(path), hint=hint))

    def warn(self, path: Path, msg: str) -> None:
        self.warnings.append(Warning_(self.doc.loc(path), _dotted(path), msg))

    def keys(self, data: dict[str, Any], path: Path, allowed: tuple[str, ...]) -> None:
        for k in data:
            if k not in allowed:
                dym = tables.did_you_mean(k, allowed)
                self.err((*path, k), f"unknown key {k!r}", f"did you mean {dym!r}?" if dym else None)

    def typed(self, value: Any, path: Path, kind: type | tuple[type, ...], what: str) -> bool:
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            self.err(path, f"expected {what}, got {fields.typename(value)}")
        return ok

    def str_list(self, value: Any, path: Path) -> list[str]:
        if not self.typed(value, path, list, "a list of strings"):
            return []
        out = []
        for i, v in enumerate(value):
            if self.typed(v, (*path, i), str, "a string"):
                out.append(v)
        return out

    def seccomp_file_problem(self, path: str) -> str | None:
        try:
            load_seccomp_json(path if os.path.isabs(path) else os.path.join(self.base_dir, path))
        except ProfileError as e:
            return str(e)
        return None


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# The kinds' parsers, under the names other modules import them by.
parse_size = fields.parse_size
parse_cpu = fields.parse_cpu
check_seccomp_data = fields.check_seccomp_data


# --- seccomp JSON base files ---------------------------------------------------------

def load_seccomp_json(path: str) -> dict[str, Any]:
    """Read and check an OCI or Docker seccomp profile given as a profile's `seccomp.base`."""
    text = read_text_file(path, "seccomp profile")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ProfileError(f"invalid JSON: {e.msg}", location=Location(path, e.lineno, e.colno)) from None
    except ValueError as e:
        raise ProfileError(str(e), location=Location(path)) from None
    except RecursionError:
        raise ProfileError("JSON nested too deeply", location=Location(path)) from None
    problems = check_seccomp_data(data)
    if problems:
        raise ProfileError(problems[0], location=Location(path))
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, val in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = val
    return out


# --- resolution --------------------------------------------------------------------

@dataclass
class _Layer:
    data: dict[str, Any]
    doc: _Doc
    base_dir: str
    ref: str


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def _read_layer(ref: str, base_dir: str, search_dirs: tuple[str, ...]) -> _Layer:
    if _looks_like_path(ref):
        path = ref if os.path.isabs(ref) else os.path.normpath(os.path.join(base_dir, ref))
        text, file = read_text_file(path), path
        bdir = os.path.dirname(path)
    else:
        for d in search_dirs:
            for ext in (".yaml", ".yml"):
                cand = os.path.join(d, ref + ext)
                if os.path.isfile(cand):
                    return _read_layer(cand, base_dir, search_dirs)
        if ref not in BUILTIN_PROFILES:
            known = list(BUILTIN_PROFILES) + [os.path.splitext(f)[0] for d in search_dirs if os.path.isdir(d)
                                               for f in os.listdir(d) if f.endswith((".yaml", ".yml"))]
            dym = tables.did_you_mean(ref, known)
            raise ProfileError(f"no profile named {ref!r} (built-in: {', '.join(BUILTIN_PROFILES)})",
                               hint=f"did you mean {dym!r}?" if dym else None)
        text, file = builtin_profile_text(ref)
        bdir = base_dir
    data, doc = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise ProfileError("a profile must be a YAML mapping", location=Location(file, 1, 1))
    return _Layer(data, doc, bdir, ref)


def _merge(parent: dict[str, Any], child: dict[str, Any], path: Path = ()) -> dict[str, Any]:
    out = dict(parent)
    for k, val in child.items():
        kp = (*path, k)
        if kp in ADDITIVE_LISTS and isinstance(val, list) and isinstance(out.get(k), list):
            out[k] = out[k] + [x for x in val if x not in out[k]]
        elif isinstance(val, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], val, kp)
        else:
            out[k] = val
    return out


def load_profile(ref: str, *, search_dirs: tuple[str, ...] = (), base_dir: str | None = None) -> Profile:
    """Resolve a profile by built-in name, name in `search_dirs`, or file path, with its extends chain."""
    profile, _ = load_profile_with_warnings(ref, search_dirs=search_dirs, base_dir=base_dir)
    return profile


def load_profile_with_warnings(ref: str, *, search_dirs: tuple[str, ...] = (),
                               base_dir: str | None = None) -> tuple[Profile, list[Warning_]]:
    chain: list[_Layer] = []
    seen: list[str] = []
    layer = _read_layer(ref, base_dir or os.getcwd(), search_dirs)
    while True:
        key = layer.doc.file
        if key in seen:
            cycle = " -> ".join([*seen, key])
            raise ProfileError(f"extends forms a cycle: {cycle}", location=layer.doc.loc(("extends",)),
                               field="extends")
        seen.append(key)
        chain.append(layer)
        parent = layer.data.get("extends")
        if not isinstance(parent, str) or not parent:
            break
        if len(chain) > MAX_EXTENDS_DEPTH:
            raise ProfileError(f"extends chain longer than {MAX_EXTENDS_DEPTH}", location=layer.doc.loc(()))
        try:
            layer = _read_layer(parent, layer.base_dir, search_dirs)
        except ProfileError as e:
            if e.location is None:
                e.location = layer.doc.loc(("extends",))
                e.field = "extends"
            raise
    warnings: list[Warning_] = []
    errors: list[ProfileError] = []
    for lay in chain:
        v = _Validator(lay.doc, lay.base_dir)
        fields.check_document(v, lay.data)
        errors += v.errors
        warnings += v.warnings
    if errors:
        raise errors[0] if len(errors) == 1 else ProfileErrors(errors)
    merged: dict[str, Any] = DEFAULTS
    for lay in reversed(chain):
        body = {k: val for k, val in lay.data.items() if k not in _LAYER_KEYS}
        merged = _merge(merged, _normalise_paths(body, lay.base_dir))
    leaf = chain[0]
    merged["name"] = leaf.data["name"]
    merged.pop("extends", None)
    files = [lay.doc.file for lay in chain if not lay.doc.file.startswith("<builtin>")]
    base = (merged.get("seccomp") or {}).get("base")
    if isinstance(base, str) and base not in SECCOMP_BASE_NAMES:
        files.append(base)
    profile = build_profile(merged, source=leaf.doc.file, extends=leaf.data.get("extends"))
    return replace(profile, files=tuple(files)), warnings


_LAYER_KEYS = frozenset(f.name for f in fields.FIELDS if f.layer)


def _normalise_paths(body: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """Make a relative seccomp base path absolute, relative to the file that names it."""
    sec = body.get("seccomp")
    if isinstance(sec, dict) and isinstance(sec.get("base"), str) and sec["base"] not in SECCOMP_BASE_NAMES:
        if not os.path.isabs(sec["base"]):
            body = {**body, "seccomp": {**sec, "base": os.path.normpath(os.path.join(base_dir, sec["base"]))}}
    return body


def profile_sha256(resolved: dict[str, Any]) -> str:
    canon = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def build_profile(d: dict[str, Any], *, source: str = "", extends: str | None = None) -> Profile:
    """Turn a validated, merged profile mapping into the model: each field fills the attribute it declares."""
    base = d["seccomp"]["base"]
    base_profile = (None if base == "none" else _runtime_default() if base == "runtime-default"
                    else {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []} if base == "empty"
                    else load_seccomp_json(base))
    values = fields.build_values(d)
    values["seccomp.base_profile"] = base_profile  # derived: the base file's content
    top: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for attr, value in values.items():
        section, _, name = attr.rpartition(".")
        if section:
            parts.setdefault(section, {})[name] = value
        else:
            top[name] = value
    for section, kwargs in parts.items():
        top[section] = type(getattr(Profile, section))(**kwargs)
    resolved = {**d, "capabilities": list(top["capabilities"])}
    resolved["seccomp"] = {**d["seccomp"], "base_sha256": hashlib.sha256(
        json.dumps(base_profile, sort_keys=True).encode()).hexdigest() if base_profile else None}
    return Profile(name=d["name"], extends=extends, source=source, sha256=profile_sha256(resolved),
                   resolved=resolved, **top)


def field_location(profile: Profile, field: str) -> Location:
    """Where `field` (dotted) is written in the profile's own file, else the file itself."""
    source = profile.source
    try:
        text = builtin_profile_text(profile.name)[0] if source.startswith("<builtin>") else read_text_file(source)
        _, doc = _parse_yaml(text, source)
    except (ProfileError, OSError):
        return Location(source or None)
    parts: Path = tuple(field.split("."))
    while parts and parts not in doc.positions:
        parts = parts[:-1]
    return doc.positions.get(parts, Location(source, 1, 1))
