"""The profiles `sandbox learn` writes and the changes `sandbox profile suggest` proposes: valid, as
small as the records allow, and allowing exactly what was recorded (judged as enforcement would)."""

import difflib
import json
import os

import pytest

from sandbox.core import lint, loader
from sandbox.core.hostfacts import HostFacts
from sandbox.core.learn import learned_profile
from sandbox.core.suggest import Call, allowed, calls_from_records, child_profile, edit_profile, suggest
from sandbox.core.transform import apply
from sandbox.core.transform.seccomp import LEARN_BASE, bundle_filter
from tests.conftest import OCI


def strict_filter():
    with open(os.path.join(OCI, "runc-spec-1.1.json")) as f:
        cfg = json.load(f)
    sec = apply(loader.load_profile("strict"), cfg, HostFacts()).config["linux"]["seccomp"]
    return bundle_filter(sec)


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def learn(tmp_path, totals, calls=()):
    default, table = strict_filter()
    text, summary = learned_profile(name="app", base_ref="strict", base_name="strict", totals=totals, calls=calls,
                                    default=default, table=table, base_names=LEARN_BASE, command=["app", "--serve"],
                                    seconds=3.2, workload_exit=0, when="2024-01-01T00:00:00Z")
    return text, summary, loader.load_profile(write(tmp_path, text))


def test_a_learned_profile_is_valid_lint_clean_and_allows_what_was_seen_and_nothing_else(tmp_path):
    text, summary, p = learn(tmp_path, {"openat": 12, "getdents64": 2, "execve": 1})
    assert p.extends == "strict" and p.seccomp.base == "empty" and p.monitor.denials
    assert p.seccomp.deny == () and not lint.lint(p)
    assert "- openat" in text and "# 12 calls" in text and "# of: app --serve" in text
    allowed_names = set(p.seccomp.allow)
    assert {"openat", "getdents64", "execve", "write", "read", "exit_group"} <= allowed_names
    assert "mount" not in allowed_names and "keyctl" not in allowed_names and "socket" not in allowed_names
    # clone is in the base: kept with strict's own condition (no namespace flags)
    assert [r["names"] for r in p.seccomp.rules] == [["clone"]] and summary["ruled"] == ["clone"]
    assert summary["not_in_base"] == []


def test_what_the_base_would_not_allow_is_allowed_and_marked_for_review(tmp_path):
    keyctl = [{"name": "option", "value": 0}, {"name": "arg2", "value": 2**64 - 2}]
    text, summary, p = learn(tmp_path, {"keyctl": 3}, [("keyctl", keyctl)])
    assert "keyctl" in p.seccomp.allow and summary["not_in_base"] == ["keyctl"]
    assert "not allowed by strict: review" in text


def test_a_syscall_the_base_allows_by_argument_keeps_its_rules_when_every_call_met_them(tmp_path):
    af_inet = [{"name": "family", "value": 2}, {"name": "type", "value": 1}, {"name": "protocol", "value": 0}]
    af_vsock = [{"name": "family", "value": 40}, {"name": "type", "value": 1}, {"name": "protocol", "value": 0}]
    _t, s1, p1 = learn(tmp_path, {"socket": 4}, [("socket", af_inet)])
    assert "socket" in s1["ruled"] and "socket" not in p1.seccomp.allow
    _t, s2, p2 = learn(tmp_path, {"socket": 4}, [("socket", af_inet), ("socket", af_vsock)])
    assert "socket" in p2.seccomp.allow and s2["not_in_base"] == ["socket"]


# -- suggest ------------------------------------------------------------------------------------------

STRICT_CAPS = frozenset({"CAP_NET_BIND_SERVICE"})


def calls(*specs):
    return [Call(name, tuple(enumerate(args)), STRICT_CAPS, f"c{i % 3}") for i, (name, args) in enumerate(specs)]


def test_suggest_takes_off_the_deny_list_adds_value_rules_or_allows_the_smallest_change():
    p = loader.load_profile("strict")
    recorded = calls(("name_to_handle_at", (1,)), ("keyctl", (0, 2**64 - 2)), ("personality", (0x20000,)),
                     ("personality", (0x20000,)), ("acct", (0,)), ("getpid", ()))
    s, new = suggest(p, recorded)
    # runtime-default allows name_to_handle_at, strict's deny list took it: taking it off is enough;
    # keyctl is off the deny list too, but runtime-default does not allow it either
    assert s.remove_deny == ("keyctl", "name_to_handle_at")
    assert [r["args"] for r, _ in s.add_rules if r["args"][0]["value"] == 0x20000] == \
        [[{"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"}]]
    assert [n for n, _ in s.add_allow] == ["acct", "keyctl"]
    assert s.unchanged == ("getpid",)
    assert all(allowed(new, c) for c in recorded)
    # and nothing beyond: UNAME26|PER_LINUX32 stays denied, other denied syscalls too
    assert not allowed(new, calls(("personality", (0x20008,)))[0])
    assert not allowed(new, calls(("mount", ()))[0]) and not allowed(new, calls(("add_key", ()))[0])


