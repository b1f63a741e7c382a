"""User namespaces sandbox adds: the transform's plan for the runtime, the id pool, the engine
directories, and the small parsers they rest on.  The kernel side is tests/e2e/test_userns_real.py."""

import json
import multiprocessing
import os

import pytest

from sandbox.core import loader
from sandbox.core.decisions import ROOTFS_TARGET
from sandbox.core.hostfacts import HostFacts, RootfsFacts
from sandbox.core.profile import IdMapping
from sandbox.core.transform import apply
from sandbox.core.transform.user import needs_id_range
from sandbox.core.verify import ProcState, id_range_check
from sandbox.errors import ConfigError, PolicyRefusal
from sandbox.host.idpool import allocate, ids_dir, in_use, pod_of, release
from sandbox.host.mountns import split_layers, split_overlay_options
from sandbox.host.opconfig import OperatorConfig, load_operator_config
from tests.conftest import OCI, nethook_facts

RANGE = IdMapping(0, 1 << 30, 65536)
ENGINE = "/var/lib/containerd/engine"
PARENTS = (("/", 0, 0, 0o755), ("/var", 0, 0, 0o755), ("/var/lib", 0, 0, 0o755), ("/var/lib/containerd", 0, 0, 0o711), (ENGINE, 0, 0, 0o700),
           (f"{ENGINE}/c1", 0, 0, 0o700))
ROOTFS = f"{ENGINE}/c1/rootfs"


def spec():
    with open(os.path.join(OCI, "runc-spec-1.1.json")) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": ROOTFS, "readonly": True}
    return cfg


def strict(**fs):
    p = loader.load_profile("strict")
    if fs:
        from sandbox._record import replace

        p = replace(p, filesystem=replace(p.filesystem, **fs))
    return p


def facts(kind="dir", owner=0, parents=PARENTS, **kw):
    rootfs = RootfsFacts(path=ROOTFS, kind=kind, fs_type="overlay" if kind == "overlay" else "ext4",
                         owner_uid=owner, parents=parents,
                         layers=(f"{ENGINE}/s/2/fs", f"{ENGINE}/s/1/fs") if kind == "overlay" else (),
                         overlay_options=("index=off",) if kind == "overlay" else (),
                         problem="its overlay has data-only layers" if kind == "unsupported" else "")
    return HostFacts(rootfs=rootfs, id_range=RANGE, **{**nethook_facts(), **kw})  # strict adds the network hook


def rootfs_decision(out):
    """The user-namespace step's decision about the root (the host-path gate's keep comes first)."""
    return next(d for d in out.decisions if d.pointer == "/root/path" and d.control == "user")


# -- the transform ------------------------------------------------------------------------------------

def test_a_plain_directory_gets_an_idmapped_bind_and_the_allocated_range():
    out = apply(strict(), spec(), facts())
    assert not out.refused, [d.reason for d in out.refusals]
    assert out.config["linux"]["uidMappings"] == out.config["linux"]["gidMappings"] == [RANGE.to_oci()]
    assert out.config["root"]["path"] == ROOTFS_TARGET
    assert out.prep.rootfs.kind == "idmapped-bind" and out.prep.rootfs.source == ROOTFS
    assert out.prep.uid_mappings == (RANGE,) and out.prep.enter == ()
    d = rootfs_decision(out)
    assert d.action == "set" and f"{ENGINE} (mode 0700)" in d.reason and "host uid 0" in d.reason


def test_an_overlay_rootfs_gets_a_view_of_its_idmapped_layers_when_read_only():
    out = apply(strict(), spec(), facts("overlay"))
    assert not out.refused
    assert out.prep.rootfs.kind == "idmapped-overlay"
    assert out.prep.rootfs.layers == (f"{ENGINE}/s/2/fs", f"{ENGINE}/s/1/fs")
    assert out.prep.rootfs.overlay_options == ("index=off",)


def test_a_writable_overlay_rootfs_is_refused_with_what_to_change():
    cfg = spec()
    cfg["root"]["readonly"] = False
    out = apply(strict(readonly_rootfs=False), cfg, facts("overlay"))
    assert out.refused and out.prep is None
    reason = out.refusals[0].reason
    assert "overlay mount" in reason and "filesystem.readonly_rootfs: true" in reason and "--userns-remap" in reason


def test_a_rootfs_that_cannot_be_placed_is_refused_with_the_reason():
    out = apply(strict(), spec(), facts("unsupported"))
    assert out.refused and "data-only layers" in out.refusals[0].reason


