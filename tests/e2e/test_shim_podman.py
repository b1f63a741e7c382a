"""sandbox-runc as podman's runtime: the workload's own /proc/self/status shows the profile."""

import json
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.e2e.engines import (
    ANNOTATION,
    PODMAN_ULIMITS,
    operator_config,
    require_tool,
    runtime_wrapper,
    start_daemon,
    status_caps,
    stop_daemon,
)

pytestmark = pytest.mark.e2e

STATUS = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp|Uid):' /proc/self/status"


@pytest.fixture(params=["python", "daemon"])
def podman(e2e, tmp_path, request):
    """Every test here runs twice: a fresh Python per create, and through the sandbox daemon."""
    require_tool("podman")
    conf = operator_config(tmp_path, allowed_profiles=["restricted", "strict"])
    sock = "off"
    if request.param == "daemon":
        sock, proc = start_daemon(tmp_path)
        request.addfinalizer(lambda: stop_daemon(proc))
    runtime = runtime_wrapper(tmp_path, conf["path"], daemon_socket=sock)

    def run(*args, timeout=90):
        return subprocess.run(["podman", "--runtime", runtime, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    run.audit = conf["audit"]
    run.served_by = "daemon" if request.param == "daemon" else None
    return run


def _audit(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_default_profile_applies_to_podman_run(podman, demo_rootfs):
    res = podman("run", "--rm", "--network", "none", *PODMAN_ULIMITS, "--rootfs", demo_rootfs, "sh", "-c", STATUS)
    assert res.returncode == 0, res.stderr
    caps = status_caps(res.stdout)
    assert caps["NoNewPrivs"] == "1" and caps["Seccomp"] == "2"
    assert "CAP_NET_RAW" not in caps["CapBnd_names"]  # podman does not ask for it; nothing added
    assert caps["CapBnd_names"] <= {"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
                                    "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
                                    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
    records = _audit(podman.audit)
    cids = {r["container_id"] for r in records if r["event"] == "decision"}
    assert len(cids) == 1 and len(next(iter(cids))) == 64  # podman's full container id
    assert all(r["profile"] == "baseline" for r in records if r["event"] == "decision")
    assert [r["data"].get("served_by") for r in records if r["event"] == "profile_resolved"] == [podman.served_by]
    ok = subprocess.run([sys.executable, "-m", "sandbox", "audit", "verify", podman.audit], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_annotation_selects_an_allowed_profile(podman, demo_rootfs):
    res = podman("run", "--rm", "--network", "none", *PODMAN_ULIMITS, "--annotation", f"{ANNOTATION}=restricted",
                 "--user", "1000:1000", "--rootfs", demo_rootfs, "sh", "-c", STATUS)
    assert res.returncode == 0, res.stderr
    caps = status_caps(res.stdout)
    assert caps["CapBnd_names"] <= {"CAP_NET_BIND_SERVICE"} and caps["CapEff_names"] == set()
    assert any(r["profile"] == "restricted" for r in _audit(podman.audit))


def test_annotation_asking_for_a_disallowed_profile_is_refused(podman, demo_rootfs, tmp_path):
    res = podman("run", "--rm", "--network", "none", *PODMAN_ULIMITS, "--annotation", f"{ANNOTATION}=/tmp/evil.yaml",
                 "--rootfs", demo_rootfs, "true")
    assert res.returncode != 0
    assert "does not allow" in res.stderr


def test_forbidden_bind_mount_refused_with_reason_shown_by_podman(podman, demo_rootfs):
    res = podman("run", "--rm", "--network", "none", *PODMAN_ULIMITS, "-v", "/etc:/hostetc", "--rootfs", demo_rootfs,
                 "cat", "/hostetc/shadow")
    assert res.returncode != 0
    assert "refused by sandbox profile baseline" in res.stderr and "/etc" in res.stderr
    assert any(r["event"] == "refused" for r in _audit(podman.audit))


def test_a_privileged_container_is_refused_with_one_concise_reason(podman, demo_rootfs):
    """`podman run --privileged` under restricted: one clause with a count for the host devices, in the
    first 200 characters podman shows, and a `refused` record, on the Python path and the daemon's."""
    res = podman("run", "--rm", "--privileged", "--network", "none", *PODMAN_ULIMITS, "--annotation",
                 f"{ANNOTATION}=restricted", "--rootfs", demo_rootfs, "true")
    assert res.returncode != 0
    at = res.stderr.index("refused by sandbox profile restricted: ")
    reason = res.stderr[at:].splitlines()[0]
    assert re.match(r"refused by sandbox profile restricted: privileged container: \d+ host devices outside the "
                    r"profile's device allow-list \(/dev/", reason[:200]), res.stderr
    records = _audit(podman.audit)
    refused = [r for r in records if r["event"] == "refused"]
    assert len(refused) == 1 and refused[0]["data"]["reason"] == reason
    assert [r["data"].get("served_by") for r in records if r["event"] == "profile_resolved"] == [podman.served_by]


def test_podman_exec_privileged_does_not_get_past_the_profile(podman, demo_rootfs):
    name = f"sbx-{uuid.uuid4().hex[:8]}"
    res = podman("run", "-d", "--name", name, "--network", "none", *PODMAN_ULIMITS, "--user", "1000:1000",
                 "--annotation", f"{ANNOTATION}=restricted", "--rootfs", demo_rootfs, "sleep", "60")
    assert res.returncode == 0, res.stderr
    try:
        res = podman("exec", "--privileged", name, "sh", "-c", STATUS)
        assert res.returncode == 0, res.stderr
        caps = status_caps(res.stdout)
        assert caps["CapBnd_names"] <= {"CAP_NET_BIND_SERVICE"}
        assert caps["NoNewPrivs"] == "1"
        res = podman("exec", "--user", "0", name, "id")
        assert res.returncode != 0 and "uid 0" in res.stderr
    finally:
        podman("rm", "-f", "-t", "0", name)
    assert shutil.which("podman")
    assert re.search(r"exec", json.dumps(_audit(podman.audit)))
