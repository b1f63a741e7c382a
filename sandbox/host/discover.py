"""Find every runc container on the node, whatever started it, and index the audit log once.  Edge.

runc keeps one state directory per container (`<root>/<id>/state.json`) under a root that each
engine chooses.  The roots are found from the engines' configuration and their running processes:

- plain runc and podman (runc as root, no `--root`): /run/runc; a conmon whose runtime was given
  `--root` names that root, and marks the container as podman's (`-c ID`);
- Docker: `<exec-root>/runtime-<runtime>/<namespace>` (exec-root /run/docker unless dockerd
  says `--exec-root` or its daemon.json says `exec-root`); Docker's containerd namespace is moby;
- containerd (ctr, the CRI plugin and so Kubernetes, Docker's own): every namespace directory of
  `<state>/io.containerd.runtime.v2.task/` (state /run/containerd unless containerd's `--state`
  or its config.toml's `state` says otherwise), and the bundle directory every
  containerd-shim-runc-v2 runs in (so a containerd with a state directory of its own is found by
  its shims).  A bundle's `options.json` holds the runc root its shim uses (`ctr run
  --runc-root`, a CRI runtime handler's `Root`); without one it is /run/containerd/runc.

Process facts come from psutil (command lines and working directories of the engines' processes).

A container's status is runc's: `stopped` when its init is gone (pid and start time no longer
match), `created` while runc init waits on exec.fifo, `paused` while its freezer cgroup is
frozen, else `running`.

`AuditIndex` reads the audit log (and its rotated files) in one pass after checking its hash
chain, and answers "what does the log say about container ID" from memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import SandboxError
from .engines import last_flag
from .inspect import process_start

RUNC_ROOT = "/run/runc"
DOCKER_EXEC_ROOT = "/run/docker"
CONTAINERD_STATE = "/run/containerd"
CONTAINERD_RUNC_ROOT = "/run/containerd/runc"
TASKS = "io.containerd.runtime.v2.task"


@dataclass(frozen=True)
class Root:
    """A runc state root and who keeps containers in it."""

    path: str
    engine: str  # runc | podman | docker | containerd
    namespace: str = ""  # containerd's namespace (moby for Docker, k8s.io for Kubernetes)
    why: str = ""  # how it was found


@dataclass(frozen=True)
class Found:
    """One container in a runc root."""

    id: str
    root: Root
    state: dict[str, Any] = field(default_factory=dict)  # runc's state.json
    bundle: str = ""
    pid: int = 0
    status: str = "stopped"  # running | created | paused | stopped
    created: str = ""  # RFC 3339, as runc wrote it
    engine: str = ""
    error: str = ""  # why the state could not be read

    @property
    def key(self) -> tuple[str, str]:
        return (os.path.realpath(self.root.path), self.id)


# ---------------------------------------------------------------------------------------------------------
# The engines' processes
# ---------------------------------------------------------------------------------------------------------

@dataclass
class _Procs:
    conmon: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # cid -> (runtime, --root or None)
    docker_exec_roots: set[str] = field(default_factory=set)
    containerd_states: set[str] = field(default_factory=set)
    shim_bundles: set[str] = field(default_factory=set)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _toml_state(path: str) -> str | None:
    try:
        import tomllib

        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, ValueError):
        return None
    state = doc.get("state")
    return state if isinstance(state, str) and state else None


def _engine_processes() -> _Procs:
    import psutil

    out = _Procs()
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            name, argv = p.info["name"] or "", p.info["cmdline"] or []
            base = os.path.basename(argv[0]) if argv else name
            if base == "conmon" or name == "conmon":
                cid, runtime = last_flag(argv, "-c", "--cid"), last_flag(argv, "-r", "--runtime")
                args = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--runtime-arg"]
                args += [a.split("=", 1)[1] for a in argv if a.startswith("--runtime-arg=")]
                root = last_flag(args, "--root")
                if cid:
                    out.conmon[cid] = (runtime or "", root)
            elif base == "dockerd" or name == "dockerd":
                root = last_flag(argv, "--exec-root")
                conf = last_flag(argv, "--config-file") or "/etc/docker/daemon.json"
                doc = _read_json(conf)
                if root is None and isinstance(doc, dict) and isinstance(doc.get("exec-root"), str):
                    root = doc["exec-root"]
                out.docker_exec_roots.add(root or DOCKER_EXEC_ROOT)
            elif base == "containerd" or name == "containerd":
                state = last_flag(argv, "--state")
                conf = last_flag(argv, "--config", "-c") or "/etc/containerd/config.toml"
                out.containerd_states.add(state or _toml_state(conf) or CONTAINERD_STATE)
            elif base.startswith("containerd-shim-runc") or name.startswith("containerd-shim"):
                out.shim_bundles.add(p.cwd())
        except (psutil.Error, OSError):
            continue
    return out


# ---------------------------------------------------------------------------------------------------------
# Roots
# ---------------------------------------------------------------------------------------------------------

def _subdirs(path: str) -> list[str]:
    try:
        return sorted(e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _containerd_roots(ns_dirs: Iterable[str], why: str) -> list[Root]:
    """The runc roots of the bundles in containerd namespace directories (<state>/<TASKS>/<ns>)."""
    out = []
    for ns_dir in ns_dirs:
        ns = os.path.basename(ns_dir)
        for bundle in _subdirs(ns_dir):
            opts = _read_json(os.path.join(bundle, "options.json"))
            root = None
            if isinstance(opts, dict):
                root = opts.get("root") or opts.get("Root")
            base = root if isinstance(root, str) and root else CONTAINERD_RUNC_ROOT
            engine = "docker" if ns == "moby" else "containerd"
            out.append(Root(os.path.join(base, ns), engine, ns, why))
    return out


def given_root(path: str) -> Root:
    """A root named on the command line, attributed by its layout (for the report only)."""
    parent = os.path.basename(os.path.dirname(os.path.normpath(path)))
    ns = os.path.basename(os.path.normpath(path))
    if parent.startswith("runtime-"):
        return Root(path, "docker", ns, "given with --root")
    if "containerd" in parent or os.path.dirname(os.path.normpath(path)) == CONTAINERD_RUNC_ROOT:
        return Root(path, "docker" if ns == "moby" else "containerd", ns, "given with --root")
    return Root(path, "runc", "", "given with --root")


def find_roots(extra: Iterable[str] = (), *, procs: _Procs | None = None) -> tuple[list[Root], dict[str, Any]]:
    """Every runc root on the node (deduplicated), and the engine facts found on the way."""
    procs = procs if procs is not None else _engine_processes()
    roots: list[Root] = [Root(RUNC_ROOT, "runc", "", "runc's default root")]
    for path in extra:
        roots.append(Root(path, "runc", "", "given with --root"))
    for _, (_, root) in procs.conmon.items():
        if root:
            roots.append(Root(root, "podman", "", "a conmon process's runtime --root"))
    for exec_root in sorted(procs.docker_exec_roots | {DOCKER_EXEC_ROOT}):
        for runtime_dir in _subdirs(exec_root):
            if os.path.basename(runtime_dir).startswith("runtime-"):
                for ns_dir in _subdirs(runtime_dir):
                    roots.append(Root(ns_dir, "docker", os.path.basename(ns_dir), f"dockerd exec-root {exec_root}"))
    for state in sorted(procs.containerd_states | {CONTAINERD_STATE}):
        roots += _containerd_roots(_subdirs(os.path.join(state, TASKS)), f"containerd state {state}")
    shim_ns = {os.path.dirname(b) for b in procs.shim_bundles if b}
    roots += _containerd_roots(sorted(shim_ns), "a containerd-shim's bundle")
    for ns_dir in _subdirs(CONTAINERD_RUNC_ROOT):
        ns = os.path.basename(ns_dir)
        roots.append(Root(ns_dir, "docker" if ns == "moby" else "containerd", ns, "containerd's default runc root"))
    seen: dict[str, Root] = {}
    for r in roots:
        real = os.path.realpath(r.path)
        if real not in seen or (seen[real].engine == "runc" and r.engine != "runc"):
            seen[real] = r
    facts = {"conmon": procs.conmon}
    return [r for r in seen.values() if os.path.isdir(r.path)], facts


# ---------------------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------------------

def _status(root: str, cid: str, state: dict[str, Any]) -> tuple[int, str]:
    pid = state.get("init_process_pid")
    if not isinstance(pid, int) or pid <= 0:
        return 0, "stopped"
    if process_start(pid) != state.get("init_process_start"):
        return 0, "stopped"
    if os.path.exists(os.path.join(root, cid, "exec.fifo")):
        return pid, "created"
    paths = _dict(state.get("cgroup_paths"))
    for d, name, frozen in ((paths.get("freezer"), "freezer.state", "FROZEN"), (paths.get(""), "cgroup.freeze", "1")):
        if isinstance(d, str) and d:
            try:
                with open(os.path.join(d, name), encoding="ascii") as f:
                    if f.read().strip() == frozen:
                        return pid, "paused"
            except OSError:
                pass
    return pid, "running"


def read_container(root: Root, cid: str) -> Found:
    path = os.path.join(root.path, cid, "state.json")
    state = _read_json(path)
    if not isinstance(state, dict):
        return Found(cid, root, engine=root.engine, error=f"cannot read {path}")
    bundle = ""
    labels = (state.get("config") or {}).get("labels") or []
    for label in labels if isinstance(labels, list) else []:
        if isinstance(label, str) and label.startswith("bundle="):
            bundle = label[len("bundle="):]
    pid, status = _status(root.path, cid, state)
    created = state["created"] if isinstance(state.get("created"), str) else ""
    return Found(cid, root, state, bundle, pid, status, created, root.engine)


def find_containers(roots: Iterable[Root], conmon: dict[str, Any] | None = None) -> list[Found]:
    out: dict[tuple[str, str], Found] = {}
    for root in roots:
        for d in _subdirs(root.path):
            cid = os.path.basename(d)
            if not os.path.exists(os.path.join(d, "state.json")):
                continue
            found = read_container(root, cid)
            if conmon and cid in conmon and found.engine == "runc":
                found = replace(found, engine="podman")
            out.setdefault(found.key, found)
    return sorted(out.values(), key=lambda f: (f.engine, f.root.namespace, f.id))


# ---------------------------------------------------------------------------------------------------------
# The audit log, read once
# ---------------------------------------------------------------------------------------------------------

_INDEXED = frozenset({"profile_resolved", "created", "exited", "error", "refused"})


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    event: str
    bundle: str
    profile: str
    profile_sha256: str
    subcommand: str = ""
    mode: str = ""
    runc_exit: int | None = None


@dataclass
class AuditIndex:
    """What the audit log says about each container, from one read of the log."""

    path: str
    files: list[str] = field(default_factory=list)
    by_container: dict[str, list[AuditEntry]] = field(default_factory=dict)
    state: str = "ok"  # ok | missing (no log yet) | broken (the hash chain) | unreadable
    records: int = 0
    problem: str = ""  # why the log (or part of it) is not trusted

    def entries(self, cid: str) -> list[AuditEntry]:
        return self.by_container.get(cid, [])


def index_audit_log(path: str, *, key_file: str | None = None) -> AuditIndex:
    """Check the chain of `path` and its rotated files, then index the records up to the first bad one."""
    from ..audit import log as audit

    idx = AuditIndex(path, audit.rotated_set(path))
    if not idx.files:
        idx.state, idx.problem = "missing", f"{path} does not exist"
        return idx
    key = None
    if key_file:
        try:
            key = audit.load_key(key_file)
        except SandboxError as e:
            idx.state, idx.problem = "unreadable", f"the audit log's key cannot be read: {e}"
            return idx
    result = audit.verify_files(idx.files, key=key)
    last_good = result.last_seq
    if not result.ok:
        idx.state = "broken"
        where = f"{result.file}:{result.first_bad_line}" if result.first_bad_line else (result.file or path)
        idx.problem = f"the audit log's hash chain is broken at {where} ({result.reason}); later records not trusted"
    try:
        for rec in audit.read_records(idx.files):
            seq = rec.get("seq")
            if not isinstance(seq, int) or (last_good is not None and seq > last_good) or \
                    (last_good is None and not result.ok):
                break
            idx.records += 1
            if rec.get("event") not in _INDEXED:
                continue
            data = _dict(rec.get("data"))
            code = data.get("runc_exit")
            entry = AuditEntry(seq, str(rec.get("ts", "")), str(rec.get("event")), str(rec.get("bundle", "")),
                               str(rec.get("profile", "")), str(rec.get("profile_sha256", "")),
                               str(data.get("subcommand", "")), str(data.get("mode", "")),
                               code if isinstance(code, int) else None)
            idx.by_container.setdefault(str(rec.get("container_id", "")), []).append(entry)
    except SandboxError as e:
        idx.state, idx.problem = "unreadable", idx.problem or str(e)
    return idx
