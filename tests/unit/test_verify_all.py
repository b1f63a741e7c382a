"""`sandbox verify --all` without containers: provenance, classification, the reports, discovery over
fake state directories, the kernel's ABIs from its config, and the controls over given evidence."""

import gzip
import json
import os
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.core.node_report import (
    NodeReport,
    Row,
    classify,
    format_prometheus,
    format_table,
    provenance,
    rfc3339_ns,
    to_json,
)
from sandbox.core.verify import Check, OtherProcess, SeccompFilters, compare, expected_from_config
from sandbox.host import discover, inspect
from sandbox.host.discover import AuditEntry
from tests.unit.test_verify import CONFIG, HOST, LIMITS, STATE

CREATED = "2026-11-29T15:58:30.484587825Z"
BUNDLE = "/run/b/c1"


def entry(seq, event, ts="2026-11-29T15:58:30.100000000Z", profile="baseline", sha="ab" * 32, bundle=BUNDLE,
          subcommand="create", mode="enforce", runc_exit=None):
    return AuditEntry(seq, ts, event, bundle, profile, sha, subcommand, mode, runc_exit)


GOOD = [entry(1, "profile_resolved"), entry(2, "created", runc_exit=0)]
ANN = "baseline@" + "ab" * 8


# ---------------------------------------------------------------------------------------------------------
# Provenance: the annotation and the audit record agree
# ---------------------------------------------------------------------------------------------------------

def test_rfc3339_with_nanoseconds_and_offsets():
    assert rfc3339_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert rfc3339_ns(CREATED) % 10**9 == 484587825
    assert rfc3339_ns("1970-01-01T01:00:00+01:00") == 0
    assert rfc3339_ns("yesterday") is None


def test_a_container_created_through_sandbox_is_recognised():
    p = provenance(ANN, GOOD, BUNDLE, CREATED, "/log")
    assert p.through_sandbox and p.profile == "baseline"
    # facts sandbox-runc appends to the annotation (an allocated id range) do not hide the digest
    assert provenance(ANN + ";userns=100000:65536", GOOD, BUNDLE, CREATED, "/log").through_sandbox


@pytest.mark.parametrize("annotation,entries,why", [
    (None, GOOD, "no sandbox annotation"),
    ("baseline", GOOD, "no sandbox annotation"),
    (ANN, [], "no record of its creation"),
    (ANN, [replace(e, bundle="/other") for e in GOOD], "no record of its creation"),
    ("strict@" + "ab" * 8, GOOD, "records profile baseline"),
    ("baseline@" + "cd" * 8, GOOD, "records profile baseline@abab"),
    (ANN, [entry(1, "profile_resolved", ts="2026-11-29T10:00:00Z"), entry(2, "created", runc_exit=0)],
     "long before this container was created"),
    (ANN, [entry(1, "profile_resolved"), entry(2, "error", runc_exit=1)], "creation through sandbox failed"),
    (ANN, [entry(1, "profile_resolved", subcommand="exec")], "no record of its creation"),
    (None, [entry(1, "profile_resolved", mode="complain")], "complain mode"),
])
def test_what_does_not_prove_a_sandbox_creation(annotation, entries, why):
    p = provenance(annotation, entries, BUNDLE, CREATED, "/log")
    assert not p.through_sandbox and why in p.reason


def test_a_record_for_a_later_container_of_the_same_id_does_not_count():
    later = [entry(3, "profile_resolved", ts="2026-11-29T17:00:00Z"), entry(4, "created", runc_exit=0)]
    assert provenance(ANN, GOOD + later, BUNDLE, CREATED, "/log").through_sandbox
    assert not provenance(ANN, later, BUNDLE, CREATED, "/log").through_sandbox


def test_classification():
    ok = provenance(ANN, GOOD, BUNDLE, CREATED, "/log")
    bad = provenance(None, [], BUNDLE, CREATED, "/log")
    fail = [Check("seccomp", "FAIL", "", "", "")]
    assert classify("running", ok, []) == "hardened"
    assert classify("running", ok, fail) == "drifted"
    assert classify("running", bad, []) == "bypass"
    assert classify("running", ok, [], "paused") == "unverified"
    assert classify("stopped", bad, fail) == "stopped"


# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------

def _report(audit_state="ok"):
    rows = [
        Row("a" * 64, "docker", "moby", "/run/docker/runtime-runc/moby", "/b/a", 10, "running", "hardened",
            "baseline", "created under baseline@..", (Check("seccomp", "PASS", "", "", "ok"),)),
        Row("b" * 64, "containerd", "k8s.io", "/run/containerd/runc/k8s.io", "/b/b", 11, "running", "drifted",
            "strict", "", (Check("seccomp", "FAIL", "", "", "allowed beyond the profile: acct"),
                           Check("processes.capabilities", "FAIL", "", "", "pid 12: CAP_SYS_ADMIN"))),
        Row('we"ird\\id', "runc", "", "/run/runc", "/b/c", 12, "running", "bypass", "baseline",
            "no sandbox annotation", (Check("no_new_privileges", "FAIL", "", "", "0"),)),
        Row("d", "podman", "", "/run/runc", "/b/d", 0, "stopped", "stopped", "", ""),
    ]
    return NodeReport(rows, "/var/log/sandbox/audit.jsonl", audit_state, "", {"total": 1.25, "ptrace": 0.01})


def test_prometheus_textfile_is_what_node_exporter_parses():
    text = format_prometheus(_report(), 1700000000.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {s.labels["state"]: s.value for s in families["sandbox_verify_containers"].samples}
    assert counts == {"hardened": 1, "drifted": 1, "bypass": 1, "unverified": 0, "stopped": 1}
    failed = {(s.labels["container"], s.labels["control"]) for s in families["sandbox_verify_control_failed"].samples}
    assert failed == {("b" * 64, "seccomp"), ("b" * 64, "processes.capabilities"), ('we"ird\\id', "provenance"),
                      ('we"ird\\id', "no_new_privileges")}
    assert families["sandbox_verify_ok"].samples[0].value == 0
    assert families["sandbox_verify_duration_seconds"].samples[0].value == 1.25
    assert all(f.type == "gauge" for f in families.values())


def test_json_and_table_reports():
    report = _report()
    doc = to_json(report)
    assert doc["passed"] is False and doc["summary"]["drifted"] == 1
    assert doc["containers"][1]["failing"] == ["seccomp", "processes.capabilities"]
    assert json.loads(json.dumps(doc)) == doc
    table = format_table(report)
    assert "DRIFTED" in table and "FAIL seccomp: allowed beyond the profile: acct" in table
    assert table.splitlines()[-1] == "4 containers: 1 hardened, 1 drifted, 1 bypass, 1 stopped"


def test_only_a_broken_audit_log_fails_a_node_of_hardened_containers():
    rows = [r for r in _report().rows if r.state in ("hardened", "stopped")]
    for state, failing in (("ok", False), ("missing", False), ("broken", True), ("unreadable", True)):
        assert NodeReport(rows, "/log", state).failing is failing


# ---------------------------------------------------------------------------------------------------------
# Discovery over fake state directories
# ---------------------------------------------------------------------------------------------------------

def _state(root, cid, pid, start, bundle, freezer=None):
    d = root / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({
        "id": cid, "init_process_pid": pid, "init_process_start": start, "created": CREATED,
        "config": {"labels": [f"bundle={bundle}"]}, "cgroup_paths": {"freezer": freezer or ""}}))
    return d


def test_containers_and_their_status_come_from_runcs_state(tmp_path):
    root = tmp_path / "runc"
    me = os.getpid()
    start = inspect.process_start(me)
    _state(root, "running", me, start, "/b/1")
    _state(root, "reused-pid", me, start + 1, "/b/2")  # the pid now belongs to someone else
    (_state(root, "created", me, start, "/b/3") / "exec.fifo").write_text("")
    frozen = tmp_path / "freezer"
    frozen.mkdir()
    (frozen / "freezer.state").write_text("FROZEN\n")
    _state(root, "paused", me, start, "/b/4", freezer=str(frozen))
    (root / "junk").mkdir()
    found = {f.id: f for f in discover.find_containers([discover.Root(str(root), "runc")])}
    assert {k: (f.status, f.bundle) for k, f in found.items()} == {
        "running": ("running", "/b/1"), "reused-pid": ("stopped", "/b/2"), "created": ("created", "/b/3"),
        "paused": ("paused", "/b/4")}
    assert found["running"].pid == me and found["reused-pid"].pid == 0


