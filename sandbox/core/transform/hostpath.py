"""The host-path gate: every host path config.json names goes through `gate`, with one set of rules.

`USES` lists each place in config.json where runc 1.1 takes a path on the host (read from
runc's libcontainer/specconv, configs/validate and rootfs_linux.go at v1.1.5); docs/security.md
shows it.  `named_host_paths` enumerates them in a config, and is what the edge (`sandbox.host.probe`)
probes, so the edge and the gate can never disagree about which paths there are.

The rules, by kind of use:

- **exposed** (the path's contents become the container's, or runc reads it): the path as written
  (made absolute against the bundle directory, as runc does) and the path with symlinks resolved
  on the host must both pass: not `/` itself, not a forbidden host path nor inside a forbidden
  subtree nor a parent of one (unless inside an allowed subtree).  A container root must also lie
  strictly inside one of `filesystem.rootfs_dirs`.  A path admitted only through an allow-list
  entry must not have, below that entry, a directory someone other than root could swap for a
  symlink between this check and runc's use.
- **executed** (hooks run on the host as root): sandbox's own hook program, a path the profile
  allow-lists exactly (resolved, root-owned all the way up, no loader variables in its env), or an
  engine's own hook by identity: the executable of a running root process, root-owned all the way
  up, with that engine's argument shape.
- **device**, **namespace**, **cgroup**, **resctrl**: see the functions below.
"""

from __future__ import annotations

from ..._record import record
from .. import tables
from .context import _normpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..profile import HostPath
    from .context import Context


@record
class Use:
    field: str  # where in config.json (runtime-spec names)
    runc: str  # what runc 1.1.5 does with the path
    rule: str  # exposed | executed | device | namespace | cgroup | resctrl


USES: dict[str, Use] = {
    "root": Use("root.path", "bind-mounted onto itself and made the container's / by pivot_root; relative to "
                "the bundle directory", "exposed"),
    "bind": Use("mounts[].source of a mount whose options include bind or rbind (whatever its type)",
                "bind-mounted into the container; relative to the bundle directory", "exposed"),
    "overlay": Use("mounts[].options lowerdir= (each `:`-separated part), upperdir=, workdir= of an overlay",
                   "handed to the kernel as overlayfs layers before pivot_root, where host paths resolve",
                   "exposed"),
    "mount-source": Use("mounts[].source of a filesystem type a profile adds (filesystem.mount_types)",
                        "passed to mount(2): a block device or directory on the host", "exposed"),
    "listener": Use("linux.seccomp.listenerPath",
                    "a unix socket runc connects to and hands the seccomp notify fd of the container", "exposed"),
    "criu-config": Use("annotations[\"org.criu.config\"]",
                       "a CRIU configuration file CRIU reads as root on checkpoint and restore (it can name "
                       "action scripts)", "exposed"),
    "hook": Use("hooks.{prestart,createRuntime,createContainer,poststart,poststop}[].path",
                "executed as root: in the host's namespaces, or (createContainer) by runc init before "
                "pivot_root with every capability", "executed"),
    "device": Use("linux.devices[].path", "a node made at that path in the container; in a user namespace "
                  "(or when mknod fails) the host's file at that path is bind-mounted instead", "device"),
    "namespace": Use("linux.namespaces[].path", "opened and joined with setns(2) by runc init", "namespace"),
    "cgroup": Use("linux.cgroupsPath", "the cgroup (below each hierarchy's root) the container is put in and "
                  "whose limit files runc writes", "cgroup"),
    "resctrl": Use("linux.intelRdt.closID", "the resctrl group /sys/fs/resctrl/<closID> the container joins "
                   "(created when missing)", "resctrl"),
}


@record
class Verdict:
    ok: bool
    reason: str
    key: str  # the profile key that decided


def _refuse(reason: str, key: str) -> Verdict:
    return Verdict(False, reason, key)


# -- what a config names -------------------------------------------------------------------------------

def mount_is_bind(m: dict[str, Any]) -> bool:
    """runc (specconv.createLibcontainerMount) makes any mount with a bind/rbind option a bind mount."""
    opts = m.get("options")
    return isinstance(opts, list) and ("bind" in opts or "rbind" in opts)


