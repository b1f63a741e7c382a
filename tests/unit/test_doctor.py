"""`sandbox doctor`'s assessment and parsers, fed with host facts written here.

The real host is checked against independent evidence in tests/e2e/test_doctor_real.py.
"""

import json
import os
import textwrap

import pytest
from click.testing import CliRunner

from sandbox.cli import cli
from sandbox.core.loader import builtin_seccomp_profile, load_profile
from sandbox.host import doctor
from sandbox.host.doctor import FAIL, MISSING, NOTE, OK, WARN, Check, assess
from sandbox.host.opconfig import OperatorConfig

RD = builtin_seccomp_profile()


def needs_of(*names, **extra):
    out = {n: doctor.profile_needs(load_profile(n), RD) for n in names}
    out.update(extra)
    return out


# -- what a profile needs, read from the profile ---------------------------------------------------------


def test_strict_needs_a_user_namespace_and_the_limit_controllers_baseline_does_not():
    base, strict = (doctor.profile_needs(load_profile(n), RD) for n in ("baseline", "strict"))
    assert {"userns", "ns:user", "cgroup:memory", "cgroup:pids", "cgroup:cpu", "swap"} <= set(strict)
    assert not {"userns", "ns:user", "cgroup:memory", "cgroup:pids", "cgroup:cpu"} & set(base)
    # strict names no mapping of its own: its ranges come from the operator's pool
    assert "id_pool" in strict["userns"]
    for p in (base, strict):
        assert {"runc", "audit", "opconfig", "seccomp:errno", "seccomp:allow", "ns:pid", "ns:network"} <= set(p)


def test_needs_follow_the_profile_not_its_name(tmp_path):
    prof = tmp_path / "capped.yaml"
    prof.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: capped\nextends: baseline\n"
                    "resources:\n  memory: {max: 64Mi}\napparmor: sandbox-default\n"
                    "seccomp:\n  rules:\n    - {names: [getpid], action: SCMP_ACT_LOG}\n")
    needs = doctor.profile_needs(load_profile(str(prof)), RD)
    assert "cgroup:memory" in needs and "cgroup:pids" not in needs
    assert needs["lsm:apparmor"] == "AppArmor profile 'sandbox-default'"
    assert "seccomp:log" in needs


def test_a_profile_that_needs_the_agent_is_blocked_without_it(tmp_path):
    prof = tmp_path / "watched.yaml"
    prof.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: watched\nextends: strict\n"
                    "monitor:\n  exec_trail: true\n")
    needs = doctor.profile_needs(load_profile(str(prof)), RD)
    assert "exec trail" in needs["agent"] and "seccomp:user_notif" in needs
    assert "agent" not in doctor.profile_needs(load_profile("strict"), RD)
    absent = Check("agent", "nothing listens", missing={"agent": "not running"}, covers=("agent",))
    report = assess([absent], {"strict": doctor.profile_needs(load_profile("strict"), RD), "watched": needs},
                    "watched")
    assert report.checks[0].status == FAIL and "watched cannot be enforced" in report.checks[0].impact


# -- the assessment -------------------------------------------------------------------------------------


def userns_check(missing=None):
    return Check("user namespaces", "max_user_namespaces 0", missing=missing or {}, covers=("userns",))


def test_a_missing_feature_blocks_only_the_profiles_that_need_it():
    report = assess([userns_check({"userns": "user.max_user_namespaces is 0"})],
                    needs_of("baseline", "restricted", "strict"), "baseline")
    assert report.unmet["strict"] == ["user namespaces: a user namespace (root inside gets a 65536-id host range "
                                      "of its own from the operator's id_pool): "
                                      "user.max_user_namespaces is 0"]
    assert report.unmet["baseline"] == [] and report.unmet["restricted"] == []
    [c] = report.checks
    assert c.status == MISSING and "strict cannot be enforced" in c.impact
    assert report.exit_code == 0  # the default (baseline) is fine
    assert report.summary.startswith("sandbox doctor: strict cannot be enforced here (strict: user namespaces: ")
    assert "baseline and restricted can" in report.summary and report.attention