def test_containerd_bundles_name_their_runc_root_in_options_json(tmp_path):
    ns = tmp_path / "state" / discover.TASKS / "k8s.io"
    (ns / "pod1").mkdir(parents=True)
    (ns / "pod1" / "options.json").write_text(json.dumps({"binary_name": "/x/sandbox-runc", "root": "/run/cri-sbx"}))
    (ns / "pod2").mkdir()
    moby = tmp_path / "state" / discover.TASKS / "moby" / "c"
    moby.mkdir(parents=True)
    roots = discover._containerd_roots([str(ns), str(moby.parent)], "test")
    assert {(r.path, r.engine, r.namespace) for r in roots} == {
        ("/run/cri-sbx/k8s.io", "containerd", "k8s.io"), ("/run/containerd/runc/k8s.io", "containerd", "k8s.io"),
        ("/run/containerd/runc/moby", "docker", "moby")}


def test_roots_given_on_the_command_line_are_attributed_by_their_layout():
    def attributed(path):
        r = discover.given_root(path)
        return r.engine, r.namespace

    assert attributed("/run/docker/runtime-sandbox/moby") == ("docker", "moby")
    assert attributed("/run/containerd/runc/k8s.io") == ("containerd", "k8s.io")
    assert attributed("/srv/runc") == ("runc", "")


def test_flags_are_read_as_engines_read_them_the_last_wins():
    assert discover.last_flag(["dockerd", "--exec-root", "/a", "--exec-root=/b"], "--exec-root") == "/b"
    assert discover.last_flag(["conmon", "-c", "id1", "-r", "/usr/bin/runc"], "-c", "--cid") == "id1"
    assert discover.last_flag(["x"], "--root") is None


def test_the_audit_log_is_indexed_once_and_only_up_to_a_break(tmp_path):
    from sandbox.audit.log import AuditLog

    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path)
    log.append([{"event": "profile_resolved", "container_id": "c1", "bundle": BUNDLE, "profile": "baseline",
                 "profile_sha256": "ab" * 32, "data": {"subcommand": "create", "mode": "enforce"}},
                {"event": "decision", "container_id": "c1", "decision": {"control": "x"}},
                {"event": "created", "container_id": "c1", "bundle": BUNDLE, "data": {"runc_exit": 0}}])
    idx = discover.index_audit_log(path)
    assert idx.state == "ok" and idx.records == 3
    assert [(e.event, e.subcommand, e.runc_exit) for e in idx.entries("c1")] == [
        ("profile_resolved", "create", None), ("created", "", 0)]
    log.append([{"event": "profile_resolved", "container_id": "c2", "bundle": "/b2", "profile": "baseline",
                 "data": {"subcommand": "create"}}])
    with open(path, "rb") as f:
        lines = f.readlines()
    lines[-1] = lines[-1].replace(b'"c2"', b'"c3"')  # an edited record
    with open(path, "wb") as f:
        f.writelines(lines)
    idx = discover.index_audit_log(path)
    assert idx.state == "broken" and "hash chain is broken" in idx.problem
    assert idx.entries("c1") and not idx.entries("c2") and not idx.entries("c3")
    assert discover.index_audit_log(str(tmp_path / "none.jsonl")).state == "missing"


