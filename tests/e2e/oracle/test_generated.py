"""Generated attack configs: hypothesis mutates mounts, hooks, root, namespaces, devices, cgroups, process
fields and unknown fields of a probe config, from pools of hostile values, and runs each through
sandbox-runc and the real runc under a profile it draws.  Whatever sandbox decides, the oracle must
find nothing: no canary, no marker, /proc/self/status within the profile.

A few hundred examples run by default; SANDBOX_ORACLE_EXAMPLES=N runs N.  The counts of configs
tried, refused, run and failed are printed at the end of the session.
"""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SANDBOX_ORACLE_EXAMPLES", "200"))
PROFILES = ("baseline", "restricted", "strict")

HOST_PATHS = ("{canary}", "/", "/etc", "/proc/1/root", "/proc/self/root/etc", "/var/run", "/run", "/dev", "/sys",
              "/tmp", "/usr", "{data}", "link", "../../../../../../etc", "/var/lib/docker/../../../etc",
              "/sys/fs/cgroup", "/dev/vda", "/var/lib/kubelet")
TYPES = ("bind", "tmpfs", "proc", "sysfs", "overlay", "ext4", "devtmpfs", "debugfs", "cgroup", "cgroup2", "devpts",
         "mqueue", "none", "", "securityfs", "bpf", "nfs", "binfmt_misc")
DESTS = ("/mnt", "/proc", "/sys", "/dev", "/dev/pts", "/sys/fs/cgroup", "/tmp", "/proc/cpuinfo", "/etc", "/",
         "/mnt/sub", "/dev/mqueue", "mnt", "/../mnt")
OPTIONS = ("bind", "rbind", "ro", "rw", "rrw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "shared",
           "rshared", "private", "remount", "lowerdir={path}", "upperdir={path}", "workdir={path}", "size=1m",
           "mode=755", "idmap", "size=1m,nr_inodes=0", "tmpcopyup", "lowerdir={data}:{path}")
HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
HOOK_PATHS = ("/bin/sh", "dockerd", "{trusted}", "{nonroot}", "{userdir}", "/proc/1/exe", "/proc/self/exe",
              "/usr/bin/touch")
NS_KINDS = ("network", "mount", "pid", "ipc", "uts", "user", "cgroup")
NS_PATHS = ("/proc/1/ns/{k}", "/proc/self/ns/{k}", "/proc/{victim}/ns/{k}", "/proc/{victim}/ns/net", "{canary}/canary")
DEVICES = (("/dev/null", "c", 1, 3), ("/dev/null", "b", 254, 0), ("/dev/vda", "b", 254, 0), ("/dev/mem", "c", 1, 1),
           ("/dev/fd/0", "c", 1, 3), ("/dev/../etc/passwd", "c", 1, 3), ("/dev/kmsg", "c", 1, 11),
           ("/dev/zero", "c", 1, 5))
CWDS = ("/", "/tmp", "/home", "/etc", "/proc/self/fd/7", "/dev/fd/5", "/proc/1/root", "/proc/self/cwd")
CAPS = ("CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_CHOWN")
CGROUPS = ("", "/", "..", "../../..", "{victim_cgroup}", "/oracle-gen/{cid}", "{cid}")
UNKNOWN = (("linux", "personality"), ("domainname",), ("process", "ioPriority"), ("linux", "timeOffsets"),
           ("vm",), ("linux", "resources", "network"), ("linux", "intelRdt"))

mounts = st.fixed_dictionaries({
    "destination": st.sampled_from(DESTS), "type": st.sampled_from(TYPES), "source": st.sampled_from(HOST_PATHS),
    "options": st.lists(st.tuples(st.sampled_from(OPTIONS), st.sampled_from(HOST_PATHS)), max_size=4)})
hooks = st.lists(st.tuples(st.sampled_from(HOOK_STAGES), st.sampled_from(HOOK_PATHS), st.booleans(), st.booleans()),
                 max_size=2)
namespaces = st.lists(st.tuples(st.sampled_from(NS_KINDS), st.sampled_from(NS_PATHS)), max_size=2)
process = st.fixed_dictionaries({
    "cwd": st.sampled_from(CWDS), "caps": st.lists(st.sampled_from(CAPS), max_size=2), "uid": st.sampled_from((0, 1000)),
    "nnp": st.booleans(), "oom": st.sampled_from((None, -1000, 0, 500)), "rtprio": st.sampled_from((None, 0, 99))})


def _often_absent(strategy, empty):
    """Most examples leave a part alone, so that some configs run and the oracle looks inside them."""
    return st.one_of(st.just(empty), st.just(empty), strategy)


mutation = st.fixed_dictionaries({
    "profile": st.sampled_from(PROFILES),
    "mounts": _often_absent(st.lists(mounts, min_size=1, max_size=2), []),
    "hooks": _often_absent(hooks, []),
    "root": _often_absent(st.sampled_from(("/", "link-root", "/etc", "../../../../../..", "/tmp", "/proc/1/root")),
                          None),
    "namespaces": _often_absent(namespaces, []),
    "devices": _often_absent(st.lists(st.sampled_from(DEVICES), min_size=1, max_size=2), []),
    "cgroup": _often_absent(st.sampled_from(CGROUPS), ""),
    "process": _often_absent(process, None),
    "unknown": _often_absent(st.lists(st.sampled_from(UNKNOWN), min_size=1, max_size=1), []),
})


