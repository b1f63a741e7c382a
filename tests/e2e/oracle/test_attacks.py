"""Hand-written attack shapes, one or more for every row of the host-path, mount-type, config-field and
CVE tables (docs/security.md), each run through sandbox-runc and the real runc under baseline,
restricted and strict.

Every run must leave the canary unread, the marker uncreated and /proc/self/status inside within
the profile (harness.Oracle).  Where a row says the shape is refused, it must be refused, with a
reason naming what was wrong.  Tests are named after the class of bypass they guard against.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e.oracle.harness import RESULTS

pytestmark = pytest.mark.e2e

ALL = ("baseline", "restricted", "strict")
LOCKED = ("restricted", "strict")  # profiles with unknown_config_fields: refuse
HEX64 = "ab" * 32


def _mount(o, dest, typ, source, options):
    return {"destination": dest, "type": typ, "source": source, "options": options}


def _data_dir(o, name="data"):
    d = os.path.join(o.base, "host", name)
    os.makedirs(d, exist_ok=True)
    os.chmod(os.path.dirname(d), 0o755)  # noqa: S103
    os.chmod(d, 0o755)  # noqa: S103
    return d


def _with(o, profile, change):
    cfg = o.base_config(profile)
    change(cfg)
    return cfg


def _add_mount(o, profile, m):
    return _with(o, profile, lambda c: c["mounts"].append(m))


def _hook(stage, path, args, env=None):
    h = {"path": path, "args": args}
    if env:
        h["env"] = env
    return lambda c: c.setdefault("hooks", {}).setdefault(stage, []).append(h)


def _touch(o):
    return ["sh", "-c", f"touch {o.marker}"]


def _root_device():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == "/":
                return parts[parts.index("-") + 2], tuple(int(x) for x in parts[2].split(":"))
    return "/dev/vda", (254, 0)


# -- the attack table: (class, table row, build(oracle, profile) -> (config, run kwargs), refused under) --------

def root_is_host_root(o, p):
    return _with(o, p, lambda c: c["root"].update(path="/")), {}


def root_symlink_to_host_root(o, p):
    return _with(o, p, lambda c: c["root"].update(path="rootfs")), {
        "bundle_setup": lambda b: os.symlink("/", os.path.join(b, "rootfs"))}


def root_relative_escape(o, p):
    return _with(o, p, lambda c: c["root"].update(path="../../../../../../..")), {}


def root_is_a_system_directory(o, p):
    return _with(o, p, lambda c: c["root"].update(path="/usr")), {}


def root_through_proc(o, p):
    return _with(o, p, lambda c: c["root"].update(path="/proc/self/root")), {}


def bind_of_host_root(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "bind", "/", ["rbind", "ro"])), {}


def bind_of_forbidden_dir(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "bind", o.canary_dir, ["rbind", "ro"])), {}


def bind_through_bundle_symlink(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "bind", "link", ["rbind", "ro"])), {
        "bundle_setup": lambda b: os.symlink(o.canary_dir, os.path.join(b, "link"))}


def bind_relative_escape(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "bind", "../../../../../../../etc", ["rbind", "ro"])), {}


def bind_through_proc_root(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "bind", "/proc/1/root/etc", ["rbind", "ro"])), {}


def bind_recognised_by_option_not_type(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "tmpfs", "/etc", ["bind", "ro"])), {}


def bind_parent_of_forbidden(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "bind", "/var/run", ["rbind", "ro"])), {}


def overlay_lowerdir_host(o, p):
    d = _data_dir(o, "ovl")
    for s in ("upper", "work"):
        os.makedirs(os.path.join(d, s), exist_ok=True)
    opts = [f"lowerdir={os.path.join(d, 'upper')}:/etc", f"upperdir={d}/upper", f"workdir={d}/work"]
    return _add_mount(o, p, _mount(o, "/mnt", "overlay", "overlay", opts)), {}


def overlay_upperdir_host(o, p):
    d = _data_dir(o, "ovl2")
    os.makedirs(os.path.join(d, "work"), exist_ok=True)
    opts = [f"lowerdir={d}", f"upperdir={o.canary_dir}", f"workdir={d}/work"]
    return _add_mount(o, p, _mount(o, "/mnt", "overlay", "overlay", opts)), {}


def overlay_option_injection(o, p):
    d = _data_dir(o, "ovl3")
    return _add_mount(o, p, _mount(o, "/mnt", "overlay", "overlay", [f"lowerdir={d},lowerdir=/etc"])), {}


def block_device_filesystem(o, p):
    dev, _ = _root_device()
    return _add_mount(o, p, _mount(o, "/mnt", "ext4", dev, ["ro"])), {}


def block_device_filesystem_allowed_type(o, p):
    dev, _ = _root_device()
    return _add_mount(o, p, _mount(o, "/mnt", "ext4", dev, ["ro"])), {}


def listener_socket_on_host(o, p):
    # a notify rule keeps the listener (without one sandbox drops listenerPath: runc would not use it)
    return _with(o, p, lambda c: c["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": os.path.join(o.canary_dir, "sock"),
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]})), {}


def criu_config_annotation(o, p):
    return _with(o, p, lambda c: c.setdefault("annotations", {}).update({"org.criu.config": "/etc/shadow"})), {}


def annotation_key_with_equals(o, p):
    return _with(o, p, lambda c: c.setdefault("annotations", {}).update({"org.criu.config=/etc/shadow": "x"})), {}


def hook_host_shell(o, p):
    return _with(o, p, _hook("prestart", "/bin/sh", _touch(o))), {}


def hook_named_like_engine(o, p):
    def setup(b):
        shutil.copyfile("/bin/sh", os.path.join(b, "dockerd"))
        os.chmod(os.path.join(b, "dockerd"), 0o755)  # noqa: S103
    args = ["libnetwork-setkey", "-c", f"touch {o.marker}"]
    return _with(o, p, _hook("prestart", "dockerd", args)), {"bundle_setup": setup}


def hook_engine_shaped_args_from_non_root_process(o, p, procs):
    args = ["libnetwork-setkey", "-exec-root=/run/x", HEX64, "0123456789ab"]
    return _with(o, p, _hook("prestart", f"/proc/{procs['non-root'].pid}/exe", args)), {}


def hook_engine_binary_in_user_writable_dir(o, p, procs):
    args = ["libnetwork-setkey", "-exec-root=/run/x", HEX64, "0123456789ab"]
    return _with(o, p, _hook("prestart", f"/proc/{procs['untrusted-dir'].pid}/exe", args)), {}


def hook_engine_with_loader_env(o, p, procs):
    args = ["libnetwork-setkey", "-exec-root=/run/x", HEX64, "0123456789ab"]
    return _with(o, p, _hook("prestart", f"/proc/{procs['trusted'].pid}/exe", args,
                             env=[f"LD_PRELOAD={o.canary_dir}/x.so"])), {}


def hook_engine_with_foreign_args(o, p, procs):
    return _with(o, p, _hook("prestart", f"/proc/{procs['trusted'].pid}/exe", _touch(o))), {}


def hook_create_container_stage(o, p):
    return _with(o, p, _hook("createContainer", "/bin/sh", _touch(o))), {}


def hook_create_runtime_stage(o, p):
    return _with(o, p, _hook("createRuntime", "/bin/sh", _touch(o))), {}


def hook_poststop_stage(o, p):
    return _with(o, p, _hook("poststop", "/bin/sh", _touch(o))), {}


def device_numbers_of_host_disk_under_allowed_name(o, p):
    _, (major, minor) = _root_device()

    def change(c):
        c["linux"]["devices"] = [{"path": "/dev/null", "type": "b", "major": major, "minor": minor,
                                  "fileMode": 0o666, "uid": 1000, "gid": 1000}]
        c["linux"]["resources"]["devices"].append({"allow": True, "type": "b", "major": major, "minor": minor,
                                                   "access": "rwm"})
    return _with(o, p, change), {}


def device_host_disk(o, p):
    dev, (major, minor) = _root_device()
    return _with(o, p, lambda c: c["linux"].update(devices=[{"path": dev, "type": "b", "major": major,
                                                              "minor": minor}])), {}


def device_path_outside_dev(o, p):
    return _with(o, p, lambda c: c["linux"].update(devices=[{"path": f"/dev/../etc/{o.name}/canary", "type": "c",
                                                              "major": 1, "minor": 3}])), {}


def device_through_dev_fd(o, p):
    return _with(o, p, lambda c: c["linux"].update(devices=[{"path": "/dev/fd/0", "type": "c", "major": 1,
                                                              "minor": 3}])), {}


def _ns(kind, path):
    def change(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != kind] + [
            {"type": kind, "path": path}]
    return change


def namespace_host_network(o, p):
    return _with(o, p, _ns("network", "/proc/1/ns/net")), {}


def namespace_host_mount(o, p):
    return _with(o, p, _ns("mount", "/proc/1/ns/mnt")), {}


def namespace_host_user(o, p):
    return _with(o, p, _ns("user", "/proc/1/ns/user")), {}


def namespace_not_a_namespace_file(o, p):
    return _with(o, p, _ns("network", os.path.join(o.canary_dir, "canary"))), {}


def namespace_other_container_mount(o, p, victim):
    return _with(o, p, _ns("mount", f"/proc/{victim['pid']}/ns/mnt")), {}


def namespace_kind_mismatch(o, p, victim):
    return _with(o, p, _ns("ipc", f"/proc/{victim['pid']}/ns/net")), {}


def cgroup_host_root(o, p):
    return _with(o, p, lambda c: c["linux"].update(cgroupsPath="/")), {}


def cgroup_relative_climb(o, p):
    return _with(o, p, lambda c: c["linux"].update(cgroupsPath="../../..")), {}


def cgroup_of_another_container(o, p, victim):
    return _with(o, p, lambda c: c["linux"].update(cgroupsPath=victim["cgroup"])), {}


def resctrl_group_of_another(o, p):
    return _with(o, p, lambda c: c["linux"].update(intelRdt={"closID": "shared-group"})), {}


def second_proc_without_masks(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "proc", "proc", [])), {}


def second_sysfs(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "sysfs", "sysfs", ["ro"])), {}


def cgroup2_elsewhere(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "cgroup2", "cgroup2", [])), {}


def remount_of_system_mount(o, p):
    return _add_mount(o, p, _mount(o, "/sys", "tmpfs", "tmpfs", ["remount", "rw"])), {}


def kernel_filesystem(fstype):
    def build(o, p):
        return _add_mount(o, p, _mount(o, "/mnt", fstype, fstype, [])), {}
    build.__name__ = f"kernel_filesystem_{fstype}"
    return build


def network_filesystem(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "nfs", "127.0.0.1:/", ["ro", "nolock", "addr=127.0.0.1"])), {}


def tmpfs_option_smuggling(o, p):
    return _add_mount(o, p, _mount(o, "/mnt", "tmpfs", "tmpfs", ["size=1m,nr_inodes=0"])), {}


def unknown_field(path, value):
    def build(o, p):
        def change(c):
            node = c
            for k in path[:-1]:
                node = node.setdefault(k, {})
            node[path[-1]] = value
        return _with(o, p, change), {}
    build.__name__ = "unknown_field_" + "_".join(path)
    return build


def unified_cgroup_procs(o, p):
    return _with(o, p, lambda c: c["linux"]["resources"].update(unified={"cgroup.procs": "1"})), {}


def net_cls_class_id(o, p):
    return _with(o, p, lambda c: c["linux"]["resources"].update(network={"classID": 1048577})), {}


def systemd_property_annotation(o, p):
    return _with(o, p, lambda c: c.setdefault("annotations", {}).update(
        {"org.systemd.property.MemoryMax": "infinity"})), {}


def cve_2024_21626_cwd(o, p):
    return _with(o, p, lambda c: c["process"].update(cwd="/proc/self/fd/7")), {}


def cve_2024_21626_exec_path(o, p):
    return _with(o, p, lambda c: c["process"].update(args=["/proc/self/fd/7/../../../probe", "oracle", o.name])), {}


def cve_2019_16884_proc_symlink(o, p):
    rootfs = o.rootfs_variant("proc-symlink", lambda r: (os.rmdir(os.path.join(r, "proc")),
                                                         os.symlink("/tmp", os.path.join(r, "proc"))))
    return _with(o, p, lambda c: c["root"].update(path=rootfs)), {}


def cve_2024_45310_nested_in_shared_volume(o, p):
    vol, other = _data_dir(o, "vol"), _data_dir(o, "other")

    def change(c):
        c["mounts"] += [_mount(o, "/vol", "bind", vol, ["rbind", "rw"]),
                        _mount(o, "/vol/sub", "bind", other, ["rbind", "rw"])]
    return _with(o, p, change), {}


def cve_2025_52881_bind_onto_proc(o, p):
    d = _data_dir(o, "cpuinfo")
    f = os.path.join(d, "cpuinfo")
    open(f, "w").close()
    return _add_mount(o, p, _mount(o, "/proc/cpuinfo", "bind", f, ["bind", "ro"])), {}


def dev_not_a_tmpfs(o, p):
    d = _data_dir(o, "dev")

    def change(c):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/dev"]
        c["mounts"].insert(1, _mount(o, "/dev", "bind", d, ["rbind"]))
    return _with(o, p, change), {}


ATTACKS = [
    # host-path gate: root.path
    ("root", root_is_host_root, ALL),
    ("root", root_symlink_to_host_root, ALL),
    ("root", root_relative_escape, ALL),
    ("root", root_is_a_system_directory, ALL),
    ("root", root_through_proc, ALL),
    # bind sources
    ("bind", bind_of_host_root, ALL),
    ("bind", bind_of_forbidden_dir, ALL),
    ("bind", bind_through_bundle_symlink, ALL),
    ("bind", bind_relative_escape, ALL),
    ("bind", bind_through_proc_root, ALL),
    ("bind", bind_recognised_by_option_not_type, ALL),
    ("bind", bind_parent_of_forbidden, ALL),
    # overlay directories
    ("overlay", overlay_lowerdir_host, ALL),
    ("overlay", overlay_upperdir_host, ALL),
    ("overlay", overlay_option_injection, ALL),
    # other mount sources, listener, CRIU configuration
    ("mount-source", block_device_filesystem, ALL),
    ("listener", listener_socket_on_host, ALL),
    ("criu-config", criu_config_annotation, ALL),
    ("criu-config", annotation_key_with_equals, ALL),
    # hooks
    ("hook", hook_host_shell, ALL),
    ("hook", hook_named_like_engine, ALL),
    ("hook", hook_create_container_stage, ALL),
    ("hook", hook_create_runtime_stage, ALL),
    ("hook", hook_poststop_stage, ALL),
    # devices
    ("device", device_numbers_of_host_disk_under_allowed_name, ALL),
    ("device", device_host_disk, ALL),
    ("device", device_path_outside_dev, ALL),
    ("device", device_through_dev_fd, ALL),
    # namespaces
    ("namespace", namespace_host_network, ALL),
    ("namespace", namespace_host_mount, ALL),
    ("namespace", namespace_host_user, ALL),
    ("namespace", namespace_not_a_namespace_file, ALL),
    # cgroups, resctrl
    ("cgroup", cgroup_host_root, ALL),
    ("cgroup", cgroup_relative_climb, ALL),
    ("resctrl", resctrl_group_of_another, LOCKED),
    # mount types
    ("mount-type", second_proc_without_masks, ALL),
    ("mount-type", second_sysfs, ALL),
    ("mount-type", cgroup2_elsewhere, ALL),
    ("mount-type", remount_of_system_mount, ALL),
    *(("mount-type", kernel_filesystem(t), ALL) for t in (
        "debugfs", "securityfs", "bpf", "configfs", "tracefs", "devtmpfs", "hugetlbfs", "binfmt_misc", "pstore",
        "fusectl", "ramfs", "9p", "xfs", "btrfs", "")),
    ("mount-type", network_filesystem, ALL),
    ("mount-option", tmpfs_option_smuggling, LOCKED),
    # config fields
    *(("config-field", unknown_field(path, value), LOCKED) for path, value in (
        (("linux", "personality"), {"domain": "LINUX32"}), (("domainname",), "example"),
        (("linux", "timeOffsets"), {"monotonic": {"secs": 1}}), (("process", "ioPriority"), {"class": "IOPRIO_CLASS_RT"}),
        (("process", "scheduler"), {"policy": "SCHED_FIFO", "priority": 50}), (("windows",), {"layerFolders": []}),
        (("mounts_extra",), []))),
    ("config-field", unified_cgroup_procs, ALL),
    ("config-field", net_cls_class_id, LOCKED),
    ("config-field", systemd_property_annotation, LOCKED),
    # runc CVEs
    ("CVE-2024-21626", cve_2024_21626_cwd, ALL),
    ("CVE-2024-21626", cve_2024_21626_exec_path, ALL),
    ("CVE-2019-16884", cve_2019_16884_proc_symlink, ALL),
    ("CVE-2024-45310", cve_2024_45310_nested_in_shared_volume, ALL),
    ("CVE-2025-52881", cve_2025_52881_bind_onto_proc, ALL),
    ("CVE-2025-31133", dev_not_a_tmpfs, ALL),
]
NEEDS_PROCS = [
    ("hook", hook_engine_shaped_args_from_non_root_process, ALL),
    ("hook", hook_engine_binary_in_user_writable_dir, ALL),
    ("hook", hook_engine_with_loader_env, ALL),
    ("hook", hook_engine_with_foreign_args, ALL),
]
NEEDS_VICTIM = [
    ("namespace", namespace_other_container_mount, ALL),
    ("namespace", namespace_kind_mismatch, ALL),
    ("cgroup", cgroup_of_another_container, ALL),
]


def _check(oracle, profile, build, refused_under, row, *extra):
    config, kwargs = build(oracle, profile, *extra)
    cid = "oracle-" + os.urandom(6).hex()
    res = oracle.run(config, profile, cid=cid, **kwargs)
    RESULTS.append((row, build.__name__, profile, res.outcome, res.reason))
    assert not res.breaches, res.describe()
    if profile in refused_under:
        assert res.outcome == "refused", f"{build.__name__} under {profile} was not refused\n{res.describe()}"
        assert res.reason, res.describe()
    return res


def _cases(table):
    return [pytest.param(row, build, profile, refused, id=f"{row}-{build.__name__}-{profile}")
            for row, build, refused in table for profile in ALL]


@pytest.mark.parametrize("row,build,profile,refused_under", _cases(ATTACKS))
def test_attack_is_refused_or_harmless(oracle, row, build, profile, refused_under):
    _check(oracle, profile, build, refused_under, row)


@pytest.mark.parametrize("row,build,profile,refused_under", _cases(NEEDS_PROCS))
def test_hook_attack_by_engine_identity(oracle, host_processes, row, build, profile, refused_under):
    _check(oracle, profile, build, refused_under, row, host_processes)


@pytest.mark.parametrize("row,build,profile,refused_under", _cases(NEEDS_VICTIM))
def test_attack_on_another_container(oracle, victim, row, build, profile, refused_under):
    _check(oracle, profile, build, refused_under, row, victim)


def test_allowed_type_still_goes_through_the_host_path_gate(oracle):
    """block_device_filesystem_allowed_type: a profile that adds ext4 still may not name a host disk."""
    path = oracle.custom_profile("oracle-ext4", "extends: baseline\nfilesystem:\n  mount_types: [ext4]\n")
    oracle.profile(path)
    config, kwargs = block_device_filesystem_allowed_type(oracle, "baseline")
    res = oracle.run(config, path)
    assert res.outcome == "refused" and "/dev" in res.reason and not res.breaches, res.describe()


def test_allow_listed_hook_with_loader_env_is_refused(oracle):
    path = oracle.custom_profile("oracle-hook", "extends: baseline\nhooks:\n  allow: [/usr/bin/true]\n")
    cfg = oracle.base_config("baseline")
    _hook("prestart", "/usr/bin/true", ["true"], env=[f"LD_PRELOAD={oracle.canary_dir}/x.so"])(cfg)
    res = oracle.run(cfg, path)
    assert res.outcome == "refused" and "LD_PRELOAD" in res.reason and not res.breaches, res.describe()
    cfg = oracle.base_config("baseline")
    _hook("prestart", "/usr/bin/true", ["true"])(cfg)
    res = oracle.run(cfg, path)
    assert res.outcome == "ran" and not res.breaches, res.describe()


@pytest.mark.parametrize("profile", ALL)
def test_the_probe_runs_and_sees_nothing_of_the_host(oracle, profile):
    """The control: the plain config runs under every profile, and the probe walked its filesystem."""
    res = oracle.run(oracle.base_config(profile), profile)
    assert res.outcome == "ran" and not res.breaches, res.describe()
    assert int(res.stdout.split("ORACLE walked=")[1].split()[0]) > 100


def test_the_oracle_sees_a_breach_when_there_is_one(oracle):
    """The oracle itself: plain runc with the canary directory bound in, and a host hook, is caught."""
    cfg = oracle.base_config("baseline")
    cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": oracle.canary_dir, "options": ["rbind"]})
    _hook("prestart", "/bin/sh", _touch(oracle))(cfg)
    r = oracle.run_plain(cfg)
    assert any("visible inside" in b for b in r.breaches), r.describe()
    assert any("marker" in b for b in r.breaches), r.describe()
    assert any("secret" in b for b in r.breaches), r.describe()


def test_cve_2024_21626_is_fixed_in_this_runc(oracle):
    """Debian's 1.1.5+ds1-1+deb12u1 carries the fd-leak fix: plain runc refuses a cwd through a leaked fd."""
    cfg = oracle.base_config("baseline")
    cfg["process"]["cwd"] = "/proc/self/fd/7"
    res = oracle.run_plain(cfg)
    assert res.returncode != 0 and "DONE" not in res.stdout and not res.breaches, res.describe()


