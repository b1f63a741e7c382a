"""Breakout attempts: the primitives real container escapes use, tried from inside a container.

probe.c tries each primitive and reports `ATTEMPT name=... result=... errno=... detail=...`.
Under `restricted` (uid 1000) and `strict` (root in a user namespace) every attempt the
profile claims to stop must be blocked, and blocked by the control the profile names for
it: the errno and the kernel state the probe reports are mapped to a mechanism (`classify`)
and compared with EXPECTED.  A seccomp block is told from a capability block by evaluating
the profile's own filter (sandbox.core.transform.seccomp.profile_filter, the function
sandbox.core.diff.allowed_syscalls uses) for the syscall and its arguments, with the bounding
set the container really had.  Under plain runc (a `runc spec` bundle, no profile) several
attempts must succeed: that proves the probe detects success.

EXPECTED is the contract: a row that starts failing means a control stopped working (or
moved), not that the row should go.  `None` marks what a profile does not claim to stop
(restricted, like Kubernetes' restricted standard, sets no resource limits); those runs are
reported in the table but not asserted.
"""

from __future__ import annotations

import errno as errnos
import functools
import os
import platform
import subprocess
import time

import pytest

from sandbox.host.inspect import cap_names

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024

SECCOMP = "seccomp"
CAPABILITY = "capability"
NNP = "no_new_privileges"
READONLY = "read-only mount"
MASKED = "masked path"
ABSENT = "absent from the kernel"
DAC = "file permissions (non-root uid)"
USERNS = "user namespace (root is not host root)"
PIDS = "cgroup pids limit"
MEMORY = "cgroup memory limit (OOM kill)"
TMPFS = "tmpfs size"
NETNS = "network namespace (no routes)"


def _absent_or(path: str, otherwise: str) -> str:
    """/proc/sysrq-trigger and /proc/kcore do not exist on kernels built without them."""
    return otherwise if os.path.exists(path) else ABSENT


# attempt -> mechanism expected under restricted (uid 1000) and strict (root in a user namespace).
# A set means any of them is acceptable; None means the profile makes no claim.
EXPECTED: dict[str, dict[str, str | set[str] | None]] = {
    "mount_tmpfs": {"restricted": SECCOMP, "strict": SECCOMP},
    "mount_proc": {"restricted": SECCOMP, "strict": SECCOMP},
    "unshare_user": {"restricted": SECCOMP, "strict": SECCOMP},
    "unshare_mount": {"restricted": SECCOMP, "strict": SECCOMP},
    "clone_newuser": {"restricted": SECCOMP, "strict": SECCOMP},   # clone's flag filter
    "clone3_newuser": {"restricted": SECCOMP, "strict": SECCOMP},  # ENOSYS: glibc falls back to clone
    "fsopen": {"restricted": SECCOMP, "strict": SECCOMP},
    "setns_net": {"restricted": SECCOMP, "strict": SECCOMP},
    "setns_mnt": {"restricted": SECCOMP, "strict": SECCOMP},
    "setns_pid": {"restricted": SECCOMP, "strict": SECCOMP},
    "ptrace_child": {"restricted": SECCOMP, "strict": SECCOMP},
    "ptrace_init": {"restricted": SECCOMP, "strict": SECCOMP},
    "add_key": {"restricted": SECCOMP, "strict": SECCOMP},
    "keyctl": {"restricted": SECCOMP, "strict": SECCOMP},
    "bpf_prog_load": {"restricted": SECCOMP, "strict": SECCOMP},
    "perf_event_open": {"restricted": SECCOMP, "strict": SECCOMP},
    "userfaultfd": {"restricted": SECCOMP, "strict": SECCOMP},
    "io_uring_setup": {"restricted": SECCOMP, "strict": SECCOMP},
    "open_by_handle_at": {"restricted": SECCOMP, "strict": SECCOMP},
    "init_module": {"restricted": SECCOMP, "strict": SECCOMP},
    "finit_module": {"restricted": SECCOMP, "strict": SECCOMP},
    "kexec_load": {"restricted": SECCOMP, "strict": SECCOMP},
    "reboot": {"restricted": SECCOMP, "strict": SECCOMP},
    "swapon": {"restricted": SECCOMP, "strict": SECCOMP},
    "mknod_blockdev": {"restricted": CAPABILITY, "strict": CAPABILITY},
    "chown_other": {"restricted": CAPABILITY, "strict": CAPABILITY},
    "raw_socket": {"restricted": CAPABILITY, "strict": CAPABILITY},
    "packet_socket": {"restricted": CAPABILITY, "strict": CAPABILITY},
    "personality": {"restricted": SECCOMP, "strict": SECCOMP},     # ADDR_NO_RANDOMIZE
    # UNAME26: Docker's list (and so restricted) allows it; strict's rules leave only PER_LINUX(32)
    "personality_uname26": {"restricted": None, "strict": SECCOMP},
    "setuid_binary": {"restricted": NNP, "strict": NNP},
    "write_sysrq_trigger": {"restricted": _absent_or("/proc/sysrq-trigger", DAC),
                            "strict": _absent_or("/proc/sysrq-trigger", MASKED)},
    "write_core_pattern": {"restricted": DAC, "strict": USERNS},
    "write_sys": {"restricted": READONLY, "strict": READONLY},
    "read_kcore": {"restricted": _absent_or("/proc/kcore", MASKED), "strict": _absent_or("/proc/kcore", MASKED)},
    "read_proc_keys": {"restricted": _absent_or("/proc/keys", MASKED), "strict": _absent_or("/proc/keys", MASKED)},
    "cgroup_mkdir": {"restricted": READONLY, "strict": READONLY},
    # the permission check comes before the read-only check here; the mount is read-only too (asserted below)
    "cgroup_notify_on_release": {"restricted": DAC, "strict": USERNS},
    # restricted keeps the bundle's read-only root (runc spec asks for one); uid 1000 could not write / anyway
    "write_rootfs": {"restricted": {READONLY, DAC}, "strict": READONLY},
    "net_connect": {"restricted": NETNS, "strict": NETNS},
    "fork_bomb": {"restricted": None, "strict": PIDS},
    "memory_balloon": {"restricted": None, "strict": MEMORY},
    "fill_tmp": {"restricted": None, "strict": TMPFS},
}