def test_exit_1_when_the_default_profile_cannot_be_enforced():
    report = assess([userns_check({"userns": "user.max_user_namespaces is 0"})], needs_of("baseline", "strict"),
                    "strict")
    assert report.exit_code == 1 and report.checks[0].status == FAIL
    assert report.summary.startswith("sandbox doctor: the default profile strict cannot be enforced here")
    assert report.to_dict()["profiles"]["strict"]["enforceable"] is False


def test_degraded_is_a_warning_not_a_blocker():
    cg = Check("cgroups", "v1", degraded={"swap": "no swap accounting"}, covers=("cgroup:", "swap"))
    report = assess([cg], needs_of("baseline", "strict"), "strict")
    assert report.exit_code == 0 and report.unmet["strict"] == []
    assert report.degraded["strict"] == ["cgroups: swap bounded by its memory limit: no swap accounting"]
    assert report.checks[0].status == WARN and "strict runs without part of it" in report.checks[0].impact


def test_something_absent_that_no_profile_needs_is_a_note_and_the_summary_says_all_is_well():
    lsm = Check("LSMs", "AppArmor not enabled", degraded={"lsm:apparmor": "not enabled"}, covers=("lsm:",),
                note="no built-in profile sets an AppArmor label")
    landlock = Check("Landlock", "ABI 7", note="not used")
    report = assess([lsm, landlock], needs_of("baseline", "restricted", "strict"), "baseline")
    assert [c.status for c in report.checks] == [NOTE, OK]
    assert report.summary == ("sandbox doctor: baseline, restricted and strict can be enforced here "
                              "(default profile: baseline); 1 note")
    assert not report.attention and report.exit_code == 0


def test_impact_names_what_each_profile_uses_from_a_check():
    ns = Check("namespaces", "all", covers=("ns:",))
    [c] = assess([ns], needs_of("baseline", "strict"), "baseline").checks
    assert c.status == OK
    assert c.impact.startswith("baseline: private ipc, mount, network, pid and uts namespaces; "
                               "strict: private cgroup, ipc, mount, network, pid, user and uts namespaces")


# -- runc and the CVE hook --------------------------------------------------------------------------------

DEBIAN_RUNC = """runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4
"""


def test_parse_runc_version():
    assert doctor.parse_runc_version(DEBIAN_RUNC) == {"version": "1.1.5+ds1", "commit": "1.1.5+ds1-1+deb12u1",
                                                     "spec": "1.0.2-dev", "go": "go1.19.8", "libseccomp": "2.5.4"}
    assert doctor.version_tuple("1.1.5+ds1") == (1, 1, 5) and doctor.version_tuple("1.2.0-rc.1") == (1, 2, 0)


def fake_runc(tmp_path, text=DEBIAN_RUNC):
    path = tmp_path / "runc"
    path.write_text("#!/bin/sh\ncat <<'EOF'\n" + text + "EOF\n")
    os.chmod(path, 0o755)
    return str(path)


def test_without_a_cve_verdict_the_status_is_unknown_not_clean(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "runc_cves", lambda version, package: None)
    c = doctor.check_runc(OperatorConfig(runc=fake_runc(tmp_path)))
    assert "runc 1.1.5+ds1" in c.found and "libseccomp 2.5.4" in c.found
    assert "known-CVE status: unknown" in c.found and not c.warnings and not c.missing


def test_the_runc_line_takes_its_cve_status_from_runc_cves(tmp_path, monkeypatch):
    seen = []

    def table(version, package):
        seen.append((version, package))
        return [{"id": "CVE-2024-21626", "affected": True, "mitigation": "refuses a cwd outside the rootfs"},
                {"id": "CVE-2019-5736", "affected": False, "mitigation": None},
                {"id": "CVE-2099-0001", "affected": True, "mitigation": None}]

    monkeypatch.setattr(doctor, "runc_cves", table)
    c = doctor.check_runc(OperatorConfig(runc=fake_runc(tmp_path)))
    assert seen and seen[0][0] == "1.1.5+ds1"
    assert "affected by CVE-2024-21626, mitigated by sandbox" in c.found
    assert "affected by CVE-2099-0001 with no mitigation" in c.found
    assert c.warnings == ("upgrade runc: CVE-2099-0001 affect it and sandbox cannot mitigate them",)
    report = assess([c], needs_of("baseline"), "baseline")
    assert report.checks[0].status == WARN and report.exit_code == 0


