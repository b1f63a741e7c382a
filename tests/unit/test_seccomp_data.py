"""The built-in runtime-default seccomp profile (sandbox/data/seccomp/runtime-default.json).

It is data, so these tests pin its policy: every name is one libseccomp knows, the
unconditional allow-list has no overlaps, dangerous syscalls open only behind the
capability that governs them (or not at all), and the argument filters (clone,
clone3, personality, socket) say what Docker's default says.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from importlib import resources
from typing import Any

import pyseccomp
import pytest

from sandbox.core import loader, tables

ARCHES = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64,
          "x86": pyseccomp.Arch.X86, "arm": pyseccomp.Arch.ARM}
CLONE_NAMESPACE_FLAGS = {  # every CLONE_NEW* flag clone(2) accepts
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
CLONE_THREAD_FLAGS = 0x003D0F00  # VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_ALG, AF_NFC, AF_VSOCK = 1, 2, 10, 16, 17, 38, 39, 40

# Allowed only with a capability (as Docker's default does), never unconditionally.
CAP_GATED: dict[str, set[str]] = {
    "mount": {"CAP_SYS_ADMIN"}, "umount": {"CAP_SYS_ADMIN"}, "umount2": {"CAP_SYS_ADMIN"},
    "fsopen": {"CAP_SYS_ADMIN"}, "fsconfig": {"CAP_SYS_ADMIN"}, "fsmount": {"CAP_SYS_ADMIN"},
    "fspick": {"CAP_SYS_ADMIN"}, "move_mount": {"CAP_SYS_ADMIN"}, "open_tree": {"CAP_SYS_ADMIN"},
    "mount_setattr": {"CAP_SYS_ADMIN"}, "unshare": {"CAP_SYS_ADMIN"}, "setns": {"CAP_SYS_ADMIN"},
    "sethostname": {"CAP_SYS_ADMIN"}, "setdomainname": {"CAP_SYS_ADMIN"}, "quotactl": {"CAP_SYS_ADMIN"},
    "quotactl_fd": {"CAP_SYS_ADMIN"}, "lookup_dcookie": {"CAP_SYS_ADMIN"}, "fanotify_init": {"CAP_SYS_ADMIN"},
    "clone3": {"CAP_SYS_ADMIN"},
    "bpf": {"CAP_SYS_ADMIN", "CAP_BPF"}, "perf_event_open": {"CAP_SYS_ADMIN", "CAP_PERFMON"},
    "syslog": {"CAP_SYS_ADMIN", "CAP_SYSLOG"},
    "ptrace": {"CAP_SYS_PTRACE"}, "process_vm_readv": {"CAP_SYS_PTRACE"}, "process_vm_writev": {"CAP_SYS_PTRACE"},
    "kcmp": {"CAP_SYS_PTRACE"}, "pidfd_getfd": {"CAP_SYS_PTRACE"}, "process_madvise": {"CAP_SYS_PTRACE"},
    "init_module": {"CAP_SYS_MODULE"}, "finit_module": {"CAP_SYS_MODULE"}, "delete_module": {"CAP_SYS_MODULE"},
    "reboot": {"CAP_SYS_BOOT"}, "chroot": {"CAP_SYS_CHROOT"}, "acct": {"CAP_SYS_PACCT"},
    "iopl": {"CAP_SYS_RAWIO"}, "ioperm": {"CAP_SYS_RAWIO"},
    "settimeofday": {"CAP_SYS_TIME"}, "stime": {"CAP_SYS_TIME"}, "clock_settime": {"CAP_SYS_TIME"},
    "clock_settime64": {"CAP_SYS_TIME"}, "vhangup": {"CAP_SYS_TTY_CONFIG"},
    "get_mempolicy": {"CAP_SYS_NICE"}, "mbind": {"CAP_SYS_NICE"}, "set_mempolicy": {"CAP_SYS_NICE"},
    "set_mempolicy_home_node": {"CAP_SYS_NICE"},
    "open_by_handle_at": {"CAP_DAC_READ_SEARCH"},
}
# Denied whatever the capabilities (Docker's default never allows them): not in the file at all.
ABSENT = {
    "kexec_load", "kexec_file_load", "keyctl", "add_key", "request_key", "swapon", "swapoff",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "pivot_root", "uselib",
    "_sysctl", "nfsservctl", "vm86", "vm86old", "create_module", "get_kernel_syms", "query_module",
    "ustat", "sysfs", "afs_syscall", "tuxcall", "security", "vserver",
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    text = resources.files("sandbox.data").joinpath("seccomp/runtime-default.json").read_text("utf-8")
    return json.loads(text, object_pairs_hook=loader._no_duplicates)


def entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["syscalls"]


def unconditional(e: dict[str, Any]) -> bool:
    return not e.get("args") and not e.get("includes") and not e.get("excludes")


def applies(e: dict[str, Any], caps: Collection[str], arch: str) -> bool:
    """Docker's rule selection: every included cap held, no excluded cap held, arch listed / not excluded."""
    inc, exc = e.get("includes") or {}, e.get("excludes") or {}
    if not all(c in caps for c in inc.get("caps", [])) or any(c in caps for c in exc.get("caps", [])):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    return arch not in exc.get("arches", [])