def test_cve_2025_31133_masked_path_redirect(oracle):
    """An image whose /dev/null is a symlink, in a bundle without a /dev mount: plain runc 1.1.5 masks
    /proc/keys with the symlink's target (here a file of the image); sandbox gives the container a fresh
    /dev tmpfs, so /proc/keys is masked with runc's own /dev/null.

    The plain-runc control writes what it read to a bound result directory, never to its stdout:
    runc re-opens any standard stream whose device number equals the container's /dev/null's (a
    regular file's is 0, like a pipe's) onto that file."""

    def plant(r):
        with open(os.path.join(r, "mask-target"), "w") as f:
            f.write("MASKED-TARGET\n")
        os.makedirs(os.path.join(r, "dev"), exist_ok=True)
        os.symlink("/mask-target", os.path.join(r, "dev", "null"))

    rootfs = oracle.rootfs_variant("devnull-symlink", plant)
    result = _data_dir(oracle, "cve-2025-31133")
    control = oracle.base_config("baseline", ["/bin/sh", "-c", "head -c 13 /proc/keys > /result/out"])
    control["root"].update(path=rootfs, readonly=False)
    control["mounts"] = [m for m in control["mounts"] if not m["destination"].startswith("/dev")]
    control["mounts"].append({"destination": "/result", "type": "bind", "source": result, "options": ["rbind"]})
    oracle.run_plain(control, capture=False)
    with open(os.path.join(result, "out")) as f:
        assert f.read() == "MASKED-TARGET", "plain runc no longer masks /proc/keys with the symlink's target"
    cfg = oracle.base_config("baseline", ["/bin/sh", "-c", f"head -c 13 /proc/keys; /probe oracle {oracle.name}"])
    cfg["root"]["path"] = rootfs
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]
    for profile in ALL:
        if profile != "baseline":
            cfg["process"]["user"] = oracle.base_config(profile)["process"]["user"]
        res = oracle.run(cfg, profile)
        assert res.outcome == "ran" and "MASKED-TARGET" not in res.stdout and not res.breaches, res.describe()
