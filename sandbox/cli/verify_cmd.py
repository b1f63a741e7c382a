"""`sandbox verify`: prove from the kernel's own state that a running container's controls hold.

One container (`sandbox verify ID`) or every container on the node (`sandbox verify --all`).
Exit 0 when every control passes (or is skipped as not applicable), 1 when any fails.
`verify_container` is the same check as a function, for `sandbox run --verify`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..core.verify import Check, failed, format_text, summary, to_json
from ..errors import EXIT_INVALID, InspectError, PolicyRefusal, RuncError, UsageError
from .options import profile_option


def runc_state(container_id: str, *, root: str | None = None, runc: str | None = None) -> dict[str, Any]:
    """`runc [--root R] state ID` as a dict (id, pid, status, bundle, ...).

    The real runc is the `runc` path if given, else $SANDBOX_RUNC, else the first `runc`
    on PATH that is not our shim (sandbox.host.runc.find_runc); a missing one raises RuncError.
    """
    from ..host.runc import Runc, find_runc

    return Runc(find_runc(runc), root=root).state(container_id)


def read_bundle_config(bundle: str) -> dict[str, Any]:
    """The bundle's config.json (BundleError when it cannot be read or is malformed)."""
    from ..host.bundle import read_config

    return read_config(bundle)


def _pid_of(state: dict[str, Any], container_id: str) -> int:
    status, pid = state.get("status"), state.get("pid")
    if status == "stopped":
        raise InspectError(f"container {container_id} is stopped: there is no process to inspect")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InspectError(f"container {container_id} has no running process (status {status})")
    return pid


def verify_container(container_id: str, *, root: str | None, runc: str | None,
                     expected_config: dict[str, Any] | None,
                     all_processes: bool = False) -> tuple[dict[str, Any], list[Check]]:
    """Check running container `container_id` against `expected_config` (default: its bundle's config.json).

    Returns runc's state of it and the checks.  Raises RuncError (runc missing or the
    container unknown), BundleError, or InspectError (its process cannot be read).
    """
    state = runc_state(container_id, root=root, runc=runc)
    pid = _pid_of(state, container_id)
    if expected_config is None:
        bundle = state.get("bundle")
        if not isinstance(bundle, str) or not bundle:
            raise RuncError(f"runc state {container_id} names no bundle")
        expected_config = read_bundle_config(bundle)
    from ..host.node import check_process

    checks = check_process(pid, expected_config, all_processes=all_processes)
    # The pid could have been reused by an unrelated process while we read it: runc's own
    # liveness test (pid plus start time) must still say the container runs with that pid.
    again = runc_state(container_id, root=root, runc=runc)
    if again.get("pid") != pid or again.get("status") == "stopped":
        raise InspectError(f"container {container_id} exited while being inspected")
    return state, checks


def _refusal_check(profile_ref: str, e: PolicyRefusal) -> Check:
    return Check("profile", "FAIL", f"allowed under {profile_ref}", "refused",
                 f"the profile refuses this container's bundle, so it cannot comply: {e.message}")


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------

@click.command("verify")
@click.argument("container_id", required=False)
@click.option("--all", "all_containers", is_flag=True,
              help="Every container on the node, whatever started it (runc roots of podman, Docker, containerd "
                   "in every namespace, and plain runc).")
@click.option("--all-processes", is_flag=True,
              help="Check every process in the container (e.g. added by exec), not only its init (implied by --all).")
@click.option("--root", "runc_roots", metavar="DIR", multiple=True,
              help="runc's state directory (runc --root).  With --all: look only in these roots (repeatable).")
@click.option("--runc", "runc_path", metavar="PATH", help="The real runc (default: runc on PATH).")
@profile_option(required=False)
@click.option("--audit-log", metavar="PATH",
              help="Record the result here (default: the operator config's log); with --all, the log to read.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "prometheus"]), default="text",
              show_default=True, help="Output format (prometheus: node_exporter's textfile format, with --all).")
@click.option("--output", "-o", metavar="FILE",
              help="Write the report to FILE (atomically: for node_exporter's textfile collector) instead of stdout.")
