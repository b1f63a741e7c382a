"""Kubernetes pods through the CRI under sandbox's profiles: the kernel state of each container,
read with ExecSync as the kubelet's probes run commands, and from the host."""

import json
import os

import grpc
import pytest

from tests.e2e.cri.client import error_text
from tests.e2e.cri.harness import APP_IMAGE
from tests.e2e.engines import status_caps

pytestmark = pytest.mark.e2e

STATUS = ["grep", "-E", "^(Uid|Gid|CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):", "/proc/self/status"]
BASELINE_CAPS = {"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                 "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
                 "CAP_SETUID", "CAP_SYS_CHROOT"}
MiB = 1 << 20


def _exec(cri, cid, *cmd):
    code, out, err = cri.client.exec_sync(cid, list(cmd))
    assert code == 0, f"{cmd}: exit {code}: {err}"
    return out


def _uid_map(cri, cid):
    return tuple(int(x) for x in _exec(cri, cid, "cat", "/proc/self/uid_map").split())


def _userns_inode(cri, cid):
    return int(_exec(cri, cid, "stat", "-L", "-c", "%i", "/proc/self/ns/user"))


def _pid(cri, cid):
    return json.loads(cri.client.container_status(cid, verbose=True).info["info"])["pid"]


def _pod_pid(cri, pod_id):
    """The pid of the pod's sandbox (pause) container."""
    return json.loads(cri.client.pod_status(pod_id, verbose=True).info["info"])["pid"]


def _resolved(cri, cid):
    return next(r["data"] for r in cri.records(cid) if r["event"] == "profile_resolved")


def _host_mounts_of_sandbox():
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if "/run/sandbox-rootfs" in line]


def test_strict_pod_shares_one_user_namespace_and_range_distinct_from_another_pods(cri):
    with cri.pod("strict-a", profile="strict") as a, cri.pod("strict-b", profile="strict") as b:
        a1 = a.container("one", ["sleep", "600"])
        a2 = a.container("two", ["sleep", "600"])
        b1 = b.container("one", ["sleep", "600"])
        # the pod's sandbox container got a range from the pool; its containers share it and its user namespace
        start_a = int(_resolved(cri, a.id)["id_range"].split(":")[0])
        start_b = int(_resolved(cri, b.id)["id_range"].split(":")[0])
        assert abs(start_a - start_b) >= 65536  # disjoint 65536-id ranges
        for cid in (a1, a2):
            assert _uid_map(cri, cid) == (0, start_a, 65536)
            assert _resolved(cri, cid)["id_range"] == f"{start_a}:65536"
            assert cri.oci_config(cid)["annotations"]["org.sandbox-runtime.profile.applied"].endswith(
                f";userns={start_a}:65536")
        assert _uid_map(cri, b1) == (0, start_b, 65536)
        assert _userns_inode(cri, a1) == _userns_inode(cri, a2) == os.stat(f"/proc/{_pod_pid(cri, a.id)}/ns/user").st_ino
        assert _userns_inode(cri, b1) != _userns_inode(cri, a1)
        for cid in (a1, a2, b1):
            caps = status_caps(_exec(cri, cid, *STATUS))
            assert caps["Uid"] == "0" and caps["CapEff_names"] == {"CAP_NET_BIND_SERVICE"}
            assert caps["NoNewPrivs"] == "1" and caps["Seccomp"] == "2"
            with open(f"/proc/{_pid(cri, cid)}/status") as f:  # the same process, seen from the host
                host_uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
            assert int(host_uid) == (start_a if cid != b1 else start_b)
        # the containers share the pod's network, ipc and uts namespaces with its sandbox container
        for kind in ("net", "ipc", "uts"):
            pause = os.stat(f"/proc/{_pod_pid(cri, a.id)}/ns/{kind}").st_ino
            assert os.stat(f"/proc/{_pid(cri, a1)}/ns/{kind}").st_ino == pause
            assert os.stat(f"/proc/{_pid(cri, a2)}/ns/{kind}").st_ino == pause
        # the image's root-owned files belong to the container's root; it writes its tmpfs, not the image
        assert _exec(cri, a1, "stat", "-c", "%u:%g", "/etc/passwd").strip() == "0:0"
        _exec(cri, a1, "sh", "-c", "echo x > /tmp/made-by-root")
        st = os.stat(f"/proc/{_pid(cri, a1)}/root/tmp/made-by-root")
        assert (st.st_uid, st.st_gid) == (start_a, start_a)
        code, _, err = cri.client.exec_sync(a1, ["sh", "-c", "echo x > /etc/passwd"])
        assert code != 0 and "Read-only file system" in err
        # what sandbox mounted for them lives only in the runtime's own mount namespaces
        assert _host_mounts_of_sandbox() == []