def _fill(value: str, ctx: dict[str, str]) -> str:
    for k, v in ctx.items():
        value = value.replace("{" + k + "}", v)
    return value


def build(oracle, m: dict, ctx: dict[str, str]) -> tuple[dict, dict]:
    """The config a mutation describes, and the oracle.run arguments it needs."""
    cfg = oracle.base_config(m["profile"])
    for mount in m["mounts"]:
        opts = [_fill(o.replace("{path}", p), ctx) for o, p in mount["options"]]
        cfg["mounts"].append({"destination": mount["destination"], "type": mount["type"],
                              "source": _fill(mount["source"], ctx), "options": opts})
    for stage, path, docker_args, loader_env in m["hooks"]:
        args = (["libnetwork-setkey", "-exec-root=/run/x", "ab" * 32, "0123456789ab"] if docker_args
                else ["sh", "-c", f"touch {oracle.marker}"])
        hook = {"path": _fill(path, ctx), "args": args}
        if loader_env:
            hook["env"] = [f"LD_PRELOAD={oracle.canary_dir}/x.so"]
        cfg.setdefault("hooks", {}).setdefault(stage, []).append(hook)
    if m["root"] is not None:
        cfg["root"]["path"] = "rootfs-link" if m["root"] == "link-root" else m["root"]
    for kind, path in m["namespaces"]:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != kind]
        ns_file = {"network": "net", "mount": "mnt"}.get(kind, kind)
        cfg["linux"]["namespaces"].append({"type": kind, "path": _fill(path.replace("{k}", ns_file), ctx)})
    if m["devices"]:
        cfg["linux"]["devices"] = [{"path": p, "type": t, "major": a, "minor": b, "fileMode": 0o666, "uid": 1000,
                                    "gid": 1000} for p, t, a, b in m["devices"]]
        cfg["linux"]["resources"]["devices"] += [{"allow": True, "type": t, "major": a, "minor": b, "access": "rwm"}
                                                 for _, t, a, b in m["devices"]]
    if m["cgroup"]:
        cfg["linux"]["cgroupsPath"] = _fill(m["cgroup"], ctx)
    p = m["process"]
    if p is not None:
        proc = cfg["process"]
        proc["cwd"] = p["cwd"]
        for s in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            proc["capabilities"][s] = list(dict.fromkeys([*proc["capabilities"].get(s, []), *p["caps"]]))
        proc["user"] = {"uid": p["uid"], "gid": p["uid"]}
        proc["noNewPrivileges"] = p["nnp"]
        if p["oom"] is not None:
            proc["oomScoreAdj"] = p["oom"]
        if p["rtprio"] is not None:
            proc["rlimits"] = [{"type": "RLIMIT_RTPRIO", "hard": p["rtprio"], "soft": p["rtprio"]}]
    for path in m["unknown"]:
        node = cfg
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = {"classID": 1} if path[-1] == "network" else {"closID": "x"} if path[-1] == "intelRdt" \
            else {"domain": "LINUX32"} if path[-1] == "personality" else "x" if path[-1] == "domainname" else {"a": 1}

    def setup(bundle: str) -> None:
        os.symlink(oracle.canary_dir, os.path.join(bundle, "link"))
        os.symlink("/", os.path.join(bundle, "rootfs-link"))
        with open("/bin/sh", "rb") as src, open(os.path.join(bundle, "dockerd"), "wb") as dst:
            dst.write(src.read())
        os.chmod(os.path.join(bundle, "dockerd"), 0o755)  # noqa: S103

    return cfg, {"bundle_setup": setup}


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=os.environ.get("CI") is not None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(m=mutation)
def test_generated_configs_never_reach_the_host(oracle, host_processes, victim, m):
    cid = "oracle-gen-" + uuid.uuid4().hex[:12]
    data = os.path.join(oracle.base, "host", "gen")
    os.makedirs(data, exist_ok=True)
    ctx = {"canary": oracle.canary_dir, "data": data, "trusted": f"/proc/{host_processes['trusted'].pid}/exe",
           "nonroot": f"/proc/{host_processes['non-root'].pid}/exe",
           "userdir": f"/proc/{host_processes['untrusted-dir'].pid}/exe", "victim": str(victim["pid"]),
           "victim_cgroup": victim["cgroup"], "cid": cid}
    cfg, kwargs = build(oracle, m, ctx)
    res = oracle.run(cfg, m["profile"], cid=cid, **kwargs)
    assert not res.breaches, f"{m}\n{res.describe()}"
    if res.outcome == "refused":
        assert res.returncode != 0 and res.reason, res.describe()


def test_exec_goes_through_the_same_oracle(oracle):
    """The harness's exec path (for the runc-flag suites): an exec asking for more than the profile."""
    cfg = oracle.base_config("restricted", ["/probe", "sleep"])
    res = oracle.run(cfg, "restricted", exec_argv=["--cap", "CAP_SYS_ADMIN", "--user", "1000:1000"])
    assert not res.breaches, res.describe()
    assert res.outcome in ("refused", "ran"), res.describe()
