import copy
import json
import os

import pytest

from sandbox.core import loader
from sandbox.core.hostfacts import Executable, HostFacts
from sandbox.core.transform import apply
from sandbox.core.transform.seccomp import intersect
from tests.conftest import FIXTURES, OCI, nethook_facts

DOCKER_CID = "4d2f" * 16
DOCKERD = Executable(real="/usr/sbin/dockerd", trusted_chain=True, pid=1234, process_uid=0)
_OWN = nethook_facts()
DOCKER_FACTS = HostFacts(
    realpaths={"/proc/1234/exe": "/usr/sbin/dockerd", **_OWN["realpaths"]},
    executables={"/proc/1234/exe": DOCKERD, **_OWN["executables"]},
    host_namespaces={f"/var/run/docker/netns/{DOCKER_CID[:12]}": False},
    own_hooks=_OWN["own_hooks"],
)


def load(name):
    with open(os.path.join(FIXTURES, "bundles", name) if not name.startswith("/") else name) as f:
        return json.load(f)


def podman():
    with open(os.path.join(OCI, "podman-4.3-config.json")) as f:
        return json.load(f)


def docker():
    return load("docker-like.json")


def prof(ref, **overrides):
    p = loader.load_profile(ref)
    return p


def by(decisions, control=None, action=None):
    return [d for d in decisions if (control is None or d.control == control) and (action is None or d.action == action)]


def allowed_names(seccomp):
    return {n for e in seccomp["syscalls"] if e["action"] == "SCMP_ACT_ALLOW" for n in e["names"]}


def custom(tmp_path, body, name="custom"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"apiVersion: sandbox/v1\nkind: Profile\nname: {name}\n{body}")
    return loader.load_profile(str(p))


# --- capabilities ----------------------------------------------------------------

def test_restricted_drops_every_capability_but_net_bind_service_one_decision_each():
    out = apply(prof("restricted"), docker(), DOCKER_FACTS)
    caps = out.config["process"]["capabilities"]
    for s in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        assert caps[s] in ([], ["CAP_NET_BIND_SERVICE"])
    assert caps["bounding"] == ["CAP_NET_BIND_SERVICE"]
    drops = by(out.decisions, "capabilities", "drop")
    assert len(drops) == 13
    assert any("CAP_NET_RAW" in d.reason for d in drops)


def test_absent_capability_sets_are_made_explicit():
    cfg = docker()
    del cfg["process"]["capabilities"]
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert out.config["process"]["capabilities"] == {s: [] for s in
                                                    ("bounding", "effective", "permitted", "inheritable", "ambient")}
    assert len(by(out.decisions, "capabilities", "set")) == 5


def test_no_new_privileges_forced():
    cfg = docker()
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert out.config["process"]["noNewPrivileges"] is True
    assert by(out.decisions, "no_new_privileges", "tighten")


# --- seccomp ---------------------------------------------------------------------

def test_capability_conditional_syscalls_follow_dropped_capabilities(tmp_path):
    cfg = docker()
    cfg["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    with_admin = custom(tmp_path, "capabilities: [SYS_ADMIN, CHOWN]\n")
    out = apply(with_admin, cfg, DOCKER_FACTS)
    assert "mount" in allowed_names(out.config["linux"]["seccomp"])
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert "mount" not in allowed_names(out.config["linux"]["seccomp"])


def test_clone3_gets_enosys_without_sys_admin():
    out = apply(prof("restricted"), docker(), DOCKER_FACTS)
    entries = [e for e in out.config["linux"]["seccomp"]["syscalls"] if "clone3" in e["names"]]
    assert entries and entries[0]["action"] == "SCMP_ACT_ERRNO" and entries[0]["errnoRet"] == 38


def test_strict_removes_dangerous_syscalls_and_restricts_personality():
    out = apply(prof("strict"), docker(), DOCKER_FACTS)
    sec = out.config["linux"]["seccomp"]
    allowed = allowed_names(sec)
    for name in ("mount", "ptrace", "bpf", "keyctl", "add_key", "unshare", "setns", "userfaultfd",
                 "io_uring_setup", "open_by_handle_at", "kexec_load", "init_module", "perf_event_open"):
        assert name not in allowed
    values = sorted(e["args"][0]["value"] for e in sec["syscalls"] if "personality" in e["names"])
    assert values == [0, 8, 4294967295]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    assert "read" in allowed and "openat" in allowed


def test_bundle_filter_is_intersected(tmp_path):
    cfg = docker()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["read", "write", "mount", "exit_group"],
                                             "action": "SCMP_ACT_ALLOW"}]}
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    sec = out.config["linux"]["seccomp"]
    assert allowed_names(sec) == {"read", "write", "exit_group"}
    assert sec["defaultAction"] == "SCMP_ACT_KILL_PROCESS"  # the stricter default wins
    assert sec["architectures"] == ["SCMP_ARCH_X86_64"]
    drops = [d for d in by(out.decisions, "seccomp", "drop") if d.before == "mount"]
    assert drops and "CAP_SYS_ADMIN" in drops[0].reason


