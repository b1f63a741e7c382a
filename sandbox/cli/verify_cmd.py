"""`sandbox verify`: prove from the kernel's own state that a running container's controls hold.

Exit 0 when every control passes (or is skipped as not applicable), 1 when any fails.
`verify_container` is the same check as a function, for `sandbox run --verify`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import EXIT_INVALID, InspectError, PolicyRefusal, RuncError
from ..verify import Check, compare, expected_from_config, failed, format_text, id_range_check, summary, to_json
from .options import FORMAT, profile_option


def runc_state(container_id: str, *, root: str | None = None, runc: str | None = None) -> dict[str, Any]:
    """`runc [--root R] state ID` as a dict (id, pid, status, bundle, ...).

    The real runc is the `runc` path if given, else $SANDBOX_RUNC, else the first `runc`
    on PATH that is not our shim (sandbox.runc.find_runc); a missing one raises RuncError.
    """
    from ..runc import Runc, find_runc

    return Runc(find_runc(runc), root=root).state(container_id)


def read_bundle_config(bundle: str) -> dict[str, Any]:
    """The bundle's config.json (BundleError when it cannot be read or is malformed)."""
    from ..bundle import read_config

    return read_config(bundle)


def _pid_of(state: dict[str, Any], container_id: str) -> int:
    status, pid = state.get("status"), state.get("pid")
    if status == "stopped":
        raise InspectError(f"container {container_id} is stopped: there is no process to inspect")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InspectError(f"container {container_id} has no running process (status {status})")
    return pid


def check_process(pid: int, expected_config: dict[str, Any]) -> list[Check]:
    """Read the kernel's view of `pid` and compare it with what `expected_config` asks for."""
    from .. import inspect

    expected = expected_from_config(expected_config)
    state = inspect.read_process(pid)
    limits = inspect.read_cgroup_limits(pid)
    absent = inspect.absent_paths(pid, (*expected.masked_paths, *expected.readonly_paths))
    joined: dict[str, int] = {}
    for path in expected.namespaces.values():
        ino = inspect.namespace_inode(path) if path else None
        if path and ino is not None:
            joined[path] = ino
    checks = compare(expected, state, limits, inspect.host_namespaces(), absent_paths=absent,
                     namespace_paths=joined, cap_last_cap=inspect.read_cap_last_cap())
    annotations = expected_config.get("annotations")
    ranged = id_range_check(annotations, state) if isinstance(annotations, dict) else None
    return [*checks, ranged] if ranged else checks


def verify_container(container_id: str, *, root: str | None, runc: str | None,
                     expected_config: dict[str, Any] | None) -> tuple[dict[str, Any], list[Check]]:
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
    checks = check_process(pid, expected_config)
    # The pid could have been reused by an unrelated process while we read it: runc's own
    # liveness test (pid plus start time) must still say the container runs with that pid.
    again = runc_state(container_id, root=root, runc=runc)
    if again.get("pid") != pid or again.get("status") == "stopped":
        raise InspectError(f"container {container_id} exited while being inspected")
    return state, checks


def _refusal_check(profile_ref: str, e: PolicyRefusal) -> Check:
    return Check("profile", "FAIL", f"allowed under {profile_ref}", "refused",
                 f"the profile refuses this container's bundle, so it cannot comply: {e.message}")


@click.command("verify")
@click.argument("container_id")
@click.option("--root", "runc_root", metavar="DIR", help="runc's state directory (runc --root).")
@click.option("--runc", "runc_path", metavar="PATH", help="The real runc (default: runc on PATH).")
@profile_option(required=False)
@click.option("--audit-log", metavar="PATH", help="Record the result here (default: the operator config's log).")
@FORMAT
def verify(container_id: str, runc_root: str | None, runc_path: str | None, profile_ref: str | None,
           audit_log: str | None, fmt: str) -> None:
    """Check from the kernel's own state that running container CONTAINER_ID's controls hold.

    Reads the container's init process in /proc (capabilities, no_new_privs,
    seccomp, id maps, namespaces, mounts) and its cgroup limits, and compares them
    with its bundle's config.json, or, with --profile, with what that profile makes
    of the bundle (so a container started without the profile fails).

    Exit 0 when every control passes or does not apply, 1 when any fails.
    """
    state = runc_state(container_id, root=runc_root, runc=runc_path)
    bundle = state.get("bundle")
    if not isinstance(bundle, str) or not bundle:
        raise RuncError(f"runc state {container_id} names no bundle")
    expected_config = read_bundle_config(bundle)
    checks: list[Check]
    if profile_ref:
        from ..service import apply_profile_to_config

        try:
            expected_config = apply_profile_to_config(profile_ref, expected_config, bundle)
        except PolicyRefusal as e:
            _pid_of(state, container_id)
            checks = [_refusal_check(profile_ref, e)]
            _emit(fmt, container_id, state, profile_ref, checks)
            sys.exit(EXIT_INVALID)
    state, checks = verify_container(container_id, root=runc_root, runc=runc_path, expected_config=expected_config)
    _emit(fmt, container_id, state, profile_ref, checks)
    from ..service import record_verification

    record_verification(container_id, bundle, profile_ref, checks, audit_log)
    if failed(checks):
        sys.exit(EXIT_INVALID)


def _emit(fmt: str, container_id: str, state: dict[str, Any], profile_ref: str | None, checks: list[Check]) -> None:
    if fmt == "json":
        click.echo(json.dumps({
            "id": container_id, "pid": state.get("pid"), "status": state.get("status"),
            "bundle": state.get("bundle"), "profile": profile_ref, "passed": not failed(checks),
            "summary": summary(checks), "checks": to_json(checks),
        }, indent=2))
        return
    click.echo(format_text(checks))
    against = f"profile {profile_ref}" if profile_ref else "its config.json"
    verdict = "FAILED" if failed(checks) else "ok"
    click.echo(f"verify {container_id} (pid {state.get('pid')}) against {against}: {verdict}: {summary(checks)}")
