"""Kubernetes' path through the CRI: containerd's CRI plugin runs pods with sandbox-runc.

The calls are the kubelet's (Version, RunPodSandbox with a RuntimeClass handler,
CreateContainer, StartContainer, ExecSync, UpdateContainerResources, ContainerStatus,
StopPodSandbox, RemovePodSandbox) on a private containerd; see harness.py.
"""

import json
import os

import pytest

from tests.e2e.cri.harness import HANDLER, IMAGE
from tests.e2e.engines import status_caps

pytestmark = pytest.mark.e2e

STATUS = ["grep", "-E", "^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):", "/proc/self/status"]
BASELINE_CAPS = {"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                 "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
                 "CAP_SETUID", "CAP_SYS_CHROOT"}


def _cgroup_file(cri, cid, controller, name):
    """A cgroup v1 file of the container (containerd's cgroupfs path: <pod cgroup_parent>/<id>)."""
    path = cri.oci_config(cid)["linux"]["cgroupsPath"]
    return os.path.join("/sys/fs/cgroup", controller, path.lstrip("/"), name)


def test_version_is_containerd_cri_v1(cri):
    v = cri.client.version()
    assert v.runtime_name == "containerd" and v.runtime_api_version == "v1"
    assert v.runtime_version.startswith("1.6")


def test_pod_under_baseline_through_sandbox_runc(cri):
    cri.client.image_status(IMAGE)  # the image came from the tarball, no registry
    with cri.pod("baseline-pod") as pod:
        status = cri.client.pod_status(pod.id)
        assert status.status.runtime_handler == HANDLER and status.status.state == cri.client.api.SANDBOX_READY
        # the kubelet asks for more than baseline allows: CAP_SYS_ADMIN
        cid = pod.container("app", ["sleep", "600"], add_caps=["SYS_ADMIN"])
        assert cri.client.container_status(cid).status.state == cri.client.api.CONTAINER_RUNNING

        code, out, err = cri.client.exec_sync(cid, STATUS)
        assert code == 0, err
        caps = status_caps(out)
        assert caps["NoNewPrivs"] == "1" and caps["Seccomp"] == "2"
        assert caps["CapBnd_names"] <= BASELINE_CAPS and "CAP_SYS_ADMIN" not in caps["CapBnd_names"]

        # the pause container and the app container were both created by sandbox-runc, under baseline
        for container, ctype in ((pod.id, "sandbox"), (cid, "container")):
            records = cri.records(container)
            events = [r["event"] for r in records]
            assert events[0] == "profile_resolved" and "created" in events, events
            assert "decision" in events[: events.index("created")]
            assert {r["profile"] for r in records} == {"baseline"}
            config = cri.oci_config(container)
            assert config["annotations"]["io.kubernetes.cri.container-type"] == ctype
            assert config["annotations"]["org.sandbox-runtime.profile.applied"].startswith("baseline@")
        drops = [r["decision"] for r in cri.records(cid) if r["event"] == "decision"
                 and r["decision"]["control"] == "capabilities" and r["decision"]["action"] == "drop"]
        assert any("CAP_SYS_ADMIN" in json.dumps(d) for d in drops)
        # the app container joined the pause container's network and ipc namespaces by path
        nss = {n["type"]: n.get("path") for n in cri.oci_config(cid)["linux"]["namespaces"]}
        assert nss["network"] and nss["ipc"] and nss["ipc"].startswith("/proc/")

        # UpdateContainerResources reaches runc through sandbox-runc's update path
        cri.client.update_resources(cid, memory_limit_in_bytes=64 << 20)
        with open(_cgroup_file(cri, cid, "memory", "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 64 << 20
        assert cri.client.container_status(cid).status.state == cri.client.api.CONTAINER_RUNNING
    assert pod.id not in {p.id for p in cri.client.list_pods()}
    assert not os.path.exists(cri.bundle(cid))


def test_audit_log_verifies(cri):
    with cri.pod() as pod:
        pod.container("app", ["true"])
    res = cri_audit_verify(cri)
    assert res.returncode == 0, res.stdout + res.stderr


def cri_audit_verify(cri):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sandbox", "audit", "verify", cri.audit], capture_output=True,
                          text=True, timeout=120)
