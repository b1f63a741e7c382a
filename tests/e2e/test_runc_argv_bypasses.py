"""Regression tests: every way found to get around the profile through runc's command line.

Each test is named after the class of bypass; each asserts kernel state (from /proc and the
cgroup files) or that sandbox refused, with its reason.  The containers run under `capped`, a
profile extending `restricted` (uid 1000, CAP_NET_BIND_SERVICE only, no_new_privileges) with
memory, pids and CPU maxima, without a user namespace so that the cgroup files are the host's.
"""

import json
import os
import subprocess
import uuid

import pytest

from sandbox.host.inspect import cap_names
from tests.e2e.engines import capped_runc, running_container

STATUS = 'cat /proc/$$/status; echo "CWD=$(readlink /proc/$$/cwd)"'
PATH = "PATH=/bin"
MEM_MAX, PIDS_MAX = 256 << 20, 100


@pytest.fixture(scope="module")
def box(e2e_module, demo_rootfs, tmp_path_factory):
    env = capped_runc(tmp_path_factory.mktemp("bypass"), e2e_module, demo_rootfs)
    env.cid, env.bundle_dir = running_container(env, demo_rootfs, "bypass")
    yield env
    env.delete_all()


def status(stdout):
    out = {}
    for line in stdout.splitlines():
        if line.startswith("CWD="):
            out["CWD"] = line[4:]
        elif ":\t" in line:
            k, v = line.split(":\t", 1)
            out[k] = v.strip()
    for k in ("CapBnd", "CapEff", "CapPrm", "CapAmb", "CapInh"):
        if k in out:
            out[k + "_names"] = set(cap_names(int(out[k], 16)))
    return out


def exec_status(box, *flags, tail=()):
    res = box.run_shim("exec", *flags, box.cid, *tail, "sh", "-c", STATUS)
    return res, status(res.stdout)


def assert_within_capped(st):
    for k in ("CapBnd", "CapEff", "CapPrm", "CapAmb", "CapInh"):
        assert st[k + "_names"] <= {"CAP_NET_BIND_SERVICE"}, (k, st[k + "_names"])
    assert st["NoNewPrivs"] == "1", "no_new_privileges switched off"
    assert st["Uid"].split()[0] != "0"


def assert_refused(res, *words):
    assert res.returncode != 0 and "CapEff" not in res.stdout, res.stdout
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("sandbox-runc: "))
    for w in words:
        assert w in line, line


# -- exec ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    ["--no-new-privs", "--no-new-privs=false"],  # the bypass reported in issue #11
    ["--no-new-privs=0"], ["--no-new-privs=f"], ["--no-new-privs=F"], ["--no-new-privs=FALSE"],
    ["--no-new-privs=False"], ["-no-new-privs=false"], ["--no-new-privs=true", "-no-new-privs=0"],
])
def test_bypass_last_flag_wins_bool_false_keeps_no_new_privileges(box, flags):
    res, st = exec_status(box, *flags)
    assert res.returncode == 0, res.stderr
    assert_within_capped(st)


@pytest.mark.parametrize("flags", [
    ["--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW"], ["-c", "CAP_SYS_ADMIN"], ["--cap=CAP_SYS_ADMIN"],
    ["--cap=", "--cap=CAP_SYS_ADMIN"], ["-c=CAP_SYS_PTRACE", "-c", "CAP_DAC_READ_SEARCH"],
])
def test_bypass_repeated_and_short_cap_flags_add_nothing_beyond_the_profile(box, flags):
    res, st = exec_status(box, *flags)
    assert res.returncode == 0, res.stderr
    assert_within_capped(st)


def test_bypass_both_forms_of_a_flag_is_refused_as_runc_refuses_it(box):
    res, _ = exec_status(box, "-c", "CAP_SYS_ADMIN", "--cap", "CAP_CHOWN")
    assert_refused(res, "would refuse", "two forms")


@pytest.mark.parametrize("flags", [["--user", "1000", "--user", "0"], ["-u", "0:0"], ["--user=0"],
                                   ["--user", "1000", "--user", "+0"], ["--user", "000"]])
