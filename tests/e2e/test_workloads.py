"""Workloads keep working: real programs under each built-in profile with each engine's own config.json.

Each engine config (its own seccomp section, capabilities, mounts; host paths that exist only on the
engine's machine left out) runs a small set of programs once under plain runc and once through
sandbox-runc under baseline, restricted and strict.  The output must be the same, except where a
decision listed in docs/conformance.md says otherwise:

- shell pipelines and subshells (fork, vfork and clone with SIGCHLD),
- a static C program that starts threads (clone with the pthread flags) and joins them,
- busybox httpd serving a page over loopback inside the container's own network namespace,
- the same fork/thread calls with namespace flags, which the profiles refuse without CAP_SYS_ADMIN.

The process runs as uid 1000 in every run (restricted and strict refuse uid 0 without a user
namespace: a listed decision, so both runs use the same non-root user).
"""

import copy
import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import FIXTURES, OCI
from tests.e2e.engines import PrivateRunc

pytestmark = pytest.mark.e2e

THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
static void *work(void *arg) { long n = (long)arg; long s = 0; for (long i = 0; i <= n; i++) s += i; return (void *)s; }
int main(void) {
    pthread_t t[4]; long total = 0;
    for (long i = 0; i < 4; i++) if (pthread_create(&t[i], 0, work, (void *)(1000 * (i + 1)))) { puts("create failed"); return 1; }
    for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); total += (long)r; }
    printf("threads %ld\n", total);
    return 0;
}
"""

# what each program prints is compared between plain runc and sandbox-runc
SCRIPT = r"""
echo pipe: $(echo abc | tr a-c x-z | cat)
echo sub: $( (echo one; echo two) | wc -l)
for i in 1 2 3; do echo $i; done | sort -r | tr '\n' ' '; echo
/threads
httpd -p 127.0.0.1:8080 -h /www && sleep 0.2 && echo http: $(wget -qO- http://127.0.0.1:8080/index.html)
unshare -U true 2>/dev/null; echo unshare-user: $?
"""

ENGINES = {
    "podman-4.3": os.path.join(OCI, "podman-4.3-config.json"),
    "runtime-tools": os.path.join(FIXTURES, "bundles", "runtime-tools-generate.json"),
    "runc-spec": os.path.join(OCI, "runc-spec-1.1.json"),
}
PROFILES = ("baseline", "restricted", "strict")
DIFFERS = {"runtime-tools": {"create failed": "threads 15005000"}}  # plain runc line -> sandbox line
KERNEL_FS = {"proc", "tmpfs", "devpts", "sysfs", "mqueue", "cgroup", "cgroup2"}


@pytest.fixture(scope="module")
def workload_rootfs(demo_rootfs):
    """The demo rootfs plus the workloads, in a 0755 directory (strict's mapped root must reach it)."""
    import pathlib
    import tempfile

    if shutil.which("cc") is None:
        pytest.fail("no C compiler for the threaded workload (gcc is in scripts/setup.sh)")
    d = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-e2e-workload-"))
    os.chmod(d, 0o755)
    root = d / "rootfs"
    shutil.copytree(demo_rootfs, root, symlinks=True)
    src = d / "threads.c"
    src.write_text(THREADS_C)
    subprocess.run(["cc", "-O2", "-static", "-pthread", "-o", str(root / "threads"), str(src)], check=True)
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text("hello-from-httpd\n")
    for p in (root, root / "www"):
        os.chmod(p, 0o755)
    os.chmod(root / "www" / "index.html", 0o644)
    yield str(root)
    shutil.rmtree(d, ignore_errors=True)


def engine_config(name, rootfs):
    """The engine's own config.json, with what only exists on the engine's machine left out."""
    with open(ENGINES[name]) as f:
        cfg = json.load(f)
    cfg = copy.deepcopy(cfg)
    cfg["root"] = {"path": rootfs, "readonly": False}
    cfg["mounts"] = [m for m in cfg.get("mounts", []) if m.get("type") in KERNEL_FS]
    cfg.pop("hooks", None)
    cfg.pop("annotations", None)
    linux = cfg.setdefault("linux", {})
    linux.pop("cgroupsPath", None)
    linux["namespaces"] = [{"type": n["type"]} for n in linux.get("namespaces", []) if n.get("type") != "user"]
    if not any(n["type"] == "network" for n in linux["namespaces"]):
        linux["namespaces"].append({"type": "network"})
    linux.pop("uidMappings", None)
    linux.pop("gidMappings", None)
    proc = cfg["process"]
    proc["terminal"] = False
    proc["user"] = {"uid": 1000, "gid": 1000}
    proc["args"] = ["/bin/sh", "-c", SCRIPT]
    proc["cwd"] = "/"
    proc.pop("apparmorProfile", None)
    proc.pop("selinuxLabel", None)
    return cfg


def run(pr, cfg, tmp_path, name, shim):
    bundle = tmp_path / name
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    cmd = ["run", "--bundle", str(bundle), name]
    if shim:
        res = pr.run_shim(*cmd, timeout=120)
    else:
        res = subprocess.run([pr.runc, "--root", pr.root, *cmd], capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    return res


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_workloads_behave_as_under_plain_runc(e2e, workload_rootfs, tmp_path, engine):
    pr = PrivateRunc(tmp_path, e2e, workload_rootfs)
    try:
        cfg = engine_config(engine, workload_rootfs)
        plain = run(pr, cfg, tmp_path, "plain", shim=False)
        assert plain.returncode == 0, plain.stderr
        lines = plain.stdout.splitlines()
        assert "pipe: xyz" in lines and "sub: 2" in lines and "3 2 1 " in lines
        # runtime-tools' generated filter answers clone3 with EPERM, not ENOSYS: glibc does not fall
        # back to clone and pthread_create fails under plain runc too (the same under every profile)
        threads = "create failed" if engine == "runtime-tools" else "threads 15005000"
        assert threads in lines, plain.stdout  # four threads sum 0..1000, ..., 0..4000
        assert "http: hello-from-httpd" in lines, plain.stdout + plain.stderr
        for profile in PROFILES:
            pr.write_config(default_profile=profile)
            got = run(pr, cfg, tmp_path, f"sbx-{profile}", shim=True)
            assert got.returncode == 0, (profile, got.stderr)
            out = got.stdout.splitlines()
            # a listed decision: where both filters deny clone3, the profile's ENOSYS wins the tie over the
            # generator's EPERM, so glibc falls back to clone and the threads start
            same = [DIFFERS.get(engine, {}).get(line, line) for line in lines if not line.startswith("unshare-user")]
            assert [line for line in out if not line.startswith("unshare-user")] == same, (profile, got.stdout)
            # a listed decision: no new namespaces without CAP_SYS_ADMIN (clone/unshare flags in seccomp)
            assert "unshare-user: 1" in out, (profile, got.stdout)
    finally:
        pr.delete_all()
