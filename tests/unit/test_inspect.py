"""sandbox.host.inspect over fake /proc and cgroup trees built under tmp_path (formats copied from real machines)."""

import builtins
import os

import pytest

from sandbox.core.tables import CAPABILITIES
from sandbox.errors import InspectError
from sandbox.host.inspect import (
    V1_UNLIMITED_MIN,
    absent_paths,
    cap_names,
    host_namespaces,
    parse_cgroup_file,
    parse_mountinfo,
    read_cap_last_cap,
    read_cgroup_limits,
    read_namespaces,
    read_process,
)

PID = 4242

# A runc container's /proc/PID/status (kernel 6.x), trimmed of the memory lines.
STATUS = """\
Name:\tsleep
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
Ngid:\t0
Pid:\t4242
PPid:\t0
TracerPid:\t0
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
FDSize:\t64
Groups:\t
NStgid:\t4242\t1
NSpid:\t4242\t1
NSpgid:\t4242\t1
NSsid:\t4242\t1
Kthread:\t0
Threads:\t1
SigQ:\t0/96163
SigPnd:\t0000000000000000
ShdPnd:\t0000000000000000
SigBlk:\t0000000000000000
SigIgn:\t0000000000000000
SigCgt:\t0000000000000000
CapInh:\t0000000000000000
CapPrm:\t0000000020000420
CapEff:\t0000000020000420
CapBnd:\t00000000a80425fb
CapAmb:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
Speculation_Store_Bypass:\tthread vulnerable
Cpus_allowed_list:\t0-7
voluntary_ctxt_switches:\t2
nonvoluntary_ctxt_switches:\t1
"""

# /proc/PID/mountinfo of a runc container on a cgroup v1 host (runc 1.1.5, `runc spec` + readonly root).
MOUNTINFO = """\
65 43 254:0 /tmp/insp.ujbl/b/rootfs / ro,relatime - ext4 /dev/vda rw,discard,resv_strict
66 65 0:40 / /proc rw,relatime - proc proc rw
67 65 0:41 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
68 67 0:42 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
69 67 0:43 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
70 67 0:39 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
71 65 0:44 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
72 71 0:45 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
76 72 0:32 /process_api/be72/t1 /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
44 66 0:40 /bus /proc/bus ro,relatime - proc proc rw
47 66 0:40 /sys /proc/sys ro,relatime - proc proc rw
48 66 0:46 / /proc/acpi ro,relatime - tmpfs tmpfs ro
49 66 0:41 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
51 71 0:47 / /sys/firmware ro,relatime - tmpfs tmpfs ro
"""

CGROUP_V1 = """\
9:name=systemd:/t1
8:pids:/t1
7:blkio:/t1
6:freezer:/t1
5:devices:/t1
4:memory:/process_api/be72/t1
3:cpuset:/t1
2:cpu,cpuacct:/t1
0::/t1
"""


def make_proc(root, pid=PID, *, status=STATUS, uid_map="         0     100000      65536\n",
              gid_map="         0     100000      65536\n", mountinfo=MOUNTINFO, cgroup=CGROUP_V1, ns=None):
    d = root / "proc" / str(pid)
    (d / "ns").mkdir(parents=True)
    (d / "status").write_text(status)
    if uid_map is not None:
        (d / "uid_map").write_text(uid_map)
    if gid_map is not None:
        (d / "gid_map").write_text(gid_map)
    (d / "mountinfo").write_text(mountinfo)
    (d / "cgroup").write_text(cgroup)
    ns = ns if ns is not None else {"cgroup": 4026531835, "ipc": 4026532179, "mnt": 4026532177, "net": 4026532181,
                                    "pid": 4026532180, "time": 4026531834, "user": 4026532176, "uts": 4026532178}
    for name, ino in ns.items():
        os.symlink(f"{name}:[{ino}]", d / "ns" / name)
    return str(root / "proc")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- capabilities --------------------------------------------------------------------------------------------