def test_bypass_last_user_wins_root_is_refused(box, flags):
    res, _ = exec_status(box, *flags)
    assert_refused(res, "root")


@pytest.mark.parametrize("user", ["4294967296", "4294967296:0", "1000:4294967296", "-4294967296"])
def test_bypass_uid_wraparound_is_refused(box, user):
    """runc's uint32(Atoi(...)): 4294967296 would be uid 0."""
    res, _ = exec_status(box, "--user", user)
    assert_refused(res, "wrap")


@pytest.mark.parametrize("cwd", ["/proc/self/fd/3", "/proc/1/root", "/dev/fd/3", "/tmp/../proc/self/cwd",
                                 "/proc/../proc/self/fd/5", "//proc/self/fd/3", "/proc/self/cwd"])
def test_bypass_cwd_in_proc_cve_2024_21626_is_refused(box, cwd):
    res, _ = exec_status(box, f"--cwd={cwd}")
    assert_refused(res, "CVE-2024-21626")


def test_cwd_elsewhere_is_honoured(box):
    res, st = exec_status(box, "--cwd", "/tmp")
    assert res.returncode == 0 and st["CWD"] == "/tmp", res.stderr


def test_bypass_process_file_plus_flags_flags_are_dropped(box, tmp_path):
    proc = {"args": ["sh", "-c", STATUS], "cwd": "/", "user": {"uid": 1000, "gid": 1000}, "env": [PATH],
            "capabilities": {s: ["CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"] for s in
                             ("bounding", "effective", "permitted", "inheritable", "ambient")},
            "noNewPrivileges": False}
    p = tmp_path / "process.json"
    p.write_text(json.dumps(proc))
    res = box.run_shim("exec", "--process", str(p), "--no-new-privs=false", "--cap", "CAP_SYS_ADMIN",
                       "--user", "0", box.cid)
    assert res.returncode == 0, res.stderr
    assert_within_capped(status(res.stdout))
    drops = [r["decision"] for r in box.records() if r.get("decision", {}).get("action") == "drop"]
    assert {d["pointer"] for d in drops} >= {"/exec/--no-new-privs", "/exec/--cap", "/exec/--user"}


@pytest.mark.parametrize("keys", [
    {"noNewPrivileges": True, "NoNewPrivileges": False},
    {"user": {"uid": 1000, "gid": 1000}, "USER": {"uid": 0}},
    {"capabilities": {"bounding": []}, "\u017f": 1, "Capabilities": {"bounding": ["CAP_SYS_ADMIN"]}},
])
def test_bypass_process_file_keys_go_matches_case_insensitively_are_refused(box, tmp_path, keys):
    p = tmp_path / "process.json"
    p.write_text(json.dumps({"args": ["sh", "-c", STATUS], "cwd": "/", "user": {"uid": 1000, "gid": 1000},
                             "env": [PATH], **keys}))
    res = box.run_shim("exec", "--process", str(p), box.cid)
    assert_refused(res, "case-insensitively")


def test_bypass_process_file_case_variant_key_is_read_as_runc_reads_it(box, tmp_path):
    """`NONEWPRIVILEGES` alone is runc's noNewPrivileges; `Capabilities` its capabilities."""
    p = tmp_path / "process.json"
    p.write_text(json.dumps({"Args": ["sh", "-c", STATUS], "CWD": "/", "User": {"UID": 1000, "gid": 1000}, "ENV": [PATH],
                             "NONEWPRIVILEGES": False, "Capabilities": {"BOUNDING": ["CAP_SYS_ADMIN"],
                                                                        "ambient": ["CAP_SYS_ADMIN"]}}))
    res = box.run_shim("exec", "--process", str(p), box.cid)
    assert res.returncode == 0, res.stderr
    assert_within_capped(status(res.stdout))


