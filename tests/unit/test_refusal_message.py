"""The one line an engine shows for a refusal: what went wrong in its first 200 characters, many
refusals of one rule told once with a count, every decision still there for the audit log and
`sandbox check`."""

import ast
import copy
import json
import os

from click.testing import CliRunner

from sandbox.cli import cli
from sandbox.core.decisions import Decision, Outcome
from sandbox.core.formats import GROUP_FROM, refusal_message, refusal_reasons, verdict_line
from sandbox.host.cache import load_profile
from sandbox.runtime.service import harden
from sandbox.runtime.shim import go_quote, runc_log_line
from tests.conftest import OCI

SPEC = os.path.join(OCI, "runc-spec-1.1.json")


def privileged_config(n_devices=95):
    """What `docker run --privileged` asks for: every host device, every device in the cgroup, root."""
    cfg = json.load(open(SPEC))
    cfg["linux"]["devices"] = [{"path": f"/dev/host{i:02d}", "type": "c", "major": 240, "minor": i,
                                "fileMode": 0o666, "uid": 0, "gid": 0} for i in range(n_devices)]
    cfg["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    caps = ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_MODULE"]
    cfg["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    return cfg


def test_a_privileged_container_is_told_in_one_clause_with_a_count(tmp_path):
    profile = load_profile("restricted")
    out = harden(profile, privileged_config(), str(tmp_path))
    msg = refusal_message(profile, out)
    head = msg[:200]
    assert head.startswith("refused by sandbox profile restricted: privileged container: 95 host devices outside "
                           "the profile's device allow-list (/dev/host00, /dev/host01, /dev/host02, …)"), msg
    assert "uid 0" in msg and msg.endswith("; see sandbox check")
    assert len(msg) < 400 and msg.count("/dev/host") == 3
    # nothing is lost: every refusal is still a decision (what the audit log and `sandbox check` get)
    assert len([d for d in out.refusals if d.control == "devices"]) == 95


def test_sandbox_check_still_lists_every_decision(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "config.json").write_text(json.dumps(privileged_config()))
    res = CliRunner().invoke(cli, ["check", "--profile", "restricted", str(b)])
    assert res.exit_code == 3
    assert sum("is not in the profile's device allow-list" in line for line in res.output.splitlines()) == 95
    verdict = res.output.splitlines()[-1]
    assert verdict.startswith("verdict: refused by sandbox profile restricted: privileged container: 95 host devices")
    assert "see sandbox check" not in verdict  # it is sandbox check
    doc = json.loads(CliRunner().invoke(cli, ["check", "--profile", "restricted", "--format", "json",
                                              str(b)]).output)
    assert sum(d["action"] == "refuse" for d in doc["decisions"]) == 96


def test_a_few_refusals_of_one_rule_are_each_told(tmp_path):
    cfg = json.load(open(SPEC))
    for src in ("/etc", "/boot"):
        cfg["mounts"].append({"destination": f"/host{src}", "type": "bind", "source": src, "options": ["rbind"]})
    profile = load_profile("baseline")
    msg = refusal_message(profile, harden(profile, cfg, str(tmp_path)))
    assert GROUP_FROM > 2
    assert msg == ("refused by sandbox profile baseline: bind mount source /etc: /etc is a forbidden host path; "
                   "bind mount source /boot: /boot is a forbidden host path")


def test_not_privileged_when_the_cgroup_does_not_ask_for_every_device(tmp_path):
    cfg = privileged_config(4)
    cfg["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"}]
    profile = load_profile("restricted")
    msg = refusal_message(profile, harden(profile, copy.deepcopy(cfg), str(tmp_path)))
    assert "privileged" not in msg and "4 host devices outside the profile's device allow-list" in msg


def _refuse(control, key, reason, pointer="/x", before=None):
    return Decision(control, pointer, "refuse", before, None, reason, f"p (<builtin>/p.yaml): {key}")


def test_a_rule_without_a_phrase_is_grouped_by_its_key():
    ds = [_refuse("network", "network.egress", f"egress to 10.0.0.{i} is not allowed", f"/annotations/n{i}")
          for i in range(5)]
    text = refusal_reasons(Outcome(config={}, decisions=ds))
    assert text == "5 refusals by network.egress (n0, n1, n2, …); see sandbox check"


def test_sysctls_are_named_by_their_key_and_the_biggest_group_comes_first():
    sysctls = [_refuse("sysctls", "sysctls.allow", f"sysctl kernel.x{i} is not in the profile's sysctl allow-list",
                       f"/linux/sysctl/kernel.x{i}", "1") for i in range(3)]
    single = _refuse("user", "user.run_as_non_root", "the process would run as root")
    text = refusal_reasons(Outcome(config={}, decisions=[single, *sysctls]))
    assert text == ("3 sysctls outside the profile's sysctl allow-list (kernel.x0, kernel.x1, kernel.x2); "
                    "the process would run as root; see sandbox check")


def test_many_different_reasons_are_cut_with_a_count():
    ds = [_refuse(f"c{i}", f"k{i}", f"reason number {i} " + "x" * 80) for i in range(30)]
    text = refusal_reasons(Outcome(config={}, decisions=ds))
    assert len(text) < 1200 and text.startswith("reason number 0 ")
    assert text.endswith("more; see sandbox check") and "and " in text


def test_complain_mode_verdict_uses_the_same_clauses(tmp_path):
    from sandbox._record import replace

    profile = replace(load_profile("restricted"), mode="complain")
    out = harden(profile, privileged_config(), str(tmp_path))
    line = verdict_line(profile, out)
    assert "(complain mode: would be refused)" in line and "95 host devices" in line


# -- runc's --log lines ----------------------------------------------------------------------------------

def test_runc_log_lines_as_runc_writes_them():
    msg = 'privileged: 95 host devices (/dev/a, …); say "no"\\ \n\t\x01 \udcff'
    rec = json.loads(runc_log_line("json", "error", msg, 0))
    assert list(rec) == ["level", "msg", "time"] and rec["time"] == "1970-01-01T00:00:00Z"
    assert rec["msg"] == msg.replace("\udcff", "\udcff")
    text = runc_log_line("text", "warning", msg, 0)
    assert text.startswith('time="1970-01-01T00:00:00Z" level=warning msg="privileged: 95 host devices (/dev/a, …)')
    assert text.endswith('say \\"no\\"\\\\ \\n\\t\\x01 \\xff"\n')


def test_go_quote_reads_back():
    for s in ["plain", 'q"b\\', "tab\tnl\nbell\a", "…ünïcode", "\x7f\x00"]:
        assert ast.literal_eval(go_quote(s)) == s
