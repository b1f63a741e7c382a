"""Shared fixtures for the end-to-end tests (real runc, real kernel).

`e2e` skips the test with a reason when it cannot run here (not root, no runc);
with SANDBOX_E2E=require in the environment it fails instead, so CI that is
meant to run them cannot silently pass by skipping.  It returns the path of the
real runc.

`demo_rootfs` (session-scoped) builds the busybox demo rootfs once into a
temporary directory and returns its path.
"""

import os
import shutil
import tempfile

import pytest


def _required() -> bool:
    return os.environ.get("SANDBOX_E2E") == "require"


def e2e_unavailable(reason: str) -> None:
    """Skip (or, under SANDBOX_E2E=require, fail) the current test for `reason`."""
    if _required():
        pytest.fail(f"end-to-end test cannot run: {reason} (SANDBOX_E2E=require)")
    pytest.skip(reason)


def _find_real_runc() -> str | None:
    from sandbox.errors import RuncError
    from sandbox.host.runc import find_runc

    try:
        return find_runc()
    except RuncError:
        return None


@pytest.fixture(scope="session")
def _e2e_state():
    if os.geteuid() != 0:
        return None, "end-to-end tests need root"
    runc = _find_real_runc()
    if runc is None:
        return None, "runc is not installed (or only sandbox-runc was found)"
    return runc, None


@pytest.fixture
def e2e(_e2e_state):
    """Skip/fail unless root and a real runc; returns the runc path."""
    runc, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    return runc


@pytest.fixture(scope="module")
def e2e_module(_e2e_state):
    """`e2e` for module-scoped fixtures (one set of containers for a whole test module)."""
    runc, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    return runc


@pytest.fixture(scope="session")
def demo_rootfs(_e2e_state):
    """Path of a busybox demo rootfs built once per session (needs the e2e preconditions).

    It lives in its own 0755 directory under /tmp, not under pytest's 0700 basetemp:
    with a user namespace, the container's (mapped) root must be able to reach it.
    """
    _, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    if not os.path.exists("/bin/busybox"):
        e2e_unavailable("busybox-static is not installed: apt-get install busybox-static")
    from sandbox.host.demo import build_rootfs

    parent = tempfile.mkdtemp(prefix="sandbox-e2e-demo-")
    try:
        os.chmod(parent, 0o755)
        yield build_rootfs(os.path.join(parent, "rootfs"))
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def probe_binary(_e2e_state):
    """tests/e2e/escape/probe.c built static into a temporary directory (the escape and oracle suites)."""
    _, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    from tests.e2e.oracle.harness import build_probe

    out = tempfile.mkdtemp(prefix="sandbox-probe-")
    try:
        binary, why = build_probe(out)
        if binary is None:
            e2e_unavailable(why)
        yield binary
    except RuntimeError as e:
        pytest.fail(str(e))
    finally:
        shutil.rmtree(out, ignore_errors=True)