def test_debians_runc_is_judged_against_the_cve_table():
    """The machine's runc (Debian 1.1.5+ds1-1+deb12u1): the backported fixes count, the four later CVEs do not."""
    findings = {f["id"]: f for f in doctor.runc_cves("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")}
    affected = {i for i, f in findings.items() if f["affected"]}
    assert {"CVE-2024-45310", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"} <= affected
    assert not findings["CVE-2024-21626"]["affected"]  # Debian's backport
    assert not findings["CVE-2019-5736"]["affected"]
    assert all(findings[i]["mitigation"] for i in affected)


def test_a_partly_mitigated_cve_is_said_so_and_asks_for_an_upgrade():
    text, warnings = doctor.cve_summary([{"id": "CVE-1", "affected": True, "mitigation": "partial: narrows it"},
                                          {"id": "CVE-2", "affected": True, "mitigation": "closes it"}])
    assert "CVE-2, mitigated by sandbox" in text and "CVE-1, only partly mitigated" in text
    assert warnings == ["upgrade runc: sandbox only narrows CVE-1 (docs/security.md)"]


def test_cve_summary_of_a_clean_build():
    assert doctor.cve_summary([{"id": "CVE-1", "affected": False}]) == (
        "none of the 1 known runc CVEs affects this build", [])


def test_no_runc_blocks_every_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SANDBOX_RUNC", raising=False)
    c = doctor.check_runc(None)
    report = assess([c], needs_of("baseline", "strict"), "baseline")
    assert report.exit_code == 1 and all(report.unmet.values())
    assert "runc not found" in report.unmet["baseline"][0]


def test_an_old_runc_is_a_warning(tmp_path):
    c = doctor.check_runc(OperatorConfig(runc=fake_runc(tmp_path, DEBIAN_RUNC.replace("1.1.5+ds1\n", "1.0.2\n", 1))))
    assert any("older" in w for w in c.warnings)


# -- cgroups ----------------------------------------------------------------------------------------------

PROC_CGROUPS = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t4\t1
cpu\t1\t4\t1
memory\t4\t61\t1
pids\t8\t4\t1
hugetlb\t0\t3\t1
rdma\t0\t1\t0
"""


def mi(*mounts):
    return "".join(f"{i} 1 0:{i} / {mp} rw,nosuid - {fs} {fs} {opts}\n" for i, (mp, fs, opts) in enumerate(mounts, 30))


def test_cgroup_controllers_v1_hybrid_and_v2():
    v1 = mi(("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"), ("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
            ("/sys/fs/cgroup/pids", "cgroup", "rw,pids"))
    assert doctor.cgroup_controllers(PROC_CGROUPS, v1, "v1", None) == {
        "cpu": "v1 /sys/fs/cgroup/cpu", "memory": "v1 /sys/fs/cgroup/memory", "pids": "v1 /sys/fs/cgroup/pids"}
    hybrid = doctor.cgroup_controllers(PROC_CGROUPS, v1 + mi(("/sys/fs/cgroup/unified", "cgroup2", "rw")),
                                       "hybrid", "hugetlb\n")
    assert hybrid["memory"] == "v1 /sys/fs/cgroup/memory" and hybrid["hugetlb"] == "v2"
    assert doctor.cgroup_controllers(None, None, "v2", "cpuset cpu io memory pids\n") == {
        c: "v2" for c in ("cpuset", "cpu", "io", "memory", "pids")}


def test_a_v1_controller_enabled_but_not_mounted_is_missing():
    only_cpu = mi(("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"))
    ctrls = doctor.cgroup_controllers(PROC_CGROUPS, only_cpu, "v1", None)
    assert "memory" not in ctrls and "cpu" in ctrls


# -- user namespaces and subordinate ids ------------------------------------------------------------------


def test_subuid_overlap_with_a_profiles_mapping_is_a_warning(tmp_path):
    proc = tmp_path / "proc"
    (proc / "sys" / "user").mkdir(parents=True)
    (proc / "sys" / "user" / "max_user_namespaces").write_text("1000\n")
    (proc / "self" / "ns").mkdir(parents=True)
    (proc / "self" / "ns" / "user").write_text("")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "subuid").write_text("alice:100000:65536\n# comment\nbad line\n")
    (etc / "subgid").write_text("")
    c = doctor.check_userns({"strict": (100000, 65536)}, proc=str(proc), etc=str(etc))
    assert not c.missing and c.data["subuid"] == [{"user": "alice", "start": 100000, "count": 65536}]
    assert c.warnings and "alice" in c.warnings[0] and "100000-165535" in c.warnings[0]
    (proc / "sys" / "user" / "max_user_namespaces").write_text("0\n")
    assert doctor.check_userns({}, proc=str(proc), etc=str(etc)).missing == {
        "userns": "user.max_user_namespaces is 0"}


# -- engines ----------------------------------------------------------------------------------------------


@pytest.fixture
def shim(tmp_path):
    """An installed-looking sandbox-runc and a `runc`-named link to it (docs/integrations.md's podman trick)."""
    real = tmp_path / "bin" / "sandbox-runc"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    os.chmod(real, 0o755)
    link = tmp_path / "opt" / "runc"
    link.parent.mkdir()
    link.symlink_to(real)
    return str(real), str(link)


def test_points_at_shim_by_resolved_name(shim, tmp_path):
    real, link = shim
    assert doctor.points_at_shim(real) and doctor.points_at_shim(link)
    assert not doctor.points_at_shim("/usr/sbin/runc") and not doctor.points_at_shim(None)


def test_containerd_cri_runtimes():
    import tomllib

    doc = tomllib.loads(textwrap.dedent('''
        version = 2
        [plugins."io.containerd.grpc.v1.cri".containerd]
          default_runtime_name = "sandbox"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sandbox]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sandbox.options]
            BinaryName = "/usr/local/bin/sandbox-runc"
    '''))
    assert doctor.containerd_runtimes(doc) == ({"runc": "runc", "sandbox": "/usr/local/bin/sandbox-runc"}, "sandbox")


def test_docker_runtimes_from_daemon_json_and_argv():
    doc = {"runtimes": {"sandbox": {"path": "/usr/local/bin/sandbox-runc"}}, "default-runtime": "sandbox"}
    assert doctor.docker_runtimes(doc) == ({"runc": "runc", "sandbox": "/usr/local/bin/sandbox-runc"}, "sandbox")
    rts, default = doctor.docker_runtimes({}, ["--add-runtime", "sbx=/opt/sandbox-runc", "--default-runtime=sbx"])
    assert rts["sbx"] == "/opt/sandbox-runc" and default == "sbx"


def test_podman_runtime_from_containers_conf_or_its_builtin_search():
    exists = {"/usr/bin/runc", "/usr/local/bin/sandbox-runc"}.__contains__
    assert doctor.podman_runtimes([{}], exists) == ({"runc": "/usr/bin/runc"}, "runc")  # no crun: runc
    conf = {"engine": {"runtime": "sandbox", "runtimes": {"sandbox": ["/usr/local/bin/sandbox-runc"]}}}
    rts, default = doctor.podman_runtimes([{}, conf], exists)
    assert default == "sandbox" and rts["sandbox"] == "/usr/local/bin/sandbox-runc"


def test_engine_check_status(shim):
    real, _ = shim
    off = doctor._engine_check("docker", "/usr/sbin/dockerd", "dockerd 20.10", [], "/etc/docker/daemon.json", False,
                               None, {"runc": "runc"}, "runc")
    on = doctor._engine_check("docker", "/usr/sbin/dockerd", "dockerd 20.10", [{"pid": 42, "cmdline": []}],
                              "/etc/docker/daemon.json", True, None, {"runc": "runc", "sandbox": real}, "sandbox")
    gone = doctor._engine_check("docker", "/usr/sbin/dockerd", "", [], "x", True, None,
                                {"sandbox": "/nonexistent/sandbox-runc"}, "runc")
    statuses = [c.status for c in assess([off, on, gone], needs_of("baseline"), "baseline").checks]
    assert statuses == [NOTE, OK, WARN]
    assert "not hardened by sandbox" in off.note and "every container" in on.note and on.data["sandbox_runtimes"] == [
        "sandbox"]


# -- audit log --------------------------------------------------------------------------------------------


def test_audit_directory_absent_then_loose_then_unwritable(tmp_path):
    log = tmp_path / "log" / "audit.jsonl"
    c = doctor.check_audit(OperatorConfig(audit_log=str(log)))
    assert "absent: created at first use (0700)" in c.found and "free" in c.found and not c.missing
    log.parent.mkdir()
    os.chmod(log.parent, 0o755)
    c = doctor.check_audit(OperatorConfig(audit_log=str(log)))
    assert any("readable by others" in w for w in c.warnings)
    os.chmod(log.parent, 0o777)
    assert any("writable by group or others" in w for w in doctor.check_audit(OperatorConfig(audit_log=str(log))).warnings)


def test_audit_dir_on_a_read_only_parent_blocks_every_profile_unless_warn(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    fail = doctor.check_audit(OperatorConfig(audit_log=str(tmp_path / "x" / "audit.jsonl")))
    warn = doctor.check_audit(OperatorConfig(audit_log=str(tmp_path / "x" / "audit.jsonl"), on_audit_failure="warn"))
    assert "audit" in fail.missing and "audit" in warn.degraded
    assert assess([fail], needs_of("baseline"), "baseline").exit_code == 1
    assert assess([warn], needs_of("baseline"), "baseline").exit_code == 0


# -- the command ------------------------------------------------------------------------------------------


def fake_report(default="baseline", missing=None):
    return assess([userns_check(missing)], needs_of("baseline", "strict"), default)


@pytest.mark.parametrize("default, code", [("baseline", 0), ("strict", 1)])
def test_cli_json_and_exit_code(monkeypatch, default, code):
    monkeypatch.setattr(doctor, "run", lambda: fake_report(default, {"userns": "disabled"}))
    res = CliRunner().invoke(cli, ["doctor", "--format", "json"])
    assert res.exit_code == code, res.output
    out = json.loads(res.output)
    assert out["exit_code"] == code and out["profiles"]["strict"]["enforceable"] is False
    assert [c["name"] for c in out["checks"]] == ["user namespaces"]


def test_cli_plain_text_when_piped(monkeypatch):
    monkeypatch.setattr(doctor, "run", lambda: fake_report("baseline", {"userns": "disabled"}))
    res = CliRunner().invoke(cli, ["doctor"])
    lines = res.output.splitlines()
    assert lines[0].startswith("sandbox doctor: strict cannot be enforced here")
    assert lines[1] == "missing user namespaces: max_user_namespaces 0"
    assert lines[2].startswith("        -> strict cannot be enforced")
    assert "\x1b[" not in res.output and "┃" not in res.output


def test_brief_prints_the_summary_only_when_something_is_missing(monkeypatch):
    monkeypatch.setattr(doctor, "run", lambda: fake_report("baseline", {"userns": "disabled"}))
    assert CliRunner().invoke(cli, ["doctor", "--brief"]).output.startswith("sandbox doctor: strict cannot")
    monkeypatch.setattr(doctor, "run", lambda: fake_report("baseline"))
    res = CliRunner().invoke(cli, ["doctor", "--brief"])
    assert res.exit_code == 0 and res.output == ""


def test_rich_is_imported_only_by_doctor():
    """rich is for doctor's terminal table: the sandbox-runc path and the other commands never load it."""
    import subprocess
    import sys

    code = ("import sys, sandbox.runtime.shim, sandbox.cli, sandbox.host.doctor; from sandbox.cli import doctor_cmd; "
            "print('rich' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