# ---------------------------------------------------------------------------------------------------------
# The kernel's ABIs
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config,cmdline,absent", [
    ("CONFIG_IA32_EMULATION=y\nCONFIG_X86_X32_ABI=y\n", "", ()),
    ("CONFIG_IA32_EMULATION=y\n# CONFIG_X86_X32_ABI is not set\n", "", ("x32",)),
    ("# CONFIG_IA32_EMULATION is not set\n", "", ("x32", "i386")),
    ("CONFIG_IA32_EMULATION=y\nCONFIG_IA32_EMULATION_DEFAULT_DISABLED=y\n", "quiet", ("x32", "i386")),
    ("CONFIG_IA32_EMULATION=y\nCONFIG_IA32_EMULATION_DEFAULT_DISABLED=y\n", "ia32_emulation=1", ("x32",)),
    ("CONFIG_IA32_EMULATION=y\n", "ia32_emulation=0 ro", ("x32", "i386")),
])
def test_compat_abis_the_kernel_does_not_run(tmp_path, config, cmdline, absent):
    with gzip.open(tmp_path / "config.gz", "wt") as f:
        f.write(config)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    assert inspect.absent_abis("x86_64", proc=str(tmp_path)) == absent


def test_without_the_kernel_config_every_abi_is_examined(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "0.0-none", "", "x86_64")))
    assert inspect.absent_abis("x86_64", proc=str(tmp_path)) == ()


# ---------------------------------------------------------------------------------------------------------
# The controls over given evidence
# ---------------------------------------------------------------------------------------------------------

def _checks(**kw):
    return {c.control: c for c in compare(expected_from_config(CONFIG), STATE, LIMITS, HOST, **kw)}


def test_seccomp_evidence_that_could_not_be_read_fails():
    c = _checks(seccomp=SeccompFilters(None, "task 7 is already traced by process 9; not attaching"))["seccomp"]
    assert c.status == "FAIL" and "already traced" in c.detail
    c = _checks(seccomp=SeccompFilters(()))["seccomp"]
    assert c.status == "FAIL" and "no seccomp filter is installed" in c.detail


def test_without_evidence_only_the_count_is_checked_and_said_so():
    c = _checks()["seccomp"]
    assert c.status == "PASS" and "content not read" in c.detail


def test_other_processes_are_held_to_the_same_ceiling():
    ok = OtherProcess(replace(STATE, pid=5), "sh")
    extra = OtherProcess(replace(STATE, pid=6, cap_bnd=(*STATE.cap_bnd, "CAP_SYS_ADMIN"),
                                 cap_eff=("CAP_SYS_ADMIN",)), "sleep")
    no_nnp = OtherProcess(replace(STATE, pid=7, no_new_privs=False), "x")
    host_net = OtherProcess(replace(STATE, pid=8, namespaces={**STATE.namespaces, "net": HOST["net"]}), "y")
    checks = _checks(processes=(ok, extra, no_nnp, host_net))
    assert checks["processes.capabilities"].status == "FAIL"
    assert checks["processes.capabilities"].detail == "capabilities beyond the profile: pid 6 (sleep): CAP_SYS_ADMIN"
    assert checks["processes.no_new_privileges"].detail == "NoNewPrivs is 0 in pid 7 (x)"
    assert checks["processes.namespaces"].detail == "in the host's namespaces: pid 8 (y): network"
    assert all(c.status == "PASS" for c in _checks(processes=(ok,)).values() if c.control.startswith("processes."))
    assert not [c for c in _checks() if c.startswith("processes.")]  # not looked at: no checks


def test_a_non_root_process_keeps_only_its_ambient_capabilities_across_execve():
    config = json.loads(json.dumps(CONFIG))
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    state = replace(STATE, cap_eff=(), cap_prm=())
    checks = {c.control: c for c in compare(expected_from_config(config), state, LIMITS, HOST)}
    assert checks["capabilities.effective"].status == "PASS"
    assert "keeps only its ambient capabilities" in checks["capabilities.effective"].detail
    grown = replace(state, cap_eff=("CAP_KILL",), cap_prm=("CAP_KILL",))
    checks = {c.control: c for c in compare(expected_from_config(config), grown, LIMITS, HOST)}
    assert checks["capabilities.effective"].status == "FAIL"  # no_new_privileges: file capabilities are ignored


