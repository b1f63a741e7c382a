"""The host-path gate and the allow-lists around it (transform/hostpath.py, mounts, hooks, devices,
namespaces, fields), on data: each test is named after the class of bypass it guards against."""

from __future__ import annotations

import copy
import json
import os

import pytest

from sandbox.core import loader, ocishape, tables
from sandbox.core.hostfacts import Executable, HostFacts
from sandbox.core.transform import apply
from sandbox.core.transform.hostpath import USES, named_host_paths, overlay_dirs
from tests.conftest import FIXTURES, OCI, nethook_facts

CID = "4d2f" * 16
DOCKERD = Executable(real="/usr/sbin/dockerd", trusted_chain=True, pid=1234, process_uid=0)
BASE_FACTS = dict(executables={"/proc/1234/exe": DOCKERD},
                  host_namespaces={f"/var/run/docker/netns/{CID[:12]}": False},
                  own_hooks=nethook_facts()["own_hooks"])  # restricted and strict add the network hook
PROFILES = ("baseline", "restricted", "strict")


def prof(name):
    return loader.load_profile(name)


def docker(uid=1000):
    with open(os.path.join(FIXTURES, "bundles", "docker-like.json")) as f:
        cfg = json.load(f)
    cfg["process"]["user"] = {"uid": uid, "gid": uid}
    return cfg


def run(profile, cfg, **facts):
    return apply(prof(profile) if isinstance(profile, str) else profile, cfg, HostFacts(**{**BASE_FACTS, **facts}))


def refusals(out, control=None):
    return [d for d in out.refusals if control is None or d.control == control]


def custom(tmp_path, body, name="custom"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"apiVersion: sandbox/v1\nkind: Profile\nname: {name}\n{body}")
    return loader.load_profile(str(p))


# -- root.path -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("root,real", [
    ("/", None), ("rootfs", "/"), ("/usr", None), ("/etc", None), ("/proc/1/root", "/"), ("/tmp", None),
    ("../../../../..", None), ("/var/lib/kubelet/pods/x", None), ("/var/run/..", None),
])
def test_host_root_as_container_root_is_refused(profile, root, real):
    cfg = docker()
    cfg["root"]["path"] = root
    facts = {"bundle_dir": "/var/lib/docker/containers/x", "realpaths": {root: real} if real else {}}
    out = run(profile, cfg, **facts)
    assert [d for d in refusals(out, "filesystem") if d.pointer == "/root/path"], out.decisions


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("root", ["/var/lib/docker/overlay2/abc/merged", "/run/containerd/io.containerd.runtime.v2.task/"
                                  "k8s.io/abc/rootfs", "/var/lib/containers/storage/overlay/abc/merged",
                                  "/tmp/sandbox-run/rootfs"])
def test_engine_and_temporary_roots_are_kept(profile, root):
    cfg = docker()
    cfg["root"]["path"] = root
    assert not refusals(run(profile, cfg), "filesystem")


def test_relative_root_is_resolved_against_the_bundle_and_refused_when_unknown():
    cfg = docker()
    cfg["root"]["path"] = "rootfs"
    assert not refusals(run("strict", cfg, bundle_dir="/tmp/b"), "filesystem")
    assert refusals(run("strict", cfg), "filesystem")  # no bundle directory: cannot be resolved


def test_root_under_a_directory_others_can_swap_is_refused():
    cfg = docker()
    cfg["root"]["path"] = "/tmp/u/b/rootfs"
    out = run("restricted", cfg, probed=True, realpaths={"/tmp/u/b/rootfs": "/tmp/u/b/rootfs"},
              unsafe_ancestors={"/tmp/u/b/rootfs": (("/tmp/u", "is owned by uid 1000"),)},
              executables={"/proc/1234/exe": DOCKERD}, host_namespaces=BASE_FACTS["host_namespaces"])
    assert any("/tmp/u" in d.reason and "swapped" in d.reason for d in refusals(out, "filesystem"))


