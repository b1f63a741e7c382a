"""Distinct host id ranges for the user namespaces sandbox adds: one per container, one per pod.

The operator's pool (`id_pool` in the operator config, /etc/subuid-style `START:COUNT`
ranges) is cut into 65536-id ranges.  Which are in use is kept in `<runtime_dir>/ids` (default
/run/sandbox/ids, a tmpfs: after a reboot no container runs), one JSON file per range:

    {"start": 1073807360, "size": 65536, "key": "<pod or container id>", "runc_root": "/run/containerd/runc/k8s.io",
     "members": ["<container id>", ...], "pid": <pid of the creating sandbox-runc>, "pid_start": <its start time>}

Every allocation takes an exclusive lock on `ids/.lock`, so concurrent creates
never get the same range.  A range is in use while any of its members exists in runc's
state (`<runc root>/<id>` is the first thing `runc create` makes, and the last `runc
delete` removes) or while the sandbox-runc that is creating it is alive; otherwise it is
free again, and the next allocation that needs it takes it.  A crash of sandbox-runc at
any point therefore never hands a range out twice while a container uses it.

Containers of one Kubernetes pod share their pod's range: containerd's CRI plugin and
CRI-O name the pod (its sandbox container's id) in annotations of every container's config.
"""

from __future__ import annotations

import os

from ..errors import PolicyRefusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..core.profile import IdMapping
    from .opconfig import OperatorConfig

# (pod id annotation, container type annotation, value of the type for the pod's sandbox container)
POD_ANNOTATIONS = (
    ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri.container-type", "sandbox"),  # containerd
    ("io.kubernetes.cri-o.SandboxID", "io.kubernetes.cri-o.ContainerType", "sandbox"),  # CRI-O
)


def ids_dir(op: OperatorConfig) -> str:
    from .opconfig import runtime_dir

    return os.path.join(runtime_dir(op), "ids")


def pod_of(config: dict[str, Any]) -> tuple[str, bool] | None:
    """(pod id, whether this is the pod's sandbox container) from the engine's annotations, or None."""
    ann = config.get("annotations")
    if not isinstance(ann, dict):
        return None
    for id_key, type_key, sandbox in POD_ANNOTATIONS:
        pod = ann.get(id_key)
        if isinstance(pod, str) and pod and "/" not in pod:
            return pod, ann.get(type_key) == sandbox
    return None