def test_permissive_bundle_default_is_tightened():
    cfg = docker()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    sec = out.config["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "mkdir" not in allowed_names(sec) and "read" in allowed_names(sec)
    assert by(out.decisions, "seccomp", "tighten")


def test_spec_allow_flag_dropped():
    cfg = docker()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert "flags" not in out.config["linux"]["seccomp"]


def test_intersect_conditions_on_same_argument_are_conjoined_exactly():
    eq0 = ("SCMP_ACT_ALLOW", None, ((0, 0, 0, "SCMP_CMP_EQ"),))
    eq8 = ("SCMP_ACT_ALLOW", None, ((0, 8, 0, "SCMP_CMP_EQ"),))
    arg1 = ("SCMP_ACT_ALLOW", None, ((1, 5, 0, "SCMP_CMP_EQ"),))
    below = ("SCMP_ACT_ALLOW", None, ((0, 4, 0, "SCMP_CMP_LT"),))
    assert intersect([eq0, eq8], [eq0]) == [eq0]
    assert intersect([eq8], [eq0]) == []  # no value satisfies both: denied
    assert intersect([eq0, eq8], [below]) == [eq0]  # EQ decided by evaluating the other side
    both = intersect([eq0], [arg1])
    assert both == [("SCMP_ACT_ALLOW", None, ((0, 0, 0, "SCMP_CMP_EQ"), (1, 5, 0, "SCMP_CMP_EQ")))]
    assert intersect([("SCMP_ACT_ALLOW", None, ())], [eq0]) == [eq0]
    deny = ("SCMP_ACT_ERRNO", 38, ())
    assert intersect([deny], [("SCMP_ACT_ALLOW", None, ())]) == [deny]


def test_custom_deny_list(tmp_path):
    p = loader.load_profile(os.path.join(FIXTURES, "valid-custom-mkdir.yaml"))
    out = apply(p, docker(), DOCKER_FACTS)
    allowed = allowed_names(out.config["linux"]["seccomp"])
    assert "mkdir" not in allowed and "mkdirat" not in allowed and "rmdir" in allowed


# --- user and namespaces -----------------------------------------------------------

def test_restricted_refuses_root_without_userns():
    out = apply(prof("restricted"), docker(), DOCKER_FACTS)
    refusals = [d for d in out.refusals if d.control == "user"]
    assert refusals and "uid 0" in refusals[0].reason
    cfg = docker()
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    assert not apply(prof("restricted"), cfg, DOCKER_FACTS).refused


def test_strict_adds_userns_and_fits_ping_group_range():
    out = apply(prof("strict"), docker(), DOCKER_FACTS)
    assert not out.refused, [d.reason for d in out.refusals]
    linux = out.config["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert linux["sysctl"]["net.ipv4.ping_group_range"] == "0 65535"
    assert any(d.pointer.endswith("ping_group_range") and d.action == "tighten" for d in out.decisions)


def test_userns_mapping_host_root_is_refused():
    cfg = docker()
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    out = apply(prof("strict"), cfg, DOCKER_FACTS)
    assert any("maps host root" in d.reason for d in out.refusals)


def test_host_namespace_by_path_is_refused_but_pod_namespace_kept():
    cfg = docker()
    cfg["linux"]["namespaces"] = [{"type": "network", "path": "/proc/1/ns/net"}, {"type": "pid"}]
    out = apply(prof("baseline"), cfg, HostFacts(host_namespaces={"/proc/1/ns/net": True}))
    assert any("host's own" in d.reason for d in out.refusals)
    out = apply(prof("baseline"), cfg, HostFacts(host_namespaces={"/proc/1/ns/net": False}))
    assert not [d for d in out.refusals if d.control == "namespaces"]
    out = apply(prof("baseline"), cfg, HostFacts())  # cannot tell: fail closed
    assert any("cannot be checked" in d.reason for d in out.refusals)


def test_missing_required_namespaces_added():
    cfg = docker()
    cfg["linux"]["namespaces"] = [{"type": "mount"}]
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    kinds = [n["type"] for n in out.config["linux"]["namespaces"]]
    assert set(kinds) >= {"pid", "ipc", "uts", "mount", "network"}


# --- mounts -------------------------------------------------------------------------

@pytest.mark.parametrize("source,real,refused", [
    ("/var/run/docker.sock", "/run/docker.sock", True),
    ("/var/run", "/run", True),  # contains /run/docker.sock
    ("/", "/", True),
    ("/etc/ssl", "/etc/ssl", True),
    ("/var/lib/kubelet", "/var/lib/kubelet", True),
    ("/var/lib/kubelet/pods/123/volumes/kubernetes.io~secret/token", None, False),
    ("/home/user/data", None, False),
    ("/srv/link-to-docker-sock", "/run/docker.sock", True),  # symlink resolved by the host probe
    ("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm", None, False),
    ("/run/containerd/containerd.sock", None, True),
])
def test_forbidden_bind_sources_under_baseline(source, real, refused):
    cfg = docker()
    cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": source, "options": ["rbind"]})
    facts = HostFacts(realpaths={**DOCKER_FACTS.realpaths, **({source: real} if real else {})},
                      executables=DOCKER_FACTS.executables, host_namespaces=DOCKER_FACTS.host_namespaces)
    out = apply(prof("baseline"), cfg, facts)
    got = [d for d in out.refusals if d.control == "mounts"]
    assert bool(got) == refused, [d.reason for d in out.decisions if d.control == "mounts"]
    if refused:
        assert source in got[0].reason


def test_unresolved_var_run_alias_is_still_caught():
    cfg = docker()
    cfg["mounts"].append({"destination": "/sock", "type": "bind", "source": "/var/run/docker.sock"})
    out = apply(prof("baseline"), cfg, HostFacts(executables=DOCKER_FACTS.executables,
                                                 host_namespaces=DOCKER_FACTS.host_namespaces))
    assert out.refused


def test_restricted_allows_only_engine_paths():
    cfg = docker()
    out = apply(prof("restricted"), cfg, DOCKER_FACTS)
    assert not [d for d in out.refusals if d.control == "mounts"]
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]})
    out = apply(prof("restricted"), cfg, DOCKER_FACTS)
    assert [d for d in out.refusals if d.control == "mounts"]


