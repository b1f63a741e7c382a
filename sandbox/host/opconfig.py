"""The operator configuration: /etc/sandbox/config.yaml (or $SANDBOX_CONFIG).

A missing file means the documented defaults.  A file that exists but cannot be
read, is invalid, is not owned by root or is writable by group or others is an
error: the shim then refuses to create containers (fail closed), as sudo and
sshd refuse loose configuration files.
"""

from __future__ import annotations

import os
import stat

from .._record import field, record
from ..errors import ConfigError, Location

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


DEFAULT_PATH = "/etc/sandbox/config.yaml"
ANNOTATION_KEY = "org.sandbox-runtime.profile"

_KEYS = ("runc", "profile_dirs", "default_profile", "annotation_key", "allowed_profiles", "floor", "audit_log",
         "audit_hmac_key_file", "audit_max_bytes", "on_audit_failure", "mode", "id_pool", "runtime_dir")

# Host ids handed out, 65536 at a time, to the user namespaces sandbox adds: /etc/subuid-style
# "START:COUNT" ranges.  The default keeps far above the ranges useradd gives people (100000+).
DEFAULT_ID_POOL = ((1 << 30, 1 << 28),)  # 1073741824:268435456, 4096 ranges
ID_RANGE_SIZE = 65536


@record
class OperatorConfig:
    path: str | None = None  # None: no file, defaults
    runc: str | None = None
    profile_dirs: tuple[str, ...] = ("/etc/sandbox/profiles",)
    default_profile: str = "baseline"
    annotation_key: str = ANNOTATION_KEY
    allowed_profiles: tuple[str, ...] = ()  # profiles an annotation may select (besides the default)
    floor: str | None = None  # an annotation-selected profile may not be looser than this
    audit_log: str = "/var/log/sandbox/audit.jsonl"
    audit_hmac_key_file: str | None = None
    audit_max_bytes: int | None = 64 * 1024 * 1024
    on_audit_failure: str = "fail"
    mode: str | None = None  # enforce | complain: overrides every profile's mode
    id_pool: tuple[tuple[int, int], ...] = DEFAULT_ID_POOL  # (start, count) of host ids
    # sandbox-runc's own state: ids/ (which id ranges are in use) and engines.json (the engine
    # directories found); a tmpfs, as a reboot ends every container
    runtime_dir: str = "/run/sandbox"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def runtime_dir(op: OperatorConfig) -> str:
    """sandbox-runc's state directory: $SANDBOX_RUNTIME_DIR, else `runtime_dir` of the operator config."""
    return os.environ.get("SANDBOX_RUNTIME_DIR") or op.runtime_dir