def test_cap_names_follow_the_kernel_numbering():
    assert cap_names(0) == ()
    assert cap_names(0x20000420) == ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert cap_names(1 << 0) == ("CAP_CHOWN",)
    assert cap_names(1 << 40) == ("CAP_CHECKPOINT_RESTORE",)
    assert cap_names(1 << 21) == ("CAP_SYS_ADMIN",)
    assert set(cap_names(0x000001FFFFFFFFFF)) == set(CAPABILITIES) and len(CAPABILITIES) == 41


def test_unknown_capability_bits_are_named_by_number():
    assert cap_names((1 << 41) | (1 << 63) | 1) == ("CAP_41", "CAP_63", "CAP_CHOWN")


# -- read_process ----------------------------------------------------------------------------------------------

def test_read_process_parses_a_fake_proc_tree(tmp_path):
    proc = make_proc(tmp_path)
    st = read_process(PID, proc=proc)
    assert st.pid == PID
    assert st.cap_eff == st.cap_prm == ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert st.cap_inh == () and st.cap_amb == ()
    # 0xa80425fb: Docker's default set
    assert st.cap_bnd == ("CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
                          "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
                          "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT")
    assert st.no_new_privs is True and st.seccomp_mode == 2 and st.seccomp_filters == 1
    assert st.uid_map == ((0, 100000, 65536),) and st.gid_map == ((0, 100000, 65536),)
    assert st.namespaces["net"] == 4026532181 and st.namespaces["user"] == 4026532176
    assert set(st.namespaces) == {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}
    assert st.uids == (0, 0, 0, 0)
    root = st.mount_at("/")
    assert root.options == ("ro", "relatime") and root.fs_type == "ext4" and root.source == "/dev/vda"
    assert root.super_options == ("rw", "discard", "resv_strict")
    keys = st.mount_at("/proc/keys")
    assert keys.root == "/null" and keys.fs_type == "tmpfs"
    assert st.mount_at("/proc/kcore") is None
    assert st.cgroups[5].controllers == ("memory",) and st.cgroups[5].path == "/process_api/be72/t1"
    assert st.cgroups[-1].hierarchy_id == 0 and st.cgroups[-1].controllers == ()


def test_multi_line_id_maps_and_missing_maps(tmp_path):
    proc = make_proc(tmp_path, uid_map="         0       1000          1\n         1     100000      65536\n",
                     gid_map=None)
    st = read_process(PID, proc=proc)
    assert st.uid_map == ((0, 1000, 1), (1, 100000, 65536))
    assert st.gid_map == ()


def test_older_kernels_without_newer_status_fields(tmp_path):
    status = "\n".join(line for line in STATUS.splitlines()
                       if not line.startswith(("Seccomp_filters", "NoNewPrivs", "CapAmb")))
    st = read_process(PID, proc=make_proc(tmp_path, status=status, ns={"net": 1, "mnt": 2}))
    assert st.seccomp_filters is None and st.no_new_privs is None and st.cap_amb == ()
    assert st.seccomp_mode == 2
    assert st.namespaces == {"net": 1, "mnt": 2}  # kinds the kernel lacks are left out


def test_missing_pid_raises_inspect_error(tmp_path):
    proc = make_proc(tmp_path)
    with pytest.raises(InspectError, match=r"process 999 does not exist"):
        read_process(999, proc=proc)
    with pytest.raises(InspectError, match="does not exist"):
        read_cgroup_limits(999, proc=proc, cgroup_root=str(tmp_path / "cg"))


@pytest.mark.parametrize("bad", [0, -1, True, "12"])
def test_bad_pid_values_are_refused(bad):
    with pytest.raises(InspectError, match="not a process id"):
        read_process(bad)


def test_zombie_is_reported_as_exited(tmp_path):
    proc = make_proc(tmp_path, status=STATUS.replace("S (sleeping)", "Z (zombie)"))
    with pytest.raises(InspectError, match="has exited"):
        read_process(PID, proc=proc)


