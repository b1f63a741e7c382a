"""`sandbox verify --all`: classify each container of a node and write the report.  Pure.

A container is
- `hardened`: started through sandbox (its config.json carries the `<annotation>.applied`
  annotation, and the audit log records that profile, at that digest, resolving for that
  container id and bundle when the container was created) and every control holds;
- `drifted`: started through sandbox, but the kernel's state differs from what its profile
  demands (including a process added later by `exec`);
- `bypass`: not started through sandbox: plain runc, another runtime handler, a container from
  before sandbox was installed, a complain-mode profile, or an annotation the audit log does not
  back (config.json copied from a sandbox container);
- `unverified`: started through sandbox, but its kernel state could not be read (paused, gone,
  unreadable);
- `stopped`: no process runs (nothing to check, nothing to fail).

Output: a text table, JSON, and the Prometheus text format that node_exporter's textfile
collector reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .verify import Check, failed

STATES: tuple[str, ...] = ("hardened", "drifted", "bypass", "unverified", "stopped")
FAILING: frozenset[str] = frozenset({"drifted", "bypass", "unverified"})
# The audit record may be written a little after runc notes the creation time, and an engine may
# resolve the profile a while before it calls create (image unpacking happens before).
_AFTER_CREATED_NS = 60 * 10**9
_BEFORE_CREATED_NS = 3600 * 10**9


@dataclass(frozen=True)
class Provenance:
    through_sandbox: bool
    profile: str  # the profile it was created under ("" when not through sandbox)
    reason: str


@dataclass(frozen=True)
class Row:
    id: str
    engine: str
    namespace: str
    root: str
    bundle: str
    pid: int
    status: str
    state: str
    profile: str  # the profile it runs under (hardened/drifted/unverified) or was checked against (bypass)
    reason: str
    checks: tuple[Check, ...] = ()

    @property
    def failing_controls(self) -> list[str]:
        return [c.control for c in failed(self.checks)]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "engine": self.engine, "namespace": self.namespace, "root": self.root,
                "bundle": self.bundle, "pid": self.pid, "status": self.status, "state": self.state,
                "profile": self.profile, "reason": self.reason, "failing": self.failing_controls,
                "checks": [c.to_dict() for c in self.checks]}


def rfc3339_ns(text: str) -> int | None:
    """`2024-05-01T12:34:56.123456789Z` (or with an offset) -> nanoseconds since the epoch."""
    import calendar

    text = text.strip()
    if len(text) < 20 or text[10] != "T":
        return None
    try:
        secs = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    rest, frac = text[19:], 0
    if rest.startswith("."):
        digits = ""
        rest = rest[1:]
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        frac = int((digits + "000000000")[:9]) if digits else 0
    if rest in ("Z", "z", ""):
        offset = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        try:
            offset = (int(rest[1:3]) * 60 + int(rest[4:6])) * 60 * (1 if rest[0] == "+" else -1)
        except ValueError:
            return None
    else:
        return None
    return (secs - offset) * 10**9 + frac


def provenance(annotation: str | None, entries: Sequence[Any], bundle: str, created: str,
               log_path: str, log_problem: str = "") -> Provenance:
    """Whether a container was started through sandbox: its `.applied` annotation and its audit record agree.

    `entries` are the audit log's records for the container id (AuditEntry: seq, ts, event,
    bundle, profile, profile_sha256, subcommand, mode, runc_exit), in log order.
    """
    mine = [e for e in entries if e.bundle == bundle]
    if not isinstance(annotation, str) or "@" not in annotation:
        complain = [e for e in mine if e.event == "profile_resolved" and e.mode and e.mode != "enforce"]
        if complain:
            return Provenance(False, "", f"created under profile {complain[-1].profile} in {complain[-1].mode} "
                                         "mode: recorded, not enforced")
        return Provenance(False, "", "no sandbox annotation in its config.json: not started through sandbox "
                                     "(plain runc, another runtime handler, or created before sandbox was installed)")
    name, _, rest = annotation.partition("@")
    digest = rest.split(";", 1)[0]  # `name@digest`, possibly followed by `;key=value` facts (e.g. userns=)
    created_ns = rfc3339_ns(created) if created else None
    candidates = []
    for e in mine:
        if e.event != "profile_resolved" or e.subcommand not in ("create", "run", "restore"):
            continue
        ts = rfc3339_ns(e.ts)
        if created_ns is not None and ts is not None and ts > created_ns + _AFTER_CREATED_NS:
            continue  # resolved for a later container of the same id
        candidates.append(e)
    where = f"the audit log {log_path}" + (f" ({log_problem})" if log_problem else "")
    if not candidates:
        return Provenance(False, "", f"annotation {annotation} but no record of its creation in {where}: "
                                     "config.json copied from a sandbox container, or its record is gone")
    last = candidates[-1]
    if last.profile != name or not digest or not last.profile_sha256.startswith(digest):
        return Provenance(False, "", f"annotation {annotation} but {where} records profile {last.profile}"
                                     f"@{last.profile_sha256[:16]} for its creation")
    ts = rfc3339_ns(last.ts)
    if created_ns is not None and ts is not None and ts < created_ns - _BEFORE_CREATED_NS:
        return Provenance(False, "", f"the last record of {annotation} in {where} is from {last.ts}, long before "
                                     f"this container was created ({created}): another container with its id")
    after = [e for e in mine if e.seq > last.seq and e.event in ("created", "exited", "error", "refused")]
    if after and (after[0].event in ("error", "refused") or (after[0].runc_exit not in (0, None))):
        return Provenance(False, "", f"{where} records that its creation through sandbox failed "
                                     f"({after[0].event}); this container was created some other way")
    return Provenance(True, name, f"created under {annotation}, as the audit log records")


def classify(status: str, prov: Provenance, checks: Sequence[Check], error: str = "") -> str:
    if status == "stopped":
        return "stopped"
    if not prov.through_sandbox:
        return "bypass"
    if error:
        return "unverified"
    return "drifted" if failed(checks) else "hardened"


# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------

@dataclass
class NodeReport:
    rows: list[Row]
    audit_log: str
    audit_state: str  # ok | missing | broken | unreadable (see discover.AuditIndex)
    audit_problem: str = ""
    timing: Mapping[str, float] = field(default_factory=dict)  # seconds: total, ptrace, seccomp, ...
    roots: Sequence[str] = ()

    @property
    def failing(self) -> bool:
        """A failing container, or an audit log that cannot be trusted (a missing one is only noted)."""
        return self.audit_state in ("broken", "unreadable") or any(r.state in FAILING for r in self.rows)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for r in self.rows:
            out[r.state] += 1
        return out


def _short(cid: str) -> str:
    """A 64-hex engine id as its first 12 characters (as docker and podman show it), others whole."""
    return cid[:12] if len(cid) == 64 and all(c in "0123456789abcdef" for c in cid) else cid


def format_table(report: NodeReport) -> str:
    headers = ("CONTAINER", "ENGINE", "NAMESPACE", "PID", "STATUS", "STATE", "PROFILE", "DETAIL")
    lines = []
    for r in report.rows:
        detail = ", ".join(r.failing_controls) if r.state == "drifted" else r.reason if r.state != "hardened" else ""
        lines.append((_short(r.id), r.engine, r.namespace or "-", str(r.pid or "-"), r.status, r.state.upper(),
                      r.profile or "-", detail))
    widths = [max([len(h)] + [len(x[i]) for x in lines]) for i, h in enumerate(headers[:-1])]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  " + headers[-1]]
    for x in lines:
        out.append("  ".join(v.ljust(w) for v, w in zip(x, widths)) + "  " + x[-1])
    for r in report.rows:
        if r.state == "drifted":
            out.append(f"{_short(r.id)}:")
            out += [f"  FAIL {c.control}: {c.detail}" for c in failed(r.checks)]
    counts = report.counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    out.append(f"{len(report.rows)} containers: {summary or 'none found'}")
    if report.audit_problem:
        out.append(f"audit log {report.audit_log}: {report.audit_problem}")
    return "\n".join(out)


def to_json(report: NodeReport) -> dict[str, Any]:
    return {"passed": not report.failing, "summary": report.counts(),
            "audit_log": {"path": report.audit_log, "state": report.audit_state, "problem": report.audit_problem},
            "roots": list(report.roots), "timing_seconds": dict(report.timing),
            "containers": [r.to_dict() for r in report.rows]}


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kv.items()) + "}"


def format_prometheus(report: NodeReport, now: float) -> str:
    """The report in the text exposition format, for node_exporter's textfile collector."""
    out = ["# HELP sandbox_verify_containers Containers on this node by verification state.",
           "# TYPE sandbox_verify_containers gauge"]
    for state, n in report.counts().items():
        out.append(f"sandbox_verify_containers{_labels(state=state)} {n}")
    out += ["# HELP sandbox_verify_containers_by_profile Containers by verification state and profile.",
            "# TYPE sandbox_verify_containers_by_profile gauge"]
    by: dict[tuple[str, str], int] = {}
    for r in report.rows:
        by[(r.state, r.profile)] = by.get((r.state, r.profile), 0) + 1
    for (state, profile), n in sorted(by.items()):
        out.append(f"sandbox_verify_containers_by_profile{_labels(state=state, profile=profile or 'none')} {n}")
    out += ["# HELP sandbox_verify_control_failed A control that fails on a container (one series each; "
            "control=\"provenance\" for a container not started through sandbox).",
            "# TYPE sandbox_verify_control_failed gauge"]
    for r in report.rows:
        if r.state not in FAILING:
            continue
        controls = r.failing_controls if r.state == "drifted" else ["provenance" if r.state == "bypass" else "read"]
        if r.state == "bypass":
            controls += r.failing_controls
        for control in dict.fromkeys(controls):
            out.append("sandbox_verify_control_failed" + _labels(
                container=r.id, engine=r.engine, namespace=r.namespace, profile=r.profile or "none", state=r.state,
                control=control) + " 1")
    out += ["# HELP sandbox_verify_audit_log_ok Whether the audit log exists and its hash chain verified.",
            "# TYPE sandbox_verify_audit_log_ok gauge",
            f"sandbox_verify_audit_log_ok {int(report.audit_state == 'ok')}",
            "# HELP sandbox_verify_ok 1 when every container on the node is hardened (or stopped).",
            "# TYPE sandbox_verify_ok gauge",
            f"sandbox_verify_ok {int(not report.failing)}",
            "# HELP sandbox_verify_duration_seconds How long the verification took.",
            "# TYPE sandbox_verify_duration_seconds gauge",
            f"sandbox_verify_duration_seconds {report.timing.get('total', 0.0):.6f}",
            "# HELP sandbox_verify_last_run_timestamp_seconds When the verification ran.",
            "# TYPE sandbox_verify_last_run_timestamp_seconds gauge",
            f"sandbox_verify_last_run_timestamp_seconds {now:.3f}"]
    return "\n".join(out) + "\n"
