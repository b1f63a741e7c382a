"""Gather what the kernel says about containers and judge it: one (`sandbox verify ID`) or all.  Edge.

`check_process` reads one container's init (and, on request, its other processes); `verify_node`
is `sandbox verify --all`.  Its steps, each timed (the report carries the timings, `scripts/bench.py` reads them):
discover the runc roots and their containers; read the audit log once; decide each container's
provenance and what its profile demands (the profile it was created under, re-applied to its
config.json, so an edited config.json cannot lower the bar; for a container not started through
sandbox, the operator's default profile, or the allowed one its annotation asks for); read the
seccomp filters of every process of every running container in one ptrace pass; then check each
container's kernel state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.node_report import NodeReport, Row, classify, provenance
from ..core.verify import (
    NFT_RULESET,
    Check,
    Evidence,
    Expected,
    OtherProcess,
    SeccompFilters,
    check_all,
    expected_from_config,
)
from ..errors import InspectError, SandboxError


class Host:
    """Facts shared by every container checked in one run (read once)."""

    def __init__(self) -> None:
        from . import inspect

        self.machine = os.uname().machine
        self.absent_abis = inspect.absent_abis(self.machine)
        self.namespaces = inspect.host_namespaces()
        self.cap_last_cap = inspect.read_cap_last_cap()
        self.cgroup_mounts = inspect.self_cgroup_mounts()
        self._table: Any = None

    @property
    def table(self) -> Any:
        if self._table is None:
            from .inspect import ProcessTable

            self._table = ProcessTable()
        return self._table

    def seccomp(self, tid: int, filters: Mapping[int, Any]) -> SeccompFilters:
        got = filters.get(tid)
        if got is None:
            return SeccompFilters(None, "not read", self.machine, self.absent_abis)
        return SeccompFilters(got.programs, got.error, self.machine, self.absent_abis)


def collect(pid: int, expected: Expected, host: Host, filters: Mapping[int, Any],
            members: Sequence[int] | None) -> Evidence:
    """Read the kernel's view of container init `pid` (and, given `members`, of its other processes)."""
    from . import inspect

    state = inspect.read_process(pid)
    limits = inspect.read_cgroup_limits(pid, self_mounts=host.cgroup_mounts)
    absent = inspect.absent_paths(pid, (*expected.masked_paths, *expected.readonly_paths))
    joined: dict[str, int] = {}
    for path in expected.namespaces.values():
        ino = inspect.namespace_inode(path) if path else None
        if path and ino is not None:
            joined[path] = ino
    others = None
    if members is not None:
        others_list = []
        for m in members:
            if m == pid:
                continue
            try:
                others_list.append(OtherProcess(inspect.read_process(m), host.table.name(m), host.seccomp(m, filters)))
            except InspectError:
                continue  # it exited meanwhile: nothing left to hold anything
        others = tuple(others_list)
    return Evidence(expected, state, limits, host.namespaces, absent, joined, host.cap_last_cap,
                    host.seccomp(pid, filters), others, _network_facts(pid, expected))


def _network_facts(pid: int, expected: Expected) -> dict[str, Any]:
    """The live nftables ruleset of the container's network namespace, when its config carries rules."""
    from ..core.netrules import ANNOTATION

    if ANNOTATION not in expected.annotations:
        return {}
    from ..runtime.nethook import live_ruleset

    try:
        return {NFT_RULESET: live_ruleset(pid)}
    except InspectError:
        return {NFT_RULESET: None}


def check_process(pid: int, expected_config: dict[str, Any], *, all_processes: bool = False) -> list[Check]:
    """Read the kernel's view of `pid` (its seccomp filters by content) and compare it with `expected_config`."""
    from .ptrace import read_filters

    host = Host()
    expected = expected_from_config(expected_config)
    members = host.table.members(pid) if all_processes else None
    filters = read_filters(members or [pid]) if expected.seccomp else {}
    return check_all(collect(pid, expected, host, filters, members))


def _timer() -> float:
    return time.perf_counter()


class _Plan:
    """One container on its way to a row."""

    def __init__(self, found: Any) -> None:
        self.found = found
        self.config: dict[str, Any] | None = None
        self.prov: Any = None
        self.profile = ""
        self.expected_config: dict[str, Any] | None = None
        self.refusal: Check | None = None
        self.error = found.error
        self.members: list[int] | None = None


def verify_node(*, roots: Sequence[str] = (), audit_log: str | None = None) -> NodeReport:
    """Check every container on this node (or only those in `roots`)."""
    from . import discover
    from .opconfig import load_operator_config
    from .ptrace import read_filters

    timing: dict[str, float] = {}
    t0 = t = _timer()
    op = load_operator_config()
    procs = discover._engine_processes()
    if roots:
        root_list = [discover.given_root(r) for r in roots]
        conmon = procs.conmon
    else:
        root_list, facts = discover.find_roots(procs=procs)
        conmon = facts["conmon"]
    found = discover.find_containers(root_list, conmon)
    timing["discover"], t = _timer() - t, _timer()

    index = discover.index_audit_log(audit_log or op.audit_log, key_file=op.audit_hmac_key_file)
    timing["audit_log"], t = _timer() - t, _timer()

    plans = [_Plan(f) for f in found]
    profiles: dict[str, Any] = {}
    for plan in plans:
        _plan_expectation(plan, op, index, profiles)
    timing["profiles"], t = _timer() - t, _timer()

    host = Host()
    tids: list[int] = []
    inits = [host.table.pidns.get(p.found.pid) for p in plans if _to_check(p)]
    for plan in plans:
        if _to_check(plan):
            shared = inits.count(host.table.pidns.get(plan.found.pid)) > 1
            plan.members = host.table.members(plan.found.pid, shared_pidns=shared)
            tids += plan.members
    filters = read_filters(tids) if tids else {}
    timing["ptrace"], t = _timer() - t, _timer()
    stops = [f.stopped_ns for f in filters.values() if f.programs is not None]
    timing["max_stop_us"] = max(stops, default=0) / 1000
    timing["processes_read"] = float(len(filters))

    rows = []
    for plan in plans:
        rows.append(_row(plan, host, filters))
    if not roots:
        rows += _unaccounted(host.table, [p.found.pid for p in plans if p.found.pid])
    timing["checks"] = _timer() - t
    timing["total"] = _timer() - t0
    return NodeReport(rows, index.path, index.state, index.problem, timing, [r.path for r in root_list])