def test_unreadable_files_raise_inspect_error(tmp_path):
    proc = make_proc(tmp_path)
    status = tmp_path / "proc" / str(PID) / "status"
    status.unlink()
    status.mkdir()  # reading a directory fails even as root
    with pytest.raises(InspectError, match=r"cannot read .*status"):
        read_process(PID, proc=proc)


def test_permission_denied_says_to_run_as_root(tmp_path, monkeypatch):
    proc = make_proc(tmp_path)
    real_open = builtins.open

    def deny(path, *a, **kw):
        if str(path).endswith("/mountinfo"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(InspectError, match="permission denied") as ei:
        read_process(PID, proc=proc)
    assert "root" in str(ei.value)


def test_vanished_file_mid_read_says_the_process_exited(tmp_path):
    proc = make_proc(tmp_path)
    (tmp_path / "proc" / str(PID) / "mountinfo").unlink()
    with pytest.raises(InspectError, match="exited while being inspected"):
        read_process(PID, proc=proc)


def test_garbage_status_masks_are_an_inspect_error(tmp_path):
    proc = make_proc(tmp_path, status=STATUS.replace("CapEff:\t0000000020000420", "CapEff:\tzz"))
    with pytest.raises(InspectError, match="CapEff"):
        read_process(PID, proc=proc)


# -- mountinfo / cgroup parsing --------------------------------------------------------------------------------

def test_mountinfo_optional_fields_and_escapes():
    text = ("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n"
            "37 36 0:5 / /a\\011b\\134c rw - tmpfs  rw\n")
    a, b = parse_mountinfo(text)
    assert a.mount_point == "/mnt two" and a.root == "/mnt1" and a.options == ("rw", "noatime")
    assert a.fs_type == "ext3" and a.source == "/dev/root" and a.super_options == ("rw", "errors=continue")
    assert (a.mount_id, a.parent_id) == (36, 35)
    assert b.mount_point == "/a\tb\\c" and b.source == "" and b.super_options == ("rw",)


def test_bad_mountinfo_line_is_rejected():
    with pytest.raises(ValueError):
        parse_mountinfo("garbage line\n")


def test_parse_cgroup_file_v1_named_and_v2():
    entries = parse_cgroup_file("12:name=systemd:/x\n2:cpu,cpuacct:/a/b\n0::/c\n")
    assert entries[0].controllers == ("name=systemd",)
    assert entries[1].controllers == ("cpu", "cpuacct") and entries[1].path == "/a/b"
    assert entries[2].hierarchy_id == 0 and entries[2].controllers == () and entries[2].path == "/c"


# -- namespaces and paths --------------------------------------------------------------------------------------

def test_host_namespaces_come_from_self(tmp_path):
    (tmp_path / "proc" / "self" / "ns").mkdir(parents=True)
    os.symlink("net:[4026531840]", tmp_path / "proc" / "self" / "ns" / "net")
    assert host_namespaces(proc=str(tmp_path / "proc")) == {"net": 4026531840}


def test_namespace_link_in_an_unexpected_form_is_an_error(tmp_path):
    proc = make_proc(tmp_path, ns={"net": 1})
    link = tmp_path / "proc" / str(PID) / "ns" / "net"
    link.unlink()
    os.symlink("something-else", link)
    with pytest.raises(InspectError, match="unexpected namespace link"):
        read_namespaces(PID, proc=proc)


def test_absent_paths_are_looked_up_in_the_container_root(tmp_path):
    proc = make_proc(tmp_path)
    root = tmp_path / "proc" / str(PID) / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "keys").write_text("")
    (root / "sys").mkdir()
    os.symlink("/nonexistent", root / "proc" / "dangling")  # exists as a link: runc would find it
    got = absent_paths(PID, ["/proc/keys", "/proc/kcore", "/sys/firmware", "/proc/dangling", "/proc/keys/x"],
                       proc=proc)
    assert got == {"/proc/kcore", "/sys/firmware", "/proc/keys/x"}


