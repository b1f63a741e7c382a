"""User namespaces sandbox adds, with the real runc and kernel: the rootfs view its root owns, the id
ranges it hands out, and that nothing sandbox mounts is ever left on the host, even when
`sandbox-runc create` is killed half-way."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from sandbox.host.bundle import spec_for_rootfs
from tests.conftest import ROOT
from tests.e2e.engines import PrivateRunc

pytestmark = pytest.mark.e2e

TARGET = "/run/sandbox-rootfs"
POOL_START = 1 << 30
KILL_ROUNDS = int(os.environ.get("SANDBOX_USERNS_KILL_ROUNDS", "8"))


@pytest.fixture
def env(e2e, tmp_path, demo_rootfs):
    os.chmod(tmp_path, 0o755)
    e = PrivateRunc(tmp_path, e2e, demo_rootfs, default_profile="strict")
    # a runtime directory (id ranges in use) of this test's own, so the ranges handed out are predictable
    e.env["SANDBOX_RUNTIME_DIR"] = str(tmp_path / "runtime")
    yield e
    e.delete_all()


def _bundle(env, name="bundle", args=("sleep", "30"), mutate=None, rootfs=None):
    b = env.tmp / name
    b.mkdir()
    cfg = spec_for_rootfs(rootfs or env.rootfs, list(args))
    if mutate:
        mutate(cfg)
    (b / "config.json").write_text(json.dumps(cfg))
    return str(b)


def _host_has_view():
    with open("/proc/self/mountinfo") as f:
        return any(f" {TARGET} " in line for line in f)


def _holders_of(mnt_ns_inode):
    """Processes still in the mount namespace with this inode."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}/ns/mnt").st_ino == mnt_ns_inode:
                    out.append(int(pid))
            except OSError:
                pass
    return out


def _range_of(env, cid):
    resolved = next(r["data"] for r in env.records() if r["container_id"] == cid and r["event"] == "profile_resolved")
    return int(resolved["id_range"].split(":")[0])


def _uid_map(pid):
    with open(f"/proc/{pid}/uid_map") as f:
        return tuple(int(x) for x in f.read().split())


def test_strict_container_owns_its_image_files_and_verifies(env):
    b = _bundle(env)
    res = env.run_shim("create", "--bundle", b, "c1")
    assert res.returncode == 0, res.stderr
    st = env.state("c1")
    start = _range_of(env, "c1")
    assert start == POOL_START and _uid_map(st["pid"]) == (0, start, 65536)
    assert st["rootfs"] == TARGET and not _host_has_view()
    # the image's root-owned files, seen by the container, belong to its root
    view = os.stat(f"/proc/{st['pid']}/root/etc/passwd")
    assert (view.st_uid, view.st_gid) == (start, start)
    assert os.stat(os.path.join(env.rootfs, "etc", "passwd")).st_uid == 0  # the image itself is unchanged
    config = json.loads(open(os.path.join(b, "config.json")).read())
    assert config["annotations"]["org.sandbox-runtime.profile.applied"].endswith(f";userns={start}:65536")
    v = subprocess.run([sys.executable, "-m", "sandbox", "verify", "c1", "--root", env.root, "--format", "json",
                        "--audit-log", str(env.tmp / "verify.jsonl")], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env=env.env)
    checks = {c["control"]: c for c in json.loads(v.stdout)["checks"]}
    assert v.returncode == 0, v.stdout
    assert checks["user.id_range"]["status"] == "PASS" and checks["user.uid_map"]["status"] == "PASS"


