"""`sandbox doctor` on this host, checked against evidence the tests gather themselves.

Each fact doctor reports is compared with the kernel's or the tool's own answer, read here by
other means (mountinfo instead of the cgroup directory layout, `runc --version` directly, a real
idmapped bind mount and the ownership seen through it, a Landlock ruleset actually created), so
the test holds on any host and proves doctor right on this one (hybrid cgroups, no AppArmor or
SELinux, Landlock ABI 7, runc 1.1.5 here).
"""

import ctypes
import os
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import e2e_unavailable
from tests.e2e.engines import doctor_report, shim_path, start_daemon, stop_daemon

pytestmark = pytest.mark.e2e

SANDBOX = os.path.join(os.path.dirname(sys.executable), "sandbox")
QUIET = {"SANDBOX_CONFIG": "", "SANDBOX_DAEMON_SOCKET": "off"}  # the host's defaults, no daemon


def doctor(env=None):
    return doctor_report({**QUIET, **(env or {})})


def check(report, name):
    return report["by_name"][name]


@pytest.fixture(scope="module")
def report(_e2e_state):
    _, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    return doctor()


@pytest.fixture(autouse=True)
def _root(e2e):
    return e2e


def test_the_default_profile_is_enforceable_here_and_exit_0(report):
    assert report["exit_code"] == 0 and report["profiles"]["baseline"]["enforceable"]
    assert report["summary"].startswith("sandbox doctor: baseline, restricted and strict can be enforced here")


def test_cgroup_version_and_controllers_match_the_mount_table(report):
    cg1, cg2 = {}, set()  # v1 mount point -> its controllers (super options); v2 mount points
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fstype, _, superopts = line.split(" - ")[1].split()[:3]
            if fstype == "cgroup":
                cg1[line.split()[4]] = set(superopts.split(","))
            elif fstype == "cgroup2":
                cg2.add(line.split()[4])
    want = "v2" if "/sys/fs/cgroup" in cg2 else ("hybrid" if cg1 and cg2 else "v1")
    c = check(report, "cgroups")
    assert c["data"]["version"] == want and c["found"].startswith(want)
    if want != "v2":
        with open("/proc/cgroups") as f:
            enabled = {ln.split()[0] for ln in f if not ln.startswith("#") and ln.split()[3] == "1"}
        for ctrl in ("memory", "pids", "cpu"):
            mounted = any(ctrl in opts for opts in cg1.values())
            assert (c["data"]["controllers"].get(ctrl, "").startswith("v1")) == (ctrl in enabled and mounted), ctrl


def test_runc_path_and_version_are_runcs_own(report, e2e):
    first = subprocess.run([e2e, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    c = check(report, "runc")
    assert c["data"]["path"] == e2e
    assert first == f"runc version {c['data']['version']}"
    pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "runc"], capture_output=True, text=True)
    if pkg.returncode == 0:
        assert c["data"]["package"]["version"] == pkg.stdout


def test_apparmor_and_selinux_as_the_kernel_says(report):
    try:
        apparmor = open("/sys/module/apparmor/parameters/enabled").read().strip() == "Y"
    except OSError:
        apparmor = False
    selinux = os.path.exists("/sys/fs/selinux/enforce")
    c = check(report, "LSMs")
    assert (c["data"]["apparmor"], c["data"]["selinux"]) == (apparmor, selinux)
    assert ("AppArmor enabled" if apparmor else "AppArmor not enabled") in c["found"]


LANDLOCK_ACCESS_FS_EXECUTE = 1


def test_landlock_abi_and_a_real_ruleset(report):
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    c = check(report, "Landlock")
    assert c["data"]["abi"] == (abi if abi > 0 else None)
    if abi > 0:
        attr = ctypes.c_uint64(LANDLOCK_ACCESS_FS_EXECUTE)  # struct landlock_ruleset_attr, its first field
        fd = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
        assert fd >= 0, f"Landlock ABI {abi} but no ruleset: errno {ctypes.get_errno()}"
        os.close(fd)
        assert c["status"] == "ok" and f"ABI {abi}" in c["found"]


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def test_idmapped_mounts_really_map_ownership_where_doctor_says_so(report, tmp_path):
    """Do what doctor's probe does, then attach the copy and look: a root-owned file shows as host uid
    100000 through a mount idmapped with `0 100000 65536`."""
    c = check(report, "idmapped mounts")
    libc = ctypes.CDLL(None, use_errno=True)
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    (src / "f").write_text("x")
    child = subprocess.Popen(["unshare", "--user", "sh", "-c", "read x"], stdin=subprocess.PIPE)
    try:
        for _ in range(500):
            if os.readlink(f"/proc/{child.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                break
            time.sleep(0.01)
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child.pid}/{name}", "w") as f:
                f.write("0 100000 65536\n")
        userns = os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY)
        tree = libc.syscall(428, ctypes.c_int(-100), str(src).encode(), ctypes.c_uint(1 | os.O_CLOEXEC))
        assert tree >= 0
        try:
            attr = MountAttr(0x00100000, 0, 0, userns)
            ok = libc.syscall(442, ctypes.c_int(tree), b"", ctypes.c_uint(0x1000), ctypes.byref(attr),
                              ctypes.c_size_t(32)) == 0
            # move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)
            moved = ok and libc.syscall(429, ctypes.c_int(tree), b"", ctypes.c_int(-100), str(target).encode(),
                                        ctypes.c_uint(4)) == 0
        finally:
            os.close(tree)
            os.close(userns)
    finally:
        child.communicate(b"\n", timeout=10)
    assert ok == c["data"]["supported"], c
    if ok:
        assert moved, ctypes.get_errno()
        try:
            assert os.stat(src / "f").st_uid == 0 and os.stat(target / "f").st_uid == 100000
        finally:
            subprocess.run(["umount", str(target)], check=True)
    assert not [d for d in os.listdir("/tmp") if d.startswith("sandbox-doctor-idmap-")], "probe left its directory"