def test_suggest_only_reads_the_agents_first_call_records_of_the_profile(tmp_path):
    recs = [
        {"container_id": "a", "profile": "strict", "event": "monitor", "data": {"action": "attached",
                                                                              "caps": ["CAP_NET_BIND_SERVICE"]}},
        {"container_id": "a", "profile": "strict", "event": "syscall", "data": {
            "first": True, "syscall": "mount", "would": "SCMP_ACT_ERRNO(EPERM)", "arch": "x86_64",
            "args": [{"name": "dev_name", "value": "unread"}, {"name": "flags", "value": 0}]}},
        {"container_id": "a", "profile": "strict", "event": "syscall", "data": {"first": False, "counts": {"mount": 9}}},
        {"container_id": "b", "profile": "baseline", "event": "syscall", "data": {
            "first": True, "syscall": "keyctl", "would": "SCMP_ACT_ERRNO(EPERM)", "args": []}},
    ]
    [c] = calls_from_records(recs, "strict")
    assert (c.syscall, c.args, c.caps, c.container) == ("mount", ((1, 0),), STRICT_CAPS, "a")
    assert calls_from_records(recs, "strict", containers=("b",)) == []


USER = """\
# our web tier
apiVersion: sandbox/v1
kind: Profile
name: web
extends: strict
mode: complain
seccomp:
  # nothing of ours mounts
  deny:
    - mount
    - umount2   # nor unmounts
    - keyctl
  allow:
    - getpid
resources:
  pids: {max: 64}
"""


def _lines_of(text, path):
    data, doc = loader._parse_yaml(text, path)
    return data, {k: loc.line for k, loc in doc.positions.items() if loc.line}


def test_the_suggestion_edits_the_profile_file_keeping_its_comments(tmp_path):
    path = write(tmp_path, USER)
    p = loader.load_profile(path)
    s, _new = suggest(p, calls(("keyctl", (0,)), ("acct", ())))
    data, lines_of = _lines_of(USER, path)
    text = edit_profile(USER, data, lines_of, p, s)
    diff = [line for line in difflib.unified_diff(USER.splitlines(), text.splitlines(), lineterm="")
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    # keyctl comes off the deny list and, runtime-default not allowing it either, onto the allow list
    assert diff == ["-    - keyctl", "+    - acct  # recorded in 1 container",
                    "+    - keyctl  # recorded in 1 container"], diff
    edited = loader.load_profile(write(tmp_path, text, "edited.yaml"))
    assert "keyctl" not in edited.seccomp.deny and "acct" in edited.seccomp.allow and "getpid" in edited.seccomp.allow
    assert edited.resources.pids.max == 64 and "# nothing of ours mounts" in text and "# nor unmounts" in text


def test_a_list_the_file_does_not_set_is_written_whole_as_inherited_with_the_change(tmp_path):
    text0 = "apiVersion: sandbox/v1\nkind: Profile\nname: web\nextends: strict\n"
    path = write(tmp_path, text0)
    p = loader.load_profile(path)
    s, new = suggest(p, calls(("unshare", ())))
    data, lines_of = _lines_of(text0, path)
    edited = loader.load_profile(write(tmp_path, edit_profile(text0, data, lines_of, p, s), "e.yaml"))
    assert set(edited.seccomp.deny) == set(loader.load_profile("strict").seccomp.deny) - {"unshare"}
    assert edited.seccomp.deny == new.seccomp.deny


@pytest.mark.parametrize("name", ["baseline", "restricted", "strict"])
def test_for_a_built_in_profile_a_child_profile_is_suggested(tmp_path, name):
    p = loader.load_profile(name)
    recorded = calls(("mount", ()), ("bpf", (0,)))
    s, new = suggest(p, recorded)
    child = loader.load_profile(write(tmp_path, child_profile(name, f"{name}-suggested", p, s)))
    assert child.extends == name
    assert all(allowed(child, c) for c in recorded)
    assert child.seccomp.allow == new.seccomp.allow and child.seccomp.deny == new.seccomp.deny