def rules_for(doc: dict[str, Any], name: str, caps: Collection[str] = frozenset(), arch: str = "amd64") -> list[dict]:
    return [e for e in entries(doc) if name in e["names"] and applies(e, set(caps), arch)]


def matches(e: dict[str, Any], args: tuple[int, ...]) -> bool:
    """Whether one rule's conditions (ANDed) hold for the given argument values."""
    for a in e.get("args") or []:
        v, op, datum = args[a["index"]], a["op"], a["value"]
        ok = {"SCMP_CMP_EQ": v == datum, "SCMP_CMP_NE": v != datum, "SCMP_CMP_LT": v < datum,
              "SCMP_CMP_LE": v <= datum, "SCMP_CMP_GT": v > datum, "SCMP_CMP_GE": v >= datum,
              "SCMP_CMP_MASKED_EQ": (v & datum) == a.get("valueTwo", 0)}[op]
        if not ok:
            return False
    return True


def outcome(doc: dict[str, Any], name: str, args: tuple[int, ...] = (0,) * 6,
            caps: Collection[str] = frozenset(), arch: str = "amd64") -> tuple[str, int]:
    """(action, errno) the profile gives this call; the first matching rule's action is enough here."""
    for e in rules_for(doc, name, caps, arch):
        if matches(e, args):
            return e["action"], e.get("errnoRet", doc["defaultErrnoRet"])
    return doc["defaultAction"], doc["defaultErrnoRet"]