def test_cap_last_cap(tmp_path):
    write(tmp_path / "sys" / "kernel" / "cap_last_cap", "40\n")
    assert read_cap_last_cap(proc=str(tmp_path)) == 40
    assert read_cap_last_cap(proc=str(tmp_path / "none")) is None


def test_this_process_reads_consistently_from_the_real_proc():
    st = read_process(os.getpid())
    assert st.namespaces == host_namespaces()
    assert st.mount_at("/") is not None
    assert st.cgroups


# -- cgroup limits ---------------------------------------------------------------------------------------------

def v1_tree(cg, *, mem="67108864\n", pids="64\n", quota="50000\n", period="100000\n"):
    write(cg / "memory" / "process_api" / "be72" / "t1" / "memory.limit_in_bytes", mem)
    write(cg / "pids" / "t1" / "pids.max", pids)
    write(cg / "cpu,cpuacct" / "t1" / "cpu.cfs_quota_us", quota)
    write(cg / "cpu,cpuacct" / "t1" / "cpu.cfs_period_us", period)
    (cg / "unified" / "t1").mkdir(parents=True)
    write(cg / "unified" / "t1" / "memory.pressure", "some avg10=0.00\n")


def test_v1_limits(tmp_path):
    proc, cg = make_proc(tmp_path), tmp_path / "cg"
    v1_tree(cg)
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.version == "v1"
    assert (lim.memory_limit, lim.pids_max, lim.cpu_quota, lim.cpu_period) == (67108864, 64, 50000, 100000)
    assert lim.versions == {"memory": "v1", "pids": "v1", "cpu": "v1"}
    assert lim.paths["memory"] == str(cg / "memory" / "process_api" / "be72" / "t1")
    assert lim.paths["cpu"] == str(cg / "cpu,cpuacct" / "t1")
    assert lim.unavailable == {}