def test_a_rootfs_already_owned_by_the_range_and_reachable_is_left_alone():
    open_parents = tuple((p, u, g, 0o755) for p, u, g, _ in PARENTS)
    out = apply(strict(), spec(), facts(owner=RANGE.host_id, parents=open_parents))
    assert out.prep is None and out.config["root"]["path"] == ROOTFS
    assert rootfs_decision(out).action == "keep"
    # owned, but behind a 0700 directory: a plain bind out of there
    out = apply(strict(), spec(), facts(owner=RANGE.host_id))
    assert out.prep.rootfs.kind == "bind"


def test_an_app_container_joins_its_pods_user_namespace():
    path = "/proc/4242/ns/user"
    out = apply(strict(), spec(), facts(pod_userns=path, host_namespaces={path: False}, namespace_kinds={path: "user"},
                                        userns_maps_host_root={path: False}))
    assert not out.refused
    nss = out.config["linux"]["namespaces"]
    assert {"type": "user", "path": path} in nss and {"type": "user"} not in nss
    assert out.config["linux"]["uidMappings"] == [RANGE.to_oci()]
    assert any(d.action == "keep" and d.pointer.startswith("/linux/namespaces") and "user namespace" in d.reason
               for d in out.decisions)


def test_the_host_user_namespace_is_never_joined_as_a_pod_namespace():
    out = apply(strict(), spec(), facts(pod_userns="/proc/1/ns/user", host_namespaces={"/proc/1/ns/user": True}))
    assert out.refused


def test_namespaces_the_host_user_namespace_owns_are_entered_by_the_runtime_and_sysfs_is_replaced():
    cfg = spec()
    netns = "/run/netns/cni-1"
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["linux"]["namespaces"].append({"type": "network", "path": netns})
    out = apply(strict(), cfg, facts(host_namespaces={netns: False}, host_owned_namespaces=frozenset({netns})))
    assert not out.refused
    assert not any(n.get("type") == "network" for n in out.config["linux"]["namespaces"])
    assert out.prep.enter == (("network", netns),)
    sys_mount = next(m for m in out.config["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "tmpfs" and "/sys" in out.config["linux"]["readonlyPaths"]


def test_bind_mounts_keep_the_flags_the_kernel_locks():
    cfg = spec()
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "/run/engine/shm",
                          "options": ["rbind", "ro"]})
    out = apply(strict(), cfg, facts(source_mount_flags={"/run/engine/shm": ("rw", "nosuid", "nodev", "noexec",
                                                                             "relatime")}))
    shm = next(m for m in out.config["mounts"] if m["destination"] == "/data")
    assert {"nosuid", "nodev", "noexec", "relatime"} <= set(shm["options"])


def test_complain_mode_prepares_nothing():
    from sandbox._record import replace

    out = apply(replace(strict(), mode="complain"), spec(), facts())
    assert out.prep is None and out.config["root"]["path"] == ROOTFS


def test_a_config_json_already_hardened_by_sandbox_is_refused():
    cfg = spec()
    cfg["root"]["path"] = ROOTFS_TARGET
    out = apply(loader.load_profile("baseline"), cfg, HostFacts())
    assert out.refused and "already hardened" in out.refusals[0].reason


def test_a_dry_run_without_a_rootfs_says_what_would_happen():
    out = apply(strict(), spec(), HostFacts(rootfs_owner_uid=0))
    assert out.prep is None
    assert any(d.action == "warn" and "idmapped view" in d.reason for d in out.decisions)


def test_which_creates_need_a_range_from_the_pool():
    assert needs_id_range(strict(), spec())
    assert not needs_id_range(loader.load_profile("restricted"), spec())
    cfg = spec()
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 5 << 20, "size": 65536}]
    assert not needs_id_range(strict(), cfg)  # the bundle names its own
    cfg = spec()
    cfg["linux"]["namespaces"].append({"type": "user"})
    assert not needs_id_range(strict(), cfg)  # the engine made the user namespace


# -- the id pool -------------------------------------------------------------------------------------------

@pytest.fixture
def op(tmp_path, monkeypatch):
    monkeypatch.delenv("SANDBOX_RUNTIME_DIR", raising=False)
    return OperatorConfig(runtime_dir=str(tmp_path / "rt"), id_pool=((1 << 30, 4 * 65536),))


def test_ranges_are_distinct_and_a_pod_shares_one(op, tmp_path):
    root = str(tmp_path / "runc")
    a = allocate(op, runc_root=root, container_id="a")
    b = allocate(op, runc_root=root, container_id="b")
    pod = allocate(op, runc_root=root, container_id="pod1", pod="pod1")
    app = allocate(op, runc_root=root, container_id="app1", pod="pod1")
    assert len({a.host_id, b.host_id, pod.host_id}) == 3 and app == pod
    assert {r["key"] for r in in_use(op)} == {"a", "b", "pod1"}
    rec = next(r for r in in_use(op) if r["key"] == "pod1")
    assert rec["members"] == ["pod1", "app1"]
    assert os.stat(ids_dir(op)).st_mode & 0o777 == 0o700