# System mounts the profiles make read-only (readonly_system_mounts, /proc/sys in readonly_paths): whatever
# stopped the attempt first, the mount itself must be read-only as a second layer.
READONLY_TOO = {"write_core_pattern", "write_sys", "cgroup_mkdir", "cgroup_notify_on_release"}

# strict with --user 1000:1000: the setuid attempt from a non-root caller, and DAC inside the namespace
EXPECTED_STRICT_UID1000 = {"setuid_binary": NNP, "chown_other": CAPABILITY, "write_core_pattern": DAC}

# Without a profile (runc spec: 3 capabilities, no seccomp filter, no limits) these must succeed.
MUST_SUCCEED_PLAIN = {"unshare_user", "clone_newuser", "clone3_newuser", "ptrace_child", "ptrace_init", "add_key",
                      "keyctl", "io_uring_setup", "personality", "personality_uname26", "fork_bomb",
                      "memory_balloon"}

# The capability the kernel checks when seccomp lets the call through.
CALL_CAPABILITY = {
    "mknod": "CAP_MKNOD", "chown": "CAP_CHOWN", "socket": "CAP_NET_RAW", "mount": "CAP_SYS_ADMIN",
    "fsopen": "CAP_SYS_ADMIN", "unshare": "CAP_SYS_ADMIN", "setns": "CAP_SYS_ADMIN", "swapon": "CAP_SYS_ADMIN",
    "ptrace": "CAP_SYS_PTRACE", "userfaultfd": "CAP_SYS_PTRACE", "bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON",
    "open_by_handle_at": "CAP_DAC_READ_SEARCH", "name_to_handle_at": "CAP_DAC_READ_SEARCH",
    "reboot": "CAP_SYS_BOOT", "kexec_load": "CAP_SYS_BOOT", "init_module": "CAP_SYS_MODULE",
    "finit_module": "CAP_SYS_MODULE",
}


def expected_for(scenario: str, name: str) -> set[str] | None:
    exp = EXPECTED_STRICT_UID1000.get(name) if scenario == "strict-uid1000" else EXPECTED[name][scenario]
    if exp is None:
        return None
    return exp if isinstance(exp, set) else {exp}


# -- seccomp: evaluate the profile's own filter ------------------------------------------------------------

@functools.cache
def _filter(profile_name: str, bounding: frozenset[str]):
    from sandbox.core.hostfacts import HostFacts
    from sandbox.core.transform.context import Context
    from sandbox.core.transform.seccomp import profile_filter
    from sandbox.runtime.service import resolve_profile

    profile = resolve_profile(profile_name)
    return profile_filter(Context(profile, {}, HostFacts(arch="x86_64")), set(bounding))


