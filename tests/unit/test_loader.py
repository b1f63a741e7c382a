import os

import pytest

from sandbox.core import loader
from sandbox.errors import ProfileError, ProfileErrors
from tests.conftest import FIXTURES


def fx(name):
    return os.path.join(FIXTURES, name)


@pytest.mark.parametrize("name", loader.BUILTIN_PROFILES)
def test_builtins_load_and_hash_is_stable(name):
    a = loader.load_profile(name)
    b = loader.load_profile(name)
    assert a.name == name
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    assert a.seccomp.base_profile is not None


def test_builtin_profiles_differ_in_strictness():
    base, restr, strict = (loader.load_profile(n) for n in loader.BUILTIN_PROFILES)
    assert "CAP_NET_RAW" in base.capabilities
    assert restr.capabilities == ("CAP_NET_BIND_SERVICE",)
    assert restr.user.run_as_non_root and not base.user.run_as_non_root
    assert strict.filesystem.readonly_rootfs and strict.user.user_namespace == "required"
    assert strict.resources.memory.max == 512 * 1024 * 1024
    assert strict.resources.cpu.max == 2000
    assert "ptrace" in strict.seccomp.deny
    # additive lists: strict's masked paths keep Docker's defaults
    assert "/proc/kcore" in strict.filesystem.masked_paths
    assert "/proc/sysrq-trigger" in strict.filesystem.masked_paths


def test_unknown_key_names_line_and_suggests():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-unknown-key.yaml"))
    msg = str(e.value)
    assert msg.startswith(fx("invalid-unknown-key.yaml") + ":4:1: capabilites: unknown key")
    assert "did you mean 'capabilities'" in msg


def test_syscall_typo_is_an_error_with_suggestion():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-syscall-typo.yaml"))
    assert ":7:7: seccomp.deny[1]: unknown syscall 'ptrce'" in str(e.value)
    assert "did you mean 'ptrace'" in str(e.value)


def test_capability_typo():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-capability.yaml"))
    assert "capabilities[1]: unknown capability 'SYS_ADMN'" in str(e.value)
    assert "CAP_SYS_ADMIN" in str(e.value)


def test_yaml_syntax_error_has_position():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-yaml-syntax.yaml"))
    assert str(e.value).startswith(fx("invalid-yaml-syntax.yaml") + ":5:1: invalid YAML")


def test_duplicate_key():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-duplicate-key.yaml"))
    assert ":5:1:" in str(e.value) and "duplicate key 'no_new_privileges'" in str(e.value)


def test_billion_laughs_is_bounded():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-billion-laughs.yaml"))
    assert "too many YAML nodes" in str(e.value)


def test_wrong_types_all_reported():
    with pytest.raises(ProfileErrors) as e:
        loader.load_profile(fx("invalid-wrong-type.yaml"))
    text = str(e.value)
    assert "filesystem.readonly_rootfs: expected true or false, got a string" in text
    assert "resources.memory.max: expected a size such as 512Mi, got 'lots'" in text


def test_extends_cycle():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-cycle-a.yaml"))
    assert "extends forms a cycle" in str(e.value)


def test_api_version():
    with pytest.raises(ProfileError) as e:
        loader.load_profile(fx("invalid-api-version.yaml"))
    assert "apiVersion: must be 'sandbox/v1'" in str(e.value)


def test_missing_file_and_fifo(tmp_path):
    with pytest.raises(ProfileError, match="profile file not found"):
        loader.load_profile(str(tmp_path / "nope.yaml"))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ProfileError, match="not a regular file"):
        loader.load_profile(str(fifo))


def test_non_utf8(tmp_path):
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"apiVersion: sandbox/v1\nname: \xff\xfe\n")
    with pytest.raises(ProfileError, match="not UTF-8"):
        loader.load_profile(str(p))


def test_unknown_builtin_name_suggests():
    with pytest.raises(ProfileError) as e:
        loader.load_profile("strikt")
    assert "no profile named 'strikt'" in str(e.value) and "did you mean 'strict'" in str(e.value)


