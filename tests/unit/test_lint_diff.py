import pytest

from sandbox.core import loader
from sandbox.core.diff import diff
from sandbox.core.lint import RULES, lint, rule_docs


def ids(findings):
    return {f.rule for f in findings}


def test_rule_ids_unique_and_documented():
    seen = [r for r, _, _ in RULES]
    assert len(seen) == len(set(seen))
    for rid, sev, doc in rule_docs():
        assert doc.startswith(rid) and sev in ("low", "medium", "high")


def test_strict_is_quieter_than_baseline():
    base = ids(lint(loader.load_profile("baseline")))
    strict = ids(lint(loader.load_profile("strict")))
    assert {"SBX003", "SBX004", "SBX005", "SBX008"} <= base
    assert not {"SBX003", "SBX004", "SBX005", "SBX008", "SBX001", "SBX002"} & strict


def test_dangerous_profile(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: bad\ncapabilities: [SYS_ADMIN]\n"
                 "no_new_privileges: false\nseccomp: {base: none, deny: [mount], allow: []}\n")
    found = ids(lint(loader.load_profile(str(p))))
    assert {"SBX001", "SBX006", "SBX007"} <= found


def test_diff_directions():
    base, restricted, strict = (loader.load_profile(n) for n in ("baseline", "restricted", "strict"))
    tight = diff(base, strict)
    assert tight and all(c.direction == "tighten" for c in tight), [str(c) for c in tight if c.direction == "loosen"]
    loose = diff(strict, base)
    fields = {c.field for c in loose if c.direction == "loosen"}
    assert {"capabilities", "filesystem.readonly_rootfs", "user.user_namespace", "resources.memory.max",
            "seccomp"} <= fields
    assert diff(restricted, restricted) == []


@pytest.mark.parametrize("body,field", [
    ("capabilities: [NET_BIND_SERVICE, SYS_PTRACE]", "capabilities"),
    ("seccomp: {allow: [reboot]}", "seccomp"),
    ("filesystem: {allowed_host_paths: [/etc/ssl]}", "filesystem.host_paths"),
    ("resources: {memory: {max: 1Gi}}", "resources.memory.max"),
    ("mode: complain", "mode"),
])
def test_diff_flags_each_loosening(tmp_path, body, field):
    p = tmp_path / "new.yaml"
    p.write_text(f"apiVersion: sandbox/v1\nkind: Profile\nname: new\nextends: strict\n{body}\n")
    changes = diff(loader.load_profile("strict"), loader.load_profile(str(p)))
    assert any(c.direction == "loosen" and c.field == field for c in changes), [str(c) for c in changes]


def test_incomplete_deny_family_is_flagged(tmp_path):
    from sandbox.core.loader import load_profile_with_warnings

    p = tmp_path / "fam.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: fam\nseccomp:\n  deny: [chmod, mkdir, mkdirat]\n")
    prof, warnings = load_profile_with_warnings(str(p))
    assert any("'chmod' is denied but fchmod, fchmodat, fchmodat2" in str(w) for w in warnings)
    assert not any("'mkdir' is denied" in str(w) for w in warnings)
    assert [f.message for f in lint(prof) if f.rule == "SBX016"] == [
        "chmod is denied but fchmod, fchmodat, fchmodat2 still reach that operation"]
    assert not [f for f in lint(loader.load_profile("strict")) if f.rule == "SBX016"]


def test_diff_sees_the_new_keys_loosen(tmp_path):
    p = tmp_path / "loose.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: loose\nextends: strict\n"
                 "unknown_config_fields: warn\nruncmitigations: false\nprocess:\n  oom_score_adj_min: null\n"
                 "  rlimits: {RLIMIT_RTPRIO: 99}\nfilesystem:\n  mount_types: [ext4]\n"
                 "  rootfs_dirs: [/]\n".replace("runcmitigations", "runc_mitigations"))
    changes = {c.field: c.direction for c in diff(loader.load_profile("strict"), loader.load_profile(str(p)))}
    for field in ("unknown_config_fields", "runc_mitigations", "process.oom_score_adj_min",
                  "process.rlimits.RLIMIT_RTPRIO", "filesystem.mount_types", "filesystem.rootfs_dirs"):
        assert changes.get(field) == "loosen", (field, changes)
