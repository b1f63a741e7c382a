"""Fail closed under faults: `sandbox-runc create` with the real runc, each fault injected for real.

For every fault the same three things are asserted:

- no container starts unhardened: runc (with a private --root) lists no container, or the bundle's
  config.json is byte-for-byte unchanged and runc was never reached;
- nothing already written is lost: the audit log still holds every byte it held before and
  `python -m sandbox audit verify` passes;
- the person gets a clear one-line reason on stderr, and no Python traceback.

Faults: the profile (missing, a directory or a FIFO in its place, invalid YAML, a typo'd key, mode
0666, owned by uid 1000, and a world-writable file it extends); the operator config (missing file
named by SANDBOX_CONFIG, invalid, a typo'd key, 0666, owned by uid 1000, a directory, a FIFO); the
audit log's directory (cannot be created, read-only, disk full; and with `on_audit_failure: warn`);
runc (missing, not executable, failing during create); SIGKILL of `sandbox-runc create` at random
points; and argument vectors that runc reads differently from the shim.

Profile faults run with a warm profile cache: a good profile at the same path is used first, so a
stale cache entry cannot stand in for the broken file.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest

from sandbox.host.bundle import spec_for_rootfs
from tests.conftest import ROOT
from tests.e2e.engines import ANNOTATION, PrivateRunc

pytestmark = pytest.mark.e2e

APPLIED = ANNOTATION + ".applied"
GOOD_PROFILE = "apiVersion: sandbox/v1\nkind: Profile\nname: site\nextends: baseline\n"


# -- helpers ---------------------------------------------------------------------------------------

class Env(PrivateRunc):
    def bundle(self, name="bundle", args=("true",), mutate=None):
        d = self.tmp / name
        d.mkdir()
        cfg = spec_for_rootfs(self.rootfs, list(args))
        if mutate:
            mutate(cfg)
        data = json.dumps(cfg, indent=2).encode()
        (d / "config.json").write_bytes(data)
        return str(d), data

    def create(self, bundle, cid, **kw):
        return self.run_shim("create", "--bundle", bundle, cid, **kw)


@pytest.fixture
def env(e2e, demo_rootfs, tmp_path):
    os.chmod(tmp_path, 0o755)
    env = Env(tmp_path, e2e, demo_rootfs)
    yield env
    env.delete_all()


@pytest.fixture
def mounts():
    """Mount points to lazily unmount after the test, whatever happens."""
    made = []
    yield made
    for m in reversed(made):
        subprocess.run(["umount", "-l", m], capture_output=True)


def mount_tmpfs(mounts, path, *opts):
    os.makedirs(path, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", path], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    mounts.append(path)


def reason_lines(stderr):
    """sandbox's own stderr lines (runc's logrus warnings, if any, left out)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "level=warning" not in ln]


def assert_clear_reason(res, *words):
    assert "Traceback" not in res.stderr, res.stderr
    lines = reason_lines(res.stderr)
    assert lines, "no reason given on stderr"
    assert lines[0].startswith("sandbox-runc: "), lines
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines


def assert_refused(env, res, bundle, original, *words):
    assert res.returncode != 0, f"exit 0 under a fault: {res.stderr}"
    assert env.containers() == [], "a container was created under a fault"
    with open(os.path.join(bundle, "config.json"), "rb") as f:
        assert f.read() == original, "config.json changed although nothing was created"
    return assert_clear_reason(res, *words)


def assert_log_intact(env, before, path=None):
    """The log still starts with every byte it had (`before`) and verifies."""
    path = path or env.audit
    with open(path, "rb") as f:
        now = f.read()
    assert now[: len(before)] == before, "bytes already in the audit log were lost or changed"
    v = env.verify(path)
    assert v.returncode == 0, v.stdout + v.stderr
    return now


def warm_up(env, bundle, original, config=None):
    """One good create (and delete): the audit log has records and the profile cache an entry."""
    cid = f"warm-{uuid.uuid4().hex[:6]}"
    res = env.create(bundle, cid, config=config)
    assert res.returncode == 0, res.stderr
    assert env.containers() == [cid]
    env.delete_all()
    with open(os.path.join(bundle, "config.json"), "wb") as f:
        f.write(original)
    with open(env.audit, "rb") as f:
        return f.read()