def test_strict_binds_readonly_nosuid_and_tmp_tmpfs():
    cfg = docker()
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    out = apply(prof("strict"), cfg, DOCKER_FACTS)
    m = {x["destination"]: x for x in out.config["mounts"]}
    assert {"ro", "nosuid", "nodev"} <= set(m["/etc/hosts"]["options"])
    assert m["/tmp"]["type"] == "tmpfs" and "noexec" in m["/tmp"]["options"]
    assert f"size={64 * 1024 * 1024}" in m["/tmp"]["options"]
    assert out.config["root"]["readonly"] is True
    assert "/proc/sysrq-trigger" in out.config["linux"]["maskedPaths"]


def test_shared_propagation_is_tightened():
    cfg = docker()
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data",
                          "options": ["rbind", "rshared"]})
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert "rslave" in out.config["mounts"][-1]["options"]


def test_sysfs_rw_is_tightened():
    cfg = docker()
    cfg["mounts"][3]["options"] = ["nosuid", "noexec", "nodev", "rw"]
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert "ro" in out.config["mounts"][3]["options"] and "rw" not in out.config["mounts"][3]["options"]


# --- resources, devices, sysctls, hooks ------------------------------------------------

def test_resources_clamped_and_defaulted():
    cfg = docker()
    cfg["process"]["user"] = {"uid": 1000}
    cfg["linux"]["resources"]["memory"] = {"limit": 8 * 1024**3}
    cfg["linux"]["resources"]["cpu"] = {"quota": 400000, "period": 100000}
    out = apply(prof("strict"), cfg, DOCKER_FACTS)
    res = out.config["linux"]["resources"]
    assert res["memory"]["limit"] == 512 * 1024**2
    assert res["pids"]["limit"] == 128
    assert res["cpu"]["quota"] == 200000
    cfg["linux"]["resources"]["memory"] = {"limit": 64 * 1024**2}
    out = apply(prof("strict"), cfg, DOCKER_FACTS)
    assert out.config["linux"]["resources"]["memory"]["limit"] == 64 * 1024**2  # smaller request kept


