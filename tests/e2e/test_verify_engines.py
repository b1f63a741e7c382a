"""`sandbox verify --all` finds and classifies the containers of every engine on the node.

Each test starts one container through sandbox-runc and one with the engine's plain runc, then
runs `sandbox verify --all` with no roots given: the runc roots must be found from the engines'
own processes and configuration (podman's conmon, a private dockerd's --exec-root, a private
containerd's state directory and its shims' bundles, `ctr --runc-root` in options.json).
Run under `flock /tmp/sandbox-heavy.lock` (they start engines).  Other containers on this machine
show up too; the assertions are about the tests' own.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.e2e.daemons import Containerd, Dockerd, oci_image_tar, rootfs_tar_bytes
from tests.e2e.engines import operator_config, require_tool, runtime_wrapper

pytestmark = pytest.mark.e2e

IMAGE = "docker.io/library/sandbox-demo:verify"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def verify_all(conf, *args):
    env = {**os.environ, "SANDBOX_CONFIG": conf["path"], "SANDBOX_DAEMON_SOCKET": "off"}
    res = subprocess.run([sys.executable, "-m", "sandbox", "verify", "--all", "--format", "json", *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    return doc, {c["id"]: c for c in doc["containers"]}


def assert_pair(rows, mine, plain, engine, namespace=""):
    assert rows[mine]["engine"] == engine and rows[plain]["engine"] == engine, (rows[mine], rows[plain])
    assert rows[mine]["namespace"] == namespace and rows[plain]["namespace"] == namespace
    assert rows[mine]["state"] == "hardened", rows[mine]
    assert rows[plain]["state"] == "bypass" and "no sandbox annotation" in rows[plain]["reason"], rows[plain]
    seccomp = next(c for c in rows[mine]["checks"] if c["control"] == "seccomp")
    assert seccomp["status"] == "PASS" and "no call is allowed beyond the profile" in seccomp["detail"]


def test_podman_containers_are_found_in_runcs_root_and_told_apart(e2e, demo_rootfs, tmp_path):
    require_tool("podman")
    conf = operator_config(tmp_path)
    wrapper = runtime_wrapper(tmp_path, conf["path"])
    names = [f"vn-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    ids = []
    try:
        for name, runtime in zip(names, (wrapper, "/usr/sbin/runc")):
            res = subprocess.run(["podman", "--runtime", runtime, "run", "-d", "--name", name, "--network", "none",
                                  *ULIMITS, "--rootfs", demo_rootfs, "sleep", "600"], capture_output=True, text=True,
                                 timeout=120, stdin=subprocess.DEVNULL)
            assert res.returncode == 0, res.stderr
            ids.append(res.stdout.strip())
        doc, rows = verify_all(conf)
        assert "/run/runc" in doc["roots"]
        assert_pair(rows, ids[0], ids[1], "podman")
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *names], capture_output=True, timeout=120)


def test_docker_containers_are_found_from_dockerds_exec_root(e2e, demo_rootfs, tmp_path):
    require_tool("dockerd")
    conf = operator_config(tmp_path)
    daemon = Dockerd({"sandbox": runtime_wrapper(tmp_path, conf["path"], name="sandbox-runc-wrapper")})
    try:
        daemon.start()
        res = daemon.docker("import", "-", "sandbox-demo:verify", input=rootfs_tar_bytes(demo_rootfs))
        assert res.returncode == 0, res.stderr
        ids = []
        for runtime in ("sandbox", "runc"):
            res = daemon.docker("run", "-d", "--runtime", runtime, "--network", "none", "sandbox-demo:verify",
                                "sleep", "600")
            assert res.returncode == 0, res.stderr
            ids.append(res.stdout.strip())
        doc, rows = verify_all(conf)
        assert any(r.startswith(daemon.exec_root) for r in doc["roots"]), doc["roots"]
        assert_pair(rows, ids[0], ids[1], "docker", "moby")
    finally:
        daemon.stop()


@pytest.mark.parametrize("namespace", ["default", "k8s.io"])
def test_ctr_containers_are_found_in_every_namespace_of_a_private_containerd(e2e, demo_rootfs, tmp_path, namespace):
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        require_tool(tool)
    conf = operator_config(tmp_path)
    wrapper = runtime_wrapper(tmp_path, conf["path"])
    daemon = Containerd(namespace=namespace)
    try:
        daemon.start()
        res = daemon.ctr("images", "import", oci_image_tar(demo_rootfs, str(tmp_path / "img.tar"), {IMAGE: {}}))
        assert res.returncode == 0, res.stderr
        ids = [f"vn-{uuid.uuid4().hex[:8]}" for _ in range(2)]
        for cid, runtime in zip(ids, (wrapper, "/usr/sbin/runc")):
            res = daemon.ctr("run", "-d", "--runc-binary", runtime, "--runc-root", daemon.runc_root,
                             "--fifo-dir", daemon.fifo_dir, "--cgroup", f"{daemon.cgroup_parent}/{cid}", IMAGE, cid,
                             "sleep", "600")
            assert res.returncode == 0, res.stderr
        doc, rows = verify_all(conf)
        assert os.path.join(daemon.runc_root, namespace) in doc["roots"], doc["roots"]
        assert_pair(rows, ids[0], ids[1], "containerd", namespace)
    finally:
        daemon.stop()


def test_an_empty_root_and_no_audit_log_yet_is_a_clean_node(e2e, tmp_path):
    conf = operator_config(tmp_path)
    empty = tmp_path / "empty-root"
    empty.mkdir()
    doc, rows = verify_all(conf, "--root", str(empty))
    assert doc["containers"] == [] and doc["passed"] is True
    assert doc["audit_log"]["state"] == "missing" and "does not exist" in doc["audit_log"]["problem"]