def test_a_range_is_kept_while_runc_knows_a_member_and_freed_after(op, tmp_path):
    root = tmp_path / "runc"
    first = allocate(op, runc_root=str(root), container_id="c1", creator=_dead_pid())
    (root / "c1").mkdir(parents=True)  # `runc create` made its state directory
    assert allocate(op, runc_root=str(root), container_id="c2").host_id != first.host_id
    (root / "c1").rmdir()  # `runc delete`
    assert allocate(op, runc_root=str(root), container_id="c3").host_id == first.host_id


def test_a_range_is_kept_while_its_creator_lives(op, tmp_path):
    root = str(tmp_path / "runc")
    first = allocate(op, runc_root=root, container_id="c1")  # this process: alive, container not made yet
    assert allocate(op, runc_root=root, container_id="c2").host_id != first.host_id


def test_release_frees_a_range_at_once_and_an_exhausted_pool_refuses(op, tmp_path):
    root = str(tmp_path / "runc")
    got = [allocate(op, runc_root=root, container_id=f"c{i}") for i in range(4)]
    with pytest.raises(PolicyRefusal, match="id pool is exhausted"):
        allocate(op, runc_root=root, container_id="c4")
    release(op, runc_root=root, container_id="c2")
    assert allocate(op, runc_root=root, container_id="c4") == got[2]


def test_an_unreadable_record_keeps_its_range_out_of_use(op, tmp_path):
    root = str(tmp_path / "runc")
    os.makedirs(ids_dir(op), mode=0o700)
    with open(os.path.join(ids_dir(op), f"{1 << 30}.json"), "w") as f:
        f.write("{torn")
    assert allocate(op, runc_root=root, container_id="c1").host_id == (1 << 30) + 65536


def _alloc_in_child(args):
    op, root, cid = args
    return allocate(op, runc_root=root, container_id=cid).host_id


def test_concurrent_allocations_never_share_a_range(op, tmp_path):
    root = str(tmp_path / "runc")
    big = OperatorConfig(runtime_dir=op.runtime_dir, id_pool=((1 << 30, 64 * 65536),))
    with multiprocessing.get_context("fork").Pool(8) as pool:
        got = pool.map(_alloc_in_child, [(big, root, f"c{i}") for i in range(24)])
    assert len(set(got)) == 24


def _dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@pytest.mark.parametrize("ann,want", [
    ({"io.kubernetes.cri.sandbox-id": "p1", "io.kubernetes.cri.container-type": "sandbox"}, ("p1", True)),
    ({"io.kubernetes.cri.sandbox-id": "p1", "io.kubernetes.cri.container-type": "container"}, ("p1", False)),
    ({"io.kubernetes.cri-o.SandboxID": "p2", "io.kubernetes.cri-o.ContainerType": "sandbox"}, ("p2", True)),
    ({"io.kubernetes.cri.sandbox-id": "../x"}, None),
    ({}, None),
])
def test_pod_membership_from_the_engines_annotations(ann, want):
    assert pod_of({"annotations": ann}) == want


# -- operator config ---------------------------------------------------------------------------------------

def _conf(tmp_path, text):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    os.chmod(p, 0o644)
    return str(p)


def test_id_pool_is_read_subuid_style(tmp_path):
    op = load_operator_config(_conf(tmp_path, 'id_pool: ["200000:655360", "3000000:65536"]\nruntime_dir: /x\n'))
    assert op.id_pool == ((200000, 655360), (3000000, 65536)) and op.runtime_dir == "/x"
    assert load_operator_config(_conf(tmp_path, 'id_pool: "200000:655360"\n')).id_pool == ((200000, 655360),)
    assert OperatorConfig().id_pool == ((1 << 30, 1 << 28),)


@pytest.mark.parametrize("value,msg", [
    ('"100000"', "START:COUNT"),
    ('"100000:100"', "COUNT at least 65536"),
    ('"0:65536"', "host id 0"),
    ('["100000:131072", "150000:65536"]', "overlap"),
    ('[1, 2]', "START:COUNT"),
])
def test_a_bad_id_pool_names_file_line_and_field(tmp_path, value, msg):
    path = _conf(tmp_path, f"runc: /usr/sbin/runc\nid_pool: {value}\n")
    with pytest.raises(ConfigError) as e:
        load_operator_config(path)
    assert str(e.value).startswith(f"{path}:2") and "id_pool" in str(e.value) and msg in str(e.value)


