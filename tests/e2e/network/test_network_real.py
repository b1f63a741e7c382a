"""Network policy end to end: real connections between namespaces the tests make, rules read from the kernel.

Every test builds its own network (netlab.py): a server namespace listening on
two TCP ports, two UDP ports and DNS on two addresses, joined by a veth to the container's
namespace, all on a random IPv6 ULA prefix.  A container under a profile that allows one TCP
port, one UDP port and the first resolver probes all of them once (1 s timeouts); the
allowed ones answer, the others do not, and the nftables counters of the container's
namespace show that the kernel dropped them.  The same profile with no network section
(the control) reaches all six, so what fails fails because of the rules.

Here: `sandbox run`, sandbox-runc + runc directly (for `sandbox verify`), the node's own
addresses under `restricted`, and a container whose rules cannot be loaded.  The engines
(podman, Docker, containerd) are in test_network_engines.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from sandbox.core import netrules
from tests.conftest import ROOT
from tests.e2e.engines import PrivateRunc, audit_records
from tests.e2e.network.netlab import (
    TCP_NO,
    TCP_OK,
    UDP_OK,
    NetLab,
    expect_filtered,
    expect_only_allowed,
    lab_profile,
    probe_script,
    results,
)

pytestmark = pytest.mark.e2e

def sandbox_run(*args, audit, prefix=(), timeout=90):
    """`sandbox run ARGS`; `prefix` runs it under another command (nsenter into the "node" namespace)."""
    cmd = [*prefix, sys.executable, "-m", "sandbox", "run", "--audit-log", audit, *args]
    env = {**os.environ, "SANDBOX_STATE_DIR": "/run/sandbox-test"}
    env.pop("SANDBOX_CONFIG", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def bundle_in(tmp_path, rootfs, netns, script, uid=1000):
    """A bundle whose container joins the network namespace at `netns` and runs `script`."""
    from sandbox.host.bundle import spec_for_rootfs

    d = tmp_path / f"bundle-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    cfg = spec_for_rootfs(rootfs, ["sh", "-c", script])
    cfg["process"]["user"] = {"uid": uid, "gid": uid}
    cfg["process"]["terminal"] = False
    for ns in cfg["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = netns
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def _loaded_document(records):
    """The ruleset the decisions recorded, from the annotation sandbox wrote (via the audit log)."""
    for r in records:
        d = r.get("decision") or {}
        if d.get("control") == "network" and isinstance(d.get("after"), dict) and "sha256" in d["after"]:
            return d["after"]
    return None


# --- sandbox run ----------------------------------------------------------------------------------

def test_sandbox_run_lets_through_only_what_the_profile_allows(lab, net_rootfs, tmp_path):
    # no capabilities: `sandbox run --verify` checks between create and start, where runc's init of
    # a uid-1000 process still holds what its execve will drop (verify models the execve)
    profile = lab_profile(lab, tmp_path / "lab.yaml", extra="capabilities: []\n")
    ctr = lab.netns()
    lab.connect(ctr)
    audit = str(tmp_path / "audit.jsonl")
    res = sandbox_run("--profile", profile, "--verify", "--bundle", bundle_in(tmp_path, net_rootfs, ctr,
                                                                                probe_script(lab)), audit=audit)
    assert res.returncode == 0, res.stdout + res.stderr
    # the rules in the kernel are exactly those recorded with the decisions (text and SHA-256)
    recorded = _loaded_document(audit_records(audit))
    assert recorded and len(recorded["sha256"]) == 64 and "table inet sandbox" in recorded["ruleset"]
    expect_filtered(lab, res.stdout, ctr, recorded["ruleset"])
    verified = [r for r in audit_records(audit) if r["event"] == "verified"]
    checks = {c["control"]: c for c in verified[0]["data"]["checks"]}
    assert checks["network"]["status"] == "PASS", checks["network"]


def test_the_same_container_without_a_network_section_reaches_everything(lab, net_rootfs, tmp_path):
    """The control: the servers answer all six probes when no rules are loaded."""
    ctr = lab.netns()
    lab.connect(ctr)
    res = sandbox_run("--profile", "baseline", "--bundle", bundle_in(tmp_path, net_rootfs, ctr, probe_script(lab)),
                      audit=str(tmp_path / "audit.jsonl"))
    assert res.returncode == 0, res.stderr
    got = results(res.stdout)
    assert set(got.values()) == {"ok"} and len(got) == 6, got
    assert not netrules.has_table(NetLab.ruleset(ctr))


def test_the_node_is_unreachable_under_restricted(lab, net_rootfs, tmp_path):
    """sandbox runs inside the server namespace, which is then "the node": its addresses are denied."""
    ctr = lab.netns()
    lab.connect(ctr)
    script = f"/netprobe tcp {lab.server} {TCP_OK} 1000; /netprobe udp {lab.other} {UDP_OK} 1000; echo probes-done"
    node = ("nsenter", f"--net=/run/netns/{lab.server_ns}", "--")
    # first the control (baseline loads nothing), then restricted, in the same namespace
    for profile in ("baseline", "restricted"):
        res = sandbox_run("--profile", profile, "--bundle", bundle_in(tmp_path, net_rootfs, ctr, script),
                          audit=str(tmp_path / "a.jsonl"), prefix=node)
        assert res.returncode == 0 and "probes-done" in res.stdout, res.stdout + res.stderr
        got = results(res.stdout)
        assert len(got) == 2, got
        if profile == "baseline":
            assert set(got.values()) == {"ok"}, got
        else:
            assert "ok" not in got.values(), got
    counters = NetLab.counters(NetLab.ruleset(ctr))
    node_drop = [n for what, n in counters if what.startswith("drop") and lab.server in what and lab.other in what]
    assert node_drop and node_drop[0] >= 2, counters  # the deny_always rule naming the node's addresses


def test_a_container_whose_rules_cannot_load_never_runs(lab, net_rootfs, tmp_path):
    ctr = lab.netns()
    lab.connect(ctr)
    # someone else's table of that name already filters the namespace the container joins
    subprocess.run(["nsenter", f"--net={ctr}", "--", "/usr/sbin/nft", "add table inet sandbox; "
                    "add chain inet sandbox output { type filter hook output priority 0; policy accept; }"],
                   check=True, timeout=30)
    marker = "workload-ran"
    res = sandbox_run("--profile", lab_profile(lab, tmp_path / "lab.yaml"), "--bundle",
                      bundle_in(tmp_path, net_rootfs, ctr, f"echo {marker}"), audit=str(tmp_path / "a.jsonl"))
    assert res.returncode == 125, res.stdout + res.stderr
    assert marker not in res.stdout
    assert "already holds other sandbox rules" in res.stderr, res.stderr
    # and nothing of ours was added to the table that was there
    assert NetLab.counters(NetLab.ruleset(ctr)) == []


def test_joining_a_namespace_with_the_same_rules_is_accepted(lab, net_rootfs, tmp_path):
    """Two containers in one namespace (Docker's --network container:, podman's ns:): the same rules."""
    ctr = lab.netns()
    lab.connect(ctr)
    profile = lab_profile(lab, tmp_path / "lab.yaml")
    for _ in range(2):
        res = sandbox_run("--profile", profile, "--bundle", bundle_in(tmp_path, net_rootfs, ctr, probe_script(lab)),
                          audit=str(tmp_path / "a.jsonl"))
        assert res.returncode == 0, res.stderr
        expect_only_allowed(lab, results(res.stdout))


# --- sandbox-runc and sandbox verify ---------------------------------------------------------------

def test_verify_compares_the_live_rules_with_the_profile(e2e, lab, net_rootfs, tmp_path):
    profile = lab_profile(lab, tmp_path / "lab.yaml")
    pr = PrivateRunc(tmp_path, e2e, net_rootfs, default_profile=profile)
    ctr = lab.netns()
    lab.connect(ctr)
    bundle = bundle_in(tmp_path, net_rootfs, ctr, "sleep 30")
    cid = f"sbx-net-{uuid.uuid4().hex[:8]}"
    try:
        res = pr.run_shim("create", "--bundle", bundle, cid)
        assert res.returncode == 0, res.stderr
        verify = [sys.executable, "-m", "sandbox", "verify", cid, "--root", pr.root, "--runc", e2e, "--audit-log",
                  str(tmp_path / "verify.jsonl"), "--format", "json"]
        out = subprocess.run(verify, capture_output=True, text=True, timeout=60, env=pr.env, cwd=ROOT)
        checks = {c["control"]: c for c in json.loads(out.stdout)["checks"]}
        assert checks["network"]["status"] == "PASS", checks["network"]
        # the same container measured against a profile that allows another port: other rules
        other = lab_profile(lab, tmp_path / "other.yaml", name="net-other")
        with open(other) as f:
            text = f.read().replace(f"ports: [{TCP_OK}]", f"ports: [{TCP_NO}]")
        with open(other, "w") as f:
            f.write(text)
        out = subprocess.run([*verify, "--profile", other], capture_output=True, text=True, timeout=60,
                             env=pr.env, cwd=ROOT)
        checks = {c["control"]: c for c in json.loads(out.stdout)["checks"]}
        assert checks["network"]["status"] == "FAIL" and out.returncode == 1
        # someone opens the door inside the namespace: verify sees it
        subprocess.run(["nsenter", f"--net={ctr}", "--", "/usr/sbin/nft", "insert rule inet sandbox output accept"],
                       check=True, timeout=30)
        out = subprocess.run(verify, capture_output=True, text=True, timeout=60, env=pr.env, cwd=ROOT)
        checks = {c["control"]: c for c in json.loads(out.stdout)["checks"]}
        assert out.returncode == 1 and checks["network"]["status"] == "FAIL"
        assert "chain output differs" in checks["network"]["detail"]
    finally:
        pr.delete_all()