def seccomp_verdict(profile_name: str | None, bounding: frozenset[str], call: str,
                    args: dict[int, int]) -> tuple[str, int | None]:
    """("allow", None) or (action, errno) that the profile's filter gives `call` with `args`."""
    from sandbox.core.seccomp_eval import allows, evaluate

    if profile_name is None:
        return "allow", None
    res = _filter(profile_name, bounding)
    if res is None:
        return "allow", None
    default, table = res
    v = evaluate(default, table, call, args)
    return ("allow", None) if allows(v) else v


# -- classification -------------------------------------------------------------------------------------

def _caps(run, key: str) -> frozenset[str]:
    return frozenset(cap_names(int(run.info.get("creds", {}).get(key, "0"), 16)))


def _mib(v: str | int) -> str:
    return f"{int(v) / MIB:g} MiB"


def classify(run, profile_name: str | None, att) -> tuple[str, str]:
    """(mechanism, how it was verified) for one attempt's report."""
    d, e, creds = att.detail, att.errno, run.info.get("creds", {})
    if att.result != "blocked":
        return "none", f"{att.result}: `{att.line}`"
    call = d.get("call", "")
    if att.name == "setuid_binary":
        if d.get("no_new_privs") == "1" and d.get("exec_euid") == d.get("caller_euid"):
            return NNP, (f"exec'd euid {d['exec_euid']} = caller's; NoNewPrivs=1 (file owner uid {d['owner_uid']}, "
                         f"mode {d['mode']})")
        return "unexplained", att.line
    if e == "SIGKILL" and d.get("oom_killed") == "1":
        return MEMORY, (f"SIGKILL (OOM) after touching {d['reached_mib']} MiB of a {d['cap_mib']} MiB balloon; "
                        f"memory limit {_mib(d['memory_limit'])}, oom_kill +{d['oom_kill_delta']}")
    if e == "EAGAIN" and att.name == "fork_bomb":
        return PIDS, (f"EAGAIN after {d['forks']} forks; pids.max={d['pids_max']}, "
                      f"pids.current at peak {d['pids_current_at_peak']}, pids.events max +{d['pids_events_max_delta']}")
    if e == "ENOSPC":
        return TMPFS, (f"ENOSPC after {d['bytes']} bytes ({_mib(d['bytes'])}) written; /tmp is a tmpfs of "
                       f"{d['tmpfs_size']} bytes ({_mib(d['tmpfs_size'])})")
    if e == "ENETUNREACH":
        lo = run.info.get("loopback", {})
        return NETNS, (f"ENETUNREACH from connect() to {d['addr']}; {d['ipv4_routes']} IPv4 routes; "
                       f"lo up={lo.get('lo_up')}, loopback connect {lo.get('connect')}")
    if d.get("absent") == "1":
        return ABSENT, f"ENOENT: {d['path']} does not exist on this kernel (nor on the host)"
    if d.get("masked") == "dev_null":
        return MASKED, f"{d['path']} is /dev/null (char 1:3) bind-mounted over it: nothing to read or write"
    if e == "EROFS":
        return READONLY, f"EROFS; statvfs({d.get('path', '?')}) has ST_RDONLY={d.get('mount_ro', '?')}"
    if e == "EACCES" and call == "open":
        uid_map = creds.get("uid_map", "")
        if creds.get("Uid") == "0" and not uid_map.startswith("0:0:"):
            return USERNS, (f"EACCES; container root is host uid {uid_map.split(':')[1]} (uid_map {uid_map}); "
                            f"the mount is also read-only (ST_RDONLY={d.get('mount_ro')})")
        return DAC, (f"EACCES; uid {creds.get('Uid')}, CapEff={creds.get('CapEff')} (no CAP_DAC_OVERRIDE); "
                     f"the mount is also read-only (ST_RDONLY={d.get('mount_ro')})")
    args = {0: int(d["arg0"])} if "arg0" in d else {}
    action, ret = seccomp_verdict(profile_name, _caps(run, "CapBnd"), call, args)
    shown = f"{call}({hex(args[0])})" if args else call
    if action != "allow":
        if action.startswith("SCMP_ACT_ERRNO") and errnos.errorcode.get(ret or 0) == e:
            return SECCOMP, f"{e}; `{shown}` is not allowed by the profile's seccomp filter ({action}({e}))"
        return "unexplained", f"{e}, but the filter gives {action}({ret}) for {shown}"
    if e == "ENOSYS":
        return ABSENT, f"ENOSYS; `{call}` is allowed by the filter but not built into this kernel"
    if e in ("EPERM", "EACCES"):
        cap = CALL_CAPABILITY.get(call)
        eff = _caps(run, "CapEff")
        if cap and cap not in eff:
            return CAPABILITY, (f"{e}; `{shown}` is allowed by seccomp; {cap} is not in CapEff="
                                f"{creds.get('CapEff')} ({', '.join(sorted(eff)) or 'none'})")
    return "unexplained", att.line