def _proc_start(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(rec: dict[str, Any]) -> bool:
    root = rec.get("runc_root")
    for member in rec.get("members") or []:
        if isinstance(root, str) and isinstance(member, str) and os.path.lexists(os.path.join(root, member)):
            return True
    pid = rec.get("pid")
    started = _proc_start(pid) if isinstance(pid, int) and pid > 0 else None
    return started is not None and started == rec.get("pid_start")


class _Locked:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __enter__(self) -> _Locked:
        import fcntl

        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self.fd = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise PolicyRefusal(f"refused by sandbox: cannot use the id pool directory {self.directory}: "
                                f"{e.strerror} (runtime_dir in the operator config)") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock

    def records(self) -> dict[int, dict[str, Any]]:
        from .. import _fastjson as json

        out = {}
        for name in os.listdir(self.directory):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                    rec = json.loads(f.read())
                out[int(rec["start"])] = rec
            except (OSError, ValueError, KeyError, TypeError):
                # unreadable: keep its range out of use rather than risk handing it out twice
                stem = name[:-5]
                if stem.isdigit():
                    out[int(stem)] = {"start": int(stem), "members": [], "pid": -1, "unreadable": True}
        return out

    def write(self, rec: dict[str, Any]) -> None:
        from .. import _fastjson as json

        path = os.path.join(self.directory, f"{rec['start']}.json")
        tmp = path + f".{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(rec))
        os.rename(tmp, path)

    def remove(self, start: int) -> None:
        try:
            os.unlink(os.path.join(self.directory, f"{start}.json"))
        except FileNotFoundError:
            pass


def _candidates(pool: tuple[tuple[int, int], ...], size: int) -> list[int]:
    out = []
    for start, count in pool:
        out += [start + i * size for i in range(count // size)]
    return out


def allocate(op: OperatorConfig, *, runc_root: str, container_id: str, pod: str | None = None,
             creator: int | None = None) -> IdMapping:
    """The host id range of `container_id` (of pod `pod`, if it belongs to one): the pod's when the pod
    already has one, else a free one from the pool, recorded as in use by this container.

    `creator`: the pid of the process that runs `runc create` for it (default: this one)."""
    from ..core.profile import IdMapping
    from .opconfig import ID_RANGE_SIZE

    key = pod or container_id
    creator = creator or os.getpid()
    with _Locked(ids_dir(op)) as pool:
        records = pool.records()
        for start, rec in records.items():
            if rec.get("key") == key and rec.get("runc_root") == runc_root and not rec.get("unreadable"):
                if container_id not in rec.get("members", []):
                    rec["members"] = [*rec.get("members", []), container_id]
                rec["pid"], rec["pid_start"] = creator, _proc_start(creator)
                pool.write(rec)
                return IdMapping(0, start, int(rec.get("size", ID_RANGE_SIZE)))
        in_use = set()
        for start, rec in records.items():
            if rec.get("unreadable") or _alive(rec):
                in_use.add(start)
            else:
                pool.remove(start)  # its containers are gone: the range is free again
        free = next((s for s in _candidates(op.id_pool, ID_RANGE_SIZE) if s not in in_use), None)
        if free is None:
            raise PolicyRefusal(f"refused by sandbox: the id pool is exhausted ({len(in_use)} ranges of "
                                f"{ID_RANGE_SIZE} ids in use); enlarge id_pool in the operator config")
        pool.write({"start": free, "size": ID_RANGE_SIZE, "key": key, "runc_root": runc_root,
                    "members": [container_id], "pid": creator, "pid_start": _proc_start(creator)})
        return IdMapping(0, free, ID_RANGE_SIZE)


def release(op: OperatorConfig, *, runc_root: str, container_id: str, pod: str | None = None) -> None:
    """`container_id` was not created: drop it from its range (and free the range if it was the last)."""
    key = pod or container_id
    with _Locked(ids_dir(op)) as pool:
        for start, rec in pool.records().items():
            if rec.get("key") == key and rec.get("runc_root") == runc_root:
                rec["members"] = [m for m in rec.get("members", []) if m != container_id]
                rec["pid"], rec["pid_start"] = 0, None
                if _alive(rec):
                    pool.write(rec)
                else:
                    pool.remove(start)


def in_use(op: OperatorConfig) -> list[dict[str, Any]]:
    """The ranges currently recorded as in use (for `sandbox check --host`)."""
    if not os.path.isdir(ids_dir(op)):
        return []
    with _Locked(ids_dir(op)) as pool:
        return [rec for _, rec in sorted(pool.records().items()) if rec.get("unreadable") or _alive(rec)]


def pod_userns(runc_root: str, pod: str, rng: IdMapping) -> str | None:
    """/proc/<pid>/ns/user of the pod's sandbox container, if it runs in a user namespace with the pod's
    range (checked from its uid_map, so a recycled pid is never joined)."""
    from .. import _fastjson as json

    try:
        with open(os.path.join(runc_root, pod, "state.json"), encoding="utf-8") as f:
            state = json.loads(f.read())
        pid = int(state["init_process_pid"])
        with open(f"/proc/{pid}/uid_map", encoding="utf-8") as f:
            uid_map = f.read().split()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if uid_map != [str(rng.container_id), str(rng.host_id), str(rng.size)]:
        return None
    if _proc_start(pid) != state.get("init_process_start"):
        return None
    return f"/proc/{pid}/ns/user"