def test_unresolvable_path_is_refused_when_probed():
    cfg = docker()
    out = run("baseline", cfg, probed=True, realpaths={}, executables={"/proc/1234/exe": DOCKERD})
    assert any("could not be resolved" in d.reason for d in refusals(out))


# -- mounts: sources, types, options -------------------------------------------------------------------------

def _mount(cfg, **m):
    cfg["mounts"].append({"destination": "/mnt", "options": [], **m})
    return cfg


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("m", [
    {"type": "tmpfs", "source": "/etc", "options": ["bind"]},  # bind by option, whatever the type
    {"type": "none", "source": "/", "options": ["rbind"]},
    {"type": "bind", "source": "/proc/self/root/etc", "options": ["rbind"]},  # lexical /proc, real /etc
    {"type": "bind", "source": "../../../../../../../etc", "options": ["rbind"]},
    {"type": "overlay", "source": "overlay", "options": ["lowerdir=/tmp/a:/etc", "upperdir=/tmp/u", "workdir=/tmp/w"]},
    {"type": "overlay", "source": "overlay", "options": ["lowerdir=/tmp/a,upperdir=/etc", "workdir=/tmp/w"]},
    {"type": "overlay", "source": "overlay", "options": ["lowerdir=/tmp/a", "upperdir=/tmp/u", "workdir=/etc/w"]},
    {"type": "ext4", "source": "/dev/vda"},
    {"type": "devtmpfs", "source": "devtmpfs"}, {"type": "debugfs", "source": "debugfs"},
    {"type": "securityfs", "source": "x"}, {"type": "bpf", "source": "bpf"}, {"type": "nfs", "source": "h:/"},
    {"type": "binfmt_misc", "source": "x"}, {"type": "", "source": "/tmp/x"},
    {"type": "proc", "source": "proc"}, {"type": "sysfs", "source": "sysfs"},  # not at their one place
    {"type": "tmpfs", "source": "tmpfs", "options": ["remount", "rw"]},
])
def test_host_storage_through_other_mount_types_is_refused(profile, m):
    out = run(profile, _mount(docker(), **m), bundle_dir="/var/lib/docker/containers/x")
    assert refusals(out, "mounts"), [d.reason for d in out.decisions if d.control == "mounts"]


def test_overlay_dirs_are_split_as_the_kernel_splits_them():
    assert overlay_dirs(["lowerdir=/a:/b", "upperdir=/u,workdir=/w", "ro"]) == [
        ("lowerdir", "/a"), ("lowerdir", "/b"), ("upperdir", "/u"), ("workdir", "/w")]


def test_overlay_of_allowed_dirs_runs_under_baseline_and_not_restricted():
    m = {"type": "overlay", "source": "overlay", "options": ["lowerdir=/srv/l", "upperdir=/srv/u", "workdir=/srv/w"]}
    assert not refusals(run("baseline", _mount(docker(), **m)), "mounts")
    assert refusals(run("restricted", _mount(docker(), **m)), "mounts")


def test_profile_can_allow_a_type_but_its_source_still_goes_through_the_gate(tmp_path):
    p = custom(tmp_path, "extends: baseline\nfilesystem:\n  mount_types: [ext4]\n")
    assert refusals(run(p, _mount(docker(), type="ext4", source="/dev/vda")), "mounts")
    assert not refusals(run(p, _mount(docker(), type="ext4", source="/srv/disk.img")), "mounts")


@pytest.mark.parametrize("profile,action", [("baseline", "warn"), ("restricted", "refuse"), ("strict", "refuse")])
def test_unknown_mount_data_option_follows_the_unknown_field_policy(profile, action):
    for opt in ("idmap", "size=1m,nr_inodes=0", "mode=0755\\,x", "lowerdir+=/etc"):
        out = run(profile, _mount(docker(), type="tmpfs", source="tmpfs", options=[opt]))
        assert any(d.action == action and repr(opt) in d.reason for d in out.decisions), opt