# -- the tests --------------------------------------------------------------------------------------------

SCENARIO_PROFILE = {"restricted": "restricted", "strict": "strict", "strict-uid1000": "strict"}

CASES = [(s, n) for s in ("restricted", "strict") for n in EXPECTED if expected_for(s, n) is not None]
CASES += [("strict-uid1000", n) for n in EXPECTED_STRICT_UID1000]


def _finished(run):
    assert run.returncode == 0 and run.done, run.describe()
    return run


@pytest.mark.parametrize("scenario,name", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_attempt_is_blocked_by_the_expected_control(probe_runs, scenario, name):
    run = _finished(probe_runs.get(scenario))
    att = run.attempts.get(name)
    assert att is not None, f"no report for {name}\n{run.describe()}"
    assert att.result == "blocked", f"{name} was NOT blocked under {scenario}: {att.line}"
    mechanism, how = classify(run, SCENARIO_PROFILE[scenario], att)
    assert mechanism in expected_for(scenario, name), (
        f"{name} under {scenario} was stopped by {mechanism!r} ({how}), expected {expected_for(scenario, name)}")
    if name in READONLY_TOO:
        assert att.detail.get("mount_ro") == "1", f"{name}: the mount is not read-only: {att.line}"


def test_every_probe_attempt_has_an_expectation(probe_runs):
    assert set(probe_runs.names) == set(EXPECTED)


def test_container_credentials_match_the_profiles(probe_runs):
    restricted = _finished(probe_runs.get("restricted")).info["creds"]
    assert restricted["Uid"] == "1000" and int(restricted["CapEff"], 16) == 0
    assert restricted["NoNewPrivs"] == "1" and restricted["Seccomp"] == "2"
    strict = _finished(probe_runs.get("strict")).info["creds"]
    inside, outside, size = strict["uid_map"].split(":")
    assert strict["Uid"] == "0" and inside == "0" and int(outside) >= 65536 and size == "65536"  # a pool range
    assert set(cap_names(int(strict["CapBnd"], 16))) <= {"CAP_NET_BIND_SERVICE"}
    assert strict["NoNewPrivs"] == "1" and strict["Seccomp"] == "2"


def test_strict_limits_hold_at_the_numbers_the_profile_sets(probe_runs):
    run = _finished(probe_runs.get("strict"))
    fork = run.attempts["fork_bomb"].detail
    assert fork["pids_max"] == "128" and 0 < int(fork["forks"]) < 128, fork
    balloon = run.attempts["memory_balloon"].detail
    assert int(balloon["memory_limit"]) == 256 * MIB and int(balloon["reached_mib"]) < 256, balloon
    assert int(balloon["oom_kill_delta"]) >= 1, balloon
    fill = run.attempts["fill_tmp"].detail
    assert fill["tmpfs"] == "1" and int(fill["tmpfs_size"]) == 64 * MIB, fill
    assert 0 < int(fill["bytes"]) <= 64 * MIB, fill


def test_strict_memory_limit_also_bounds_swap(probe_runs):
    """strict's memory limit must bound swap too, or the balloon grows into the host's swap.

    Seen on this host with a temporary 1 GiB swap file: the balloon reached 1264 MiB under
    strict's 256 MiB limit (every page of host swap) before the OOM kill, because
    memory.memsw.limit_in_bytes stayed unlimited.  Kernel state is asserted here so that the
    test fails on every host, swap or not, until the limit covers swap.
    """
    run = _finished(probe_runs.get("strict"))
    d = run.attempts["memory_balloon"].detail
    if d["memsw_limit"] != "-1":  # cgroup v1 with swap accounting: memory+swap
        assert d["memsw_limit"] == d["memory_limit"], (
            f"memory.memsw.limit_in_bytes={d['memsw_limit']} but memory.limit_in_bytes={d['memory_limit']}: "
            "the container can use the host's swap without limit")
    elif d["swap_max"] != "-1":  # cgroup v2: swap alone
        assert d["swap_max"] == "0", f"memory.swap.max={d['swap_max']}: the container can use the host's swap"
    else:
        pytest.skip("no swap accounting in this kernel's memory cgroup")


def test_probe_detects_success_without_a_profile(probe_runs):
    run = _finished(probe_runs.get("plain"))
    assert run.info["creds"]["Seccomp"] == "0"
    succeeded = {n for n, a in run.attempts.items() if a.result == "succeeded"}
    must = MUST_SUCCEED_PLAIN & set(run.attempts)  # the balloon is left out on small hosts
    assert must <= succeeded, f"missing: {must - succeeded}\n{run.describe()}"
    assert run.attempts["fork_bomb"].detail["forks"] == "5000"
    if "memory_balloon" in run.attempts:
        assert run.attempts["memory_balloon"].detail["reached_mib"] == "2048"
    # the setuid bit works when no_new_privileges is off: the probe sees an escalation
    suid = _finished(probe_runs.get("plain-nnp-off")).attempts["setuid_binary"]
    assert suid.result == "succeeded" and suid.detail["caller_euid"] == "1000" and suid.detail["exec_euid"] == "0"


def test_host_is_unaffected(probe_runs):
    runs = [_finished(probe_runs.get(s)) for s in ("strict", "restricted", "plain")]
    # the host can still fork, and plenty of times
    procs = [subprocess.Popen(["/bin/sleep", "0.2"]) for _ in range(50)]
    assert all(p.wait(timeout=30) == 0 for p in procs)
    assert subprocess.run(["/bin/true"], timeout=30).returncode == 0
    with open("/proc/meminfo", encoding="ascii") as f:
        available = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    assert available > 256 * 1024, "host MemAvailable below 256 MiB after the runs"
    # nothing of the probes is left: no process in their cgroups, no cgroup (exits may lag a little)
    ids = [run.container_id for run in runs]
    deadline = time.monotonic() + 10
    while (left := _processes_in(ids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"probe processes left on the host: {left}"
    for cid in ids:
        for controller in ("pids", "memory"):
            assert not os.path.exists(f"/sys/fs/cgroup/{controller}/{cid}"), cid


def _processes_in(container_ids: list[str]) -> list[str]:
    """Host pids whose cgroup path names one of the containers."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if any(cid in text for cid in container_ids):
            left.append(pid)
    return left


# -- the report (docs/security.md) ------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(probe_runs) -> str:
    lines = ["| attempt | profile | blocked by | verified how |", "|---|---|---|---|"]
    for name in EXPECTED:
        for scenario in ("restricted", "strict", "strict-uid1000"):
            run = probe_runs.cache.get(scenario)
            att = run.attempts.get(name) if run else None
            if att is None:
                continue
            label = {"restricted": "restricted (uid 1000)", "strict": "strict (root in userns)",
                     "strict-uid1000": "strict (uid 1000)"}[scenario]
            mechanism, how = classify(run, SCENARIO_PROFILE[scenario], att)
            if expected_for(scenario, name) is None:
                mechanism = f"not claimed ({att.result})"
                how = f"{att.errno}; " + " ".join(f"{k}={v}" for k, v in att.detail.items())
            lines.append(f"| `{name}` | {label} | {mechanism} | {_cell(how)} |")
    plain = probe_runs.cache.get("plain")
    out = ["<!-- generated by tests/e2e/escape/test_escape.py (SANDBOX_ESCAPE_TABLE) -->",
           f"Run on {platform.release()} ({platform.machine()}), "
           + ", ".join(f"{s} {probe_runs.cache[s].seconds:.1f} s" for s in probe_runs.cache), "", *lines, ""]
    if plain:
        out += ["Plain runc (`runc spec` bundle, no profile):", "",
                "| attempt | result | errno | detail |", "|---|---|---|---|"]
        for name in EXPECTED:
            att = plain.attempts.get(name)
            if att:
                detail = " ".join(f"{k}={v}" for k, v in att.detail.items())
                out.append(f"| `{name}` | {att.result} | {att.errno} | {_cell(detail)} |")
        nnp = probe_runs.cache.get("plain-nnp-off")
        if nnp:
            att = nnp.attempts["setuid_binary"]
            out.append(f"| `setuid_binary` (uid 1000, noNewPrivileges false) | {att.result} | {att.errno} | "
                       f"{_cell(' '.join(f'{k}={v}' for k, v in att.detail.items()))} |")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module", autouse=True)
def _write_report(probe_runs):
    yield
    path = os.environ.get("SANDBOX_ESCAPE_TABLE")
    if path and {"restricted", "strict", "plain"} <= set(probe_runs.cache):
        runs = probe_runs
        with open(path, "w", encoding="utf-8") as f:
            f.write(markdown_report(runs))