@pytest.mark.parametrize("mem", ["9223372036854771712", "9223372036854710272", str(V1_UNLIMITED_MIN)])
def test_v1_unlimited_values(tmp_path, mem):
    proc, cg = make_proc(tmp_path), tmp_path / "cg"
    v1_tree(cg, mem=mem + "\n", pids="max\n", quota="-1\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.memory_limit is None and lim.pids_max is None and lim.cpu_quota is None
    assert lim.cpu_period == 100000


def test_v1_separate_cpu_hierarchy_as_on_this_kind_of_host(tmp_path):
    cgroup = CGROUP_V1.replace("2:cpu,cpuacct:/t1", "2:cpuacct:/t1\n1:cpu:/t1")
    proc, cg = make_proc(tmp_path, cgroup=cgroup), tmp_path / "cg"
    v1_tree(cg)
    os.rename(cg / "cpu,cpuacct", cg / "cpu")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.cpu_quota == 50000 and lim.paths["cpu"] == str(cg / "cpu" / "t1")


def test_v2_limits(tmp_path):
    proc, cg = make_proc(tmp_path, cgroup="0::/system.slice/c1\n"), tmp_path / "cg"
    write(cg / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    d = cg / "system.slice" / "c1"
    write(d / "memory.max", "67108864\n")
    write(d / "pids.max", "64\n")
    write(d / "cpu.max", "50000 100000\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.version == "v2" and lim.versions == {"memory": "v2", "pids": "v2", "cpu": "v2"}
    assert (lim.memory_limit, lim.pids_max, lim.cpu_quota, lim.cpu_period) == (67108864, 64, 50000, 100000)
    write(d / "memory.max", "max\n")
    write(d / "pids.max", "max\n")
    write(d / "cpu.max", "max 100000\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert (lim.memory_limit, lim.pids_max, lim.cpu_quota, lim.cpu_period) == (None, None, None, 100000)


def test_v2_controller_not_enabled_is_unavailable_not_unlimited(tmp_path):
    proc, cg = make_proc(tmp_path, cgroup="0::/c1\n"), tmp_path / "cg"
    write(cg / "cgroup.controllers", "memory pids\n")
    write(cg / "c1" / "memory.max", "max\n")
    write(cg / "c1" / "cpu.stat", "usage_usec 0\n")  # present without the cpu controller
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.memory_limit is None and "memory" not in lim.unavailable
    assert set(lim.unavailable) == {"pids", "cpu"}
    assert "not enabled" in lim.unavailable["cpu"]


def test_v2_root_cgroup_is_unlimited(tmp_path):
    proc, cg = make_proc(tmp_path, cgroup="0::/\n"), tmp_path / "cg"
    write(cg / "cgroup.controllers", "cpu memory pids\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.unavailable == {} and lim.memory_limit is None and lim.pids_max is None


def test_hybrid_prefers_v1_and_uses_unified_only_for_what_it_has(tmp_path):
    cgroup = "4:memory:/t1\n2:cpu,cpuacct:/t1\n1:name=systemd:/t1\n0::/t1\n"
    proc, cg = make_proc(tmp_path, cgroup=cgroup), tmp_path / "cg"
    write(cg / "memory" / "t1" / "memory.limit_in_bytes", "1048576\n")
    write(cg / "cpu,cpuacct" / "t1" / "cpu.cfs_quota_us", "-1\n")
    write(cg / "cpu,cpuacct" / "t1" / "cpu.cfs_period_us", "100000\n")
    write(cg / "unified" / "t1" / "memory.max", "999\n")  # must not be used: memory is bound to v1
    write(cg / "unified" / "t1" / "pids.max", "32\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.versions == {"memory": "v1", "cpu": "v1", "pids": "v2"}
    assert lim.memory_limit == 1048576 and lim.pids_max == 32 and lim.cpu_quota is None
    assert lim.version == "v1"


def test_v1_hierarchy_not_mounted_is_unavailable(tmp_path):
    proc, cg = make_proc(tmp_path), tmp_path / "cg"
    cg.mkdir()
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert set(lim.unavailable) == {"memory", "pids", "cpu"}
    assert "not mounted" in lim.unavailable["memory"]


def test_v1_root_cgroup_without_pids_max_is_unlimited(tmp_path):
    proc, cg = make_proc(tmp_path, cgroup="8:pids:/\n0::/\n"), tmp_path / "cg"
    (cg / "pids").mkdir(parents=True)
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert lim.pids_max is None and "pids" not in lim.unavailable


def test_mountinfo_locates_hierarchies_mounted_elsewhere_with_a_mount_root(tmp_path):
    # e.g. inside a container whose cgroup mounts show only its own subtree
    cgroup = "4:memory:/docker/abc/inner\n0::/docker/abc/inner\n"
    proc, elsewhere = make_proc(tmp_path, cgroup=cgroup), tmp_path / "mnt" / "cgmem"
    write(elsewhere / "inner" / "memory.limit_in_bytes", "2097152\n")
    write(tmp_path / "proc" / "self" / "mountinfo",
          MOUNTINFO + f"90 72 0:32 /docker/abc {elsewhere} rw,relatime - cgroup cgroup rw,memory\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(tmp_path / "nothing-here"))
    assert lim.memory_limit == 2097152 and lim.paths["memory"] == str(elsewhere / "inner")


def test_cgroup_outside_the_readers_namespace_is_unavailable(tmp_path):
    proc, cg = make_proc(tmp_path, cgroup="0::/../../other\n"), tmp_path / "cg"
    write(cg / "cgroup.controllers", "memory pids cpu\n")
    lim = read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
    assert set(lim.unavailable) == {"memory", "pids", "cpu"}


def test_garbage_in_a_limit_file_is_an_inspect_error(tmp_path):
    proc, cg = make_proc(tmp_path, cgroup="0::/c1\n"), tmp_path / "cg"
    write(cg / "cgroup.controllers", "memory\n")
    write(cg / "c1" / "memory.max", "lots\n")
    with pytest.raises(InspectError, match="not a number"):
        read_cgroup_limits(PID, proc=proc, cgroup_root=str(cg))