def test_flag_undone_by_a_later_option_is_made_to_hold():
    cfg = _mount(docker(), type="bind", source="/var/lib/docker/volumes/v/_data",
                 options=["rbind", "nosuid", "suid", "ro", "rrw", "rdev"])
    out = run("strict", cfg)
    opts = next(m for m in out.config["mounts"] if m["destination"] == "/mnt")["options"]
    assert not {"suid", "rrw", "rdev"} & set(opts) and {"nosuid", "nodev", "ro"} <= set(opts)
    again = apply(prof("strict"), copy.deepcopy(out.config), HostFacts(**BASE_FACTS))
    assert again.config == out.config


def test_shared_propagation_on_any_mount_and_the_root_becomes_slave():
    cfg = _mount(docker(), type="tmpfs", source="tmpfs", options=["rshared"])
    cfg["linux"]["rootfsPropagation"] = "shared"
    out = run("baseline", cfg)
    assert "rslave" in out.config["mounts"][-1]["options"]
    assert out.config["linux"]["rootfsPropagation"] == "slave"


# -- runc CVE mitigations -----------------------------------------------------------------------------------

def test_cve_class_dev_is_always_a_fresh_tmpfs():
    cfg = docker()
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/dev"]
    out = run("baseline", cfg)
    dests = [m["destination"] for m in out.config["mounts"]]
    assert out.config["mounts"][dests.index("/dev")]["type"] == "tmpfs"
    assert dests.index("/dev") < dests.index("/dev/pts")
    cfg["mounts"].insert(0, {"destination": "/dev", "type": "bind", "source": "/srv/dev", "options": ["rbind"]})
    assert any("CVE-2025-31133" in d.reason for d in refusals(run("baseline", cfg), "mounts"))


def test_cve_class_system_mount_on_symlink_is_refused():
    out = run("restricted", docker(), rootfs_symlinks=frozenset({"/proc"}))
    assert any("CVE-2019-16884" in d.reason for d in refusals(out, "mounts"))


def test_cve_class_nested_in_writable_bind_is_refused():
    cfg = docker()
    cfg["mounts"] += [{"destination": "/vol", "type": "bind", "source": "/srv/vol", "options": ["rbind"]},
                      {"destination": "/vol/x", "type": "bind", "source": "/srv/x", "options": ["rbind"]}]
    assert any("CVE-2024-45310" in d.reason for d in refusals(run("baseline", cfg), "mounts"))
    cfg["mounts"][-2]["options"] = ["rbind", "ro"]
    assert not refusals(run("baseline", cfg), "mounts")


def test_cve_class_bind_onto_proc_is_refused():
    out = run("baseline", _mount(docker(), type="bind", source="/srv/cpuinfo", options=["bind"]) | {})
    assert not refusals(out, "mounts")
    cfg = docker()
    cfg["mounts"].append({"destination": "/proc/cpuinfo", "type": "bind", "source": "/srv/c", "options": ["bind"]})
    assert any("CVE-2025-52881" in d.reason for d in refusals(run("baseline", cfg), "mounts"))


@pytest.mark.parametrize("cwd", ["/proc/self/fd/7", "/proc/self/fd/7/../../..", "/dev/fd/3", "/proc/1/cwd"])
def test_cve_class_cwd_through_a_leaked_descriptor_is_refused(cwd):
    cfg = docker()
    cfg["process"]["cwd"] = cwd
    for profile in PROFILES:
        assert any("CVE-2024-21626" in d.reason for d in refusals(run(profile, cfg), "process"))


def test_inheritable_capabilities_emptied():
    cfg = docker(uid=0)
    cfg["process"]["capabilities"]["inheritable"] = ["CAP_CHOWN"]
    out = run("baseline", cfg)
    assert out.config["process"]["capabilities"]["inheritable"] == []


