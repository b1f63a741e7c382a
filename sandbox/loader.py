"""Load security profiles: safe YAML with node positions, validation, `extends`, built-ins.

Every error names `file:line:col: field.path: message`.  Profiles are parsed
only with a safe loader (the C one when present), aliases are expanded under a
node budget (no billion-laughs), and unknown keys are errors with a
"did you mean".

Merge rule for `extends` (documented in docs/profile-reference.md): mappings
merge key by key, the child winning; lists and scalars in the child replace the
parent's, except the additive lists (`filesystem.masked_paths`,
`filesystem.readonly_paths`, `filesystem.forbidden_host_paths`), which are the
union of the defaults and every profile in the chain, so no profile can drop a
default masked path or forbidden host path.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import tables
from ._record import replace
from .errors import Location, ProfileError, ProfileErrors
from .profile import (
    DevicePolicy,
    FilesystemPolicy,
    HookPolicy,
    HostPath,
    IdMapping,
    Limit,
    LsmPolicy,
    NamespacePolicy,
    ProcessPolicy,
    Profile,
    ResourcePolicy,
    SeccompPolicy,
    SysctlPolicy,
    TmpfsMount,
    UserPolicy,
)

API_VERSION = "sandbox/v1"
BUILTIN_PROFILES = ("baseline", "restricted", "strict")
MAX_PROFILE_BYTES = 1 << 20
MAX_NODES = 100_000  # after alias expansion
MAX_DEPTH = 64
MAX_EXTENDS_DEPTH = 16

Path = tuple[str | int, ...]

ADDITIVE_LISTS: frozenset[Path] = frozenset({
    ("filesystem", "masked_paths"), ("filesystem", "readonly_paths"),
    ("filesystem", "forbidden_host_paths"),
})

# The root of every extends chain.  Each key is documented in docs/profile-reference.md.
DEFAULTS: dict[str, Any] = {
    "mode": "enforce",
    "capabilities": list(tables.DOCKER_DEFAULT_CAPABILITIES),
    "no_new_privileges": True,
    "user": {"run_as_non_root": False, "user_namespace": "optional", "uid_mappings": [], "gid_mappings": []},
    "seccomp": {"base": "runtime-default", "default_action": "errno", "default_errno": "EPERM",
                "deny": [], "allow": [], "rules": []},
    "filesystem": {
        "readonly_rootfs": False,
        "tmpfs": [],
        "forbidden_host_paths": [
            {"path": "/", "match": "exact"},
            "/proc", "/sys", "/dev", "/etc", "/boot",
            "/run/docker.sock", "/run/containerd", "/run/crio", "/run/podman",
            {"path": "/var/lib/kubelet", "match": "exact"},
        ],
        # containerd's CRI binds each pod's /dev/shm and hosts files from here.
        "allowed_host_paths": ["/run/containerd/io.containerd.grpc.v1.cri/sandboxes"],
        "bind_mounts": {"readonly": False, "nosuid_nodev": True},
        "readonly_system_mounts": True,
        "masked_paths": list(tables.DOCKER_MASKED_PATHS),
        "readonly_paths": list(tables.DOCKER_READONLY_PATHS),
        "mount_types": [],
        "rootfs_dirs": list(tables.ROOTFS_DIRS),
    },
    "namespaces": {"required": ["pid", "ipc", "uts", "mount", "network"]},
    "resources": {},
    "devices": {"allow": []},
    "sysctls": {"allow": list(tables.SAFE_SYSCTLS)},
    "hooks": {"allow": [], "allow_engine_hooks": True},
    "process": {"oom_score_adj_min": None, "rlimits": {}},
    "apparmor": None,
    "selinux": None,
    "unknown_config_fields": "refuse",
    "runc_mitigations": True,
}


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

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


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
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
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
            self.err(path, f"expected {what}, got {_typename(value)}")
        return ok

    def str_list(self, value: Any, path: Path) -> list[str]:
        if not self.typed(value, path, list, "a list of strings"):
            return []
        out = []
        for i, v in enumerate(value):
            if self.typed(v, (*path, i), str, "a string"):
                out.append(v)
        return out


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _typename(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing (null)"}.get(type(v), type(v).__name__)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k|B)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "K": 1000, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
               "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


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


_TOP_KEYS = ("apiVersion", "kind", "name", "extends", "description", "mode", "capabilities",
             "no_new_privileges", "user", "seccomp", "filesystem", "namespaces", "resources", "devices",
             "sysctls", "hooks", "process", "apparmor", "selinux", "unknown_config_fields", "runc_mitigations")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")


def _check_header(v: _Validator, data: dict[str, Any]) -> None:
    v.keys(data, (), _TOP_KEYS)
    if data.get("apiVersion") != API_VERSION:
        v.err(("apiVersion",), f"must be {API_VERSION!r}, got {data.get('apiVersion')!r}")
    if data.get("kind") != "Profile":
        v.err(("kind",), f"must be 'Profile', got {data.get('kind')!r}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        v.err(("name",), "must be a lower-case name of letters, digits, '.', '_' or '-' (at most 64)")
    for key in ("extends", "description"):
        if key in data and not isinstance(data[key], str):
            v.err((key,), f"expected a string, got {_typename(data[key])}")


def _check_body(v: _Validator, data: dict[str, Any], base_dir: str) -> None:
    """Validate the keys present in one profile document (before merging)."""
    if "mode" in data and data["mode"] not in ("enforce", "complain"):
        v.err(("mode",), f"must be 'enforce' or 'complain', got {data['mode']!r}")
    if "capabilities" in data:
        caps = data["capabilities"]
        if isinstance(caps, dict):
            v.keys(caps, ("capabilities",), ("allow",))
            caps = caps.get("allow", [])
            cpath: Path = ("capabilities", "allow")
        else:
            cpath = ("capabilities",)
        for i, c in enumerate(v.str_list(caps, cpath)):
            if tables.normalize_capability(c) is None:
                dym = tables.did_you_mean(c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper(),
                                          tables.CAPABILITIES)
                v.err((*cpath, i), f"unknown capability {c!r}", f"did you mean {dym!r}?" if dym else None)
    for key in ("no_new_privileges", "runc_mitigations"):
        if key in data:
            v.typed(data[key], (key,), bool, "true or false")
    if "unknown_config_fields" in data and data["unknown_config_fields"] not in ("refuse", "warn"):
        v.err(("unknown_config_fields",), f"must be 'refuse' or 'warn', got {data['unknown_config_fields']!r}")
    for key in ("apparmor", "selinux"):
        if key in data and data[key] is not None:
            v.typed(data[key], (key,), str, "a label string")
    _section(v, data, "user", _check_user)
    _section(v, data, "seccomp", lambda v, d, p: _check_seccomp(v, d, p, base_dir))
    _section(v, data, "filesystem", _check_filesystem)
    _section(v, data, "namespaces", _check_namespaces)
    _section(v, data, "resources", _check_resources)
    _section(v, data, "devices", _check_allow_list("devices"))
    _section(v, data, "sysctls", _check_allow_list("sysctls"))
    _section(v, data, "hooks", _check_hooks)
    _section(v, data, "process", _check_process)


def _section(v: _Validator, data: dict[str, Any], key: str,
             check: Callable[[_Validator, dict[str, Any], Path], None]) -> None:
    if key in data and v.typed(data[key], (key,), dict, "a mapping"):
        check(v, data[key], (key,))


def _check_user(v: _Validator, d: dict[str, Any], p: Path) -> None:
    v.keys(d, p, ("run_as_non_root", "user_namespace", "uid_mappings", "gid_mappings"))
    if "run_as_non_root" in d:
        v.typed(d["run_as_non_root"], (*p, "run_as_non_root"), bool, "true or false")
    if "user_namespace" in d and d["user_namespace"] not in ("required", "optional"):
        v.err((*p, "user_namespace"), f"must be 'required' or 'optional', got {d['user_namespace']!r}")
    for key in ("uid_mappings", "gid_mappings"):
        if key not in d or not v.typed(d[key], (*p, key), list, "a list of mappings"):
            continue
        for i, m in enumerate(d[key]):
            mp = (*p, key, i)
            if not v.typed(m, mp, dict, "a mapping with container_id, host_id, size"):
                continue
            v.keys(m, mp, ("container_id", "host_id", "size"))
            for f in ("container_id", "host_id", "size"):
                val = m.get(f)
                if not isinstance(val, int) or isinstance(val, bool) or val < 0 or val > 2**32 - 1:
                    v.err((*mp, f), "expected an id from 0 to 4294967295")
            if m.get("size") == 0:
                v.err((*mp, "size"), "size must be at least 1")


def _check_syscall_names(v: _Validator, names: list[str], path: Path, *, all_arches: bool = False) -> None:
    for i, name in enumerate(names):
        arches = tables.syscall_arches(name)
        checked = [a for a in tables.CHECKED_ARCHES if a in arches]
        if not arches or (not checked and not all_arches):
            dym = tables.did_you_mean(name, tables.known_syscalls())
            v.err((*path, i), f"unknown syscall {name!r} (not known to libseccomp on x86_64 or aarch64)",
                  f"did you mean {dym!r}?" if dym else None)
        elif not all_arches and len(checked) < len(tables.CHECKED_ARCHES):
            missing = sorted(set(tables.CHECKED_ARCHES) - set(checked))
            v.warn((*path, i), f"syscall {name!r} does not exist on {', '.join(missing)}")


def _check_seccomp(v: _Validator, d: dict[str, Any], p: Path, base_dir: str) -> None:
    v.keys(d, p, ("base", "default_action", "default_errno", "deny", "allow", "rules"))
    if "rules" in d and v.typed(d["rules"], (*p, "rules"), list, "a list of OCI seccomp rules"):
        for problem in check_seccomp_data({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": d["rules"]}):
            v.err((*p, "rules"), problem)
    if "base" in d and v.typed(d["base"], (*p, "base"), str, "runtime-default, none or a file path"):
        base = d["base"]
        if base not in ("runtime-default", "none"):
            path = base if os.path.isabs(base) else os.path.join(base_dir, base)
            try:
                load_seccomp_json(path)
            except ProfileError as e:
                v.err((*p, "base"), str(e))
    if "default_action" in d:
        a = d["default_action"]
        if not isinstance(a, str) or _seccomp_action(a) is None or _seccomp_action(a) == "SCMP_ACT_ALLOW":
            choices = [k for k in tables.SECCOMP_ACTION_ALIASES if k != "allow"]
            v.err((*p, "default_action"), f"must be one of {', '.join(choices)} (or an SCMP_ACT_* name "
                  f"other than SCMP_ACT_ALLOW), got {a!r}")
    if "default_errno" in d and tables.errno_number(d["default_errno"]) is None:
        dym = tables.did_you_mean(str(d["default_errno"]).upper(), tables.known_errnos())
        v.err((*p, "default_errno"), f"unknown errno {d['default_errno']!r}",
              f"did you mean {dym!r}?" if dym else "a name such as EPERM, or a number from 1 to 4095")
    for key in ("deny", "allow"):
        if key in d:
            _check_syscall_names(v, v.str_list(d[key], (*p, key)), (*p, key))
    if isinstance(d.get("deny"), list):
        for name, rest in tables.missing_family_members(tuple(x for x in d["deny"] if isinstance(x, str))):
            v.warn((*p, "deny"),
                   f"{name!r} is denied but {', '.join(rest)} also reach that operation and are not denied")


def _seccomp_action(a: str) -> str | None:
    if a in tables.SECCOMP_ACTION_RANK:
        return a
    return tables.SECCOMP_ACTION_ALIASES.get(a.lower())


def _check_host_path(v: _Validator, value: Any, path: Path) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        v.err(path, "expected an absolute path")


def _check_filesystem(v: _Validator, d: dict[str, Any], p: Path) -> None:
    v.keys(d, p, ("readonly_rootfs", "tmpfs", "forbidden_host_paths", "allowed_host_paths", "bind_mounts",
                  "readonly_system_mounts", "masked_paths", "readonly_paths", "mount_types", "rootfs_dirs"))
    for key in ("readonly_rootfs", "readonly_system_mounts"):
        if key in d:
            v.typed(d[key], (*p, key), bool, "true or false")
    if "tmpfs" in d and v.typed(d["tmpfs"], (*p, "tmpfs"), list, "a list of tmpfs mounts"):
        for i, t in enumerate(d["tmpfs"]):
            tp = (*p, "tmpfs", i)
            if not v.typed(t, tp, dict, "a mapping with path, size, options"):
                continue
            v.keys(t, tp, ("path", "size", "options", "mode"))
            _check_host_path(v, t.get("path"), (*tp, "path"))
            if "size" in t and parse_size(t["size"]) is None:
                v.err((*tp, "size"), f"expected a size such as 64Mi, got {t['size']!r}")
            if "options" in t:
                for j, o in enumerate(v.str_list(t["options"], (*tp, "options"))):
                    if o.startswith("size="):
                        v.err((*tp, "options", j), "give the size with the `size` key")
            if "mode" in t and not (isinstance(t["mode"], int) and 0 <= t["mode"] <= 0o7777):
                v.err((*tp, "mode"), "expected a file mode such as 01777")
    if "forbidden_host_paths" in d and v.typed(d["forbidden_host_paths"], (*p, "forbidden_host_paths"), list,
                                               "a list of paths"):
        for i, e in enumerate(d["forbidden_host_paths"]):
            ep = (*p, "forbidden_host_paths", i)
            if isinstance(e, dict):
                v.keys(e, ep, ("path", "match"))
                _check_host_path(v, e.get("path"), (*ep, "path"))
                if e.get("match", "subtree") not in ("exact", "subtree"):
                    v.err((*ep, "match"), "must be 'exact' or 'subtree'")
            else:
                _check_host_path(v, e, ep)
    for key in ("allowed_host_paths", "masked_paths", "readonly_paths", "rootfs_dirs"):
        if key in d:
            for i, s in enumerate(v.str_list(d[key], (*p, key))):
                _check_host_path(v, s, (*p, key, i))
    if "mount_types" in d:
        for i, t in enumerate(v.str_list(d["mount_types"], (*p, "mount_types"))):
            if not re.fullmatch(r"[a-z0-9][a-z0-9._+-]*", t):
                v.err((*p, "mount_types", i), f"expected a filesystem type name such as ext4, got {t!r}")
            elif t in tables.MOUNT_TYPES:
                v.warn((*p, "mount_types", i), f"{t} is allowed already")
    if "bind_mounts" in d and v.typed(d["bind_mounts"], (*p, "bind_mounts"), dict, "a mapping"):
        v.keys(d["bind_mounts"], (*p, "bind_mounts"), ("readonly", "nosuid_nodev"))
        for key in ("readonly", "nosuid_nodev"):
            if key in d["bind_mounts"]:
                v.typed(d["bind_mounts"][key], (*p, "bind_mounts", key), bool, "true or false")


def _check_namespaces(v: _Validator, d: dict[str, Any], p: Path) -> None:
    v.keys(d, p, ("required",))
    if "required" in d:
        for i, ns in enumerate(v.str_list(d["required"], (*p, "required"))):
            if ns not in tables.NAMESPACES:
                dym = tables.did_you_mean(ns, tables.NAMESPACES)
                v.err((*p, "required", i), f"unknown namespace {ns!r}", f"did you mean {dym!r}?" if dym else None)


def _check_resources(v: _Validator, d: dict[str, Any], p: Path) -> None:
    v.keys(d, p, ("memory", "pids", "cpu"))
    parsers: dict[str, tuple[Callable[[Any], int | None], str]] = {
        "memory": (parse_size, "a size such as 512Mi"),
        "pids": (lambda x: x if isinstance(x, int) and not isinstance(x, bool) and x > 0 else None,
                 "a positive integer"),
        "cpu": (parse_cpu, "CPUs such as 1.5 or 500m"),
    }
    for key, (parse, what) in parsers.items():
        if key not in d or not v.typed(d[key], (*p, key), dict, "a mapping with max and/or default"):
            continue
        v.keys(d[key], (*p, key), ("max", "default"))
        vals = {}
        for f in ("max", "default"):
            if f in d[key]:
                vals[f] = parse(d[key][f])
                if vals[f] is None:
                    v.err((*p, key, f), f"expected {what}, got {d[key][f]!r}")
        mx, df = vals.get("max"), vals.get("default")
        if mx is not None and df is not None and df > mx:
            v.err((*p, key, "default"), "the default is larger than the maximum")


def _check_allow_list(section: str) -> Callable[[_Validator, dict[str, Any], Path], None]:
    def check(v: _Validator, d: dict[str, Any], p: Path) -> None:
        v.keys(d, p, ("allow",))
        if "allow" in d:
            items = v.str_list(d["allow"], (*p, "allow"))
            if section == "devices":
                for i, s in enumerate(items):
                    if not s.startswith("/dev/"):
                        v.err((*p, "allow", i), "expected a device path under /dev/")
    return check


def _check_hooks(v: _Validator, d: dict[str, Any], p: Path) -> None:
    v.keys(d, p, ("allow", "allow_engine_hooks"))
    if "allow" in d:
        for i, s in enumerate(v.str_list(d["allow"], (*p, "allow"))):
            _check_host_path(v, s, (*p, "allow", i))
    if "allow_engine_hooks" in d:
        v.typed(d["allow_engine_hooks"], (*p, "allow_engine_hooks"), bool, "true or false")


def _check_process(v: _Validator, d: dict[str, Any], p: Path) -> None:
    v.keys(d, p, ("oom_score_adj_min", "rlimits"))
    adj = d.get("oom_score_adj_min")
    if adj is not None and not (isinstance(adj, int) and not isinstance(adj, bool) and -1000 <= adj <= 1000):
        v.err((*p, "oom_score_adj_min"), "expected an integer from -1000 to 1000, or null")
    if "rlimits" in d and v.typed(d["rlimits"], (*p, "rlimits"), dict, "a mapping of RLIMIT_* names to maxima"):
        for name, top in d["rlimits"].items():
            if name not in tables.RLIMITS:
                dym = tables.did_you_mean(name, tables.RLIMITS)
                v.err((*p, "rlimits", name), f"unknown rlimit {name!r}", f"did you mean {dym!r}?" if dym else None)
            elif not (isinstance(top, int) and not isinstance(top, bool) and top >= 0):
                v.err((*p, "rlimits", name), "expected a non-negative integer")


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
            if not isinstance(a, dict) or not isinstance(a.get("index"), int) or not 0 <= a["index"] <= 5:
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
        v = _Validator(lay.doc)
        _check_header(v, lay.data)
        _check_body(v, lay.data, lay.base_dir)
        errors += v.errors
        warnings += v.warnings
    if errors:
        raise errors[0] if len(errors) == 1 else ProfileErrors(errors)
    merged: dict[str, Any] = DEFAULTS
    for lay in reversed(chain):
        body = {k: val for k, val in lay.data.items() if k not in ("apiVersion", "kind", "extends")}
        merged = _merge(merged, _normalise_paths(body, lay.base_dir))
    leaf = chain[0]
    merged["name"] = leaf.data["name"]
    merged.pop("extends", None)
    files = [lay.doc.file for lay in chain if not lay.doc.file.startswith("<builtin>")]
    base = (merged.get("seccomp") or {}).get("base")
    if isinstance(base, str) and base not in ("runtime-default", "none"):
        files.append(base)
    profile = build_profile(merged, source=leaf.doc.file, extends=leaf.data.get("extends"))
    return replace(profile, files=tuple(files)), warnings


def _normalise_paths(body: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """Make a relative seccomp base path absolute, relative to the file that names it."""
    sec = body.get("seccomp")
    if isinstance(sec, dict) and isinstance(sec.get("base"), str) and sec["base"] not in ("runtime-default", "none"):
        if not os.path.isabs(sec["base"]):
            body = {**body, "seccomp": {**sec, "base": os.path.normpath(os.path.join(base_dir, sec["base"]))}}
    return body


def profile_sha256(resolved: dict[str, Any]) -> str:
    canon = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def build_profile(d: dict[str, Any], *, source: str = "", extends: str | None = None) -> Profile:
    """Turn a validated, merged profile mapping into the model."""
    caps = d["capabilities"]
    if isinstance(caps, dict):
        caps = caps.get("allow", [])
    user = d["user"]
    sec = d["seccomp"]
    fs = d["filesystem"]
    res = d["resources"]
    proc = d["process"]
    base = sec["base"]
    base_profile = None if base == "none" else (_runtime_default() if base == "runtime-default"
                                                else load_seccomp_json(base))

    def limit(key: str, parse: Callable[[Any], int | None]) -> Limit:
        r = res.get(key) or {}
        return Limit(max=parse(r["max"]) if "max" in r else None,
                     default=parse(r["default"]) if "default" in r else None)

    def host_path(e: Any) -> HostPath:
        if isinstance(e, dict):
            return HostPath(posixpath.normpath(e["path"]), e.get("match", "subtree"))
        return HostPath(posixpath.normpath(e))

    resolved = {**d, "capabilities": sorted({tables.normalize_capability(c) or c for c in caps})}
    resolved["seccomp"] = {**sec, "base_sha256": hashlib.sha256(
        json.dumps(base_profile, sort_keys=True).encode()).hexdigest() if base_profile else None}
    return Profile(
        name=d["name"],
        description=d.get("description", ""),
        mode=d["mode"],
        extends=extends,
        source=source,
        sha256=profile_sha256(resolved),
        capabilities=tuple(resolved["capabilities"]),
        no_new_privileges=d["no_new_privileges"],
        user=UserPolicy(
            run_as_non_root=user["run_as_non_root"],
            user_namespace=user["user_namespace"],
            uid_mappings=tuple(IdMapping(m["container_id"], m["host_id"], m["size"]) for m in user["uid_mappings"]),
            gid_mappings=tuple(IdMapping(m["container_id"], m["host_id"], m["size"]) for m in user["gid_mappings"]),
        ),
        seccomp=SeccompPolicy(
            base=base,
            base_profile=base_profile,
            default_action=_seccomp_action(sec["default_action"]) or "SCMP_ACT_ERRNO",
            default_errno=tables.errno_number(sec["default_errno"]) or 1,
            deny=tuple(sec["deny"]),
            allow=tuple(sec["allow"]),
            rules=tuple(sec.get("rules", ())),
        ),
        filesystem=FilesystemPolicy(
            readonly_rootfs=fs["readonly_rootfs"],
            tmpfs=tuple(TmpfsMount(path=posixpath.normpath(t["path"]),
                                   size=parse_size(t["size"]) if "size" in t else None,
                                   options=tuple(t.get("options", ("nosuid", "nodev", "noexec"))),
                                   mode=t.get("mode", 0o1777)) for t in fs["tmpfs"]),
            forbidden_host_paths=tuple(host_path(e) for e in fs["forbidden_host_paths"]),
            allowed_host_paths=tuple(posixpath.normpath(p) for p in fs["allowed_host_paths"]),
            bind_readonly=fs["bind_mounts"].get("readonly", False),
            bind_nosuid_nodev=fs["bind_mounts"].get("nosuid_nodev", True),
            readonly_system_mounts=fs["readonly_system_mounts"],
            masked_paths=tuple(fs["masked_paths"]),
            readonly_paths=tuple(fs["readonly_paths"]),
            mount_types=tuple(fs["mount_types"]),
            rootfs_dirs=tuple(posixpath.normpath(x) for x in fs["rootfs_dirs"]),
        ),
        namespaces=NamespacePolicy(required=tuple(d["namespaces"]["required"])),
        resources=ResourcePolicy(memory=limit("memory", parse_size), pids=limit("pids", lambda x: x),
                                 cpu=limit("cpu", parse_cpu)),
        devices=DevicePolicy(allow=tuple(d["devices"]["allow"])),
        sysctls=SysctlPolicy(allow=tuple(d["sysctls"]["allow"])),
        hooks=HookPolicy(allow=tuple(d["hooks"]["allow"]), allow_engine_hooks=d["hooks"]["allow_engine_hooks"]),
        lsm=LsmPolicy(apparmor=d.get("apparmor"), selinux=d.get("selinux")),
        process=ProcessPolicy(oom_score_adj_min=proc.get("oom_score_adj_min"),
                              rlimits=tuple(sorted((proc.get("rlimits") or {}).items()))),
        unknown_config_fields=d["unknown_config_fields"],
        runc_mitigations=d["runc_mitigations"],
        resolved=resolved,
    )


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