def check_trusted_file(path: str, what: str, error: type[Exception] = ConfigError) -> None:
    """Refuse files root does not own or that others may write, as sudo does."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}", location=Location(path)) from None  # type: ignore[call-arg]
    if st.st_uid != 0 and os.geteuid() == 0:
        raise error(f"{what} is not owned by root (uid {st.st_uid}); refusing it",  # type: ignore[call-arg]
                    location=Location(path))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise error(f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "  # type: ignore[call-arg]
                    "refusing it", location=Location(path))


def load_operator_config(path: str | None = None) -> OperatorConfig:
    path = path or os.environ.get("SANDBOX_CONFIG") or DEFAULT_PATH
    if not os.path.lexists(path):
        if os.environ.get("SANDBOX_CONFIG") and path == os.environ["SANDBOX_CONFIG"]:
            raise ConfigError("operator config file not found (named by SANDBOX_CONFIG)", location=Location(path))
        return OperatorConfig()
    check_trusted_file(path, "operator config")
    from .cache import load_operator_config as cached

    return cached(path)


def parse_id_range(text: str) -> tuple[int, int] | None:
    """"START:COUNT" (as in /etc/subuid, without the user name) -> (start, count), or None."""
    start, sep, count = text.strip().partition(":")
    if not sep or not start.isdigit() or not count.isdigit():
        return None
    s, c = int(start), int(count)
    if c < ID_RANGE_SIZE or s + c > (1 << 32) - 1:
        return None
    return s, c


def _id_pool(value: Any, doc: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return DEFAULT_ID_POOL
    items = [value] if isinstance(value, str) else value
    out = []
    for i, item in enumerate(items):
        rng = parse_id_range(item) if isinstance(item, str) else None
        if rng is None:
            where = ("id_pool",) if isinstance(value, str) else ("id_pool", i)
            raise ConfigError(f"expected \"START:COUNT\" host ids (COUNT at least {ID_RANGE_SIZE}, below 2^32), "
                              f"got {item!r}", location=doc.loc(where), field="id_pool")
        if rng[0] == 0:
            raise ConfigError("the pool must not contain host id 0 (root)", location=doc.loc(("id_pool",)),
                              field="id_pool")
        out.append(rng)
    ordered = sorted(out)
    for (a, n), (b, _) in zip(ordered, ordered[1:]):
        if b < a + n:
            raise ConfigError(f"ranges overlap ({a}:{n} and {b})", location=doc.loc(("id_pool",)), field="id_pool")
    return tuple(out)


def parse_operator_config(path: str) -> OperatorConfig:
    """Read and check the operator config at `path` (the trust checks are the caller's)."""
    from ..core.loader import _parse_yaml, read_text_file

    try:
        data, doc = _parse_yaml(read_text_file(path, "operator config"), path)
    except ConfigError:
        raise
    except Exception as e:  # ProfileError from the shared YAML reader: same message, config's class
        raise ConfigError(getattr(e, "message", str(e)), location=getattr(e, "location", Location(path)),
                          field=getattr(e, "field", None)) from None
    if not isinstance(data, dict):
        raise ConfigError("the operator config must be a YAML mapping", location=Location(path, 1, 1))
    for k in data:
        if k not in _KEYS:
            from ..core.tables import did_you_mean

            dym = did_you_mean(k, _KEYS)
            raise ConfigError(f"unknown key {k!r}", location=doc.loc((k,)), field=k,
                              hint=f"did you mean {dym!r}?" if dym else None)

    def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in data or data[key] is None:
            return default
        val = data[key]
        if not isinstance(val, kind) or isinstance(val, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                             else (kind,)):
            raise ConfigError(f"wrong type {type(val).__name__}", location=doc.loc((key,)), field=key)
        return val

    def str_list(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        val = get(key, list, list(default))
        if not all(isinstance(x, str) for x in val):
            raise ConfigError("expected a list of strings", location=doc.loc((key,)), field=key)
        return tuple(val)

    on_fail = get("on_audit_failure", str, "fail")
    if on_fail not in ("fail", "warn"):
        raise ConfigError("must be 'fail' or 'warn'", location=doc.loc(("on_audit_failure",)),
                          field="on_audit_failure")
    mode = get("mode", str, None)
    if mode not in (None, "enforce", "complain"):
        raise ConfigError("must be 'enforce' or 'complain'", location=doc.loc(("mode",)), field="mode")
    return OperatorConfig(
        path=path,
        id_pool=_id_pool(get("id_pool", (str, list), None), doc),
        runtime_dir=get("runtime_dir", str, OperatorConfig.runtime_dir),
        runc=get("runc", str, None),
        profile_dirs=str_list("profile_dirs", OperatorConfig.profile_dirs),
        default_profile=get("default_profile", str, "baseline"),
        annotation_key=get("annotation_key", str, ANNOTATION_KEY),
        allowed_profiles=str_list("allowed_profiles", ()),
        floor=get("floor", str, None),
        audit_log=get("audit_log", str, OperatorConfig.audit_log),
        audit_hmac_key_file=get("audit_hmac_key_file", str, None),
        audit_max_bytes=get("audit_max_bytes", int, OperatorConfig.audit_max_bytes),
        on_audit_failure=on_fail,
        mode=mode,
        raw=data,
    )