def test_top_level(doc):
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 1  # EPERM
    assert {m["architecture"]: m["subArchitectures"] for m in doc["archMap"]} == {
        "SCMP_ARCH_X86_64": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"], "SCMP_ARCH_AARCH64": ["SCMP_ARCH_ARM"]}
    assert loader.check_seccomp_data(doc) == []


def test_every_name_is_known_to_libseccomp(doc):
    unknown = sorted({n for e in entries(doc) for n in e["names"]
                      if not any(pyseccomp.resolve_syscall(a, n) >= 0 for a in ARCHES.values())})
    assert not unknown, f"not a syscall on x86_64, aarch64, x86 or arm for libseccomp: {unknown}"


def test_entries_are_well_formed(doc):
    for i, e in enumerate(entries(doc)):
        assert e["names"] == sorted(e["names"]), f"syscalls[{i}] names not sorted"
        assert len(set(e["names"])) == len(e["names"]), f"syscalls[{i}] repeats a name"
        assert e["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"), i
        assert isinstance(e.get("comment"), str) and e["comment"].strip(), f"syscalls[{i}] has no comment"
        assert "minKernel" not in (e.get("includes") or {}), "kernel-version conditions are not used"
        for side in ("includes", "excludes"):
            for arch in (e.get(side) or {}).get("arches", []):
                assert arch in tables.DOCKER_ARCH_NAMES, (i, arch)
            for cap in (e.get(side) or {}).get("caps", []):
                assert cap.startswith("CAP_") and cap in tables.CAPABILITIES, (i, cap)


def test_no_syscall_in_two_unconditional_allow_entries(doc):
    seen: dict[str, int] = {}
    for i, e in enumerate(entries(doc)):
        if e["action"] == "SCMP_ACT_ALLOW" and unconditional(e):
            for n in e["names"]:
                assert n not in seen, f"{n} is in unconditional entries {seen[n]} and {i}"
                seen[n] = i


def test_no_allowing_rule_has_two_conditions_on_one_argument(doc):
    # runc splits such a rule into one rule per condition (an OR), which allows more than written.
    for i, e in enumerate(entries(doc)):
        idx = [a["index"] for a in e.get("args") or []]
        assert len(idx) == len(set(idx)), f"syscalls[{i}]"


@pytest.mark.parametrize("name", [
    "read", "write", "openat", "openat2", "close", "close_range", "execve", "exit_group", "mmap", "brk",
    "futex", "futex_waitv", "rseq", "statx", "faccessat2", "epoll_pwait2", "pidfd_open", "pidfd_send_signal",
    "newfstatat", "getdents64", "rt_sigaction", "wait4", "pipe2", "sendmsg", "recvmsg", "setuid",
    "sched_yield", "clock_gettime", "memfd_create", "prctl", "seccomp", "name_to_handle_at",
])
def test_everyday_syscalls_are_allowed_unconditionally(doc, name):
    assert any(name in e["names"] and unconditional(e) and e["action"] == "SCMP_ACT_ALLOW" for e in entries(doc))


@pytest.mark.parametrize("name", sorted(CAP_GATED))
def test_dangerous_syscalls_only_behind_their_capability(doc, name):
    allowing = [e for e in entries(doc) if name in e["names"] and e["action"] == "SCMP_ACT_ALLOW"
                and not (e.get("excludes") or {}).get("caps")]
    assert allowing, f"{name} is never allowed (expected behind {CAP_GATED[name]})"
    gates = set()
    for e in allowing:
        caps = (e.get("includes") or {}).get("caps")
        assert caps, f"{name} is allowed without a capability"
        gates.update(caps)
    assert gates == CAP_GATED[name]
    assert outcome(doc, name) == ("SCMP_ACT_ERRNO", 1) or name == "clone3"
    for cap in CAP_GATED[name]:
        assert outcome(doc, name, caps={cap})[0] == "SCMP_ACT_ALLOW"


def test_dangerous_syscalls_closed_under_docker_default_capabilities(doc):
    # Docker's default capability set holds none of the gating capabilities but CAP_SYS_CHROOT.
    docker_caps = set(tables.DOCKER_DEFAULT_CAPABILITIES)
    for name in sorted(set(CAP_GATED) - {"clone3"}):
        want = "SCMP_ACT_ALLOW" if name == "chroot" else "SCMP_ACT_ERRNO"
        for arch in ("amd64", "arm64"):
            assert outcome(doc, name, caps=docker_caps, arch=arch)[0] == want, (name, arch)


def test_ptrace_needs_cap_sys_ptrace_on_every_kernel(doc):
    # Deliberately stricter than Docker (which allows ptrace unconditionally on kernels >= 4.8).
    for e in entries(doc):
        if {"ptrace", "process_vm_readv", "process_vm_writev"} & set(e["names"]):
            assert e.get("includes", {}).get("caps") == ["CAP_SYS_PTRACE"]


def test_syscalls_docker_never_allows_are_absent(doc):
    present = {n for e in entries(doc) for n in e["names"]}
    assert not ABSENT & present, sorted(ABSENT & present)


def test_clone3_is_enosys_without_cap_sys_admin(doc):
    for arch in ("amd64", "arm64"):
        assert outcome(doc, "clone3", arch=arch) == ("SCMP_ACT_ERRNO", 38)
        assert outcome(doc, "clone3", caps={"CAP_SYS_ADMIN"}, arch=arch)[0] == "SCMP_ACT_ALLOW"
    rule = [e for e in entries(doc) if e["names"] == ["clone3"] and e["action"] == "SCMP_ACT_ERRNO"]
    assert len(rule) == 1 and rule[0]["errnoRet"] == 38
    assert rule[0]["excludes"]["caps"] == ["CAP_SYS_ADMIN"] and not rule[0].get("args")


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_clone_without_cap_sys_admin_creates_no_namespaces(doc, arch):
    fork_like = 0x11  # SIGCHLD
    assert outcome(doc, "clone", (fork_like, 0, 0, 0, 0, 0), arch=arch)[0] == "SCMP_ACT_ALLOW"
    assert outcome(doc, "clone", (CLONE_THREAD_FLAGS, 0, 0, 0, 0, 0), arch=arch)[0] == "SCMP_ACT_ALLOW"
    for flag, bit in CLONE_NAMESPACE_FLAGS.items():
        args = (fork_like | bit, 0, 0, 0, 0, 0)
        assert outcome(doc, "clone", args, arch=arch) == ("SCMP_ACT_ERRNO", 1), flag
        assert outcome(doc, "clone", args, caps={"CAP_SYS_ADMIN"}, arch=arch)[0] == "SCMP_ACT_ALLOW", flag
    masked = [e for e in rules_for(doc, "clone", arch=arch)]
    assert len(masked) == 1 and masked[0]["args"] == [
        {"index": 0, "value": sum(CLONE_NAMESPACE_FLAGS.values()), "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]


def test_personality_only_five_values(doc):
    rules = [e for e in entries(doc) if "personality" in e["names"]]
    assert all(e["names"] == ["personality"] and len(e["args"]) == 1 and e["args"][0]["index"] == 0
               and e["args"][0]["op"] == "SCMP_CMP_EQ" and not e.get("includes") for e in rules)
    assert sorted(e["args"][0]["value"] for e in rules) == [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert outcome(doc, "personality", (0x0040000, 0, 0, 0, 0, 0))[0] == "SCMP_ACT_ERRNO"  # ADDR_NO_RANDOMIZE
    assert outcome(doc, "personality", (0x0400000, 0, 0, 0, 0, 0))[0] == "SCMP_ACT_ERRNO"  # READ_IMPLIES_EXEC


def test_socket_denies_af_alg_and_af_vsock_only(doc):
    assert not any("socket" in e["names"] and unconditional(e) for e in entries(doc))
    for family in range(0, 64):
        action = outcome(doc, "socket", (family, 1, 0, 0, 0, 0))[0]
        want = "SCMP_ACT_ERRNO" if family in (AF_ALG, AF_VSOCK) else "SCMP_ACT_ALLOW"
        assert action == want, family
    for family in (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_NFC):
        assert outcome(doc, "socket", (family, 1, 0, 0, 0, 0))[0] == "SCMP_ACT_ALLOW"


def test_arch_specific_entries(doc):
    assert outcome(doc, "arch_prctl", arch="amd64")[0] == "SCMP_ACT_ALLOW"
    assert outcome(doc, "arch_prctl", arch="arm64")[0] == "SCMP_ACT_ERRNO"
    assert outcome(doc, "modify_ldt", arch="amd64")[0] == "SCMP_ACT_ALLOW"
    assert outcome(doc, "modify_ldt", arch="arm64")[0] == "SCMP_ACT_ERRNO"
    for name in ("arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls"):
        assert outcome(doc, name, arch="arm64")[0] == "SCMP_ACT_ALLOW", name
        assert outcome(doc, name, arch="amd64")[0] == "SCMP_ACT_ERRNO", name


def test_conditional_entries_explain_themselves(doc):
    for i, e in enumerate(entries(doc)):
        if not unconditional(e) or e["action"] != "SCMP_ACT_ALLOW":
            assert len(e["comment"]) > 20, f"syscalls[{i}] needs a real comment"