def test_concurrent_creates_get_disjoint_ranges_and_a_gone_containers_range_is_reused(env):
    ids = [f"par{i}" for i in range(6)]
    bundles = {cid: _bundle(env, name=cid) for cid in ids}  # an engine gives every container a bundle
    results = {}

    def create(cid):
        results[cid] = env.run_shim("create", "--bundle", bundles[cid], cid)

    threads = [threading.Thread(target=create, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), {c: r.stderr for c, r in results.items()}
    starts = {cid: _range_of(env, cid) for cid in ids}
    assert len(set(starts.values())) == len(ids)  # disjoint: distinct 65536-aligned starts
    for cid in ids:
        assert _uid_map(env.state(cid)["pid"]) == (0, starts[cid], 65536)
    # a range whose container runc no longer knows is handed out again
    freed = starts["par0"]
    subprocess.run([env.runc, "--root", env.root, "delete", "-f", "par0"], check=True, timeout=30)
    assert env.run_shim("create", "--bundle", _bundle(env, name="again"), "again").returncode == 0
    assert sorted(starts.values()) == [POOL_START + i * 65536 for i in range(6)]  # the pool's first six
    assert _range_of(env, "again") == freed


def test_root_writes_where_the_image_lets_it_and_nowhere_on_the_host(env, tmp_path):
    """A profile like strict but with a writable root: the container's root writes its own rootfs (a copy of
    the image), as root; a host directory bound in read-write stays closed to it (host uid 0 owns it)."""
    rootfs = tmp_path / "writable-rootfs"
    shutil.copytree(env.rootfs, rootfs, symlinks=True)
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir(mode=0o755)
    profile = tmp_path / "strict-writable.yaml"
    profile.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: strict-writable\nextends: strict\n"
                       f"filesystem:\n  readonly_rootfs: false\n  allowed_host_paths: [{host_dir}]\n"
                       "  bind_mounts: {readonly: false}\n")
    os.chmod(profile, 0o644)
    env.write_config(default_profile=str(profile))

    def mutate(cfg):
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/host", "type": "bind", "source": str(host_dir),
                              "options": ["rbind", "rw"]})

    b = _bundle(env, args=("sh", "-c", "echo x > /root/by-root && echo image-ok; echo x > /host/f || echo host-no"),
                mutate=mutate, rootfs=str(rootfs))
    res = env.run_shim("run", "--bundle", b, "w1")
    assert res.returncode == 0, res.stderr
    assert "image-ok" in res.stdout and "host-no" in res.stdout, res.stdout + res.stderr
    made = os.stat(rootfs / "root" / "by-root")
    assert (made.st_uid, made.st_gid) == (0, 0)  # the image's root, on disk: the idmapped view maps it back
    assert not (host_dir / "f").exists()


def test_a_writable_overlay_rootfs_is_refused_with_what_to_change(env, tmp_path):
    layers = tmp_path / "layers"
    for d in ("upper", "work", "merged"):
        (layers / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={env.rootfs},upperdir={layers}/upper,workdir={layers}/work", str(layers / "merged")],
                   check=True)
    try:
        b = _bundle(env, rootfs=str(layers / "merged"), mutate=lambda c: c["root"].__setitem__("readonly", False))
        profile = tmp_path / "writable.yaml"
        profile.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: writable\nextends: strict\n"
                           "filesystem: {readonly_rootfs: false}\n")
        os.chmod(profile, 0o644)
        env.write_config(default_profile=str(profile))
        res = env.run_shim("create", "--bundle", b, "ov1")
        assert res.returncode == 1
        assert "is an overlay mount" in res.stderr and "make the root filesystem read-only" in res.stderr
        assert "ov1" not in env.containers()
        # the same rootfs read-only: an overlay of idmapped layers
        env.write_config(default_profile="strict")
        b2 = _bundle(env, name="b2", rootfs=str(layers / "merged"))
        res = env.run_shim("create", "--bundle", b2, "ov2")
        assert res.returncode == 0, res.stderr
        pid = env.state("ov2")["pid"]
        assert os.stat(f"/proc/{pid}/root/etc/passwd").st_uid == _range_of(env, "ov2")
    finally:
        env.delete_all()
        subprocess.run(["umount", str(layers / "merged")], check=False)