# -- parsers -----------------------------------------------------------------------------------------------

def test_overlay_options_and_layers_with_escapes():
    opts = split_overlay_options(r"rw,lowerdir=/a\,b:/c\:d:/e,upperdir=/u,workdir=/w,index=off,lowerdir+=/f")
    assert dict(opts)["upperdir"] == "/u" and ("lowerdir+", "/f") in opts
    assert split_layers(dict(opts)["lowerdir"]) == ["/a,b", "/c:d", "/e"]
    assert split_overlay_options("rw,lowerdir=/with\\040space") == [("rw", ""), ("lowerdir", "/with space")]


def test_the_recorded_id_range_is_what_verify_checks():
    ann = {"org.sandbox-runtime.profile.applied": f"strict@0123456789abcdef;userns={1 << 30}:65536"}
    good = ProcState(1, uid_map=((0, 1 << 30, 65536),), gid_map=((0, 1 << 30, 65536),))
    assert id_range_check(ann, good).status == "PASS"
    bad = ProcState(1, uid_map=((0, 100000, 65536),), gid_map=((0, 1 << 30, 65536),))
    assert id_range_check(ann, bad).status == "FAIL"
    assert id_range_check({"org.sandbox-runtime.profile.applied": "strict@0123456789abcdef"}, good) is None


# -- engine directories ------------------------------------------------------------------------------------

def test_containerd_roots_come_from_its_flags_and_config(tmp_path):
    from sandbox.host.engines import containerd_dirs

    conf = tmp_path / "config.toml"
    conf.write_text('version = 2\nroot = "/data/ctrd"\nstate = "/run/ctrd"\n')
    got = [d.path for d in containerd_dirs(["containerd", "--config", str(conf)], "pid 1")]
    assert got == ["/run/ctrd/io.containerd.grpc.v1.cri/sandboxes", "/data/ctrd/io.containerd.grpc.v1.cri/sandboxes"]
    got = [d.path for d in containerd_dirs(["containerd", "-c", str(conf), "--root", "/r2"], "pid 1")]
    assert got[1] == "/r2/io.containerd.grpc.v1.cri/sandboxes"  # the flag wins over the file


def test_dockerd_data_root_and_its_userns_remap_layout(tmp_path):
    from sandbox.host.engines import dockerd_dirs

    root = tmp_path / "docker"
    (root / "1500000000.1500000000").mkdir(parents=True)
    (root / "volumes").mkdir()
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(json.dumps({"data-root": str(root), "userns-remap": "default"}))
    got = {d.path for d in dockerd_dirs(["dockerd", "--config-file", str(daemon_json)], "pid 2")}
    assert got == {f"{root}/containers", f"{root}/volumes", f"{root}/1500000000.1500000000/containers",
                   f"{root}/1500000000.1500000000/volumes"}
    got = {d.path for d in dockerd_dirs(["dockerd", "--data-root=/elsewhere", "--config-file", str(daemon_json)],
                                        "pid 2")}
    assert "/elsewhere/containers" in got


def test_crio_and_podman_storage_roots(tmp_path):
    from sandbox.host.engines import _conmon_argv, storage_dirs

    crio = tmp_path / "crio.conf"
    crio.write_text('[crio]\nroot = "/srv/storage"\nrunroot = "/run/srv"\n')
    assert [d.path for d in storage_dirs("crio", ["crio", "--config", str(crio)], "x")] == ["/srv/storage", "/run/srv"]
    conmon = ["conmon", "--exit-command-arg", "--root", "--exit-command-arg", "/p/root", "--exit-command-arg",
              "--runroot", "--exit-command-arg", "/p/run"]
    assert [d.path for d in storage_dirs("podman", _conmon_argv(conmon), "x")] == ["/p/root", "/p/run"]


def test_engine_directories_are_cached_and_scanned_again_when_asked(tmp_path, monkeypatch):
    from sandbox.host import engines

    monkeypatch.delenv("SANDBOX_RUNTIME_DIR", raising=False)
    op = OperatorConfig(runtime_dir=str(tmp_path / "rt"))
    calls = []

    def discover():
        calls.append(1)
        return [engines.EngineDir("dockerd", f"/d{len(calls)}/containers", "test")]

    monkeypatch.setattr(engines, "discover", discover)
    assert engines.engine_dirs(op) == (("/d1/containers",), True)
    assert engines.engine_dirs(op) == (("/d1/containers",), False)  # from the cache
    assert engines.engine_dirs(op, fresh=True) == (("/d2/containers",), True)
    os.chmod(tmp_path / "rt" / "engines.json", 0o666)  # a cache others could write is not used
    assert engines.engine_dirs(op)[1] is True
