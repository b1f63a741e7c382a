"""The table of config.json fields runc 1.1 acts on, and the shape check built from it.

`FIELDS` is the one table of config fields: every field runc 1.1.5 reads from config.json on Linux
(libcontainer/specconv, utils_linux.go, configs/validate, rootfs_linux.go), its JSON type, and what
sandbox does with it: checked by a transform step, kept because it cannot reach beyond the
container, or `policy` (it reaches beyond the container: refused under `unknown_config_fields:
refuse`, a warning under `warn`).  A field outside the table is treated like a `policy` one, so a
newer runc or runtime-spec cannot open a hole by adding a field (transform/fields.py).

Shape check: runc decodes config.json with Go's encoding/json, which matches object keys
case-insensitively (Unicode folding: `Seccomp`, even `ſeccomp`, is `seccomp`) and lets the last
of such keys win.  A bundle could therefore hide a second `Seccomp: null` or `Capabilities` that
sandbox never looked at but runc would use.  So: a key that is another spelling of a field, or of a
sibling, is refused; fields in the table must have the types runc expects; strings carry no NUL.
Maps with free-form keys (annotations, sysctl, unified) are exempt from folding.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FREE = "free"  # a map whose keys are data

STEP, KEEP, POLICY = "step", "keep", "policy"

_HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
_CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
_THROTTLE = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice")


def _rows() -> list[tuple[str, str, str, str]]:
    """(field, JSON type, handling, what sandbox does / why) for every field runc 1.1.5 acts on."""
    r: list[tuple[str, str, str, str]] = [
        ("ociVersion", "string", KEEP, "must be 1.x (read_config)"),
        ("hostname", "string", KEEP, "set in the container's own UTS namespace (a required namespace)"),
        ("process", "object", KEEP, ""),
        ("process.terminal", "boolean", KEEP, "a pty for the process"),
        ("process.consoleSize", "object", KEEP, "the pty's size"),
        ("process.consoleSize.height", "integer", KEEP, ""),
        ("process.consoleSize.width", "integer", KEEP, ""),
        ("process.user", "object", KEEP, ""),
        ("process.user.uid", "integer", STEP + ":user", "run_as_non_root, the user namespace"),
        ("process.user.gid", "integer", STEP + ":user", "the user namespace"),
        ("process.user.umask", "integer", KEEP, "the process's file-creation mask"),
        ("process.user.additionalGids", "integers", KEEP,
         "supplementary groups; without a user namespace they are host gids, which reach only what the host-path "
         "gate lets into the container"),
        ("process.user.username", "string", KEEP, "ignored by runc on Linux"),
        ("process.args", "strings", STEP + ":process", "args[0] under /proc/*/fd refused (runc_mitigations)"),
        ("process.env", "strings", KEEP, "the process's environment"),
        ("process.cwd", "string", STEP + ":process", "under /proc/*/fd, /proc/*/cwd, /proc/*/root or /dev/fd "
         "refused (CVE-2024-21626; runc_mitigations)"),
        ("process.capabilities", "object", STEP + ":capabilities", "each set intersected with the profile's"),
        *((f"process.capabilities.{s}", "strings", STEP + ":capabilities",
           "emptied (CVE-2022-29162; runc_mitigations)" if s == "inheritable" else "") for s in _CAP_SETS),
        ("process.rlimits", "objects", STEP + ":process", "clamped to process.rlimits maxima"),
        ("process.rlimits[].type", "string", STEP + ":process", "runc refuses names it does not know"),
        ("process.rlimits[].hard", "integer", STEP + ":process", ""),
        ("process.rlimits[].soft", "integer", STEP + ":process", ""),
        ("process.noNewPrivileges", "boolean", STEP + ":no_new_privileges", "forced on"),
        ("process.apparmorProfile", "string", STEP + ":lsm", "set from the profile; `unconfined` refused where "
         "AppArmor is enabled"),
        ("process.selinuxLabel", "string", STEP + ":lsm", "set from the profile; a type other than container_* "
         "refused where SELinux is enabled"),
        ("process.oomScoreAdj", "integer", STEP + ":process", "raised to process.oom_score_adj_min"),
        ("root", "object", KEEP, ""),
        ("root.path", "string", STEP + ":rootfs", "through the host-path gate (use root)"),
        ("root.readonly", "boolean", STEP + ":rootfs", "forced by filesystem.readonly_rootfs"),
        ("mounts", "objects", STEP + ":mounts", "type allow-list, host-path gate, option allow-list"),
        ("mounts[].destination", "string", STEP + ":mounts", "system filesystems only at their one place"),
        ("mounts[].source", "string", STEP + ":mounts", "through the host-path gate (bind, mount-source)"),
        ("mounts[].type", "string", STEP + ":mounts", "tables.MOUNT_TYPES + filesystem.mount_types"),
        ("mounts[].options", "strings", STEP + ":mounts", "flags made to hold; data options by type allow-list; "
         "overlay directories through the gate"),
        ("hooks", "object", STEP + ":hooks", ""),
        ("annotations", "map", STEP + ":config_fields", "org.criu.config through the host-path gate; "
         "org.systemd.property.* is policy; a key with `=` is refused (runc stores annotations as key=value "
         "labels and would read it back as another key)"),
        ("linux", "object", KEEP, ""),
        ("linux.namespaces", "objects", STEP + ":namespaces", "required kinds added"),
        ("linux.namespaces[].type", "string", STEP + ":namespaces", ""),
        ("linux.namespaces[].path", "string", STEP + ":namespaces", "through the host-path gate (use namespace)"),
        ("linux.uidMappings", "objects", STEP + ":user", "no host root mapped"),
        ("linux.gidMappings", "objects", STEP + ":user", "no host root mapped"),
        ("linux.devices", "objects", STEP + ":devices", "through the host-path gate (use device)"),
        ("linux.devices[].path", "string", STEP + ":devices", ""),
        ("linux.devices[].type", "string", STEP + ":devices", "must match the host's node"),
        ("linux.devices[].major", "integer", STEP + ":devices", "must match the host's node"),
        ("linux.devices[].minor", "integer", STEP + ":devices", "must match the host's node"),
        ("linux.devices[].fileMode", "integer", KEEP, "the node's permissions inside the container"),
        ("linux.devices[].uid", "integer", KEEP, "the node's owner inside the container"),
        ("linux.devices[].gid", "integer", KEEP, "the node's group inside the container"),
        ("linux.cgroupsPath", "string", STEP + ":cgroups", "through the host-path gate (use cgroup)"),
        ("linux.resources", "object", KEEP, ""),
        ("linux.resources.devices", "objects", STEP + ":devices", "deny-all first; allow rules kept only for "
         "standard and allowed devices"),
        ("linux.resources.devices[].allow", "boolean", STEP + ":devices", ""),
        ("linux.resources.devices[].type", "string", STEP + ":devices", ""),
        ("linux.resources.devices[].major", "integer", STEP + ":devices", ""),
        ("linux.resources.devices[].minor", "integer", STEP + ":devices", ""),
        ("linux.resources.devices[].access", "string", STEP + ":devices", ""),
        ("linux.resources.memory", "object", STEP + ":resources", ""),
        ("linux.resources.memory.limit", "integer", STEP + ":resources", "clamped to resources.memory"),
        ("linux.resources.memory.swap", "integer", STEP + ":resources", "memory+swap bounded by the limit"),
        ("linux.resources.memory.reservation", "integer", KEEP, "a soft floor inside the container's own limit"),
        ("linux.resources.memory.kernel", "integer", KEEP, "ignored by runc 1.1 (a warning)"),
        ("linux.resources.memory.kernelTCP", "integer", KEEP, "ignored by runc 1.1 (a warning)"),
        ("linux.resources.memory.swappiness", "integer", KEEP, "reclaim preference of the container's own cgroup"),
        ("linux.resources.memory.disableOOMKiller", "boolean", KEEP,
         "at its own limit the container's tasks wait instead of being killed"),
        ("linux.resources.cpu", "object", STEP + ":resources", ""),
        ("linux.resources.cpu.quota", "integer", STEP + ":resources", "clamped to resources.cpu"),
        ("linux.resources.cpu.period", "integer", STEP + ":resources", ""),
        ("linux.resources.cpu.shares", "integer", KEEP, "a relative weight"),
        ("linux.resources.cpu.realtimeRuntime", "integer", KEEP, "real-time budget of the container's cgroup; "
         "using it needs CAP_SYS_NICE or RLIMIT_RTPRIO, which the profiles bound"),
        ("linux.resources.cpu.realtimePeriod", "integer", KEEP, ""),
        ("linux.resources.cpu.cpus", "string", KEEP, "cpuset pinning"),
        ("linux.resources.cpu.mems", "string", KEEP, "cpuset memory nodes"),
        ("linux.resources.pids", "object", STEP + ":resources", ""),
        ("linux.resources.pids.limit", "integer", STEP + ":resources", "clamped to resources.pids"),
        ("linux.resources.blockIO", "object", KEEP, "weights and throttles of the container's own cgroup"),
        ("linux.resources.blockIO.weight", "integer", KEEP, ""),
        ("linux.resources.blockIO.leafWeight", "integer", KEEP, ""),
        ("linux.resources.blockIO.weightDevice", "objects", KEEP, "major:minor only selects the device a "
         "weight applies to"),
        *((f"linux.resources.blockIO.weightDevice[].{k}", "integer", KEEP, "")
          for k in ("major", "minor", "weight", "leafWeight")),
        *(row for t in _THROTTLE for row in (
            (f"linux.resources.blockIO.{t}", "objects", KEEP, "a throttle on the container's own I/O"),
            *((f"linux.resources.blockIO.{t}[].{k}", "integer", KEEP, "") for k in ("major", "minor", "rate")))),
        ("linux.resources.hugepageLimits", "objects", KEEP, "limits only"),
        ("linux.resources.hugepageLimits[].pageSize", "string", KEEP, ""),
        ("linux.resources.hugepageLimits[].limit", "integer", KEEP, ""),
        ("linux.resources.rdma", "map", KEEP, "limits only"),
        ("linux.resources.network", "object", POLICY,
         "net_cls class id and net_prio priorities tag the container's packets for the host's traffic control "
         "and firewall rules, which may trust them"),
        ("linux.resources.network.classID", "integer", POLICY, ""),
        ("linux.resources.network.priorities", "objects", POLICY, ""),
        ("linux.resources.network.priorities[].name", "string", POLICY, ""),
        ("linux.resources.network.priorities[].priority", "integer", POLICY, ""),
        ("linux.resources.unified", "map", STEP + ":cgroups", "keys by allow-list (tables.UNIFIED_KEYS); "
         "values above the profile's limits clamped"),
        ("linux.intelRdt", "object", KEEP, ""),
        ("linux.intelRdt.closID", "string", STEP + ":cgroups", "through the host-path gate (use resctrl)"),
        ("linux.intelRdt.l3CacheSchema", "string", POLICY, "partitions the host's shared L3 cache (resctrl)"),
        ("linux.intelRdt.memBwSchema", "string", POLICY, "partitions the host's memory bandwidth (resctrl)"),
        ("linux.sysctl", "map", STEP + ":sysctls", "names by allow-list"),
        ("linux.seccomp", "object", STEP + ":seccomp", "intersected with the profile's filter"),
        ("linux.seccomp.defaultAction", "string", STEP + ":seccomp", ""),
        ("linux.seccomp.defaultErrnoRet", "integer", STEP + ":seccomp", ""),
        ("linux.seccomp.architectures", "strings", STEP + ":seccomp", ""),
        ("linux.seccomp.flags", "strings", STEP + ":seccomp", ""),
        ("linux.seccomp.listenerPath", "string", STEP + ":config_fields", "through the host-path gate "
         "(use listener)"),
        ("linux.seccomp.listenerMetadata", "string", KEEP, "opaque data sent to the listener"),
        ("linux.seccomp.syscalls", "objects", STEP + ":seccomp",
         "written anew from the fields below when the profile has a filter"),
        ("linux.seccomp.syscalls[].names", "strings", STEP + ":seccomp", ""),
        ("linux.seccomp.syscalls[].action", "string", STEP + ":seccomp", ""),
        ("linux.seccomp.syscalls[].errnoRet", "integer", STEP + ":seccomp", ""),
        ("linux.seccomp.syscalls[].args", "objects", STEP + ":seccomp", ""),
        *((f"linux.seccomp.syscalls[].args[].{k}", "integer", STEP + ":seccomp", "")
          for k in ("index", "value", "valueTwo")),
        ("linux.seccomp.syscalls[].args[].op", "string", STEP + ":seccomp", ""),
        ("linux.rootfsPropagation", "string", STEP + ":rootfs", "shared/rshared made slave/rslave"),
        ("linux.maskedPaths", "strings", STEP + ":mounts", "the profile's added (container paths)"),
        ("linux.readonlyPaths", "strings", STEP + ":mounts", "the profile's added (container paths)"),
        ("linux.mountLabel", "string", KEEP, "an SELinux context for the container's mounts; used only where "
         "SELinux is enabled"),
    ]
    for stage in _HOOK_STAGES:
        how = ("runs inside the container with its credentials" if stage == "startContainer"
               else "through the host-path gate (use hook)")
        r += [(f"hooks.{stage}", "objects", STEP + ":hooks", how),
              (f"hooks.{stage}[].path", "string", STEP + ":hooks", ""),
              (f"hooks.{stage}[].args", "strings", STEP + ":hooks", "the engine's shape for engine hooks"),
              (f"hooks.{stage}[].env", "strings", STEP + ":hooks", "no loader variables"),
              (f"hooks.{stage}[].timeout", "integer", KEEP, "")]
    for key in ("uidMappings", "gidMappings"):
        r += [(f"linux.{key}[].{k}", "integer", STEP + ":user", "") for k in ("containerID", "hostID", "size")]
    return r


FIELDS: tuple[tuple[str, str, str, str], ...] = tuple(_rows())

_SPEC: dict[str, Any] = {"string": str, "integer": int, "boolean": bool, "strings": [str], "integers": [int],
                         "map": _FREE}


def _build() -> Any:
    top: Any = (dict, {})
    for path, kind, _, _ in FIELDS:
        node = top
        *parents, last = path.split(".")
        for seg in parents:
            node = node[1][seg.rstrip("[]")]
            if seg.endswith("[]"):
                node = node[0]
        name = last.rstrip("[]")
        if kind == "object":
            node[1].setdefault(name, (dict, {}))
        elif kind == "objects":
            node[1].setdefault(name, [(dict, {})])
        else:
            node[1][name] = _SPEC[kind]
    return top


SHAPE: Any = _build()

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "an array"}


# A field's path is built only when there is a problem to report: every node of config.json is
# visited on every create, so it travels as a linked pair (parent, key), not as a string.
Path = tuple  # () for the top, else (parent Path, key)


def keys_of(path: Path) -> list[Any]:
    keys: list[Any] = []
    while path:
        path, key = path
        keys.append(key)
    keys.reverse()
    return keys


def _text(path: Path) -> str:
    out = ""
    for key in keys_of(path):
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
    """Fields outside the table: still no case-folded twins (runc may read them) and no NUL."""
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


_REBUILT = "rebuilt"  # a subtree the transform writes anew from the fields it knows
_SHAPES: dict[bool, Any] = {False: SHAPE}


def _rebuilt_shape() -> Any:
    """SHAPE with linux.seccomp.syscalls marked rebuilt (made on first use: a copy of the spine only)."""
    if True not in _SHAPES:
        linux = SHAPE[1]["linux"]
        seccomp = linux[1]["seccomp"]
        _SHAPES[True] = (dict, {**SHAPE[1], "linux": (dict, {**linux[1], "seccomp": (
            dict, {**seccomp[1], "syscalls": _REBUILT})})})
    return _SHAPES[True]


def outside(config: Any, seccomp_rebuilt: bool = False) -> list[list[Any]]:
    """The fields of `config` that are not in the table (JSON null ones are absent to runc).

    With `seccomp_rebuilt`, linux.seccomp.syscalls is not walked: the seccomp step writes its
    rules anew from the fields it knows, so nothing else in them reaches runc."""
    out: list[Path] = []
    _outside(config, _rebuilt_shape() if seccomp_rebuilt else SHAPE, (), out)
    return [keys_of(p) for p in out]


def _outside(value: Any, spec: Any, path: Path, out: list[Path]) -> None:
    if spec is _REBUILT:
        return
    if isinstance(spec, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _outside(item, spec[0], (path, i), out)
    elif isinstance(spec, tuple) and isinstance(value, dict):
        fields = spec[1]
        for k, v in value.items():
            if k in fields:
                _outside(v, fields[k], (path, k), out)
            elif v is not None:
                out.append((path, k))


POLICY_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (path, note) for path, _, how, note in FIELDS if how == POLICY and note and "[]" not in path)