def mount_type(m: dict[str, Any]) -> str:
    """The filesystem type runc will use: "bind" by the options, else the `type` field."""
    if mount_is_bind(m):
        return "bind"
    t = m.get("type")
    return t if isinstance(t, str) else ""


def overlay_dirs(options: Any) -> list[tuple[str, str]]:
    """(option, directory) for every directory an overlay mount's options name, as the kernel splits them."""
    out: list[tuple[str, str]] = []
    for o in options if isinstance(options, list) else []:
        if not isinstance(o, str):
            continue
        for piece in o.split(","):  # runc joins data options with ","
            key, eq, value = piece.partition("=")
            if eq and key in tables.OVERLAY_DIR_OPTIONS:
                out += [(key, part) for part in (value.split(":") if key == "lowerdir" else [value]) if part]
    return out


def named_host_paths(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(use, path as written) for every host path `config` names that a resolution applies to."""
    out: list[tuple[str, str]] = []
    mounts: Any = config.get("mounts")
    hooks: Any = config.get("hooks")
    linux: Any = config.get("linux")
    root = config.get("root")
    if isinstance(root, dict) and isinstance(root.get("path"), str) and root["path"]:
        out.append(("root", root["path"]))
    for m in mounts if isinstance(mounts, list) else []:
        if not isinstance(m, dict):
            continue
        kind = mount_type(m)
        src = m.get("source")
        if kind == "bind" and isinstance(src, str):
            out.append(("bind", src))
        elif kind == "overlay":
            out += [("overlay", d) for _, d in overlay_dirs(m.get("options"))]
        elif kind not in tables.MOUNT_TYPES and isinstance(src, str) and src.startswith("/"):
            out.append(("mount-source", src))
    for stage in tables.HOST_HOOK_STAGES:
        entries: Any = hooks.get(stage) if isinstance(hooks, dict) else None
        for h in entries if isinstance(entries, list) else []:
            if isinstance(h, dict) and isinstance(h.get("path"), str):
                out.append(("hook", h["path"]))
    linux = linux if isinstance(linux, dict) else {}
    for key, use in (("devices", "device"), ("namespaces", "namespace")):
        entries = linux.get(key)
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"]:
                out.append((use, e["path"]))
    sec = linux.get("seccomp")
    if isinstance(sec, dict) and isinstance(sec.get("listenerPath"), str) and sec["listenerPath"]:
        out.append(("listener", sec["listenerPath"]))
    ann = config.get("annotations")
    if isinstance(ann, dict) and isinstance(ann.get("org.criu.config"), str) and ann["org.criu.config"]:
        out.append(("criu-config", ann["org.criu.config"]))
    return out


# -- the gate --------------------------------------------------------------------------------------------

def gate(ctx: Context, use: str, path: str, entry: dict[str, Any] | None = None, stage: str = "") -> Verdict:
    """Whether config.json may name host path `path` for `use` (a key of USES), and why."""
    rule = USES[use].rule
    if rule == "exposed":
        return _exposed(ctx, use, path)
    if rule == "executed":
        return _executed(ctx, path, entry or {}, stage)
    if rule == "device":
        return _device(ctx, path, entry or {})
    if rule == "namespace":
        return _namespace(ctx, path, str((entry or {}).get("type")))
    if rule == "cgroup":
        return _cgroup(ctx, path)
    return _resctrl(ctx, path)


def within(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def forbidden_reason(source: str, forbidden: tuple[HostPath, ...], allowed: tuple[str, ...]) -> str | None:
    """Why host path `source` (normalised) is forbidden, or None: exact `/`, a forbidden path, inside
    a forbidden subtree, or a parent of a forbidden path, allowed subtrees excepted."""
    if source == "/":
        return "/ is the host's root directory"
    for f in forbidden:
        if source == f.path:
            return f"{source} is a forbidden host path"
    for f in forbidden:
        if f.match == "subtree" and within(source, f.path) and not any(within(source, a) for a in allowed):
            return f"{source} lies inside the forbidden host path {f.path}"
    for f in forbidden:
        if f.path != source and within(f.path, source) and not any(within(f.path, a) for a in allowed):
            return f"{source} contains the forbidden host path {f.path}"
    return None


def absolute(ctx: Context, path: str) -> str | None:
    """`path` as runc takes it (relative ones against the bundle directory), normalised; None when unknown."""
    if path.startswith("/"):
        return ctx.fold(_normpath(path))
    if ctx.host.bundle_dir.startswith("/"):
        return ctx.fold(_normpath(ctx.host.bundle_dir + "/" + path))
    return None


def _resolved(ctx: Context, path: str, lexical: str) -> str | None:
    real = ctx.host.realpaths.get(path)
    if real is not None:
        return real
    return None if ctx.host.probed else lexical  # unprobed (a dry run on data): the lexical path


def _shown(path: str, real: str) -> str:
    return path if path == real else f"{path} (resolves to {real})"


def _exposed(ctx: Context, use: str, path: str) -> Verdict:
    fs = ctx.profile.filesystem
    what = {"root": "root filesystem", "bind": "bind mount source", "overlay": "overlay directory",
            "mount-source": "mount source", "listener": "seccomp listener socket",
            "criu-config": "CRIU configuration file"}[use]
    lexical = absolute(ctx, path)
    if lexical is None:
        return _refuse(f"{what} {path} is relative and the bundle directory is not known", "filesystem")
    real = _resolved(ctx, path, lexical)
    if real is None:
        return _refuse(f"{what} {path} could not be resolved on this host", "filesystem")
    shown = _shown(path, real)
    if use == "root" and _named_root(ctx, lexical) and _named_root(ctx, real):
        # the person's choice of directory, but not a way around the symlink race: no directory above
        # it may be one someone else could swap
        for above, unsafe in ctx.host.unsafe_ancestors.get(real, ()):
            return _refuse(f"{what} {shown}: the directory {above} above it {unsafe}, so it could be swapped for a "
                           "symlink between this check and runc's use of the path", "filesystem.rootfs_dirs")
        return Verdict(True, f"{what} {shown} was named on sandbox's command line", "filesystem.rootfs_dirs")
    engine = ctx.host.engine_dirs
    dirs = fs.rootfs_dirs + engine
    allowed = fs.allowed_host_paths + engine + (dirs if use == "root" else ())
    for p in dict.fromkeys((lexical, real)):
        why = forbidden_reason(p, fs.forbidden_host_paths, allowed)
        if why:
            return _refuse(f"{what} {shown}: {why}", "filesystem.forbidden_host_paths")
    if use == "root":
        admit = next((d for d in dirs if within(real, d) and real != d.rstrip("/")), None)
        if admit is None:
            return _refuse(f"{what} {shown} is not inside a directory where container root filesystems are kept "
                           f"({', '.join(dirs) or 'none'})", "filesystem.rootfs_dirs")
        key = "filesystem.rootfs_dirs"
    else:
        admit = max((a for a in allowed if within(real, a)), key=len, default=None)
        key = "filesystem.allowed_host_paths"
    if admit is not None:
        for d, why in ctx.host.unsafe_ancestors.get(real, ()):
            if d != admit.rstrip("/") and within(d, admit):
                return _refuse(f"{what} {shown}: the directory {d} above it {why}, so it could be swapped for a "
                               "symlink between this check and runc's use of the path", key)
    return Verdict(True, f"{what} {shown} is allowed", key)


def _named_root(ctx: Context, real: str) -> bool:
    """Whether `real` is the root the person named (`sandbox run --rootfs`, or inside `--bundle`), and
    no system path: not one of the host's system trees or top-level directories, and neither is, lies
    in nor contains a forbidden path other than `/` itself (restricted's "everything" subtree is about
    config.json's paths, not the person's)."""
    named = ctx.host.named_root
    if not named or real in tables.HOST_TOP_DIRS or any(within(real, d) for d in tables.HOST_SYSTEM_TREES):
        return False
    if ctx.host.named_root_subtree:
        if not (within(real, named) and real != named.rstrip("/")):
            return False
    elif real != named:
        return False
    fs = ctx.profile.filesystem
    system = tuple(f for f in fs.forbidden_host_paths if f.path != "/")
    return forbidden_reason(real, system, ()) is None


def _executed(ctx: Context, path: str, entry: dict[str, Any], stage: str) -> Verdict:
    pol = ctx.profile.hooks
    exe = ctx.host.executables.get(path)
    if exe is None and ctx.host.probed:
        return _refuse(f"{stage} hook {path} could not be examined on this host", "hooks.allow")
    lexical = absolute(ctx, path) or path
    real = exe.real if exe is not None else lexical
    trusted = exe.trusted_chain if exe is not None else False
    shown = _shown(path, real)
    if real in ctx.host.own_hooks and trusted:
        # sandbox's own hook program (e.g. its network set-up), installed root-owned beside sandbox
        return Verdict(True, f"{shown} is sandbox's own hook program", "hooks")
    if real in pol.allow:
        if exe is None or not trusted:
            return _refuse(f"{stage} hook {shown} is allow-listed, but the binary or a directory above it is not "
                           "owned by root or is writable by others, so it may not be the binary that was vetted",
                           "hooks.allow")
        bad = unsecure_env(entry.get("env"))
        if bad:
            return _refuse(f"{stage} hook {shown} sets {bad} in its environment, which makes the allow-listed binary "
                           "load or read what the bundle chose", "hooks.allow")
        return Verdict(True, "the hook binary is allow-listed", "hooks.allow")
    engine = real.rsplit("/", 1)[-1]
    shape = tables.ENGINE_HOOKS.get(engine)
    if shape is not None and pol.allow_engine_hooks:
        why = _not_engine(ctx, path, exe, stage, entry, shape)
        if why is None:
            return Verdict(True, f"{engine}'s own {shape[1][0]} hook (pid {exe.pid if exe else '?'})",
                           "hooks.allow_engine_hooks")
        return _refuse(f"{stage} hook {shown} looks like {engine}'s own hook but {why}; it would run on the host "
                       "as root", "hooks.allow_engine_hooks")
    return _refuse(f"{stage} hook {shown} would run on the host as root and is not allow-listed", "hooks.allow")


def unsecure_env(env: Any) -> str | None:
    """The first loader or libc variable in a hook's env that makes a program load what the caller chose."""
    for e in env if isinstance(env, list) else []:
        name = e.partition("=")[0] if isinstance(e, str) else ""
        if name in tables.UNSECURE_ENV or name.startswith(tables.UNSECURE_ENV_PREFIXES):
            return name
    return None


def _not_engine(ctx: Context, path: str, exe: Any, stage: str, entry: dict[str, Any],
                shape: tuple[tuple[str, ...], tuple[str, ...]]) -> str | None:
    """Why the hook is not the engine's own (None when it is)."""
    stages, pattern = shape
    if exe is None or exe.pid is None or _normpath(path) != f"/proc/{exe.pid}/exe":
        return "it is not the executable of a running process named by /proc/<pid>/exe"
    if exe.process_uid != 0:
        return f"process {exe.pid} does not run as root"
    if not exe.trusted_chain:
        return f"{exe.real} or a directory above it is not owned by root or is writable by others"
    if stage not in stages:
        return f"the engine adds it as a {' or '.join(stages)} hook, not {stage}"
    if entry.get("env"):
        return "it carries an environment, which the engine never gives it"
    args = entry.get("args")
    if not isinstance(args, list) or not _args_match(args, pattern, ctx.host.container_id):
        return f"its arguments are not `{' '.join(pattern)}`"
    return None


def _args_match(args: list[Any], pattern: tuple[str, ...], cid: str) -> bool:
    i = 0
    for p in pattern:
        optional = p.startswith("?")
        p = p.lstrip("?")
        if i < len(args) and isinstance(args[i], str) and _arg_ok(args[i], p, cid):
            i += 1
        elif not optional:
            return False
    return i == len(args)


def _hex(s: str, n: int) -> bool:
    return len(s) == n and all(c in "0123456789abcdef" for c in s)


def _arg_ok(a: str, p: str, cid: str) -> bool:
    if p == "<id>":
        return _hex(a, 64) and (not cid or a == cid)
    if p == "<hex12>":
        return _hex(a, 12)
    if p.endswith("<abs>"):
        rest = a[len(p) - 5:]
        return a.startswith(p[:-5]) and rest.startswith("/") and "\x00" not in rest
    return a == p


def _device(ctx: Context, path: str, entry: dict[str, Any]) -> Verdict:
    if not path.startswith("/"):
        return _refuse(f"device path {path} is not absolute", "devices.allow")
    lexical = _normpath(path)
    real = _resolved(ctx, path, lexical)
    for p in (lexical, real):
        if p is None or not p.startswith("/dev/"):
            return _refuse(f"device {_shown(path, real or path)} is not under /dev (runc binds the host's file at "
                           "that path in a user namespace)", "devices.allow")
    assert real is not None
    standard = tables.STANDARD_DEVICES.get(lexical)
    allowed = lexical in ctx.profile.devices.allow or real in ctx.profile.devices.allow
    kind = entry.get("type")
    if standard is None and not allowed:
        # named by what is asked for, not "host device": the node need not exist on the host
        node = f"{kind or '?'} {entry.get('major', '?')}:{entry.get('minor', '?')}"
        return _refuse(f"device node {path} ({node}) is not in the profile's device allow-list", "devices.allow")
    want = ("c" if kind == "u" else kind, entry.get("major", 0) if kind != "p" else 0,
            entry.get("minor", 0) if kind != "p" else 0)
    have = standard if standard is not None else ctx.host.devices.get(path)
    if have is None:
        if ctx.host.probed:
            return _refuse(f"device {_shown(path, real)} is not a device node on this host", "devices.allow")
        return Verdict(True, "the device is allowed by the profile", "devices.allow")
    if tuple(want) != tuple(have):
        return _refuse(f"device {path} is asked for as {want[0]} {want[1]}:{want[2]}, but {path} is "
                       f"{have[0]} {have[1]}:{have[2]}: runc would make that node under an allowed name",
                       "devices.allow")
    return Verdict(True, "the device is allowed by the profile", "devices.allow")


NS_FILE_KINDS = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts", "user": "user",
                 "cgroup": "cgroup", "time": "time"}