@pytest.mark.parametrize("argv_tail", [["--", "{cid}", "--no-new-privs=false"], ["{cid}", "--cap", "CAP_SYS_ADMIN"]])
def test_bypass_flags_after_the_container_id_are_the_command_not_flags(box, argv_tail):
    """exec keeps its arguments in order (SkipArgReorder): these are the command to run, which does not exist."""
    res = box.run_shim("exec", *[a.replace("{cid}", box.cid) for a in argv_tail])
    assert res.returncode != 0
    execs = [r["decision"] for r in box.records() if r.get("decision", {}).get("pointer") == "/process/noNewPrivileges"]
    assert execs and execs[-1]["after"] is True


@pytest.mark.parametrize("cg", ["../x", "pids:../sibling", "memory,pids:a/../../b"])
def test_bypass_exec_cgroup_leaving_the_containers_cgroup_is_refused(box, cg):
    res, _ = exec_status(box, "--cgroup", cg)
    assert_refused(res, "--cgroup")


def with_fd3(box, fd, *args):
    """sandbox-runc with `fd` as its descriptor 3 (as an engine passing one on would have it)."""
    return subprocess.run(["/bin/bash", "-c", f'exec 3<&{fd} {fd}<&-; exec "$@"', "sh", box.shim, "--root", box.root,
                           *args], capture_output=True, text=True, env=box.env, timeout=60, pass_fds=(fd,),
                          stdin=subprocess.DEVNULL)


