"""Network policy through the engines: podman, Docker and containerd (ctr) run sandbox-runc.

The same lab and probes as test_network_real.py.  podman joins a namespace the test made
(`--network ns:PATH`); ctr joins one too (`--with-ns network:PATH`); Docker makes its own
(`--network none`, after its libnetwork-setkey hook) and so does a Kubernetes pod through the
CRI (containerd's CNI, tests/e2e/cri/); the test then plugs the lab's veth into it, so the
rules are seen to hold after the engine's network set-up and after the container has started.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from sandbox.core import netrules
from tests.e2e.cri.harness import HANDLER, CriEngine, tools_missing
from tests.e2e.daemons import Containerd, Dockerd, logging_runtime, oci_image_tar, rootfs_tar_bytes
from tests.e2e.engines import (
    ANNOTATION,
    PODMAN_ULIMITS,
    audit_records,
    operator_config,
    require_tool,
    runtime_wrapper,
    shim_path,
    start_daemon,
    stop_daemon,
)
from tests.e2e.network.netlab import NetLab, expect_filtered, lab_profile, probe_script

pytestmark = pytest.mark.e2e



def _recorded_ruleset(audit, cid=None):
    for r in audit_records(audit, cid):
        d = r.get("decision") or {}
        if d.get("control") == "network" and isinstance(d.get("after"), dict) and "ruleset" in d["after"]:
            return d["after"]["ruleset"]
    return None


@pytest.mark.parametrize("path", ["python", "daemon"])
def test_podman_joins_a_test_made_namespace_and_gets_the_rules(e2e, lab, net_rootfs, tmp_path, path):
    require_tool("podman")
    profile = lab_profile(lab, tmp_path / "lab.yaml")
    conf = operator_config(tmp_path, allowed_profiles=[profile])
    sock, proc = start_daemon(tmp_path) if path == "daemon" else ("off", None)
    try:
        runtime = runtime_wrapper(tmp_path, conf["path"], daemon_socket=sock)
        ctr = lab.netns()
        lab.connect(ctr)
        res = subprocess.run(["podman", "--runtime", runtime, "run", "--rm", "--network", f"ns:{ctr}",
                              "--annotation", f"{ANNOTATION}={profile}", "--user", "1000:1000", *PODMAN_ULIMITS,
                              "--rootfs", net_rootfs, "sh", "-c", probe_script(lab)],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        if proc is not None:
            stop_daemon(proc)
    assert res.returncode == 0, res.stdout + res.stderr
    expect_filtered(lab, res.stdout, ctr, _recorded_ruleset(conf["audit"]))


def test_docker_rules_hold_after_its_own_network_set_up(e2e, lab, net_rootfs, tmp_path):
    require_tool("dockerd")
    require_tool("docker")
    conf = operator_config(tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    daemon = Dockerd({})
    try:
        # restricted forbids host paths but the engines' usual ones; this dockerd keeps its
        # containers' hosts and resolv.conf under its own data root
        containers = os.path.join(daemon.data_root, "containers")
        lab_profile(lab, profiles / "net-lab.yaml", extra=f"filesystem:\n  allowed_host_paths: [{containers}]\n")
        config = tmp_path / "sandbox-config-net.yaml"
        with open(conf["path"]) as f:
            config.write_text(f.read().replace("default_profile: baseline", "default_profile: net-lab")
                              + f"profile_dirs: [{profiles}]\n")
        os.chmod(config, 0o644)
        daemon.runtimes["sandbox-net"] = logging_runtime(str(tmp_path / "rt"), str(config), shim_path(),
                                                         str(tmp_path / "argv.log"))
        daemon.start()
        image = "sandbox-net:test"
        res = daemon.docker("import", "-", image, input=rootfs_tar_bytes(net_rootfs))
        assert res.returncode == 0, res.stderr
        res = daemon.docker("run", "-d", "--runtime", "sandbox-net", "--network", "none", "--user", "1000:1000",
                            image, "sleep", "120")
        assert res.returncode == 0, res.stderr
        cid = res.stdout.strip()
        pid = daemon.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        assert pid.isdigit() and int(pid) > 0
        # the rules were loaded at create, in the namespace Docker made; now the test gives it a link
        assert netrules.has_table(NetLab.ruleset(pid))
        lab.connect(pid)
        res = daemon.docker("exec", cid, "sh", "-c", probe_script(lab), timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        expect_filtered(lab, res.stdout, pid, _recorded_ruleset(conf["audit"], cid))
    finally:
        daemon.stop()


def test_containerd_ctr_joins_a_test_made_namespace_and_gets_the_rules(e2e, lab, net_rootfs, tmp_path):
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        require_tool(tool)
    profile = lab_profile(lab, tmp_path / "lab.yaml")
    conf = operator_config(tmp_path)
    with open(conf["path"]) as f:
        text = f.read().replace("default_profile: baseline", f"default_profile: {json.dumps(profile)}")
    with open(conf["path"], "w") as f:
        f.write(text)
    runtime = logging_runtime(str(tmp_path / "rt"), conf["path"], shim_path(), str(tmp_path / "argv.log"))
    daemon = Containerd()
    try:
        daemon.start()
        image = "docker.io/library/sandbox-net:app"
        tar = oci_image_tar(net_rootfs, str(tmp_path / "image.tar"), {image: {"User": "1000:1000"}})
        assert daemon.ctr("images", "import", tar).returncode == 0
        ctr = lab.netns()
        lab.connect(ctr)
        cid = f"sbx-net-{uuid.uuid4().hex[:8]}"
        res = daemon.ctr("run", "--rm", "--runc-binary", runtime, "--runc-root", daemon.runc_root,
                         "--fifo-dir", daemon.fifo_dir, "--cgroup", f"{daemon.cgroup_parent}/{cid}",
                         "--with-ns", f"network:{ctr}", image, cid, "sh", "-c", probe_script(lab), timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        expect_filtered(lab, res.stdout, ctr, _recorded_ruleset(conf["audit"], cid))
    finally:
        daemon.stop()


def test_kubernetes_pod_gets_the_rules_once_through_its_sandbox_container(e2e, lab, net_rootfs, demo_rootfs,
                                                                          tmp_path):
    """A pod through the CRI (as the kubelet drives containerd): the pause container loads the pod's
    rules into the pod's namespace; the application container joins it and gets none of its own."""
    missing = tools_missing()
    if missing:
        require_tool(missing[0])
    (tmp_path / "cri").mkdir()
    engine = CriEngine(tmp_path / "cri", demo_rootfs).start()
    try:
        # restricted forbids host paths but the engines' usual ones; this containerd keeps the
        # pods' hosts, hostname and resolv.conf under its own root and state
        allowed = [os.path.join(d, "sandboxes") for d in (engine.daemon.cri_root(), engine.daemon.cri_state())]
        profile = lab_profile(lab, tmp_path / "lab.yaml", extra=f"filesystem:\n  allowed_host_paths: {json.dumps(allowed)}\n")
        engine.write_config(allowed_profiles=[profile])
        image = "sandbox.test/net:app"
        tar = oci_image_tar(net_rootfs, str(tmp_path / "net.tar"), {image: {"User": "1000:1000"}})
        assert engine.daemon.ctr("images", "import", tar).returncode == 0
        with engine.pod("net-pod", profile=profile) as pod:
            cid = pod.container("app", ["sleep", "600"], image=image)
            state = subprocess.run(["runc", "--root", engine.daemon.runc_root_of(HANDLER), "state", pod.id],
                                   capture_output=True, text=True, timeout=30)
            pid = str(json.loads(state.stdout)["pid"])
            lab.connect(pid)
            code, out, err = engine.client.exec_sync(cid, ["sh", "-c", probe_script(lab)], timeout=60)
            assert code == 0, out + err
            expect_filtered(lab, out, pid, _recorded_ruleset(engine.audit, pod.id))
            # the pause container carries the hook and the rules; the application container neither
            assert engine.oci_config(pod.id)["hooks"]["createRuntime"][-1]["args"][0] == "sandbox-nethook"
            app = engine.oci_config(cid)
            assert not (app.get("hooks") or {}).get("createRuntime")
            assert netrules.ANNOTATION not in app["annotations"]
            keep = [r["decision"] for r in engine.records(cid) if r["event"] == "decision"
                    and r["decision"]["control"] == "network"]
            assert [d["action"] for d in keep] == ["keep"] and "pod's network namespace" in keep[0]["reason"]
    finally:
        engine.stop()