def test_a_containers_processes_by_pid_namespace_or_when_shared_by_cgroup(tmp_path):
    def proc(pid, ns, cgroup):
        d = tmp_path / str(pid)
        (d / "ns").mkdir(parents=True)
        os.symlink(f"pid:[{ns}]", d / "ns" / "pid")
        (d / "cgroup").write_text(cgroup)

    (tmp_path / "self" / "ns").mkdir(parents=True)
    os.symlink("pid:[1]", tmp_path / "self" / "ns" / "pid")
    proc(10, 1, "0::/host\n")  # a host process
    proc(20, 7, "0::/pod/a\n")  # container a's init, in the pod's shared pid namespace
    proc(21, 7, "0::/pod/a\n")  # exec'd into a
    proc(30, 7, "0::/pod/b\n")  # container b, same pid namespace
    proc(40, 8, "0::/c\n")  # container c: a pid namespace of its own
    proc(41, 8, "0::/c/sub\n")  # ...whose child moved to a sub-cgroup: still c's
    table = inspect.ProcessTable(proc=str(tmp_path))
    assert table.members(40) == [40, 41]
    assert table.members(20) == [20, 21, 30]  # by pid namespace: b's process would count as a's
    assert table.members(20, shared_pidns=True) == [20, 21]
    assert table.members(30, shared_pidns=True) == [30]


@pytest.mark.parametrize("args,message", [
    ([], "give a CONTAINER_ID, or --all"),
    (["--all", "c1"], "give no CONTAINER_ID or --profile"),
    (["--all", "--profile", "strict"], "give no CONTAINER_ID or --profile"),
    (["c1", "--format", "prometheus"], "use it with --all"),
    (["c1", "--root", "/a", "--root", "/b"], "one --root for one container"),
])
def test_verify_usage_errors_exit_2_with_one_line(args, message):
    from click.testing import CliRunner

    from sandbox.cli import cli

    res = CliRunner().invoke(cli, ["verify", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_a_rootfs_view_sandbox_mounted_is_not_held_against_its_container(tmp_path):
    """Re-applying strict to a config.json sandbox-runc wrote (root.path is the rootfs view in runc's own
    mount namespace) demands what the create did; the same path without sandbox's annotation, or with
    another refusal beside it, is still refused."""
    from sandbox.core.decisions import ROOTFS_TARGET
    from sandbox.host.opconfig import OperatorConfig
    from sandbox.runtime.service import reapply, resolve_profile

    op = OperatorConfig(runtime_dir=str(tmp_path / "rt"))
    strict = resolve_profile("strict")
    mapping = [{"containerID": 0, "hostID": 1 << 30, "size": 65536}]
    config = {"ociVersion": "1.0.2", "root": {"path": ROOTFS_TARGET, "readonly": True},
              "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 1000, "gid": 1000}},
              "annotations": {"org.sandbox-runtime.profile.applied": "strict@0123456789abcdef;userns=1073741824:65536"},
              "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network", "user")],
                        "uidMappings": mapping, "gidMappings": mapping}}
    outcome = reapply(op, strict, config, str(tmp_path))
    assert not outcome.refused, [d.reason for d in outcome.refusals]
    assert outcome.config["linux"]["uidMappings"] == mapping
    bare = {**config, "annotations": {}}
    assert {d.pointer for d in reapply(op, strict, bare, str(tmp_path)).refusals} == {"/root/path"}
    host = {**config, "mounts": [{"destination": "/h", "type": "bind", "source": "/etc", "options": ["rbind"]}]}
    assert reapply(op, strict, host, str(tmp_path)).refused


def test_before_the_workloads_execve_the_configured_sets_are_expected():
    """`sandbox run --verify` checks a created container, whose init is runc's (not exec'd yet): there a
    non-root user still holds every configured capability, and the execve model would fail it."""
    config = json.loads(json.dumps(CONFIG))
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    created = replace(STATE, before_exec=True)  # runc init: effective and permitted as configured
    assert STATE.cap_eff, "the fixture's process holds capabilities"
    checks = {c.control: c for c in compare(expected_from_config(config), created, LIMITS, HOST)}
    assert checks["capabilities.effective"].status == "PASS", checks["capabilities.effective"]
    assert "across execve" not in checks["capabilities.effective"].detail
    exec_d = {c.control: c for c in compare(expected_from_config(config), STATE, LIMITS, HOST)}
    assert exec_d["capabilities.effective"].status == "FAIL"  # the same sets after execve are too many