def verify(container_id: str | None, all_containers: bool, all_processes: bool, runc_roots: tuple[str, ...],
           runc_path: str | None, profile_ref: str | None, audit_log: str | None, fmt: str,
           output: str | None) -> None:
    """Check from the kernel's own state that running container CONTAINER_ID's controls hold.

    Reads the container's init process in /proc (capabilities, no_new_privs, id maps,
    namespaces, mounts) and its cgroup limits, and its installed seccomp filters from the
    kernel (ptrace), and compares them with its bundle's config.json, or, with --profile,
    with what that profile makes of the bundle (so a container started without the profile
    fails).  The filters are evaluated as the kernel runs them, for every syscall and every
    argument value that matters.

    With --all, every container on the node is found and reported as hardened, drifted,
    bypass (not started through sandbox), unverified or stopped.

    Exit 0 when every control passes or does not apply, 1 when any fails.
    """
    if all_containers:
        if container_id or profile_ref:
            raise UsageError("--all checks every container under its own profile: give no CONTAINER_ID or --profile")
        _verify_all(runc_roots, runc_path, audit_log, fmt, output)
        return
    if not container_id:
        raise UsageError("give a CONTAINER_ID, or --all for every container on the node")
    if fmt == "prometheus":
        raise UsageError("--format prometheus reports a whole node: use it with --all")
    if len(runc_roots) > 1:
        raise UsageError("one --root for one container")
    runc_root = runc_roots[0] if runc_roots else None
    state = runc_state(container_id, root=runc_root, runc=runc_path)
    bundle = state.get("bundle")
    if not isinstance(bundle, str) or not bundle:
        raise RuncError(f"runc state {container_id} names no bundle")
    expected_config = read_bundle_config(bundle)
    checks: list[Check]
    if profile_ref:
        from ..runtime.service import apply_profile_to_config

        try:
            expected_config = apply_profile_to_config(profile_ref, expected_config, bundle)
        except PolicyRefusal as e:
            _pid_of(state, container_id)
            checks = [_refusal_check(profile_ref, e)]
            _write(output, _render_one(fmt, container_id, state, profile_ref, checks))
            sys.exit(EXIT_INVALID)
    state, checks = verify_container(container_id, root=runc_root, runc=runc_path, expected_config=expected_config,
                                     all_processes=all_processes)
    _write(output, _render_one(fmt, container_id, state, profile_ref, checks))
    from ..runtime.service import record_verification

    record_verification(container_id, bundle, profile_ref, checks, audit_log)
    if failed(checks):
        sys.exit(EXIT_INVALID)


def _render_one(fmt: str, container_id: str, state: dict[str, Any], profile_ref: str | None,
                checks: list[Check]) -> str:
    if fmt == "json":
        return json.dumps({
            "id": container_id, "pid": state.get("pid"), "status": state.get("status"),
            "bundle": state.get("bundle"), "profile": profile_ref, "passed": not failed(checks),
            "summary": summary(checks), "checks": to_json(checks),
        }, indent=2)
    against = f"profile {profile_ref}" if profile_ref else "its config.json"
    verdict = "FAILED" if failed(checks) else "ok"
    return (format_text(checks) + "\n"
            + f"verify {container_id} (pid {state.get('pid')}) against {against}: {verdict}: {summary(checks)}")


def _write(output: str | None, text: str) -> None:
    if not output:
        click.echo(text)
        return
    from ..host.bundle import write_file_atomic

    write_file_atomic(output, (text if text.endswith("\n") else text + "\n").encode())


def _verify_all(runc_roots: tuple[str, ...], runc_path: str | None, audit_log: str | None, fmt: str,
                output: str | None) -> None:
    from ..core import node_report
    from ..host.node import verify_node

    report = verify_node(roots=runc_roots, audit_log=audit_log)
    if fmt == "json":
        text = json.dumps(node_report.to_json(report), indent=2)
    elif fmt == "prometheus":
        text = node_report.format_prometheus(report, time.time())
    else:
        text = node_report.format_table(report)
    _write(output, text)
    if report.failing:
        sys.exit(EXIT_INVALID)
