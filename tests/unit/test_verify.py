"""sandbox.core.verify: expected controls from config.json, compared with a kernel state given as data."""

import copy
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.core.verify import (
    CgroupLimits,
    Check,
    Expected,
    MountEntry,
    ProcState,
    compare,
    expected_from_config,
    format_text,
    summary,
    to_json,
    top_mount,
)

CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
HOST = {"cgroup": 10, "ipc": 11, "mnt": 12, "net": 13, "pid": 14, "time": 15, "user": 16, "uts": 17}
CONTAINER_NS = {"cgroup": 20, "ipc": 21, "mnt": 22, "net": 23, "pid": 24, "time": 15, "user": 26, "uts": 27}

CONFIG = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "args": ["sleep", "30"],
        "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS, "inheritable": [],
                         "ambient": []},
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")],
        "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []},
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/bus"],
        "resources": {"memory": {"limit": 67108864}, "pids": {"limit": 64},
                      "cpu": {"quota": 50000, "period": 100000}},
    },
}


def m(point, opts="rw", fs="tmpfs", root="/", mid=0, parent=0):
    return MountEntry(mount_point=point, options=tuple(opts.split(",")), fs_type=fs, source=fs,
                      super_options=("rw",), root=root, mount_id=mid, parent_id=parent)


MOUNTS = (
    m("/", "ro,relatime", "ext4", "/tmp/b/rootfs", 65, 43),
    m("/proc", "rw,relatime", "proc", mid=66, parent=65),
    m("/proc/kcore", "rw,nosuid", "tmpfs", "/null", 49, 66),
    m("/proc/keys", "rw,nosuid", "devtmpfs", "/null", 50, 66),
    m("/sys/firmware", "ro,relatime", "tmpfs", mid=51, parent=71),
    m("/proc/sys", "ro,relatime", "proc", "/sys", 47, 66),
    m("/proc/bus", "ro,relatime", "proc", "/bus", 44, 66),
)

STATE = ProcState(
    pid=4242, cap_inh=(), cap_prm=tuple(CAPS), cap_eff=tuple(CAPS), cap_bnd=tuple(CAPS), cap_amb=(),
    no_new_privs=True, seccomp_mode=2, seccomp_filters=1,
    uid_map=((0, 100000, 65536),), gid_map=((0, 100000, 65536),),
    namespaces=CONTAINER_NS, mounts=MOUNTS,
)
LIMITS = CgroupLimits(version="v2", memory_limit=67108864, pids_max=64, cpu_quota=50000, cpu_period=100000,
                      versions={"memory": "v2", "pids": "v2", "cpu": "v2"}, paths={"memory": "/sys/fs/cgroup/c1"})


def run(config=CONFIG, state=STATE, limits=LIMITS, host=HOST, **kw):
    return {c.control: c for c in compare(expected_from_config(config), state, limits, host, **kw)}


def cfg(mutate):
    c = copy.deepcopy(CONFIG)
    mutate(c)
    return c


# -- expected_from_config ----------------------------------------------------------------------------------------

def test_expected_from_config_reads_every_control():
    e = expected_from_config(CONFIG)
    assert e.capabilities["bounding"] == tuple(CAPS) and e.capabilities["inheritable"] == ()
    assert e.no_new_privileges and e.seccomp and e.readonly_root
    assert e.uid_mappings == ((0, 100000, 65536),) and e.gid_mappings == ((0, 100000, 65536),)
    assert e.namespaces == {t: None for t in ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")}
    assert e.new_user_namespace
    assert e.masked_paths == ("/proc/kcore", "/proc/keys", "/sys/firmware")
    assert e.readonly_paths == ("/proc/sys", "/proc/bus")
    assert (e.memory_limit, e.pids_limit, e.cpu_quota, e.cpu_period) == (67108864, 64, 50000, 100000)


def test_runc_semantics_for_missing_and_non_positive_fields():
    e = expected_from_config({"process": {}, "linux": {"resources": {"memory": {"limit": -1}, "pids": {"limit": 0},
                                                                     "cpu": {"quota": -1, "period": 100000}}}})
    assert all(v == () for v in e.capabilities.values())  # runc drops every capability
    assert not e.no_new_privileges and not e.seccomp and not e.readonly_root
    assert (e.memory_limit, e.pids_limit, e.cpu_quota, e.cpu_period) == (None, None, None, None)
    assert e.namespaces == {} and not e.new_user_namespace


def test_unknown_capability_names_are_set_aside():
    e = expected_from_config({"process": {"capabilities": {"bounding": ["CAP_KILL", "CAP_BOGUS", "kill"]}}})
    assert e.capabilities["bounding"] == ("CAP_KILL",)
    assert e.unknown_capabilities == ("CAP_BOGUS", "kill")


def test_namespace_paths_and_masked_path_normalisation():
    e = expected_from_config({"linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/x"},
                                                       {"type": "user", "path": ""}],
                                        "maskedPaths": ["/proc/kcore/", "/proc//keys", "relative", 5]}})
    assert e.namespaces == {"network": "/var/run/netns/x", "user": None}
    assert e.masked_paths == ("/proc/kcore", "/proc/keys")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                     max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "process": st.dictionaries(st.sampled_from(["capabilities", "noNewPrivileges", "args"]), json_values),
    "linux": st.dictionaries(st.sampled_from(["namespaces", "uidMappings", "resources", "maskedPaths", "seccomp"]),
                             json_values),
    "root": json_values}))