def test_seccomp_and_user_namespaces_as_proc_says(report):
    avail = open("/proc/sys/kernel/seccomp/actions_avail").read().split()
    s = check(report, "seccomp")
    assert s["data"]["actions_avail"] == avail and s["data"]["user_notif"] == ("user_notif" in avail)
    u = check(report, "user namespaces")
    assert u["data"]["max_user_namespaces"] == int(open("/proc/sys/user/max_user_namespaces").read())


def test_podman_pointed_at_sandbox_runc_by_containers_conf(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text(f'[engine]\nruntime = "sandbox"\n[engine.runtimes]\nsandbox = ["{shim_path()}"]\n')
    out = doctor({"CONTAINERS_CONF": str(conf)})
    c = check(out, "engine podman")
    if c["data"]["binary"] is None:
        pytest.skip("podman is not installed")
    assert c["status"] == "ok" and c["data"]["sandbox_runtimes"] == ["sandbox"]
    assert c["data"]["default_runtime"] == "sandbox" and "every container" in c["impact"]


def test_a_running_daemon_is_found_with_its_process_facts(tmp_path):
    sock, proc = start_daemon(tmp_path)
    try:
        out = doctor({"SANDBOX_DAEMON_SOCKET": sock})
    finally:
        stop_daemon(proc)
    c = check(out, "daemon")
    assert c["data"]["running"] and int(c["data"]["pid"]) == proc.pid and c["status"] == "ok"
    assert c["data"]["rss_bytes"] > 1 << 20  # psutil's reading of that process


def test_an_unwritable_audit_directory_means_the_default_profile_cannot_be_enforced(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        conf = tmp_path / "config.yaml"
        conf.write_text(f"audit_log: {ro}/sandbox/audit.jsonl\ndefault_profile: restricted\n")
        os.chmod(conf, 0o644)
        res = subprocess.run([SANDBOX, "doctor", "--brief"], capture_output=True, text=True,
                             env={**os.environ, "SANDBOX_CONFIG": str(conf), "SANDBOX_DAEMON_SOCKET": "off"})
        out = doctor({"SANDBOX_CONFIG": str(conf)})
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert res.returncode == 1
    assert res.stdout.startswith("sandbox doctor: the default profile restricted cannot be enforced here")
    assert out["exit_code"] == 1 and check(out, "audit log")["status"] == "fail"
    assert not out["profiles"]["restricted"]["enforceable"] and not out["profiles"]["baseline"]["enforceable"]


def test_an_invalid_operator_config_fails_closed(tmp_path):
    conf = tmp_path / "config.yaml"
    conf.write_text("default_profil: strict\n")
    os.chmod(conf, 0o644)
    out = doctor({"SANDBOX_CONFIG": str(conf)})
    c = check(out, "operator config")
    assert out["exit_code"] == 1 and c["status"] == "fail" and f"{conf}:1:1" in c["found"]
    assert "refuses every container" in c["impact"]


def test_doctor_creates_nothing(tmp_path):
    """Reading only: a configured audit directory that does not exist yet is reported, not made."""
    conf = tmp_path / "config.yaml"
    conf.write_text(f"audit_log: {tmp_path}/not-yet/audit.jsonl\n")
    os.chmod(conf, 0o644)
    before = set(os.listdir("/tmp"))
    out = doctor({"SANDBOX_CONFIG": str(conf)})
    assert "created at first use" in check(out, "audit log")["found"]
    assert not (tmp_path / "not-yet").exists()
    assert {d for d in set(os.listdir("/tmp")) - before if d.startswith("sandbox-doctor")} == set()