def _slow_runc(env, marker):
    """A `runc` that, for create, writes its pid to `marker` and waits 3 s before running the real one."""
    path = env.tmp / "slow-runc"
    path.write_text(f"#!/bin/sh\ncase \" $* \" in *\" create \"*) echo $$ > {marker}; sleep 3 ;; esac\n"
                    f"exec {env.runc} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def _start_create(env, bundle, cid, marker):
    env.write_config(runc=_slow_runc(env, marker), default_profile="strict")
    proc = subprocess.Popen([env.shim, "--root", env.root, "create", "--bundle", bundle, cid], env=env.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(marker) or not open(marker).read().strip():
        assert time.monotonic() < deadline and proc.poll() is None, "runc was never started"
        time.sleep(0.01)
    return proc, int(open(marker).read())


@pytest.mark.parametrize("kill", ["sandbox-runc and runc", "sandbox-runc only"])
def test_sigkill_mid_create_leaves_no_mount_and_no_range_taken_twice(env, kill):
    b = _bundle(env)
    marker = str(env.tmp / "runc.pid")
    proc, runc_pid = _start_create(env, b, "k1", marker)
    # runc waits in sandbox-runc's own mount namespace, where the rootfs view is; the host has none
    ns = os.stat(f"/proc/{runc_pid}/ns/mnt").st_ino
    assert ns != os.stat("/proc/self/ns/mnt").st_ino
    with open(f"/proc/{runc_pid}/mountinfo") as f:
        assert f" {TARGET} " in f.read()
    assert not _host_has_view()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    env.write_config(default_profile="strict")  # the real runc again
    # a config.json hardened by the killed create is never taken for a new one
    res = env.run_shim("create", "--bundle", b, "stale")
    assert res.returncode == 1 and "already hardened by an earlier create" in res.stderr, res.stderr
    if kill == "sandbox-runc and runc":
        os.kill(runc_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _holders_of(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _holders_of(ns) == [] and not _host_has_view()  # the namespace, and its mounts, are gone
        assert "k1" not in env.containers()
        # nobody creates k1 any more: its range is free for the next container
        assert env.run_shim("create", "--bundle", _bundle(env, name="next"), "next").returncode == 0
        assert _range_of(env, "next") == POOL_START
    else:
        # runc, orphaned, finishes the create in that namespace; the container holds its range
        deadline = time.monotonic() + 30
        while "k1" not in env.containers() or (env.state("k1") or {}).get("status") != "created":
            assert time.monotonic() < deadline, "the orphaned runc create did not finish"
            time.sleep(0.1)
        assert _uid_map(env.state("k1")["pid"]) == (0, POOL_START, 65536)
        assert not _host_has_view()
        assert env.run_shim("create", "--bundle", _bundle(env, name="next"), "next").returncode == 0
        assert _range_of(env, "next") == POOL_START + 65536  # not k1's, which still runs
        subprocess.run([env.runc, "--root", env.root, "delete", "-f", "k1"], check=True, timeout=30)
        deadline = time.monotonic() + 10
        while _holders_of(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _holders_of(ns) == []  # once the container is gone, so is everything mounted for it
        assert env.run_shim("create", "--bundle", _bundle(env, name="third"), "third").returncode == 0
        assert _range_of(env, "third") == POOL_START


def test_sigkill_at_random_points_never_leaves_a_mount_on_the_host(env):
    rnd = random.Random(int(os.environ.get("SANDBOX_KILL_SEED", random.randrange(1 << 30))))
    e = {**env.env}
    for n in range(KILL_ROUNDS):
        cid = f"rk{n}-{uuid.uuid4().hex[:6]}"
        b = _bundle(env, name=cid)
        proc = subprocess.Popen([env.shim, "--root", env.root, "create", "--bundle", b, cid], env=e,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert not _host_has_view()
        env.delete_all()
    time.sleep(0.5)  # an orphaned runc create still finishing
    env.delete_all()
    assert not _host_has_view()
    # whatever the kills left in the id records, the next create gets a range, and the first one again
    assert env.run_shim("create", "--bundle", _bundle(env, name="after"), "after").returncode == 0
    assert _range_of(env, "after") == POOL_START


def test_the_daemon_builds_the_view_and_the_client_attaches_it_in_runcs_namespace(env, tmp_path):
    from tests.e2e.engines import start_daemon, stop_daemon

    sock, proc = start_daemon(tmp_path)
    try:
        env.env["SANDBOX_DAEMON_SOCKET"] = sock
        res = env.run_shim("create", "--bundle", _bundle(env), "viad")
        assert res.returncode == 0, res.stderr
    finally:
        stop_daemon(proc)
    resolved = next(r["data"] for r in env.records() if r["container_id"] == "viad" and r["event"] == "profile_resolved")
    assert resolved["served_by"] == "daemon" and resolved["rootfs"]["kind"] == "idmapped-bind"
    pid = env.state("viad")["pid"]
    start = int(resolved["id_range"].split(":")[0])
    assert _uid_map(pid) == (0, start, 65536)
    assert os.stat(f"/proc/{pid}/root/etc/passwd").st_uid == start
    assert not _host_has_view()