def test_merge_rule_child_overrides_and_additive_lists_union():
    p = loader.load_profile(fx("valid-child.yaml"))
    assert p.resources.memory.max == 128 * 1024**2 and p.resources.memory.default == 64 * 1024**2
    assert p.resources.pids.max == 256  # inherited from strict
    assert "/proc/cpuinfo" in p.filesystem.masked_paths
    assert "/proc/sysrq-trigger" in p.filesystem.masked_paths  # from strict
    assert "/proc/kcore" in p.filesystem.masked_paths  # default
    assert p.extends == "strict"


def test_sizes_and_cpu():
    assert loader.parse_size("512Mi") == 512 * 1024**2
    assert loader.parse_size("1G") == 10**9
    assert loader.parse_size(4096) == 4096
    assert loader.parse_size("12 apples") is None
    assert loader.parse_size(True) is None
    assert loader.parse_cpu("500m") == 500
    assert loader.parse_cpu(1.5) == 1500
    assert loader.parse_cpu("2") == 2000
    assert loader.parse_cpu(0) is None


def test_warning_for_syscall_missing_on_one_arch(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: w\nseccomp:\n  deny: [open, mkdir]\n")
    prof, warnings = loader.load_profile_with_warnings(str(p))
    assert prof.seccomp.deny == ("open", "mkdir")
    assert any("'open' does not exist on aarch64" in str(w) for w in warnings)


def test_seccomp_base_file_relative_and_checked(tmp_path):
    (tmp_path / "sec.json").write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": '
                                       '[{"names": ["read", "wrtie"], "action": "SCMP_ACT_ALLOW"}]}')
    p = tmp_path / "p.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: s\nseccomp:\n  base: sec.json\n")
    with pytest.raises(ProfileError) as e:
        loader.load_profile(str(p))
    assert "unknown syscall 'wrtie'" in str(e.value) and "did you mean 'write'" in str(e.value)


def test_same_argument_twice_in_allow_rule_is_rejected():
    problems = loader.check_seccomp_data({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})
    assert problems and "runc ORs such conditions" in problems[0]


@pytest.mark.parametrize("body,field", [
    ("unknown_config_fields: maybe\n", "unknown_config_fields"),
    ("runc_mitigations: yes please\n", "runc_mitigations"),
    ("filesystem:\n  mount_types: [Ext4!]\n", "filesystem.mount_types[0]"),
    ("filesystem:\n  rootfs_dirs: [relative]\n", "filesystem.rootfs_dirs[0]"),
    ("process:\n  oom_score_adj_min: -2000\n", "process.oom_score_adj_min"),
    ("process:\n  rlimits: {RLIMIT_RTPRO: 0}\n", "process.rlimits.RLIMIT_RTPRO"),
    ("process:\n  rlimits: {RLIMIT_NICE: -1}\n", "process.rlimits.RLIMIT_NICE"),
])
def test_new_keys_are_validated_with_positions(tmp_path, body, field):
    p = tmp_path / "p.yaml"
    p.write_text(f"apiVersion: sandbox/v1\nkind: Profile\nname: p\n{body}")
    with pytest.raises(ProfileError) as e:
        loader.load_profile(str(p))
    msg = str(e.value)
    assert field in msg and (":4:" in msg or ":5:" in msg), msg


def test_new_keys_reach_the_model_and_merge(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: p\nextends: strict\n"
                 "process:\n  rlimits: {RLIMIT_NOFILE: 4096}\nfilesystem:\n  mount_types: [ext4]\n")
    prof = loader.load_profile(str(p))
    assert dict(prof.process.rlimits) == {"RLIMIT_NICE": 0, "RLIMIT_RTPRIO": 0, "RLIMIT_NOFILE": 4096}
    assert prof.process.oom_score_adj_min == 0 and prof.filesystem.mount_types == ("ext4",)
    assert prof.unknown_config_fields == "refuse" and prof.runc_mitigations
    assert loader.load_profile("baseline").unknown_config_fields == "warn"