def test_bypass_preserved_directory_descriptor_is_refused(box):
    """A directory handle passed on with --preserve-fds is a way out of the root (CVE-2024-21626's shape)."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        res = with_fd3(box, fd, "exec", "--preserve-fds", "1", box.cid, "true")
    finally:
        os.close(fd)
    assert res.returncode != 0 and "descriptor 3" in res.stderr and "directory" in res.stderr, res.stderr


def test_bypass_preserved_host_file_is_the_host_path_rule(box):
    fd = os.open("/etc/hostname", os.O_RDONLY)
    try:
        res = with_fd3(box, fd, "exec", "--preserve-fds", "1", box.cid, "true")
    finally:
        os.close(fd)
    assert res.returncode != 0 and "/etc/hostname" in res.stderr, res.stderr


def test_preserved_pipe_passes(box):
    r, w = os.pipe()
    try:
        res = with_fd3(box, r, "exec", "--preserve-fds", "1", box.cid, "sh", "-c", "readlink /proc/$$/fd/3")
    finally:
        os.close(r)
        os.close(w)
    assert res.returncode == 0 and res.stdout.startswith("pipe:"), res.stderr


def test_unknown_exec_flag_is_refused(box):
    res, _ = exec_status(box, "--no-such-flag")
    assert_refused(res, "flag provided but not defined")


# -- update --------------------------------------------------------------------------------------

def cgroup_file(box, controller, name):
    pid = box.state(box.cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                with open(f"/sys/fs/cgroup/{ctrls}{path}/{name}") as g:
                    return g.read().strip()
    pytest.fail(f"no cgroup v1 {controller} controller for the container")


def update(box, *args, stdin=None):
    return subprocess.run([box.shim, "--root", box.root, "update", *args], capture_output=True, text=True,
                          env=box.env, timeout=60, input=stdin)


@pytest.mark.parametrize("args", [
    ["--memory", "100m", "--memory=-1"], ["--memory=-1"], ["--memory", "1g"], ["{cid}", "--memory", "8g"],
    ["--memory", "99999999999p"], ["--memory-swap=-1", "--memory", "300m"],
])
def test_bypass_update_memory_last_wins_and_unlimited_are_clamped(box, args):
    res = update(box, *[a.replace("{cid}", box.cid) for a in args], *([] if "{cid}" in args else [box.cid]))
    if "99999999999p" in args:
        assert_refused(res, "memory")
        return
    assert res.returncode == 0, res.stderr
    assert int(cgroup_file(box, "memory", "memory.limit_in_bytes")) <= MEM_MAX


@pytest.mark.parametrize("value, expect", [("0", None), ("-1", PIDS_MAX), ("100000", PIDS_MAX), ("0x10", 16),
                                           ("7", 7)])
def test_bypass_update_pids_limit_zero_negative_and_hex(box, value, expect):
    before = cgroup_file(box, "pids", "pids.max")
    res = update(box, "--pids-limit", value, box.cid)
    assert res.returncode == 0, res.stderr
    after = cgroup_file(box, "pids", "pids.max")
    assert after == (before if expect is None else str(expect))
    assert after != "max" and int(after) <= PIDS_MAX


def test_bypass_update_cpu_period_alone_keeps_the_cpu_maximum(box):
    """runc keeps the old quota when only the period is given: a short period would multiply the CPU share."""
    res = update(box, "--cpu-period", "10000", box.cid)
    assert res.returncode == 0, res.stderr
    quota = int(cgroup_file(box, "cpu", "cpu.cfs_quota_us"))
    period = int(cgroup_file(box, "cpu", "cpu.cfs_period_us"))
    assert period == 10000 and 0 < quota <= period * 500 // 1000, (quota, period)
    res = update(box, "--cpu-quota", "-1", box.cid)
    assert res.returncode == 0, res.stderr
    assert 0 < int(cgroup_file(box, "cpu", "cpu.cfs_quota_us")) <= int(cgroup_file(box, "cpu", "cpu.cfs_period_us")) // 2


def test_bypass_update_realtime_cpu_is_refused(box):
    assert_refused(update(box, "--cpu-rt-runtime", "1000", box.cid), "realtime")


@pytest.mark.parametrize("doc", [
    {"Memory": {"Limit": -1}}, {"MEMORY": {"limit": 1 << 40}}, {"memory": {"\u212aernel": 0, "limit": -1}},
    {"pids": {"LIMIT": -1}}, {"cpu": {"Quota": -1}},
])
def test_bypass_update_resources_case_folded_keys_are_clamped(box, doc, tmp_path):
    p = tmp_path / "res.json"
    p.write_text(json.dumps(doc))
    res = update(box, "--resources", str(p), box.cid)
    assert res.returncode == 0, res.stderr
    assert int(cgroup_file(box, "memory", "memory.limit_in_bytes")) <= MEM_MAX
    assert cgroup_file(box, "pids", "pids.max") != "max"
    assert int(cgroup_file(box, "cpu", "cpu.cfs_quota_us")) > 0


@pytest.mark.parametrize("doc", ['{"memory": {"limit": 100}, "Memory": {"limit": -1}}',
                                 '{"memory": {"limit": null}}', '{"unified": {"pids.max": "max"}}',
                                 '{"memory": {"limit": 1.5}}', '{"memory": {"limit": "1g"}}'])
def test_bypass_update_resources_runc_would_read_differently_is_refused(box, doc):
    res = update(box, "-r", "-", box.cid, stdin=doc)
    assert_refused(res)
    assert int(cgroup_file(box, "memory", "memory.limit_in_bytes")) <= MEM_MAX


def test_update_from_stdin_and_flags_ignored_with_resources(box):
    res = update(box, "--memory", "8g", "-r", "-", box.cid, stdin='{"memory": {"limit": 67108864}}')
    assert res.returncode == 0, res.stderr
    assert int(cgroup_file(box, "memory", "memory.limit_in_bytes")) == 64 << 20


# -- create / run ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--no-pivot", "--no-new-keyring", "--no-pivot=true"])
def test_bypass_create_flags_that_weaken_the_container_are_refused(box, tmp_path, flag):
    res = box.run_shim("create", flag, "--bundle", box.bundle_dir, f"np-{uuid.uuid4().hex[:6]}")
    assert_refused(res, flag.split("=")[0])
    assert box.containers() == [box.cid]


def test_bypass_rootless_true_is_refused(box):
    res = box.run_shim("--rootless=true", "create", "--bundle", box.bundle_dir, f"rl-{uuid.uuid4().hex[:6]}")
    assert_refused(res, "--rootless")


def test_restore_is_refused(box):
    res = box.run_shim("restore", "--bundle", box.bundle_dir, f"rs-{uuid.uuid4().hex[:6]}")
    assert_refused(res, "restore")