def test_malformed_configs_never_crash(config):
    e = expected_from_config(config)
    checks = compare(e, STATE, LIMITS, HOST)
    assert all(c.status in ("PASS", "FAIL", "SKIP") for c in checks)


# -- compare: everything holds -------------------------------------------------------------------------------------

def test_all_controls_pass_when_the_kernel_matches():
    checks = run()
    assert [c.control for c in checks.values() if c.status != "PASS"] == [], format_text(checks.values())
    assert {"capabilities.bounding", "capabilities.ambient", "no_new_privileges", "seccomp", "user.uid_map",
            "user.gid_map", "namespaces.pid", "namespaces.time", "filesystem.readonly_root",
            "filesystem.masked:/proc/kcore", "filesystem.readonly:/proc/sys", "resources.memory",
            "resources.pids", "resources.cpu"} <= set(checks)
    assert len([c for c in checks if c.startswith("namespaces.")]) == 8
    assert checks["namespaces.time"].detail.startswith("the host's time namespace")


def test_order_is_stable_and_one_check_per_control():
    a = compare(expected_from_config(CONFIG), STATE, LIMITS, HOST)
    assert len({c.control for c in a}) == len(a)
    assert a == compare(expected_from_config(CONFIG), STATE, LIMITS, HOST)


# -- compare: each control fails when it does not hold -------------------------------------------------------------

FAILURES = [
    ("capabilities.bounding", dict(state=replace(STATE, cap_bnd=(*CAPS, "CAP_SYS_ADMIN"))), "extra: CAP_SYS_ADMIN"),
    ("capabilities.effective", dict(state=replace(STATE, cap_eff=("CAP_KILL",))), "missing"),
    ("capabilities.permitted", dict(state=replace(STATE, cap_prm=())), "missing"),
    ("capabilities.inheritable", dict(state=replace(STATE, cap_inh=("CAP_KILL",))), "extra"),
    ("capabilities.ambient", dict(state=replace(STATE, cap_amb=("CAP_KILL",))), "extra"),
    ("no_new_privileges", dict(state=replace(STATE, no_new_privs=False)), "NoNewPrivs is 0"),
    ("seccomp", dict(state=replace(STATE, seccomp_mode=0, seccomp_filters=0)), "no filter"),
    ("seccomp", dict(state=replace(STATE, seccomp_mode=1)), "Seccomp is 1"),
    ("seccomp", dict(state=replace(STATE, seccomp_filters=0)), "no filters"),
    ("seccomp", dict(state=replace(STATE, seccomp_mode=None, seccomp_filters=None)), "no seccomp"),
    ("user.uid_map", dict(state=replace(STATE, uid_map=((0, 0, 4294967295),))), "differ"),
    ("user.gid_map", dict(state=replace(STATE, gid_map=())), "differ"),
    ("namespaces.user", dict(state=replace(STATE, namespaces={**CONTAINER_NS, "user": HOST["user"]})),
     "shares the host's user"),
    ("namespaces.network", dict(state=replace(STATE, namespaces={**CONTAINER_NS, "net": HOST["net"]})),
     "shares the host's network"),
    ("namespaces.time", dict(state=replace(STATE, namespaces={**CONTAINER_NS, "time": 99})),
     "does not request"),
    ("filesystem.readonly_root", dict(state=replace(STATE, mounts=(m("/", "rw,relatime", "ext4"), *MOUNTS[1:]))),
     "writable"),
    ("filesystem.masked:/proc/kcore", dict(state=replace(STATE, mounts=MOUNTS[:2] + MOUNTS[3:])), "visible"),
    ("filesystem.masked:/proc/keys",
     dict(state=replace(STATE, mounts=(*MOUNTS[:3], m("/proc/keys", "ro", "proc", "/keys"), *MOUNTS[4:]))),
     "does not mask"),
    ("filesystem.readonly:/proc/sys",
     dict(state=replace(STATE, mounts=(*MOUNTS[:5], m("/proc/sys", "rw", "proc", "/sys"), MOUNTS[6]))),
     "writable"),
    ("filesystem.readonly:/proc/bus", dict(state=replace(STATE, mounts=MOUNTS[:6])), "no read-only mount"),
    ("resources.memory", dict(limits=replace(LIMITS, memory_limit=None)), "no memory limit"),
    ("resources.memory", dict(limits=replace(LIMITS, memory_limit=134217728)), "differs"),
    ("resources.memory", dict(limits=replace(LIMITS, memory_limit=None, unavailable={"memory": "not enabled"})),
     "not enabled"),
    ("resources.pids", dict(limits=replace(LIMITS, pids_max=None)), "no pids limit"),
    ("resources.pids", dict(limits=replace(LIMITS, pids_max=4096)), "differs"),
    ("resources.pids", dict(limits=replace(LIMITS, unavailable={"pids": "gone"})), "gone"),
    ("resources.cpu", dict(limits=replace(LIMITS, cpu_quota=None)), "no CPU quota"),
    ("resources.cpu", dict(limits=replace(LIMITS, cpu_quota=100000)), "differs"),
    ("resources.cpu", dict(limits=replace(LIMITS, cpu_period=50000)), "differs"),
]