def _plan_expectation(plan: _Plan, op: Any, index: Any, profiles: dict[str, Any]) -> None:
    """Provenance and what the profile demands of one container (from its config.json and the audit index)."""
    from ..runtime.shim import APPLIED_ANNOTATION_SUFFIX
    from .bundle import read_config

    f = plan.found
    if plan.error:
        return
    try:
        plan.config = read_config(f.bundle)
    except SandboxError as e:
        plan.error = f"cannot read its config.json: {e}"
        return
    raw = plan.config.get("annotations")
    annotations: dict[str, Any] = raw if isinstance(raw, dict) else {}
    applied = annotations.get(op.annotation_key + APPLIED_ANNOTATION_SUFFIX)
    plan.prov = provenance(applied, index.entries(f.id), f.bundle, f.created, index.path, index.problem)
    if plan.prov.through_sandbox:
        ref = plan.prov.profile
    else:
        requested = annotations.get(op.annotation_key)
        ref = requested if isinstance(requested, str) and requested in op.allowed_profiles else op.default_profile
    try:
        if ref not in profiles:
            from ..runtime.service import resolve_profile

            profiles[ref] = resolve_profile(ref, op.profile_dirs)
        profile = profiles[ref]
    except SandboxError as e:
        plan.error = f"cannot load profile {ref}: {e}"
        return
    plan.profile = profile.name
    from ..runtime.service import reapply

    try:
        outcome = reapply(op, profile, plan.config, f.bundle)
    except SandboxError as e:
        plan.error = f"cannot apply profile {ref}: {e}"
        return
    if outcome.refused:
        from ..core import formats

        msg = formats.refusal_message(profile, outcome)
        plan.refusal = Check("profile", "FAIL", f"allowed under {profile.name}", "refused",
                             f"the profile refuses this container's config, so it cannot comply: {msg}")
    else:
        plan.expected_config = outcome.config


def _unaccounted(table: Any, container_pids: Sequence[int]) -> list[Row]:
    """Process trees in pid namespaces of their own that no container found accounts for.

    A container whose runtime state sandbox did not find (a runc `--root` it does not know,
    another runtime) still shows as a pid namespace of its own; one nested inside a found
    container (its process started it) is that container's business.
    """
    known = {table.pidns[p] for p in container_pids if p in table.pidns}
    groups: dict[int, list[int]] = {}
    for pid, ns in table.pidns.items():
        if ns != table.host_pidns and ns not in known:
            groups.setdefault(ns, []).append(pid)
    rows = []
    for ns, pids in sorted(groups.items()):
        init = min(pids)
        ancestor, nested = table.parent(init), False
        for _ in range(64):
            if ancestor <= 1:
                break
            if table.pidns.get(ancestor) in known:
                nested = True
                break
            ancestor = table.parent(ancestor)
        if nested:
            continue
        rows.append(Row(f"pidns:{ns}", "unknown", "", "", "", init, "running", "bypass", "",
                        f"{len(pids)} process(es) in a pid namespace of their own (pid {init}: {table.name(init)}) "
                        "that no runc root sandbox found accounts for: not started through sandbox as far as it "
                        "can tell (a runc --root or a runtime it does not know)"))
    return rows


def _to_check(plan: _Plan) -> bool:
    return (not plan.error and plan.found.status in ("running", "created") and plan.expected_config is not None)


def _row(plan: _Plan, host: Host, filters: Mapping[int, Any]) -> Row:
    """Read the container's kernel state, judge it, classify it."""
    from .inspect import process_start

    f = plan.found
    checks: list[Check] = [plan.refusal] if plan.refusal else []
    error = plan.error
    if not error and f.status == "paused":
        error = "paused: its filters cannot be read while its cgroup is frozen"
    if _to_check(plan) and plan.expected_config is not None:
        start = process_start(f.pid)
        try:
            ev = collect(f.pid, expected_from_config(plan.expected_config), host, filters, plan.members)
            checks = check_all(ev)
        except SandboxError as e:
            error = f"cannot read its kernel state: {e}"
        if not error and process_start(f.pid) != start:
            error = "it exited while being read"
    prov = plan.prov
    if prov is None:
        from ..core.node_report import Provenance

        prov = Provenance(False, "", error or "unreadable")
    state = classify(f.status, prov, checks, error)
    reason = prov.reason if state in ("bypass", "hardened", "stopped", "drifted") else error
    if state == "bypass" and error:
        reason += f" ({error})"
    return Row(f.id, f.engine, f.root.namespace, f.root.path, f.bundle, f.pid, f.status, state, plan.profile,
               reason, tuple(checks))