def _namespace(ctx: Context, path: str, kind: str) -> Verdict:
    key = "namespaces.required"
    if not path.startswith("/"):
        return _refuse(f"joining the {kind} namespace at {path}: not an absolute path", key)
    if kind == "mount":
        return _refuse(f"joining the mount namespace at {path}: runc would set this container's mounts up inside "
                       "another process's mount namespace, among its files", key)
    is_host = ctx.host.host_namespaces.get(path)
    if is_host is None or is_host:
        why = "is the host's own" if is_host else "cannot be checked to be other than the host's"
        return _refuse(f"joining the {kind} namespace at {path}, which {why}", key)
    actual = ctx.host.namespace_kinds.get(path)
    if ctx.host.probed and actual != NS_FILE_KINDS.get(kind):
        return _refuse(f"joining the {kind} namespace at {path}: it is "
                       f"{'a ' + actual + ' namespace' if actual else 'not a namespace file'}", key)
    if kind == "user" and ctx.host.userns_maps_host_root.get(path) is not False:
        why = "maps host root into it" if ctx.host.userns_maps_host_root.get(path) else \
            "cannot be checked to map no host root"
        return _refuse(f"joining the user namespace at {path}, which {why}", key)
    return Verdict(True, f"joins an existing {kind} namespace that is not the host's (a shared pod namespace)",
                   key)


def _cgroup(ctx: Context, path: str) -> Verdict:
    key = "resources"
    clean = _normpath("/" + path)  # runc's utils.CleanPath: a relative path cannot climb above its parent
    if clean == "/":
        where = "the root of the host's cgroup tree" if path.startswith("/") else "runc's own cgroup"
        return _refuse(f"linux.cgroupsPath {path} is {where}: the container would share it and escape its "
                       "limits", key)
    name = clean.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name[: -len(".scope")] if name.endswith(".scope") else name
    cid = ctx.host.container_id
    if cid and not (name == cid or name.endswith(("-" + cid, "_" + cid))):
        return _refuse(f"linux.cgroupsPath {path} is not this container's own cgroup (its last part must be the "
                       f"container id {cid}): it would join another cgroup and its limits, or none", key)
    return Verdict(True, "the container's own cgroup", key)


def _resctrl(ctx: Context, closid: str) -> Verdict:
    cid = ctx.host.container_id
    if closid in ("", cid):
        return Verdict(True, "the container's own resctrl group", "unknown_config_fields")
    return _refuse(f"linux.intelRdt.closID {closid} names a resctrl group other than the container's own "
                   "(shared with whatever else is in it)", "unknown_config_fields")