def test_host_device_refused_and_allow_all_cgroup_rule_dropped():
    cfg = docker()
    cfg["linux"]["devices"] = [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]
    cfg["linux"]["resources"]["devices"].append({"allow": True, "access": "rwm"})
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert any("/dev/sda" in d.reason for d in out.refusals)
    assert {"allow": True, "access": "rwm"} not in out.config["linux"]["resources"]["devices"]
    assert out.config["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_sysctl_outside_allow_list_refused():
    cfg = docker()
    cfg["linux"]["sysctl"]["kernel.core_pattern"] = "|/tmp/x"
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert any("kernel.core_pattern" in d.reason for d in out.refusals)


def test_docker_engine_hook_allowed_other_hooks_refused():
    out = apply(prof("baseline"), docker(), DOCKER_FACTS)
    assert not out.refused
    cfg = docker()
    cfg["hooks"]["createRuntime"] = [{"path": "/usr/local/bin/evil", "args": ["evil"]}]
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert any("/usr/local/bin/evil" in d.reason for d in out.refusals)
    # the engine hook with an unresolved /proc path is not trusted
    out = apply(prof("baseline"), docker(), HostFacts(host_namespaces=DOCKER_FACTS.host_namespaces))
    assert any(d.control == "hooks" for d in out.refusals)


def test_apparmor_skipped_where_unsupported(tmp_path):
    p = custom(tmp_path, "apparmor: sandbox-default\n")
    out = apply(p, docker(), DOCKER_FACTS)
    assert any(d.control == "apparmor" and d.action == "warn" for d in out.decisions)
    out = apply(p, docker(), HostFacts(apparmor=True, executables=DOCKER_FACTS.executables,
                                       host_namespaces=DOCKER_FACTS.host_namespaces))
    assert out.config["process"]["apparmorProfile"] == "sandbox-default"


# --- modes, determinism, idempotence, fixtures ------------------------------------------------

def test_complain_mode_changes_nothing(tmp_path):
    p = custom(tmp_path, "extends: restricted\nmode: complain\n")
    cfg = docker()
    out = apply(p, cfg, DOCKER_FACTS)
    assert out.config == cfg
    judged = [d for d in out.decisions if d.control != "monitor"]
    assert judged and all(not d.applied for d in judged)
    assert not out.refused and out.refusals
    # no agent asked for (DOCKER_FACTS): the syscall-level record is missing, and said so
    [monitor] = [d for d in out.decisions if d.control == "monitor"]
    assert monitor.action == "warn" and "not recorded" in monitor.reason and monitor.rule.endswith(": mode")


@pytest.mark.parametrize("name", loader.BUILTIN_PROFILES)
@pytest.mark.parametrize("fixture", ["docker", "podman", "runc"])
def test_idempotent_and_deterministic_on_real_configs(name, fixture):
    cfg = {"docker": docker, "podman": podman,
           "runc": lambda: load(os.path.join(OCI, "runc-spec-1.1.json"))}[fixture]()
    if name != "baseline":
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    p = prof(name)
    once = apply(p, copy.deepcopy(cfg), DOCKER_FACTS)
    again = apply(p, copy.deepcopy(cfg), DOCKER_FACTS)
    assert once.config == again.config and once.decisions == again.decisions
    twice = apply(p, copy.deepcopy(once.config), DOCKER_FACTS)
    assert twice.config == once.config
    assert not [d for d in twice.decisions if d.action in ("tighten", "drop", "set")]


def test_unknown_fields_survive():
    cfg = docker()
    cfg["annotations"] = {"x": "y"}
    cfg["linux"]["intelRdt"] = {"closID": "a"}
    cfg["process"]["capabilities"]["futureSet"] = ["CAP_CHOWN"]
    out = apply(prof("baseline"), cfg, DOCKER_FACTS)
    assert out.config["annotations"] == {"x": "y"}
    assert out.config["linux"]["intelRdt"] == {"closID": "a"}
    assert out.config["process"]["capabilities"]["futureSet"] == ["CAP_CHOWN"]


def test_a_refused_device_is_named_by_its_node_not_called_a_host_device():
    """runc makes the node from type and major:minor; it need not exist on the host."""
    cfg = docker()
    cfg["linux"]["devices"] = [{"path": "/dev/fuse-nonexistent", "type": "c", "major": 10, "minor": 229}]
    out = apply(prof("restricted"), cfg, DOCKER_FACTS)
    d = [d for d in out.decisions if d.control == "devices" and d.action == "refuse"]
    assert len(d) == 1 and "host device" not in d[0].reason
    assert "/dev/fuse-nonexistent (c 10:229)" in d[0].reason