@pytest.mark.parametrize("control,kw,detail", FAILURES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(FAILURES)])
def test_each_control_fails_when_off(control, kw, detail):
    checks = run(**kw)
    assert checks[control].status == "FAIL", checks[control]
    assert detail in checks[control].detail
    others = [c.control for c in checks.values() if c.status == "FAIL" and c.control != control]
    assert others == []  # a fault shows up where it is, not elsewhere


def test_a_plain_runc_container_fails_against_a_hardened_expectation():
    plain = replace(STATE, seccomp_mode=0, seccomp_filters=0, uid_map=((0, 0, 4294967295),),
                    gid_map=((0, 0, 4294967295),), namespaces={**CONTAINER_NS, "user": 16, "cgroup": 10})
    checks = run(state=plain, limits=CgroupLimits(version="v1"))
    failing = {c.control for c in checks.values() if c.status == "FAIL"}
    assert failing == {"seccomp", "user.uid_map", "user.gid_map", "namespaces.user", "namespaces.cgroup",
                       "resources.memory", "resources.pids", "resources.cpu"}


# -- compare: what is skipped and what is tolerated --------------------------------------------------------------

def test_controls_not_asked_for_are_skipped_not_failed():
    config = cfg(lambda c: (c["process"].pop("noNewPrivileges"), c["linux"].pop("seccomp"),
                            c["linux"].pop("resources"), c["linux"].pop("uidMappings"),
                            c["root"].pop("readonly")))
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "user"]
    state = replace(STATE, no_new_privs=False, seccomp_mode=0, namespaces={**CONTAINER_NS, "user": HOST["user"]},
                    mounts=(m("/", "rw", "ext4"), *MOUNTS[1:]))
    checks = run(config, state=state, limits=CgroupLimits(version="v1"))
    for control in ("no_new_privileges", "seccomp", "user.uid_map", "user.gid_map", "filesystem.readonly_root",
                    "resources.memory", "resources.pids", "resources.cpu"):
        assert checks[control].status == "SKIP", checks[control]
    assert checks["namespaces.user"].status == "PASS"
    assert not [c for c in checks.values() if c.status == "FAIL"]


def test_absent_masked_and_readonly_paths_are_skipped():
    state = replace(STATE, mounts=(MOUNTS[0], MOUNTS[1], MOUNTS[3], MOUNTS[4], MOUNTS[5]))
    checks = run(state=state, absent_paths={"/proc/kcore", "/proc/bus/"})
    assert checks["filesystem.masked:/proc/kcore"].status == "SKIP"
    assert checks["filesystem.readonly:/proc/bus"].status == "SKIP"
    assert "runc skips" in checks["filesystem.masked:/proc/kcore"].detail


def test_a_present_mask_passes_even_if_the_caller_thinks_the_path_absent():
    assert run(absent_paths={"/proc/kcore"})["filesystem.masked:/proc/kcore"].status == "PASS"


def test_stacked_mounts_use_the_topmost():
    # runc bind-mounts a read-only path, then masks over it: the mask is what is visible
    rw = m("/proc/kcore", "ro", "proc", "/kcore", 60, 66)
    mask = m("/proc/kcore", "rw", "tmpfs", "/null", 61, 60)
    assert top_mount([mask, rw], "/proc/kcore") is mask
    assert top_mount([rw, mask], "/proc/kcore/") is mask
    assert top_mount([rw], "/proc/keys") is None