def test_mitigations_can_be_turned_off(tmp_path):
    p = custom(tmp_path, "extends: baseline\nruncmitigations: false\n".replace("runcmitigations", "runc_mitigations"))
    cfg = docker(uid=0)
    cfg["process"]["cwd"] = "/proc/self/fd/7"
    assert not refusals(run(p, cfg), "process")


# -- hooks by identity --------------------------------------------------------------------------------------

def _hook(cfg, path, args, stage="prestart", env=None):
    cfg["hooks"] = {stage: [{"path": path, "args": args, **({"env": env} if env else {})}]}
    return cfg


DOCKER_ARGS = ["libnetwork-setkey", "-exec-root=/var/run/docker", CID, "0123456789ab"]


def test_engine_hook_kept_only_by_identity_and_shape():
    assert not refusals(run("strict", _hook(docker(), "/proc/1234/exe", DOCKER_ARGS), container_id=CID))
    assert not refusals(run("strict", _hook(docker(), "/proc/1234/exe", DOCKER_ARGS[:1] + DOCKER_ARGS[2:])))


@pytest.mark.parametrize("case", ["named-in-bundle", "non-root", "untrusted", "not-running", "wrong-args",
                                  "env", "wrong-stage", "other-container"])
def test_engine_hook_by_name_is_refused(case):
    exe = DOCKERD
    path, args, stage, env, cid = "/proc/1234/exe", list(DOCKER_ARGS), "prestart", None, CID
    if case == "named-in-bundle":
        path, exe = "/var/lib/b/dockerd", Executable(real="/var/lib/b/dockerd", trusted_chain=True)
    elif case == "non-root":
        exe = Executable(real="/usr/sbin/dockerd", trusted_chain=True, pid=1234, process_uid=1000)
    elif case == "untrusted":
        exe = Executable(real="/home/u/dockerd", trusted_chain=False, pid=1234, process_uid=0)
    elif case == "not-running":
        path = "/usr/sbin/dockerd"
        exe = Executable(real="/usr/sbin/dockerd", trusted_chain=True)
    elif case == "wrong-args":
        args = ["libnetwork-setkey", "-c", "touch /x"]
    elif case == "env":
        env = ["LD_PRELOAD=/tmp/x.so"]
    elif case == "wrong-stage":
        stage = "createRuntime"
    elif case == "other-container":
        cid = "ef" * 32
    cfg = _hook(docker(), path, args, stage, env)
    out = run("baseline", cfg, executables={path: exe}, container_id=cid)
    assert refusals(out, "hooks"), [d.reason for d in out.decisions if d.control == "hooks"]


def test_allow_listed_hook_needs_a_root_owned_binary_and_a_clean_env(tmp_path):
    p = custom(tmp_path, "extends: baseline\nhooks:\n  allow: [/usr/bin/nvidia-hook]\n")
    good = Executable(real="/usr/bin/nvidia-hook", trusted_chain=True)
    assert not refusals(run(p, _hook(docker(), "/usr/bin/nvidia-hook", ["x"]),
                            executables={"/usr/bin/nvidia-hook": good}), "hooks")
    assert refusals(run(p, _hook(docker(), "/usr/bin/nvidia-hook", ["x"], env=["LD_LIBRARY_PATH=/tmp"]),
                        executables={"/usr/bin/nvidia-hook": good}), "hooks")
    bad = Executable(real="/usr/bin/nvidia-hook", trusted_chain=False)
    assert refusals(run(p, _hook(docker(), "/usr/bin/nvidia-hook", ["x"]),
                        executables={"/usr/bin/nvidia-hook": bad}), "hooks")


def test_sandbox_own_hook_program_is_kept():
    own = Executable(real="/usr/lib/sandbox/sandbox-net-hook", trusted_chain=True)
    cfg = _hook(docker(), "/usr/lib/sandbox/sandbox-net-hook", ["x"], stage="createRuntime")
    out = run("strict", cfg, executables={"/usr/lib/sandbox/sandbox-net-hook": own},
              own_hooks=frozenset({"/usr/lib/sandbox/sandbox-net-hook"}))
    assert not refusals(out, "hooks")
    assert refusals(run("strict", cfg, executables={"/usr/lib/sandbox/sandbox-net-hook": own}), "hooks")


