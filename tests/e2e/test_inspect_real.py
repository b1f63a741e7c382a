"""sandbox.host.inspect and sandbox verify against a real runc container and the real kernel.

Skips (with the reason) when not root or without runc/busybox; with SANDBOX_E2E=require it fails instead.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from sandbox.core.verify import compare, expected_from_config, format_text
from sandbox.errors import InspectError, RuncError
from sandbox.host.inspect import (
    absent_paths,
    host_namespaces,
    read_cap_last_cap,
    read_cgroup_limits,
    read_process,
)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def unavailable(reason):
    if os.environ.get("SANDBOX_E2E") == "require":
        pytest.fail(f"end-to-end test cannot run: {reason} (SANDBOX_E2E=require)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tools():
    if os.geteuid() != 0:
        unavailable("needs root (runc creates namespaces and cgroups)")
    runc = shutil.which("runc")
    if runc is None:
        unavailable("runc is not installed")
    busybox = "/bin/busybox" if os.path.exists("/bin/busybox") else shutil.which("busybox")
    if busybox is None:
        unavailable("busybox-static is not installed: apt-get install busybox-static")
    return runc, busybox


def make_bundle(runc, busybox, variant):
    # Not under tmp_path: pytest makes that 0700, and a user-namespaced init (host uid 100000)
    # must be able to reach its rootfs.
    bundle = tempfile.mkdtemp(prefix="sandbox-inspect-")
    os.chmod(bundle, 0o755)
    bindir = os.path.join(bundle, "rootfs", "bin")
    os.makedirs(bindir)
    for d in ("proc", "sys", "dev", "tmp"):  # a user-namespaced init cannot create mount points itself
        os.makedirs(os.path.join(bundle, "rootfs", d))
    shutil.copy2(busybox, os.path.join(bindir, "busybox"))
    subprocess.run([busybox, "--install", "-s", bindir], check=True, capture_output=True)
    # --install -s links to the busybox that ran it (/usr/bin/busybox): point them at the copy instead
    for name in os.listdir(bindir):
        path = os.path.join(bindir, name)
        if os.path.islink(path):
            os.unlink(path)
            os.symlink("busybox", path)
    subprocess.run([runc, "spec"], cwd=bundle, check=True, capture_output=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["args"] = ["sleep", "30"]
    config["process"]["terminal"] = False
    linux = config["linux"]
    linux["resources"] = {**linux.get("resources", {}), "memory": {"limit": 64 * MiB}, "pids": {"limit": 64},
                          "cpu": {"quota": 50000, "period": 100000}}
    kinds = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    if variant == "hardened":
        kinds.append("user")
        linux["uidMappings"] = USERNS_MAP
        linux["gidMappings"] = USERNS_MAP
        linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
        if os.uname().machine != "x86_64":
            del linux["seccomp"]["architectures"]
    linux["namespaces"] = [{"type": k} for k in kinds]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return bundle, config


@pytest.fixture(params=["default", "hardened"])
def container(request, tools, tmp_path):
    runc, busybox = tools
    bundle, config = make_bundle(runc, busybox, request.param)
    root = str(tmp_path / "runc-root")
    cid = f"inspect-{uuid.uuid4().hex[:10]}"
    # The detached container inherits runc's stdio: a pipe here would stay open for its lifetime.
    log = tmp_path / "runc.err"
    try:
        with open(log, "w") as err:
            res = subprocess.run([runc, "--root", root, "run", "-d", "-b", bundle, cid], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err, timeout=60, check=False)
        assert res.returncode == 0, f"runc run failed: {log.read_text()}"
        state = json.loads(subprocess.check_output([runc, "--root", root, "state", cid], timeout=30))
        assert state["status"] == "running"
        yield {"runc": runc, "root": root, "id": cid, "pid": state["pid"], "config": config, "bundle": bundle,
               "variant": request.param}
    finally:
        subprocess.run([runc, "--root", root, "kill", cid, "KILL"], capture_output=True, timeout=30, check=False)
        subprocess.run([runc, "--root", root, "delete", "-f", cid], capture_output=True, timeout=30, check=False)
        shutil.rmtree(bundle, ignore_errors=True)


def test_the_kernel_view_matches_the_config(container):
    cfg, pid = container["config"], container["pid"]
    st = read_process(pid)
    assert st.cap_eff == tuple(sorted(cfg["process"]["capabilities"]["effective"]))
    assert st.cap_bnd == tuple(sorted(cfg["process"]["capabilities"]["bounding"]))
    assert st.no_new_privs is True  # runc spec sets noNewPrivileges
    host = host_namespaces()
    for kind in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
        assert st.namespaces[kind] != host[kind], kind
    root = st.mount_at("/")
    assert root is not None and "ro" in root.options  # runc spec sets root.readonly
    if container["variant"] == "hardened":
        assert st.namespaces["user"] != host["user"]
        assert st.uid_map == st.gid_map == ((0, 100000, 65536),)
        assert st.seccomp_mode == 2 and (st.seccomp_filters is None or st.seccomp_filters >= 1)
    else:
        assert st.namespaces["user"] == host["user"]
        assert st.seccomp_mode == 0

    limits = read_cgroup_limits(pid)
    assert limits.memory_limit == 67108864, limits
    assert limits.pids_max == 64, limits
    assert (limits.cpu_quota, limits.cpu_period) == (50000, 100000), limits
    assert limits.version in ("v1", "v2") and limits.unavailable == {}


def test_compare_finds_every_control_holding(container):
    pid = container["pid"]
    expected = expected_from_config(container["config"])
    checks = compare(expected, read_process(pid), read_cgroup_limits(pid), host_namespaces(),
                     absent_paths=absent_paths(pid, (*expected.masked_paths, *expected.readonly_paths)),
                     cap_last_cap=read_cap_last_cap())
    by = {c.control: c for c in checks}
    assert not [c for c in checks if c.status == "FAIL"], format_text(checks)
    for control in ("capabilities.effective", "capabilities.bounding", "no_new_privileges", "namespaces.pid",
                    "namespaces.network", "namespaces.cgroup", "filesystem.readonly_root", "resources.memory",
                    "resources.pids", "resources.cpu"):
        assert by[control].status == "PASS", by[control]
    if container["variant"] == "hardened":
        for control in ("seccomp", "user.uid_map", "user.gid_map", "namespaces.user"):
            assert by[control].status == "PASS", by[control]
    # runc masks only paths that exist; whichever do exist here must be masked
    masked = [c for c in checks if c.control.startswith("filesystem.masked:")]
    assert masked and all(c.status in ("PASS", "SKIP") for c in masked)
    assert any(c.status == "PASS" for c in masked)


def test_verify_container_and_the_cli(container, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from sandbox.cli import cli
    from sandbox.cli.verify_cmd import verify_container

    audit = str(tmp_path / "audit.jsonl")
    args = ["verify", container["id"], "--root", container["root"], "--runc", container["runc"], "--audit-log", audit]
    state, checks = verify_container(container["id"], root=container["root"], runc=container["runc"],
                                     expected_config=None)
    assert state["pid"] == container["pid"] and state["bundle"] == container["bundle"]
    assert checks and not [c for c in checks if c.status == "FAIL"], format_text(checks)

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "PASS resources.memory" in res.output and "FAIL" not in res.output

    res = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["passed"] is True and doc["pid"] == container["pid"]
    assert {c["control"] for c in doc["checks"]} >= {"seccomp", "resources.pids", "namespaces.user"}

    # An expectation the container does not meet (what a profile would demand) fails with exit 1.
    import sandbox.runtime.service

    def stricter(profile_ref, config, bundle_dir=None):
        assert profile_ref == "strict"
        config = json.loads(json.dumps(config))
        config["linux"]["resources"]["pids"]["limit"] = 32
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO"}
        return config

    monkeypatch.setattr(sandbox.runtime.service, "apply_profile_to_config", stricter, raising=False)
    res = CliRunner().invoke(cli, [*args, "--profile", "strict"])
    assert res.exit_code == 1, res.output
    assert "FAIL resources.pids" in res.output
    if container["variant"] == "default":
        assert "FAIL seccomp" in res.output
    with open(audit) as f:
        records = [json.loads(line) for line in f]
    assert [r["data"]["passed"] for r in records if r["event"] == "verified"] == [True, True, False]


def test_a_gone_container_is_an_error_not_a_pass(container):
    runc, root, cid, pid = container["runc"], container["root"], container["id"], container["pid"]
    subprocess.run([runc, "--root", root, "delete", "-f", cid], check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:  # a zombie is refused too, so either answer is fine while it is being reaped
            read_process(pid)
        except InspectError:
            break
        time.sleep(0.05)
    with pytest.raises(InspectError):
        read_process(pid)
    from sandbox.cli.verify_cmd import verify_container

    with pytest.raises(RuncError, match="does not exist|failed"):
        verify_container(cid, root=root, runc=runc, expected_config=None)
