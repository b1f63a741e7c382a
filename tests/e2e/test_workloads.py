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

# calls engines' filters allow and the profiles deny on purpose: what each answers, by errno name
SYSCALLS_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static const char *answer(long r, int e) { return r >= 0 ? "ok" : strerrorname_np(e); }
int main(void) {
    struct io_uring_params p; memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 4, &p); int e = errno;
    printf("io_uring_setup: %s\n", answer(fd, e));
    if (fd >= 0) close(fd);
    pid_t child = fork();
    if (child == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0 ? 0 : errno);
    int status = 0; waitpid(child, &status, 0);
    printf("ptrace: %s\n", answer(WEXITSTATUS(status) ? -1 : 0, WEXITSTATUS(status)));
    return 0;
}
"""

# what each program prints is compared between plain runc and sandbox-runc
SCRIPT = r"""
echo pipe: $(echo abc | tr a-c x-z | cat)
echo sub: $( (echo one; echo two) | wc -l)
for i in 1 2 3; do echo $i; done | sort -r | tr '\n' ' '; echo
/threads
/syscalls
httpd -p 127.0.0.1:8080 -h /www && sleep 0.2 && echo http: $(wget -qO- http://127.0.0.1:8080/index.html)
unshare -U true 2>/dev/null; echo unshare-user: $?
"""

ENGINES = {  # oci/*-config.json are captured from the real engines by scripts/capture-engine-config.py
    "containerd-1.6-cri-runtime-default": os.path.join(OCI, "containerd-1.6-cri-runtime-default-config.json"),
    "containerd-1.6-ctr": os.path.join(OCI, "containerd-1.6-ctr-config.json"),
    "docker-20.10": os.path.join(OCI, "docker-20.10-config.json"),
    "podman-4.3": os.path.join(OCI, "podman-4.3-config.json"),
    "runtime-tools": os.path.join(FIXTURES, "bundles", "runtime-tools-generate.json"),
    "runc-spec": os.path.join(OCI, "runc-spec-1.1.json"),
}
PROFILES = ("baseline", "restricted", "strict")
# Every line sandbox-runc prints differently from plain runc, per engine config (the same under every
# profile): plain runc's line -> (sandbox-runc's line, the seccomp decision in the audit log that says
# why: the syscall it names, "defaultAction" for the default answer, "filter" for the profile's filter
# where the bundle had none).  Each is listed, with the profile key, in docs/conformance.md.
PTRACE = {"ptrace: ok": ("ptrace: EPERM", "ptrace")}  # CAP_SYS_PTRACE required (Docker allows it on >= 4.8)
IO_URING = {"io_uring_setup: ok": ("io_uring_setup: EPERM", "io_uring_setup")}  # denied (as Docker >= 25)
UNSHARE = {"unshare-user: 0": ("unshare-user: 1", "unshare")}  # new namespaces need CAP_SYS_ADMIN
DIFFERS = {
    "containerd-1.6-cri-runtime-default": {**IO_URING, **PTRACE},
    "containerd-1.6-ctr": {**IO_URING, **PTRACE},
    "docker-20.10": {**IO_URING, **PTRACE},
    # neither filter allows io_uring_setup: the profile's default answer (EPERM) replaces podman's ENOSYS
    "podman-4.3": {"io_uring_setup: ENOSYS": ("io_uring_setup: EPERM", "defaultAction"), **PTRACE, **UNSHARE},
    # no seccomp section: the profile's filter alone
    "runc-spec": {"io_uring_setup: ok": ("io_uring_setup: EPERM", "filter"),
                  "ptrace: ok": ("ptrace: EPERM", "filter"), "unshare-user: 0": ("unshare-user: 1", "filter")},
    # both deny clone3: the profile's ENOSYS wins the tie with the generator's EPERM, so glibc falls back
    # to clone and the threads start
    "runtime-tools": {"create failed": ("threads 15005000", "clone3")},
}
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
    src = d / "syscalls.c"
    src.write_text(SYSCALLS_C)
    subprocess.run(["cc", "-O2", "-static", "-o", str(root / "syscalls"), str(src)], check=True)
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


def seccomp_decisions(pr, cid):
    """The seccomp decisions the audit log holds for `cid`, by what they name (see DIFFERS)."""
    out = {}
    for r in pr.records():
        d = r.get("decision") or {}
        if r.get("container_id") != cid or r.get("event") != "decision" or d.get("control") != "seccomp":
            continue
        what = {"/linux/seccomp": "filter", "/linux/seccomp/defaultAction": "defaultAction"}.get(d["pointer"],
                                                                                                 d["before"])
        out[what] = d["reason"]
    return out


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
        # back to clone and pthread_create fails under plain runc too
        threads = "create failed" if engine == "runtime-tools" else "threads 15005000"
        assert threads in lines, plain.stdout  # four threads sum 0..1000, ..., 0..4000
        assert "http: hello-from-httpd" in lines, plain.stdout + plain.stderr
        differs = DIFFERS[engine]
        assert set(differs) <= set(lines), (plain.stdout, "a listed difference no longer occurs")
        for profile in PROFILES:
            pr.write_config(default_profile=profile)
            cid = f"sbx-{profile}"
            got = run(pr, cfg, tmp_path, cid, shim=True)
            assert got.returncode == 0, (profile, got.stderr)
            assert got.stdout.splitlines() == [differs[line][0] if line in differs else line for line in lines], (
                profile, got.stdout)
            # a new namespace fails under every profile (clone/unshare flags need CAP_SYS_ADMIN)
            assert "unshare-user: 1" in got.stdout.splitlines()
            decided = seccomp_decisions(pr, cid)
            for _, what in differs.values():
                assert what in decided, (profile, what, decided)
    finally:
        pr.delete_all()