def test_start_container_hook_runs_inside_and_is_kept():
    out = run("strict", _hook(docker(), "/bin/sh", ["sh", "-c", "true"], stage="startContainer"))
    assert not refusals(out, "hooks")


# -- devices, namespaces, cgroups ----------------------------------------------------------------------------

@pytest.mark.parametrize("dev", [
    {"path": "/dev/null", "type": "b", "major": 254, "minor": 0},  # an allowed name with a disk's numbers
    {"path": "/dev/fd/0", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/../etc/shadow", "type": "c", "major": 1, "minor": 3},
    {"path": "dev/null", "type": "c", "major": 1, "minor": 3},
])
def test_device_under_an_allowed_name_is_checked_against_the_host(dev):
    cfg = docker()
    cfg["linux"]["devices"] = [dev]
    cfg["linux"]["resources"]["devices"].append({"allow": True, "type": dev["type"], "major": dev["major"],
                                                 "minor": dev["minor"], "access": "rwm"})
    out = run("baseline", cfg, realpaths={"/dev/fd/0": "/proc/self/fd/0"})
    assert refusals(out, "devices")
    assert not any(r.get("major") == 254 and r.get("allow") for r in out.config["linux"]["resources"]["devices"])


def test_allowed_device_must_match_the_host_node(tmp_path):
    p = custom(tmp_path, "extends: baseline\ndevices:\n  allow: [/dev/fuse]\n")
    cfg = docker()
    cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    assert not refusals(run(p, cfg, devices={"/dev/fuse": ("c", 10, 229)}), "devices")
    cfg["linux"]["devices"][0]["minor"] = 1
    assert refusals(run(p, cfg, devices={"/dev/fuse": ("c", 10, 229)}), "devices")


@pytest.mark.parametrize("kind,path,facts,refused", [
    ("mount", "/proc/99/ns/mnt", {"host_namespaces": {"/proc/99/ns/mnt": False}}, True),
    ("network", "/proc/99/ns/net", {"host_namespaces": {"/proc/99/ns/net": False}}, False),
    ("ipc", "/proc/99/ns/net", {"probed": True, "host_namespaces": {"/proc/99/ns/net": False},
                                "namespace_kinds": {"/proc/99/ns/net": "net"}}, True),
    ("user", "/proc/99/ns/user", {"host_namespaces": {"/proc/99/ns/user": False},
                                  "userns_maps_host_root": {"/proc/99/ns/user": True}}, True),
    ("user", "/run/userns", {"host_namespaces": {"/run/userns": False}}, True),  # mapping unknown
    ("network", "/proc/1/ns/net", {"host_namespaces": {"/proc/1/ns/net": True}}, True),
])
def test_joining_namespaces(kind, path, facts, refused):
    cfg = docker()
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != kind] + [
        {"type": kind, "path": path}]
    merged = {**BASE_FACTS, **facts, "host_namespaces": {**BASE_FACTS["host_namespaces"], **facts["host_namespaces"]}}
    if merged.get("probed"):
        merged["realpaths"] = {"/var/lib/docker/overlay2/abc/merged": "/var/lib/docker/overlay2/abc/merged",
                               **{m["source"]: m["source"] for m in cfg["mounts"] if m["type"] == "bind"}}
        merged["namespace_kinds"] = {**merged["namespace_kinds"], f"/var/run/docker/netns/{CID[:12]}": "net"}
    out = apply(prof("baseline"), cfg, HostFacts(**merged))
    assert bool(refusals(out, "namespaces")) == refused, [d.reason for d in out.decisions if d.control == "namespaces"]


