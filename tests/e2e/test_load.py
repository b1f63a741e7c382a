"""Load: many containers through `sandbox-runc create` with the real runc, at once and in sequence.

- 50 concurrent creates (50 subprocesses, each its own bundle and container id): every container
  is hardened (annotation, noNewPrivileges, a seccomp filter in config.json; Seccomp: 2 in
  /proc/PID/status while created), the audit log holds exactly the records each create writes
  (measured on one container first) times 50, every line is JSON, each container's batch is
  contiguous (writers never interleave inside a batch), and `audit verify` passes.  Then all are
  started, waited for and deleted.
- 200 in sequence (create, start, wait, delete): all succeed, exact record counts, the log verifies.
- Rotation: `audit_max_bytes: 20000`, enough concurrent creates to rotate several times;
  `sandbox audit verify LOG` checks the rotated set; deleting a middle file makes it fail.

SANDBOX_LOAD_CONCURRENT / SANDBOX_LOAD_SEQUENTIAL change the counts (defaults 50 and 200).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from sandbox.host.bundle import spec_for_rootfs
from tests.e2e.engines import ANNOTATION, PrivateRunc, start_daemon, stop_daemon

pytestmark = pytest.mark.e2e

APPLIED = ANNOTATION + ".applied"
CONCURRENT = int(os.environ.get("SANDBOX_LOAD_CONCURRENT", "50"))
SEQUENTIAL = int(os.environ.get("SANDBOX_LOAD_SEQUENTIAL", "200"))


class Load(PrivateRunc):
    def __init__(self, tmp_path, runc, rootfs, **config):
        super().__init__(tmp_path, runc, rootfs, **config)
        self.original = json.dumps(spec_for_rootfs(rootfs, ["true"])).encode()
        self.logs = tmp_path / "logs"
        self.logs.mkdir()

    def bundle(self, cid):
        d = self.tmp / "bundles" / cid
        d.mkdir(parents=True)
        (d / "config.json").write_bytes(self.original)
        return str(d)

    def spawn(self, *args, name):
        # files, not pipes: a created container's init inherits them and would hold a pipe open
        out = open(self.logs / f"{name}.out", "wb")
        err = open(self.logs / f"{name}.err", "wb")
        try:
            return subprocess.Popen([self.shim, "--root", self.root, *args], stdout=out, stderr=err, env=self.env,
                                    stdin=subprocess.DEVNULL, cwd=str(self.tmp))
        finally:
            out.close()
            err.close()

    def stderr(self, name):
        return (self.logs / f"{name}.err").read_text(errors="replace")

    def shim_call(self, *args, name):
        p = self.spawn(*args, name=name)
        code = p.wait(timeout=120)
        assert code == 0, f"sandbox-runc {' '.join(args)} exited {code}: {self.stderr(name)}"

    def create(self, cid):
        self.shim_call("create", "--bundle", self.bundle(cid), cid, name=f"create-{cid}")

    def wait_stopped(self, cids, timeout=60):
        deadline = time.monotonic() + timeout
        pending = set(cids)
        while pending and time.monotonic() < deadline:
            pending = {c for c in pending if (self.state(c) or {}).get("status") != "stopped"}
            if pending:
                time.sleep(0.02)
        assert not pending, f"not stopped after {timeout} s: {sorted(pending)[:5]}"

    def lines(self, path=None):
        with open(path or self.audit, "rb") as f:
            return f.read().splitlines(keepends=True)


@pytest.fixture
def load(e2e, demo_rootfs, tmp_path):
    made = []

    def make(**config):
        d = tmp_path / f"load{len(made)}"
        d.mkdir(mode=0o755)
        ld = Load(d, e2e, demo_rootfs, **config)
        made.append(ld)
        return ld

    yield make
    for ld in made:
        ld.delete_all()


def records_per_create(ld):
    """How many records one `create` writes for one container (also warms the profile cache)."""
    ld.create("probe")
    ld.shim_call("delete", "-f", "probe", name="delete-probe")
    recs = [json.loads(line) for line in ld.lines()]
    assert all(r["container_id"] == "probe" for r in recs)
    assert recs[0]["event"] == "profile_resolved" and recs[-1]["event"] == "created"
    return len(recs)


def check_hardened(ld, cid):
    with open(os.path.join(ld.tmp, "bundles", cid, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["annotations"][APPLIED].startswith("baseline@"), cid
    assert cfg["process"]["noNewPrivileges"] is True, cid
    sec = cfg["linux"]["seccomp"]
    allowed = {n for rule in sec["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
               for n in rule["names"]}
    # the profile's filter, not a permissive one: the workload's calls are in, kernel-changing ones are not
    assert sec["defaultAction"] != "SCMP_ACT_ALLOW" and {"read", "write", "execve"} <= allowed, cid
    assert not allowed & {"kexec_load", "init_module", "mount", "bpf"}, cid


def seccomp_mode(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Seccomp:"))


def check_batches(records, per_create, cids, seq_check=True):
    """Per container: exactly `per_create` records; the first batch (profile_resolved + decisions) is
    one contiguous run of lines with consecutive seq; then one `created` record."""
    by = {}
    for i, r in enumerate(records):
        by.setdefault(r["container_id"], []).append(i)
    for cid in cids:
        idx = by.get(cid, [])
        assert len(idx) == per_create, f"{cid}: {len(idx)} records, expected {per_create}"
        first = idx[:-1]
        assert first == list(range(first[0], first[0] + len(first))), f"{cid}: batch interleaved with another writer"
        events = [records[i]["event"] for i in idx]
        assert events[0] == "profile_resolved" and set(events[1:-1]) == {"decision"} and events[-1] == "created"
        assert records[idx[-1]]["data"]["runc_exit"] == 0
    seqs = [r["seq"] for r in records]
    assert not seq_check or seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq is not gap-free"


@pytest.mark.parametrize("via", ["python", "daemon"])
def test_50_concurrent_creates(load, via, request):
    ld = load()
    if via == "daemon":  # one single-threaded daemon takes all 50 at once: queued, none lost or mixed
        ld.env["SANDBOX_DAEMON_SOCKET"], proc = start_daemon(ld.tmp)
        request.addfinalizer(lambda: stop_daemon(proc))
    per_create = records_per_create(ld)
    cids = [f"c{i:03d}" for i in range(CONCURRENT)]
    bundles = {cid: ld.bundle(cid) for cid in cids}

    t0 = time.monotonic()
    procs = {cid: ld.spawn("create", "--bundle", bundles[cid], cid, name=f"create-{cid}") for cid in cids}
    codes = {cid: p.wait(timeout=300) for cid, p in procs.items()}
    elapsed = time.monotonic() - t0
    failed = {cid: ld.stderr(f"create-{cid}")[-300:] for cid, c in codes.items() if c != 0}
    assert not failed, failed
    assert sorted(ld.containers()) == cids

    for cid in cids:
        check_hardened(ld, cid)
        st = ld.state(cid)
        assert st["status"] == "created"
        assert seccomp_mode(st["pid"]) == 2, f"{cid}: no seccomp filter on the created init"

    lines = ld.lines()
    assert all(line.endswith(b"\n") for line in lines)
    records = [json.loads(line) for line in lines]  # every line is JSON
    check_batches(records, per_create, cids)
    assert len(records) == per_create * (CONCURRENT + 1)  # + the probe container
    served = {r["data"].get("served_by") for r in records if r["event"] == "profile_resolved"}
    assert served == ({"daemon"} if via == "daemon" else {None})
    v = ld.verify()
    assert v.returncode == 0, v.stdout + v.stderr

    for cid in cids:
        ld.shim_call("start", cid, name=f"start-{cid}")
    ld.wait_stopped(cids)
    for cid in cids:
        ld.shim_call("delete", cid, name=f"delete-{cid}")
    assert ld.containers() == []
    print(f"\n{CONCURRENT} concurrent creates ({via}): {elapsed:.1f} s wall, {per_create} records each, "
          f"{len(records)} records, log verifies")


def test_200_in_sequence(load):
    ld = load()
    per_create = records_per_create(ld)
    cids = [f"s{i:03d}" for i in range(SEQUENTIAL)]
    t0 = time.monotonic()
    for cid in cids:
        ld.create(cid)
        ld.shim_call("start", cid, name=f"start-{cid}")
        ld.wait_stopped([cid])
        ld.shim_call("delete", cid, name=f"delete-{cid}")
        shutil.rmtree(os.path.join(ld.tmp, "bundles", cid))
    elapsed = time.monotonic() - t0
    assert ld.containers() == []
    records = [json.loads(line) for line in ld.lines()]
    check_batches(records, per_create, cids)
    assert len(records) == per_create * (SEQUENTIAL + 1)
    v = ld.verify()
    assert v.returncode == 0, v.stdout + v.stderr
    print(f"\n{SEQUENTIAL} sequential create+start+delete: {elapsed:.1f} s ({elapsed / SEQUENTIAL * 1000:.0f} ms "
          f"each), {len(records)} records, log verifies")


def test_audit_rotation_under_load(load):
    ld = load(audit_max_bytes=20000)
    per_create = records_per_create(ld)
    waves, width = 4, 4
    cids = []
    for w in range(waves):
        wave = [f"r{w}-{i}" for i in range(width)]
        procs = {cid: ld.spawn("create", "--bundle", ld.bundle(cid), cid, name=f"create-{cid}") for cid in wave}
        for cid, p in procs.items():
            assert p.wait(timeout=120) == 0, ld.stderr(f"create-{cid}")
        cids += wave
        ld.delete_all()

    files = sorted((n for n in os.listdir(ld.audit_dir) if n.startswith("audit.jsonl")),
                   key=lambda n: -int(n.rsplit(".", 1)[1]) if n[-1].isdigit() else 0)
    rotated = [n for n in files if n != "audit.jsonl"]
    assert len(rotated) >= 3, f"only {len(rotated)} rotations: {files}"
    assert len(rotated) <= 5, "more rotations than kept files: the oldest was dropped, counts cannot be exact"
    paths = [str(ld.audit_dir / n) for n in files]  # oldest first
    records = [json.loads(line) for p in paths for line in ld.lines(p)]
    assert records[0]["seq"] == 1 and records[0]["container_id"] == "probe"
    n_rotated = sum(r["event"] == "rotated" for r in records)
    assert n_rotated == len(rotated)
    assert len(records) == per_create * (len(cids) + 1) + n_rotated
    check_batches([r for r in records if r["event"] != "rotated"], per_create, cids, seq_check=False)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)), "seq is not gap-free across files"
    for p in paths:
        assert os.path.getsize(p) < 20000 + 2 * per_create * 1024, f"{p} far over audit_max_bytes"

    v = ld.verify()  # one PATH: the log and its rotated siblings
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"in {len(files)} files" in v.stdout, v.stdout

    middle = str(ld.audit_dir / "audit.jsonl.2")
    with tempfile.TemporaryDirectory() as keep:
        shutil.move(middle, keep)
        bad = ld.verify()
        assert bad.returncode == 1, bad.stdout
        assert "prev mismatch" in bad.stdout or "seq gap" in bad.stdout, bad.stdout
        shutil.move(os.path.join(keep, "audit.jsonl.2"), middle)
    assert ld.verify().returncode == 0
    print(f"\nrotation: {len(cids) + 1} creates, {len(rotated)} rotations, {len(records)} records in {len(files)} files")