def seccomp_mode(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return None


# -- the profile -------------------------------------------------------------------------------------

def _profile_missing(p):
    os.unlink(p)


def _profile_directory(p):
    os.unlink(p)
    os.mkdir(p)


def _profile_fifo(p):
    os.unlink(p)
    os.mkfifo(p, 0o644)


def _profile_invalid_yaml(p):
    with open(p, "w") as f:
        f.write(GOOD_PROFILE + "capabilities: [CHOWN\n")


def _profile_typo(p):
    with open(p, "w") as f:
        f.write(GOOD_PROFILE + "capabilites: [CHOWN]\n")


def _profile_0666(p):
    os.chmod(p, 0o666)


def _profile_uid_1000(p):
    os.chown(p, 1000, 1000)


PROFILE_FAULTS = {
    "missing": (_profile_missing, ["not found"]),
    "a directory": (_profile_directory, ["not a regular file"]),
    "a FIFO": (_profile_fifo, ["not a regular file"]),
    "invalid YAML": (_profile_invalid_yaml, ["invalid YAML"]),
    "a typo'd key": (_profile_typo, ["capabilites", "did you mean"]),
    "writable by others": (_profile_0666, ["writable"]),
    "not owned by root": (_profile_uid_1000, ["not owned by root"]),
}


@pytest.mark.parametrize("how", ["by path", "by name"])
@pytest.mark.parametrize("fault", list(PROFILE_FAULTS))
def test_profile_fault_refuses_the_container(env, fault, how):
    inject, words = PROFILE_FAULTS[fault]
    pdir = env.tmp / "profiles"
    pdir.mkdir(mode=0o755)
    profile = str(pdir / "site.yaml")
    with open(profile, "w") as f:
        f.write(GOOD_PROFILE)
    os.chmod(profile, 0o644)
    if how == "by path":
        env.write_config(default_profile=profile)
    else:
        env.write_config(default_profile="site", profile_dirs=[str(pdir)])
    bundle, original = env.bundle()
    before = warm_up(env, bundle, original)
    inject(profile)
    res = env.create(bundle, "faulty", timeout=30)
    if how == "by name" and fault in ("missing", "a directory", "a FIFO"):
        words = ["no profile named 'site'"]  # nothing usable by that name in the profile directories
    assert_refused(env, res, bundle, original, *words)
    after = assert_log_intact(env, before)
    last = json.loads(after.splitlines()[-1])
    assert last["event"] == "error" and last["container_id"] == "faulty", "the refusal is not in the audit log"


@pytest.mark.parametrize("what", ["the profile it extends", "its seccomp base file"])
def test_a_deleted_file_of_a_cached_profile_is_not_used(env, what):
    """The profile cache must notice that a file the profile was built from is gone (fail closed),
    also when the entry was written within seconds of the file (no stable fingerprint then)."""
    pdir = env.tmp / "profiles"
    pdir.mkdir(mode=0o755)
    if what == "the profile it extends":
        gone = pdir / "parent.yaml"
        gone.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: parent\nextends: baseline\n")
        (pdir / "site.yaml").write_text("apiVersion: sandbox/v1\nkind: Profile\nname: site\nextends: ./parent.yaml\n")
    else:
        from sandbox.core.loader import builtin_seccomp_profile

        gone = pdir / "seccomp.json"
        gone.write_text(json.dumps(builtin_seccomp_profile()))
        (pdir / "site.yaml").write_text(GOOD_PROFILE + "seccomp:\n  base: ./seccomp.json\n")
    for f in pdir.iterdir():
        os.chmod(f, 0o644)
    env.write_config(default_profile=str(pdir / "site.yaml"))
    bundle, original = env.bundle()
    before = warm_up(env, bundle, original)
    gone.unlink()
    res = env.create(bundle, "stale", timeout=30)
    assert_refused(env, res, bundle, original, "not found")
    assert_log_intact(env, before)


@pytest.mark.parametrize("what", ["the profile it extends", "its seccomp base file"])
def test_every_file_a_profile_is_built_from_must_be_trusted(env, what):
    """A world-writable file anywhere in the profile's chain lets anyone loosen it: refuse it too."""
    pdir = env.tmp / "profiles"
    pdir.mkdir(mode=0o755)
    if what == "the profile it extends":
        (pdir / "parent.yaml").write_text("apiVersion: sandbox/v1\nkind: Profile\nname: parent\nextends: baseline\n")
        loose = pdir / "parent.yaml"
        (pdir / "site.yaml").write_text("apiVersion: sandbox/v1\nkind: Profile\nname: site\nextends: ./parent.yaml\n")
    else:
        from sandbox.core.loader import builtin_seccomp_profile

        (pdir / "seccomp.json").write_text(json.dumps(builtin_seccomp_profile()))
        loose = pdir / "seccomp.json"
        (pdir / "site.yaml").write_text(GOOD_PROFILE + "seccomp:\n  base: ./seccomp.json\n")
    os.chmod(pdir / "site.yaml", 0o644)
    os.chmod(loose, 0o666)
    env.write_config(default_profile=str(pdir / "site.yaml"))
    bundle, original = env.bundle()
    res = env.create(bundle, "loose", timeout=30)
    assert_refused(env, res, bundle, original, "writable")


# -- the operator config --------------------------------------------------------------------------------

def _op_missing(env, p):
    os.unlink(p)


def _op_invalid(env, p):
    with open(p, "a") as f:
        f.write("allowed_profiles: [strict\n")


def _op_typo(env, p):
    with open(p, "a") as f:
        f.write("audit_logg: /tmp/elsewhere.jsonl\n")


def _op_0666(env, p):
    os.chmod(p, 0o666)


def _op_uid_1000(env, p):
    os.chown(p, 1000, 1000)


def _op_directory(env, p):
    os.unlink(p)
    os.mkdir(p, 0o755)


def _op_fifo(env, p):
    os.unlink(p)
    os.mkfifo(p, 0o644)


OP_FAULTS = {
    "missing (named by SANDBOX_CONFIG)": (_op_missing, ["not found"]),
    "invalid YAML": (_op_invalid, ["invalid YAML"]),
    "a typo'd key": (_op_typo, ["audit_logg", "did you mean"]),
    "writable by others": (_op_0666, ["writable"]),
    "not owned by root": (_op_uid_1000, ["not owned by root"]),
    "a directory": (_op_directory, ["not a regular file"]),
    "a FIFO": (_op_fifo, ["not a regular file"]),
}


@pytest.mark.parametrize("fault", list(OP_FAULTS))
def test_operator_config_fault_refuses_the_container(env, fault):
    inject, words = OP_FAULTS[fault]
    bundle, original = env.bundle()
    before = warm_up(env, bundle, original)
    inject(env, env.config)
    try:
        res = env.create(bundle, "faulty", timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sandbox-runc create hung for 5 s with the operator config {fault}")
    assert_refused(env, res, bundle, original, *words)
    assert_log_intact(env, before)


# -- the audit log ----------------------------------------------------------------------------------------

def _audit_dir_under_a_file(env, mounts):
    blocker = env.tmp / "not-a-dir"
    blocker.write_text("a regular file where a directory should be\n")
    return str(blocker / "sub" / "audit.jsonl"), None, ["ENOTDIR"]


def _audit_dir_under_read_only_mount(env, mounts):
    ro = str(env.tmp / "ro-mount")
    mount_tmpfs(mounts, ro, "ro", "size=1m")
    return os.path.join(ro, "sub", "audit.jsonl"), None, ["EROFS"]


def _audit_log_read_only(env, mounts):
    d = str(env.tmp / "ro-later")
    mount_tmpfs(mounts, d, "size=1m")
    return os.path.join(d, "audit.jsonl"), ["mount", "-o", "remount,ro", d], ["EROFS"]


def _audit_disk_full(env, mounts):
    d = str(env.tmp / "full")
    mount_tmpfs(mounts, d, "size=64k")
    fill = ["sh", "-c", f"dd if=/dev/zero of={d}/filler bs=4k 2>/dev/null; true"]
    return os.path.join(d, "audit.jsonl"), fill, ["ENOSPC"]


AUDIT_FAULTS = {
    "directory cannot be created (a file in the way)": _audit_dir_under_a_file,
    "directory cannot be created (read-only mount)": _audit_dir_under_read_only_mount,
    "log on a file system remounted read-only": _audit_log_read_only,
    "disk full": _audit_disk_full,
}


@pytest.mark.parametrize("fault", list(AUDIT_FAULTS))
def test_audit_fault_refuses_the_container_and_keeps_the_log(env, mounts, fault):
    log, break_it, words = AUDIT_FAULTS[fault](env, mounts)
    env.write_config(audit_log=log)
    bundle, original = env.bundle()
    before = b""
    if break_it:
        env.audit = log
        before = warm_up(env, bundle, original)
        subprocess.run(break_it, check=True)
    res = env.create(bundle, "faulty")
    assert_refused(env, res, bundle, original, "audit log", *words)
    if before:
        assert_log_intact(env, before, log)
    else:
        assert not os.path.exists(log)


@pytest.mark.parametrize("fault", list(AUDIT_FAULTS))
def test_audit_fault_with_on_audit_failure_warn_starts_hardened_with_a_warning(env, mounts, fault):
    log, break_it, words = AUDIT_FAULTS[fault](env, mounts)
    env.write_config(audit_log=log, on_audit_failure="warn")
    bundle, original = env.bundle()
    before = b""
    if break_it:
        env.audit = log
        before = warm_up(env, bundle, original)
        subprocess.run(break_it, check=True)
    res = env.create(bundle, "warned")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "warning" in res.stderr and words[0] in res.stderr and "on_audit_failure: warn" in res.stderr
    assert env.containers() == ["warned"]
    with open(os.path.join(bundle, "config.json")) as f:
        hardened = json.load(f)
    assert hardened["annotations"][APPLIED].startswith("baseline@")
    assert seccomp_mode(env.state("warned")["pid"]) == 2
    if before:
        assert_log_intact(env, before, log)


@pytest.mark.parametrize("on_failure", ["fail", "warn"])
def test_torn_last_audit_line_refuses_until_sealed(env, on_failure):
    """A crash mid-append (power loss during a multi-page write) leaves a torn last line.

    The shim refuses to chain onto it (even with `warn`: it may be tampering), `audit verify`
    names it, `sandbox audit seal` saves the torn bytes aside and appends a `sealed` record,
    and then the chain verifies and creates work again.
    """
    env.write_config(on_audit_failure=on_failure)
    bundle, original = env.bundle()
    warm_up(env, bundle, original)
    with open(env.audit, "rb") as f:
        whole = f.read()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    torn = whole[: last_start + (len(whole) - last_start) // 2]
    with open(env.audit, "wb") as f:
        f.write(torn)
    n_lines = torn.count(b"\n") + 1

    res = env.create(bundle, "after-tear")
    assert_refused(env, res, bundle, original, "torn", "sandbox audit seal")
    v = env.verify()
    assert v.returncode == 1 and f":{n_lines}:" in v.stdout and "torn line" in v.stdout, v.stdout
    with open(env.audit, "rb") as f:
        assert f.read() == torn, "the refusal changed the torn log"

    s = subprocess.run([sys.executable, "-m", "sandbox", "audit", "seal", env.audit], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert s.returncode == 0 and "sealed" in s.stdout, s.stdout + s.stderr
    saved = [n for n in os.listdir(env.audit_dir) if n.startswith("audit.jsonl.torn-")]
    assert len(saved) == 1
    with open(env.audit_dir / saved[0], "rb") as f:
        assert f.read() == torn[last_start:], "the torn bytes were not kept"
    assert env.verify().returncode == 0
    assert env.records()[-1]["event"] == "sealed"

    res = env.create(bundle, "after-seal")
    assert res.returncode == 0, res.stderr
    assert env.containers() == ["after-seal"]
    v = env.verify()
    assert v.returncode == 0, v.stdout


def test_audit_failure_reason_is_said_once(env, mounts):
    log, _, _ = _audit_dir_under_a_file(env, mounts)
    env.write_config(audit_log=log)
    bundle, original = env.bundle()
    res = env.create(bundle, "faulty")
    lines = assert_refused(env, res, bundle, original, "audit log")
    assert len(lines) == 1, f"one reason, said once: {lines}"


def test_audit_failure_after_runc_created_the_container_removes_it(env, mounts):
    """runc create succeeded, then the `created` record cannot be written: the container must go."""
    d = str(env.tmp / "ro-after-create")
    mount_tmpfs(mounts, d, "size=1m")
    log = os.path.join(d, "audit.jsonl")
    fake = env.tmp / "runc-then-ro"
    fake.write_text(f"#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = create ]; then {env.runc} \"$@\"; rc=$?;"
                    f" mount -o remount,ro {d}; exit $rc; fi; done\nexec {env.runc} \"$@\"\n")
    fake.chmod(0o755)
    env.write_config(audit_log=log, runc=str(fake))
    bundle, original = env.bundle()
    env.audit = log
    res = env.create(bundle, "unrecorded")
    assert res.returncode != 0
    assert_clear_reason(res, "audit log", "Read-only file system")
    assert env.containers() == [], "a container the audit log cannot record was left behind"
    v = env.verify(log)
    assert v.returncode == 0, v.stdout


# -- runc ---------------------------------------------------------------------------------------------------

def test_runc_missing(env):
    env.write_config(runc="/nonexistent/runc")
    bundle, original = env.bundle()
    res = env.create(bundle, "norunc")
    assert_refused(env, res, bundle, original, "runc not found", "/nonexistent/runc")
    assert env.records()[-1]["event"] == "error"
    assert env.verify().returncode == 0


def test_runc_not_executable(env):
    fake = env.tmp / "runc-0644"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o644)
    env.write_config(runc=str(fake))
    bundle, original = env.bundle()
    res = env.create(bundle, "noexec")
    assert_refused(env, res, bundle, original, "not executable")
    assert env.records()[-1]["event"] == "error"
    assert env.verify().returncode == 0


@pytest.mark.parametrize("after_creating", [False, True], ids=["before-creating", "after-creating"])
def test_runc_failing_during_create_is_cleaned_up_and_audited(env, after_creating):
    calls = env.tmp / "runc-calls.log"
    real = f"{env.runc} \"$@\" >/dev/null 2>&1; " if after_creating else ""
    fake = env.tmp / "failing-runc"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n"
                    f"for a in \"$@\"; do if [ \"$a\" = create ]; then {real}"
                    "echo 'failing-runc: injected create failure' >&2; exit 1; fi; done\n"
                    f"exec {env.runc} \"$@\"\n")
    fake.chmod(0o755)
    env.write_config(runc=str(fake))
    bundle, _ = env.bundle()
    res = env.create(bundle, "broken")
    assert res.returncode == 1
    assert "injected create failure" in res.stderr and "Traceback" not in res.stderr
    assert env.containers() == []
    called = calls.read_text().splitlines()
    assert any(" delete --force broken" in c for c in called), called
    last = env.records()[-1]
    assert last["event"] == "error" and last["container_id"] == "broken" and last["data"]["runc_exit"] == 1
    assert env.verify().returncode == 0


# -- bad input that reaches the shim ------------------------------------------------------------------------

@pytest.mark.parametrize("what,mutate", [
    ("namespaces hold lists", lambda c: c["linux"].__setitem__("namespaces", [["network"]])),
    ("linux is a string", lambda c: c.__setitem__("linux", "x")),
    ("a NUL byte in a bind mount source", lambda c: c["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "/srv\u0000x", "options": ["rbind"]})),
])
def test_ill_typed_config_json_is_refused_with_a_reason(env, what, mutate):
    """No container, and one line saying why (sandbox's, or runc's own), never a traceback."""
    bundle, _ = env.bundle(mutate=mutate)
    res = env.create(bundle, "illtyped")
    assert res.returncode != 0
    assert env.containers() == []
    assert "Traceback" not in res.stderr, res.stderr
    assert len(reason_lines(res.stderr)) == 1, res.stderr


def _case_variants(c):
    """Keys that differ from the OCI names only by case: Go's encoding/json (runc) reads them as the same
    field, and the last one in the document wins."""
    c["process"]["noNewPrivileges"] = False
    c["process"]["NoNewPrivileges"] = False
    c["process"]["Capabilities"] = {s: ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"]
                                    for s in ("bounding", "effective", "permitted")}
    c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
    c["linux"]["Seccomp"] = None


def test_keys_that_runc_reads_case_insensitively_cannot_override_the_profile(env):
    bundle, original = env.bundle(mutate=_case_variants)
    res = env.create(bundle, "casefold")
    if "casefold" not in env.containers():
        assert res.returncode != 0
        assert_clear_reason(res)
        return
    pid = env.state("casefold")["pid"]
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    from sandbox.host.inspect import cap_names

    bounding = set(cap_names(int(status["CapBnd"], 16)))
    assert status["Seccomp"] == "2", "no seccomp filter: a later `Seccomp` key replaced the profile's"
    assert status["NoNewPrivs"] == "1", "no_new_privileges undone by a later `NoNewPrivileges` key"
    assert "CAP_SYS_ADMIN" not in bounding, f"capabilities from a later `Capabilities` key: {sorted(bounding)}"


def _hardened_if_created(env, cid, bundle):
    if cid not in env.containers():
        return
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    assert APPLIED in (cfg.get("annotations") or {}), f"container {cid} was created from an unhardened bundle"
    assert seccomp_mode(env.state(cid)["pid"]) == 2, f"container {cid} runs without a seccomp filter"


def test_double_dash_before_the_subcommand_is_still_hardened(env):
    """Go's flag package ends the global flags at `--`: `runc --root R -- create ...` is a create."""
    bundle, _ = env.bundle()
    env.run_shim("--", "create", "--bundle", bundle, "dd")
    _hardened_if_created(env, "dd", bundle)


def test_flags_after_the_container_id_are_not_ignored(env):
    """urfave/cli (runc 1.1) moves a command's flags before its arguments: `create ID --bundle B` uses B."""
    decoy, _ = env.bundle("decoy")
    bundle, _ = env.bundle("real")
    env.run_shim("create", "late", "--bundle", bundle, cwd=decoy)
    _hardened_if_created(env, "late", bundle)


def test_update_flags_after_the_container_id_are_clamped(env):
    pdir = env.tmp / "profiles"
    pdir.mkdir(mode=0o755)
    (pdir / "capped.yaml").write_text(GOOD_PROFILE.replace("name: site", "name: capped")
                                      + "resources:\n  memory: {max: 64Mi}\n")
    os.chmod(pdir / "capped.yaml", 0o644)
    env.write_config(default_profile="capped", profile_dirs=[str(pdir)])
    bundle, _ = env.bundle(args=("sleep", "30"))
    assert env.create(bundle, "upd").returncode == 0
    pid = env.state("upd")["pid"]
    cg = next(line.split(":", 2)[2].strip() for line in open(f"/proc/{pid}/cgroup") if ":memory:" in line)
    limit_file = f"/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes"
    if not os.path.exists(limit_file):
        pytest.skip("no cgroup v1 memory controller here")
    big = str(1 << 30)
    env.run_shim("update", "upd", "--memory", big, "--memory-swap", big)
    with open(limit_file) as f:
        assert int(f.read()) <= 64 << 20, "update raised the memory limit past the profile's maximum"


def test_update_finds_a_profile_given_by_path(env):
    """A container created under `default_profile: /path/p.yaml` must be updatable (and exec-able)."""
    pdir = env.tmp / "profiles"
    pdir.mkdir(mode=0o755)
    (pdir / "site.yaml").write_text(GOOD_PROFILE)
    os.chmod(pdir / "site.yaml", 0o644)
    env.write_config(default_profile=str(pdir / "site.yaml"))
    bundle, _ = env.bundle(args=("sleep", "30"))
    assert env.create(bundle, "bypath").returncode == 0
    res = env.run_shim("update", "--pids-limit", "100", "bypath")
    assert res.returncode == 0, res.stderr


# -- SIGKILL at random points ----------------------------------------------------------------------------

KILL_ROUNDS = int(os.environ.get("SANDBOX_KILL_ROUNDS", "60"))


def _wait_for_orphans(marker, timeout=15):
    """Wait until no process still has `marker` (our private runc root) on its command line."""
    deadline = time.monotonic() + timeout
    me = os.getpid()
    while time.monotonic() < deadline:
        busy = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        busy = True
                        break
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes with {marker} still running after {timeout} s")


def test_sigkill_of_create_at_random_points(env):
    seed = int(os.environ.get("SANDBOX_KILL_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    bundle, original = env.bundle()
    config_path = os.path.join(bundle, "config.json")

    # the reference: what `sandbox apply` makes of this bundle, and one complete create
    applied = subprocess.run([sys.executable, "-m", "sandbox", "apply", "--profile", "baseline", bundle],
                             capture_output=True, text=True, check=True, timeout=60, cwd=ROOT).stdout
    expected = json.loads(applied)
    warm_up(env, bundle, original)
    assert env.verify().returncode == 0

    stats = {"rounds": KILL_ROUNDS, "original": 0, "hardened": 0, "containers": 0, "temp_files_left": 0,
             "torn_audit_lines": 0, "sealed": 0, "seed": seed}
    e = {**os.environ, "SANDBOX_CONFIG": env.config, "SANDBOX_CACHE_DIR": str(env.cache)}
    for rnd_no in range(KILL_ROUNDS):
        cid = f"kill-{rnd_no}"
        delay = rnd.uniform(0, 0.150)
        proc = subprocess.Popen([env.shim, "--root", env.root, "create", "--bundle", bundle, cid], env=e,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_for_orphans(env.root)  # a runc the shim had already started finishes on its own

        with open(config_path, "rb") as f:
            data = f.read()
        where = f"round {rnd_no} (seed {seed}, killed after {delay * 1000:.0f} ms)"
        if data == original:
            stats["original"] += 1
            hardened = False
        else:
            assert data, f"{where}: config.json is empty"
            cfg = json.loads(data)  # never a mix: a torn file would not parse
            annotations = cfg.get("annotations") or {}
            assert annotations.get(APPLIED, "").startswith("baseline@"), f"{where}: half-hardened config.json"
            rest = dict(annotations)
            rest.pop(APPLIED)
            if rest:
                cfg["annotations"] = rest
            else:
                cfg.pop("annotations", None)
            assert cfg == expected, f"{where}: config.json is neither the original nor the hardened one"
            stats["hardened"] += 1
            hardened = True

        if cid in env.containers():
            stats["containers"] += 1
            assert hardened, f"{where}: a container was created from the unhardened config.json"
            st = env.state(cid)
            if st.get("pid"):
                assert seccomp_mode(st["pid"]) == 2, f"{where}: container without seccomp"
        env.delete_all()

        leftovers = [n for n in os.listdir(bundle) if n.startswith(".config.json.sandbox-")]
        for name in leftovers:  # documented in sandbox/host/bundle.py: only a SIGKILL before the rename leaves one
            st = os.lstat(os.path.join(bundle, name))
            assert st.st_uid == 0 and not st.st_mode & 0o022, f"{where}: temp file {name} is not root's alone"
            os.unlink(os.path.join(bundle, name))
        stats["temp_files_left"] += len(leftovers)

        v = env.verify()
        if v.returncode != 0:
            assert "torn line" in v.stdout, f"{where}: audit log broken: {v.stdout}"
            stats["torn_audit_lines"] += 1
            s = subprocess.run([sys.executable, "-m", "sandbox", "audit", "seal", env.audit], capture_output=True,
                               text=True, timeout=60, cwd=ROOT)
            assert s.returncode == 0, s.stdout + s.stderr
            stats["sealed"] += 1
            v = env.verify()
            assert v.returncode == 0, f"{where}: still broken after seal: {v.stdout}"

        if hardened:
            with open(config_path, "wb") as f:
                f.write(original)

    # after all that, appends still work and the chain is whole
    res = env.create(bundle, "after-the-storm")
    assert res.returncode == 0, res.stderr
    assert env.verify().returncode == 0
    print(f"\nSIGKILL rounds: {json.dumps(stats)}")
    assert stats["original"] + stats["hardened"] == KILL_ROUNDS


@pytest.mark.parametrize("fault", ["not owned by root", "writable by others"])
@pytest.mark.parametrize("sub", ["state", "start", "delete"])
def test_passthrough_never_runs_a_runc_named_by_an_untrusted_operator_config(env, fault, sub):
    """The sh dispatcher reads `runc:` itself for state/start/kill/delete...: the trust rule applies there too."""
    marker = env.tmp / "evil-ran"
    evil = env.tmp / "evil-runc"
    evil.write_text(f"#!/bin/sh\necho \"$(id -u) $*\" > {marker}\n")
    evil.chmod(0o755)
    env.write_config(runc=str(evil))
    if fault == "not owned by root":
        os.chown(env.config, 1000, 1000)
    else:
        os.chmod(env.config, 0o666)
    try:
        res = env.run_shim(sub, "some-container", timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sandbox-runc {sub} hung")
    assert not marker.exists(), f"sandbox-runc {sub} ran {evil} as root from an operator config {fault}"
    assert res.returncode != 0 and "Traceback" not in res.stderr