@pytest.mark.parametrize("path,refused", [
    ("/", True), ("..", True), ("/docker/..", True), ("/kubepods/burstable", True),
    (f"/docker/{'ef' * 32}", True), (f"/docker/{CID}", False), (f"/libpod_parent/libpod-{CID}", False),
    (f"system.slice:docker:{CID}", False), (f"/machine.slice/libpod-{CID}.scope", False), ("", False),
])
def test_cgroups_path_must_be_the_containers_own(path, refused):
    cfg = docker()
    cfg["linux"]["cgroupsPath"] = path
    out = run("baseline", cfg, container_id=CID)
    assert bool(refusals(out, "resources")) == refused, out.refusals


def test_unified_cannot_override_limits_or_move_processes():
    cfg = docker()
    cfg["linux"]["resources"]["unified"] = {"memory.max": "max", "pids.max": "100000", "cpu.max": "max 100000",
                                            "memory.swap.max": "max"}
    out = run("strict", cfg)
    u = out.config["linux"]["resources"]["unified"]
    assert u == {"memory.max": str(512 * 1024**2), "pids.max": "256", "cpu.max": "200000 100000",
                 "memory.swap.max": "0"}
    cfg["linux"]["resources"]["unified"] = {"cgroup.procs": "1"}
    for profile in PROFILES:
        assert refusals(run(profile, cfg), "resources")


# -- config fields ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile,action", [("baseline", "warn"), ("restricted", "refuse"), ("strict", "refuse")])
@pytest.mark.parametrize("path,value", [
    (("linux", "personality"), {"domain": "LINUX32"}), (("domainname",), "x"), (("process", "ioPriority"), {}),
    (("linux", "timeOffsets"), {"boottime": {"secs": 1}}), (("linux", "resources", "network"), {"classID": 1}),
    (("linux", "intelRdt"), {"l3CacheSchema": "L3:0=f"}), (("mounts", 0, "uidMappings"), []),
])
def test_field_nobody_checked_is_not_silently_passed(profile, action, path, value):
    cfg = docker()
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    out = run(profile, cfg)
    got = [d for d in out.decisions if d.control == "fields" and d.action == action]
    assert got and got[0].rule.endswith("unknown_config_fields"), out.decisions


def test_annotations_runc_reads_are_checked():
    cfg = docker()
    cfg["annotations"] = {"org.criu.config": "/etc/criu/evil.conf"}
    assert refusals(run("baseline", cfg), "fields")
    cfg["annotations"] = {"org.criu.config=/tmp/x": "y"}
    assert refusals(run("baseline", cfg), "fields")
    cfg["annotations"] = {"io.kubernetes.cri.container-type": "container"}
    assert not refusals(run("strict", cfg))


def test_real_engine_configs_have_no_field_outside_the_table():
    for name in ("podman-4.3-config.json", "runc-spec-1.1.json"):
        with open(os.path.join(OCI, name)) as f:
            assert ocishape.outside(json.load(f)) == []
    assert ocishape.outside(docker()) == []


def test_table_covers_every_field_the_transform_reads():
    paths = {p for p, *_ in ocishape.FIELDS}
    for p in ("process.oomScoreAdj", "process.rlimits", "linux.resources.unified", "linux.intelRdt.closID",
              "linux.rootfsPropagation", "linux.resources.blockIO.throttleReadBpsDevice", "linux.mountLabel",
              "process.apparmorProfile", "process.consoleSize", "process.user.additionalGids", "process.user.umask",
              "linux.seccomp.listenerPath", "linux.cgroupsPath"):
        assert p in paths
    assert all(how.split(":")[0] in ("step", "keep", "policy") for _, _, how, _ in ocishape.FIELDS)


def test_every_use_is_documented():
    with open(os.path.join(os.path.dirname(FIXTURES), "..", "docs", "security.md")) as f:
        doc = f.read()
    for use in USES.values():
        assert use.field in doc
    for t in tables.MOUNT_TYPES:
        assert f"`{t}`" in doc


