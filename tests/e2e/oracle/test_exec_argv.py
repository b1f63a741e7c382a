"""Generated `sandbox-runc exec` command lines through the oracle: the probe runs in a container of
each profile through crafted flags (repeats, short forms, `=false`, uid wrap-around, `/proc` working
directories, capabilities, LSM labels, cgroups, preserved descriptors, unknown flags) and through
hostile `--process` files (Go's case-insensitive keys, root, every capability).  Whatever sandbox
decides, the oracle must find nothing: no canary, no marker, /proc/self/status within the profile.

SANDBOX_ORACLE_EXEC_EXAMPLES=N runs N (150 by default); the counts of argv tried, refused, run and
failed are printed at the end of the session with the configs'.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SANDBOX_ORACLE_EXEC_EXAMPLES", "150"))
PROFILES = ("baseline", "restricted", "strict")

CAPS = ("CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "ALL",
        "cap_sys_admin", "SYS_ADMIN")
USERS = ("0", "0:0", "1000", "1000:1000", "4294967296", "4294967296:0", "1000:4294967296", "root", "65534:0", "-1")
GIDS = ("0", "1000", "4294967296", "0,0")
CWDS = ("/", "/tmp", "/proc/self/fd/3", "/proc/1/root", "/dev/fd/3", "/tmp/../proc/self/cwd", "//proc/self/fd/4",
        "/proc")
ENVS = ("LD_PRELOAD=/x.so", "PATH=/bin", "A=1", "HOME=/root")
BOOLS = ("", "=true", "=false", "=0", "=1", "=f", "=T")
UNKNOWN = (["--privileged"], ["--foo=1"], ["-x"], ["--cap-add", "CAP_SYS_ADMIN"], ["--no-new-privs", "false"])


def _value(names: tuple[str, ...], values) -> st.SearchStrategy[list[str]]:
    """`--name v`, `-n v`, `--name=v`, `-name=v`: every spelling runc's parser takes."""
    return st.builds(lambda n, v, form: [f"{'-' if len(n) == 1 else '--'}{n}", v] if form == 0 else
                     [f"{'-' if len(n) == 1 else '--'}{n}={v}"] if form == 1 else [f"-{n}={v}"],
                     st.sampled_from(names), st.sampled_from(values), st.integers(0, 2))


flag = st.one_of(
    _value(("cap", "c"), CAPS),
    st.builds(lambda d, b: [f"{d}no-new-privs{b}"], st.sampled_from(("--", "-")), st.sampled_from(BOOLS)),
    _value(("user", "u"), USERS),
    _value(("additional-gids", "g"), GIDS),
    _value(("cwd",), CWDS),
    _value(("env", "e"), ENVS),
    st.sampled_from((["--apparmor", "unconfined"], ["--process-label", "system_u:system_r:spc_t:s0"],
                     ["--cgroup", "../x"], ["--cgroup", "pids:../../"], ["--cgroup", "/"], ["--ignore-paused"],
                     ["--preserve-fds", "1"], ["--preserve-fds=0x2"], ["--tty=false"])),
    st.sampled_from(UNKNOWN),
)

# hostile --process files: (what to change, its value), applied to the container's own process
PROCESS_CHANGES = (
    ("user", {"uid": 0, "gid": 0}), ("user", {"uid": 1000, "gid": 1000, "additionalGids": [0]}),
    ("User", {"UID": 0}), ("noNewPrivileges", False), ("NoNewPrivileges", False),
    ("capabilities", "all"), ("Capabilities", "all"), ("cwd", "/proc/self/fd/3"), ("apparmorProfile", "unconfined"),
    ("env", ["LD_PRELOAD=/x.so"]), ("rlimits", [{"type": "RLIMIT_NOFILE", "hard": 1 << 20, "soft": 1 << 20}]),
    ("oomScoreAdj", -1000), ("selinuxLabel", "system_u:system_r:spc_t:s0"),
)
ALL_CAPS = list(CAPS[:5])

case = st.fixed_dictionaries({
    "profile": st.sampled_from(PROFILES),
    "flags": st.lists(flag, max_size=5),
    "process": st.one_of(st.none(), st.none(), st.lists(st.sampled_from(PROCESS_CHANGES), min_size=1, max_size=3)),
    "dashdash": st.booleans(),
})


def process_file(oracle, profile: str, changes) -> str:
    proc = oracle.base_config(profile)["process"]
    proc["args"] = ["/probe", "oracle", oracle.name]
    for key, value in changes:
        if value == "all":
            value = {s: ALL_CAPS for s in ("bounding", "effective", "permitted", "inheritable", "ambient")}
        proc[key] = value
    path = os.path.join(oracle.base, f"process-{uuid.uuid4().hex[:8]}.json")
    with open(path, "w") as f:
        json.dump(proc, f)
    return path


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=os.environ.get("CI") is not None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(c=case)
def test_generated_exec_argv_never_reach_the_host(oracle, c):
    argv = [tok for group in c["flags"] for tok in group]
    tail = None
    path = None
    if c["process"] is not None:
        path = process_file(oracle, c["profile"], c["process"])
        argv += ["--process", path]
        tail = []
    if c["dashdash"]:
        argv.append("--")
    try:
        res = oracle.exec(c["profile"], argv, tail)
    finally:
        if path:
            os.unlink(path)
    assert not res.breaches, f"{c}\n{res.describe()}"
    if res.outcome == "refused":
        assert res.returncode != 0 and res.reason, res.describe()
    elif res.outcome == "failed":  # runc's parser or runc itself said no (e.g. an rlimit above root's own)
        assert res.returncode != 0 and res.stderr.strip(), res.describe()


@pytest.mark.parametrize("profile", PROFILES)
def test_the_probe_runs_through_exec_within_the_profile(oracle, profile):
    """The control: without crafted flags the exec'd probe runs and the oracle looks inside."""
    res = oracle.exec(profile, [])
    assert res.outcome == "ran" and not res.breaches, res.describe()
    assert res.creds, res.describe()


@pytest.mark.parametrize("profile", ["restricted", "strict"])
@pytest.mark.parametrize("argv", [["--no-new-privs", "--no-new-privs=false"], ["--cap", "CAP_SYS_ADMIN", "--cap", "ALL"],
                                  ["--user", "1000", "--user", "0"], ["--user", "4294967296"],
                                  ["--cwd", "/proc/self/fd/3"]])
def test_crafted_exec_flags_are_refused_or_harmless(oracle, profile, argv):
    res = oracle.exec(profile, argv)
    assert not res.breaches, res.describe()
    assert res.outcome in ("refused", "ran"), res.describe()