def test_restricted_pod_selected_by_pod_annotation(cri):
    with cri.pod("restricted", profile="restricted") as pod:
        cid = pod.container("app", ["sleep", "600"], image=APP_IMAGE)
        caps = status_caps(_exec(cri, cid, *STATUS))
        assert caps["Uid"] == "1000" and caps["CapEff_names"] == set()
        assert caps["CapBnd_names"] <= {"CAP_NET_BIND_SERVICE"} and caps["NoNewPrivs"] == "1"
        assert caps["Seccomp"] == "2"
        for container in (pod.id, cid):
            assert {r["profile"] for r in cri.records(container)} == {"restricted"}
        assert cri.oci_config(cid)["annotations"]["org.sandbox-runtime.profile"] == "restricted"
        # the pause container runs as the image's nobody; restricted adds no user namespace
        assert _uid_map(cri, cid) == (0, 0, 4294967295)


def test_refusal_surfaces_as_a_cri_error_with_sandboxs_reason(cri):
    with cri.pod("refused") as pod:
        with pytest.raises(grpc.RpcError) as e:
            pod.container("app", ["sleep", "600"],
                          mounts=[{"container_path": "/host-etc", "host_path": "/etc", "readonly": True}])
        text = error_text(e.value)
        assert "refused by sandbox profile baseline" in text and "bind mount source /etc" in text, text
        cid = pod.containers[-1] if pod.containers else None
        refused = [r for r in cri.records() if r["event"] == "refused" and "/etc" in r["data"]["reason"]]
        assert refused and (cid is None or refused[-1]["container_id"] == cid)


def test_exec_sync_of_a_container_that_asked_for_more_is_clamped(cri):
    with cri.pod("exec") as pod:
        # containerd builds every exec process from the spec it stored, which asked for these
        cid = pod.container("app", ["sleep", "600"], add_caps=["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"])
        stored = json.loads(cri.client.container_status(cid, verbose=True).info["info"])["runtimeSpec"]
        assert "CAP_SYS_ADMIN" in stored["process"]["capabilities"]["bounding"]
        caps = status_caps(_exec(cri, cid, *STATUS))
        assert caps["CapBnd_names"] <= BASELINE_CAPS and caps["CapEff_names"] <= BASELINE_CAPS
        assert not {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"} & caps["CapBnd_names"]
        assert caps["NoNewPrivs"] == "1" and caps["Seccomp"] == "2"
        drops = [r["decision"] for r in cri.records(cid) if r["event"] == "decision"
                 and r["decision"].get("subcommand") == "exec" and r["decision"]["action"] == "drop"]
        assert any("CAP_SYS_ADMIN" in json.dumps(d) for d in drops)


def test_update_container_resources_above_the_maximum_is_clamped(cri):
    with cri.pod("update", profile="strict") as pod:
        cid = pod.container("app", ["sleep", "600"])
        cri.client.update_resources(cid, memory_limit_in_bytes=2048 * MiB, cpu_period=100000, cpu_quota=800000)
        cgroup = cri.oci_config(cid)["linux"]["cgroupsPath"].lstrip("/")
        with open(os.path.join("/sys/fs/cgroup/memory", cgroup, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 512 * MiB  # strict's maximum
        with open(os.path.join("/sys/fs/cgroup/cpu", cgroup, "cpu.cfs_quota_us")) as f:
            assert int(f.read()) == 200000  # 2 CPUs at most
        clamps = [r["decision"] for r in cri.records(cid) if r["event"] == "decision"
                  and r["decision"].get("subcommand") == "update"]
        assert {d["pointer"] for d in clamps} >= {"/memory/limit", "/cpu/quota"}
        assert cri.client.container_status(cid).status.state == cri.client.api.CONTAINER_RUNNING


def test_sandbox_check_host_lists_the_running_containerds_directories(cri):
    """The private containerd's root and state are not the defaults: they are found from its command line
    and the config file it names."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    res = subprocess.run([sys.executable, "-m", "sandbox", "check", "--host", "--format", "json"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "SANDBOX_CONFIG": cri.config})
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    found = {d["path"]: d for d in report["engine_dirs"]}
    for path in (os.path.join(cri.daemon.cri_state(), "sandboxes"), os.path.join(cri.daemon.cri_root(), "sandboxes")):
        assert path in found and found[path]["engine"] == "containerd"
        assert f"({cri.daemon.config})" in found[path]["found"] and found[path]["found"].startswith("pid ")
    assert report["idmapped_mounts"].startswith("yes") and report["max_user_namespaces"] > 0