def test_memory_limit_rounded_down_to_a_page_passes():
    config = cfg(lambda c: c["linux"]["resources"]["memory"].__setitem__("limit", 100_000_000))
    checks = run(config, limits=replace(LIMITS, memory_limit=99_999_744))
    assert checks["resources.memory"].status == "PASS" and "rounded" in checks["resources.memory"].detail


def test_cpu_period_not_configured_is_not_compared():
    config = cfg(lambda c: c["linux"]["resources"]["cpu"].pop("period"))
    assert run(config, limits=replace(LIMITS, cpu_period=250000))["resources.cpu"].status == "PASS"


def test_ambient_capabilities_the_kernel_cannot_hold_are_not_expected():
    # runc spec asks for ambient caps with an empty inheritable set: the kernel keeps none
    config = cfg(lambda c: c["process"]["capabilities"].__setitem__("ambient", CAPS))
    check = run(config)["capabilities.ambient"]
    assert check.status == "PASS" and "not raisable" in check.detail
    config["process"]["capabilities"]["inheritable"] = ["CAP_KILL"]
    state = replace(STATE, cap_inh=("CAP_KILL",))
    assert run(config, state=state)["capabilities.ambient"].status == "FAIL"
    assert run(config, state=replace(state, cap_amb=("CAP_KILL",)))["capabilities.ambient"].status == "PASS"


def test_capabilities_beyond_the_kernels_last_are_not_expected():
    caps = [*CAPS, "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
    config = cfg(lambda c: c["process"]["capabilities"].__setitem__("bounding", caps))
    assert run(config)["capabilities.bounding"].status == "FAIL"
    check = run(config, cap_last_cap=37)["capabilities.bounding"]  # a 5.4 kernel
    assert check.status == "PASS" and "unknown to this kernel" in check.detail


def test_joined_namespaces_compare_with_the_named_path():
    config = cfg(lambda c: c["linux"]["namespaces"].__setitem__(1, {"type": "network", "path": "/run/netns/x"}))
    assert run(config, namespace_paths={"/run/netns/x": 23})["namespaces.network"].status == "PASS"
    assert run(config, namespace_paths={"/run/netns/x": 13})["namespaces.network"].status == "FAIL"
    assert run(config)["namespaces.network"].status == "SKIP"


def test_joined_user_namespace_skips_the_id_maps():
    config = cfg(lambda c: c["linux"]["namespaces"].__setitem__(5, {"type": "user", "path": "/proc/1/ns/user"}))
    checks = run(config, namespace_paths={"/proc/1/ns/user": 26})
    assert checks["user.uid_map"].status == "SKIP" and "by path" in checks["user.uid_map"].detail


def test_missing_kernel_namespace_kinds_are_skipped():
    ns = {k: v for k, v in CONTAINER_NS.items() if k != "time"}
    checks = run(state=replace(STATE, namespaces=ns), host={k: v for k, v in HOST.items() if k != "time"})
    assert checks["namespaces.time"].status == "SKIP"
    assert run(host={k: v for k, v in HOST.items() if k != "user"})["namespaces.user"].status == "SKIP"


def test_old_kernel_without_filter_count_still_passes_seccomp():
    assert run(state=replace(STATE, seccomp_filters=None))["seccomp"].status == "PASS"
    assert run(state=replace(STATE, no_new_privs=None))["no_new_privileges"].status == "SKIP"


# -- output ------------------------------------------------------------------------------------------------------

def test_format_text_and_json():
    checks = [Check("seccomp", "FAIL", "mode 2, >= 1 filter", "mode 0, 0 filters", "no filter is installed"),
              Check("resources.pids", "PASS", "64", "64", "as configured")]
    assert format_text(checks) == "FAIL seccomp: no filter is installed\nPASS resources.pids: as configured"
    data = to_json(checks)
    assert data[0] == {"control": "seccomp", "status": "FAIL", "expected": "mode 2, >= 1 filter",
                       "actual": "mode 0, 0 filters", "detail": "no filter is installed"}
    json.dumps(data)
    assert summary(checks) == "1 passed, 1 failed, 0 skipped"


def test_every_check_renders_as_one_line():
    checks = list(run().values())
    assert len(format_text(checks).splitlines()) == len(checks)
    assert all(isinstance(v, str) for d in to_json(checks) for v in d.values())


def test_expected_is_a_plain_value():
    e = expected_from_config(CONFIG)
    assert isinstance(e, Expected) and e == expected_from_config(copy.deepcopy(CONFIG))