def test_named_host_paths_lists_every_use():
    cfg = docker()
    cfg["mounts"].append({"destination": "/o", "type": "overlay", "source": "overlay",
                          "options": ["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"]})
    cfg["mounts"].append({"destination": "/e", "type": "ext4", "source": "/dev/vdb"})
    cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    cfg["linux"]["seccomp"] = {"listenerPath": "/run/agent.sock"}
    cfg["annotations"] = {"org.criu.config": "/etc/criu.conf"}
    uses = {u for u, _ in named_host_paths(cfg)}
    assert uses == {"root", "bind", "overlay", "mount-source", "hook", "device", "namespace", "listener",
                    "criu-config"}


# -- process ------------------------------------------------------------------------------------------------

def test_oom_score_and_priority_cannot_outrank_host_processes():
    cfg = docker()
    cfg["process"]["oomScoreAdj"] = -1000
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_RTPRIO", "hard": 99, "soft": 99},
                                 {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
    out = run("strict", cfg)
    assert out.config["process"]["oomScoreAdj"] == 0
    assert out.config["process"]["rlimits"][0] == {"type": "RLIMIT_RTPRIO", "hard": 0, "soft": 0}
    assert out.config["process"]["rlimits"][1]["hard"] == 4096
    assert run("baseline", cfg).config["process"]["oomScoreAdj"] == -1000


def test_unconfined_apparmor_refused_where_apparmor_is_on():
    cfg = docker()
    cfg["process"]["apparmorProfile"] = "unconfined"
    assert refusals(run("baseline", cfg, apparmor=True), "apparmor")
    assert not refusals(run("baseline", cfg, apparmor=False), "apparmor")


# -- a root named on sandbox's own command line ----------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_a_rootfs_named_on_the_command_line_is_a_root_wherever_it_is(profile):
    """`sandbox run --rootfs ~/rootfs`: the person's choice, not config.json's, so rootfs_dirs does not bind it."""
    cfg = docker()
    cfg["root"]["path"] = "/root/work/rootfs"
    assert refusals(run(profile, cfg), "filesystem")  # from config.json alone: refused
    out = run(profile, cfg, named_root="/root/work/rootfs")
    assert not refusals(out, "filesystem"), out.decisions
    assert any("named on sandbox's command line" in d.reason for d in out.decisions if d.pointer == "/root/path")


@pytest.mark.parametrize("named", ["/", "/usr", "/usr/local", "/etc", "/home", "/root", "/var", "/var/lib",
                                   "/proc/1/root", "/boot/x", "/var/lib/kubelet"])
def test_a_named_rootfs_is_never_a_host_system_directory(named):
    cfg = docker()
    cfg["root"]["path"] = named
    out = run("baseline", cfg, named_root=named)
    assert [d for d in refusals(out, "filesystem") if d.pointer == "/root/path"], out.decisions


def test_a_named_bundle_admits_roots_strictly_inside_it_only():
    cfg = docker()
    cfg["root"]["path"] = "/root/bundle/rootfs"
    assert not refusals(run("restricted", cfg, named_root="/root/bundle", named_root_subtree=True), "filesystem")
    cfg["root"]["path"] = "/root/other"
    assert refusals(run("restricted", cfg, named_root="/root/bundle", named_root_subtree=True), "filesystem")
    cfg["root"]["path"] = "/root/bundle"
    assert refusals(run("restricted", cfg, named_root="/root/bundle", named_root_subtree=True), "filesystem")


def test_a_named_rootfs_under_a_directory_others_can_swap_is_refused():
    cfg = docker()
    cfg["root"]["path"] = "/home/alice/rootfs"
    out = run("baseline", cfg, probed=True, named_root="/home/alice/rootfs",
              realpaths={"/home/alice/rootfs": "/home/alice/rootfs"},
              unsafe_ancestors={"/home/alice/rootfs": (("/home/alice", "is owned by uid 1000"),)},
              executables={"/proc/1234/exe": DOCKERD}, host_namespaces=BASE_FACTS["host_namespaces"])
    assert any("/home/alice" in d.reason and "swapped" in d.reason for d in refusals(out, "filesystem"))
