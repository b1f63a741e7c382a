"""The directories the container engines on this host keep per-container files in.

Engines hand a container its own files (hosts, hostname, resolv.conf, /dev/shm, volumes,
Kubernetes' service-account tokens) as bind mounts from their own state directories.
Where those are depends on how each engine runs: containerd's `root`/`state`, dockerd's
`data-root` (and under `--userns-remap`, `<data-root>/<uid>.<gid>/`), CRI-O's and podman's
containers-storage `root`/`runroot`, the kubelet's `--root-dir`.  They are read from the
engines' running processes (their command lines, and the configuration files those name)
and from the engines' default configuration files, so a private or relocated engine is
found as well as a stock one.

Scanning /proc costs milliseconds, so sandbox-runc keeps the result in
`<runtime_dir>/engines.json` and scans again when the file is older than `MAX_AGE`
seconds, or when a bind mount would otherwise be refused (an engine started since).
"""

from __future__ import annotations

import os

from .._record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from .opconfig import OperatorConfig

MAX_AGE = 300.0
CACHE_NAME = "engines.json"
_CRI = "io.containerd.grpc.v1.cri"
_ENGINES = ("containerd", "dockerd", "crio", "kubelet", "conmon")


@record
class EngineDir:
    engine: str  # containerd, dockerd, crio, podman, kubelet
    path: str  # resolved
    why: str  # where it was found: "pid 123 --data-root", "/etc/docker/daemon.json", ...


def last_flag(argv: list[str], *names: str) -> str | None:
    """The last value of a `--name value` / `--name=value` flag (Go's flag packages, and conmon's: last wins)."""
    out = None
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                out = argv[i + 1]
            elif a.startswith(n + "="):
                out = a[len(n) + 1:]
    return out


def _toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError):
        return {}


def _json(path: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def containerd_dirs(argv: list[str], why: str) -> Iterator[EngineDir]:
    conf = last_flag(argv, "--config", "-c") or "/etc/containerd/config.toml"
    data = _toml(conf)
    root = last_flag(argv, "--root") or data.get("root") or "/var/lib/containerd"
    state = last_flag(argv, "--state") or data.get("state") or "/run/containerd"
    where = f"{why} ({conf})" if data and why != conf else why
    for base in (str(state), str(root)):
        yield EngineDir("containerd", os.path.join(base, _CRI, "sandboxes"), where)


def dockerd_dirs(argv: list[str], why: str) -> Iterator[EngineDir]:
    conf = last_flag(argv, "--config-file") or "/etc/docker/daemon.json"
    data = _json(conf)
    root = last_flag(argv, "--data-root", "-g", "--graph") or data.get("data-root") or data.get("graph") or \
        "/var/lib/docker"
    roots = [str(root)]
    # --userns-remap: everything per container lives under <data-root>/<uid>.<gid>/
    try:
        roots += [os.path.join(str(root), n) for n in sorted(os.listdir(str(root)))
                  if n.replace(".", "", 1).isdigit() and n.count(".") == 1]
    except OSError:
        pass
    for r in roots:
        for sub in ("containers", "volumes"):
            yield EngineDir("dockerd", os.path.join(r, sub), why)


def storage_dirs(engine: str, argv: list[str], why: str, conf_flag: str | None = None) -> Iterator[EngineDir]:
    """containers-storage (CRI-O, podman): graphroot and runroot."""
    conf = (last_flag(argv, conf_flag) if conf_flag else None) or "/etc/containers/storage.conf"
    storage = _toml(conf).get("storage") or {}
    if engine == "crio":
        crio = _toml(last_flag(argv, "--config") or "/etc/crio/crio.conf").get("crio") or {}
        storage = {**storage, **{k: v for k, v in (("graphroot", crio.get("root")),
                                                    ("runroot", crio.get("runroot"))) if v}}
    root = last_flag(argv, "--root") or storage.get("graphroot") or "/var/lib/containers/storage"
    runroot = last_flag(argv, "--runroot") or storage.get("runroot") or "/run/containers/storage"
    for d in (str(root), str(runroot)):
        yield EngineDir(engine, d, why)


def _conmon_argv(argv: list[str]) -> list[str]:
    """podman runs no daemon: its conmon carries podman's own flags as --exit-command-arg values."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--exit-command-arg"]


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                comm = f.read().strip().decode("utf-8", "replace")
            if comm not in _ENGINES:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        yield int(entry), comm, argv


def discover() -> list[EngineDir]:
    """Every engine directory found: from running engines first, then from default config files."""
    out: list[EngineDir] = []
    for pid, comm, argv in _processes():
        why = f"pid {pid} ({comm})"
        if comm == "containerd":
            out += containerd_dirs(argv, why)
        elif comm == "dockerd":
            out += dockerd_dirs(argv, why)
        elif comm == "crio":
            out += storage_dirs("crio", argv, why, "--storage-opt-file")
        elif comm == "kubelet":
            out.append(EngineDir("kubelet", os.path.join(last_flag(argv, "--root-dir") or "/var/lib/kubelet", "pods"),
                                 why))
        elif comm == "conmon":
            podman = _conmon_argv(argv)
            if podman:
                out += storage_dirs("podman", podman, why, "--storage-opt")
    for conf, gen in (("/etc/containerd/config.toml", lambda c: containerd_dirs(["-c", c], c)),
                      ("/etc/docker/daemon.json", lambda c: dockerd_dirs(["--config-file", c], c)),
                      ("/etc/crio/crio.conf", lambda c: storage_dirs("crio", ["--config", c], c)),
                      ("/etc/containers/storage.conf", lambda c: storage_dirs("podman", [], c))):
        if os.path.exists(conf):
            out += gen(conf)
    seen: set[str] = set()
    unique = []
    for d in out:
        real = os.path.realpath(d.path)
        if real not in seen and real != "/":
            seen.add(real)
            unique.append(EngineDir(d.engine, real, d.why))
    return unique


def _cache_path(op: OperatorConfig) -> str:
    from .opconfig import runtime_dir

    return os.path.join(runtime_dir(op), CACHE_NAME)


def engine_dirs(op: OperatorConfig, *, fresh: bool = False) -> tuple[tuple[str, ...], bool]:
    """(the engine directories, whether they were scanned just now): from the cache unless it is older
    than MAX_AGE or `fresh` is asked for."""
    import time

    from .. import _fastjson as json

    path = _cache_path(op)
    if not fresh:
        try:
            st = os.stat(path)
            if time.time() - st.st_mtime < MAX_AGE and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
                with open(path, encoding="utf-8") as f:
                    return tuple(str(p) for p in json.loads(f.read())["dirs"]), False
        except (OSError, ValueError, KeyError, TypeError):
            pass
    found = discover()
    dirs = tuple(d.path for d in found)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"dirs": list(dirs), "found": [[d.engine, d.path, d.why] for d in found]}))
        os.rename(tmp, path)
    except OSError:
        pass  # only a cache
    return dirs, True
