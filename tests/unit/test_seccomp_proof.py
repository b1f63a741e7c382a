"""sandbox.core.seccomp_proof: what a filter stack allows beyond an OCI seccomp section.

The filters here are libseccomp's own (pyseccomp), built from OCI sections the way runc 1.1
builds them (matchCall: rules with the default action skipped, conditions on one argument split
into separate rules, every listed architecture added).  The end-to-end tests read runc's real
filters from running containers.
"""

import os
import tempfile

import pyseccomp
import pytest

from sandbox.core import seccomp_bpf as bpf
from sandbox.core import seccomp_proof as sp

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall numbers")

ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
OPS = {"SCMP_CMP_EQ": pyseccomp.EQ, "SCMP_CMP_NE": pyseccomp.NE, "SCMP_CMP_LT": pyseccomp.LT,
       "SCMP_CMP_LE": pyseccomp.LE, "SCMP_CMP_GT": pyseccomp.GT, "SCMP_CMP_GE": pyseccomp.GE,
       "SCMP_CMP_MASKED_EQ": pyseccomp.MASKED_EQ}
ALLOWED = ["read", "write", "openat", "close", "exit_group", "futex", "mmap", "socket", "getppid"]


def _action(name, errno_ret):
    return {"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_LOG": pyseccomp.LOG, "SCMP_ACT_TRAP": pyseccomp.TRAP,
            "SCMP_ACT_KILL": pyseccomp.KILL, "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS,
            "SCMP_ACT_ERRNO": pyseccomp.ERRNO(1 if errno_ret is None else errno_ret),
            "SCMP_ACT_TRACE": pyseccomp.TRACE(1 if errno_ret is None else errno_ret)}[name]


def compile_section(section):
    """The filter runc 1.1 asks libseccomp for (without runc's ENOSYS stub), as raw bytes."""
    default = _action(section["defaultAction"], section.get("defaultErrnoRet"))
    f = pyseccomp.SyscallFilter(default)
    for arch in section.get("architectures") or []:
        if arch != "SCMP_ARCH_X86_64":
            f.add_arch(getattr(pyseccomp.Arch, arch.removeprefix("SCMP_ARCH_")))
    for entry in section.get("syscalls") or []:
        act = _action(entry["action"], entry.get("errnoRet"))
        if act == default:
            continue
        conds = [pyseccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in entry.get("args", [])]
        indexes = [a["index"] for a in entry.get("args", [])]
        groups = [[c] for c in conds] if len(set(indexes)) != len(indexes) else [conds]
        for name in entry["names"]:
            if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) == -1:
                continue
            for g in groups:
                f.add_rule(act, name, *g)
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        return t.read()


def section(extra=(), default="SCMP_ACT_ERRNO", arches=ARCHES):
    return {"defaultAction": default, "architectures": list(arches),
            "syscalls": [{"names": ALLOWED, "action": "SCMP_ACT_ALLOW"},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
                         {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
                         *extra]}


def prove(raws, sec, absent=("x32",)):
    return sp.prove_raw(raws, sec, "x86_64", absent)


def names(proof):
    return sorted({n for d in proof.weaker for n in d.syscalls})


def test_a_filter_built_from_the_profile_holds():
    sec = section()
    proof = prove([compile_section(sec)], sec)
    assert proof.holds, [d.describe() for d in proof.weaker]
    assert proof.abis == ("x86_64", "i386") and proof.absent_abis == ("x32",)
    assert proof.cases > 2 * len(ALLOWED)  # every syscall class of both ABIs, and personality's argument classes


def test_a_filter_allowing_one_more_syscall_fails_naming_exactly_it():
    sec = section()
    weak = section([{"names": ["acct"], "action": "SCMP_ACT_ALLOW"}])
    proof = prove([compile_section(weak)], sec)
    assert not proof.holds
    assert {d.syscalls for d in proof.weaker} == {("acct",)}
    assert {d.abi for d in proof.weaker} == {"x86_64", "i386"}
    assert all(d.allowed and not d.args for d in proof.weaker)


def test_a_filter_weaker_for_one_argument_value_fails_naming_the_value():
    sec = section()
    weak = section([{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 0x123, "op": "SCMP_CMP_EQ"}]}])
    proof = prove([compile_section(weak)], sec)
    assert names(proof) == ["personality"]
    assert {(d.abi, d.args) for d in proof.weaker} == {("x86_64", "arg0=0x123"), ("i386", "arg0=0x123")}
    assert "personality(arg0=0x123)" in proof.weaker[0].describe()


def test_weaker_only_with_two_arguments_together_is_found():
    sec = section()
    weak = section([{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 77, "op": "SCMP_CMP_EQ"},
                              {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}])
    proof = prove([compile_section(weak)], sec)
    assert {(d.abi, d.args) for d in proof.weaker} == {("x86_64", "arg0=0x4d, arg1=0x9"),
                                                       ("i386", "arg0=0x4d, arg1=0x9")}


def test_a_milder_denial_fails_and_names_both_actions():
    sec = section()
    weak = section(default="SCMP_ACT_ERRNO")
    weak["syscalls"] = [e for e in weak["syscalls"] if e["names"] != ["ptrace"]]  # ptrace: EPERM, not a kill
    proof = prove([compile_section(weak)], sec)
    assert names(proof) == ["ptrace"]
    d = proof.weaker[0]
    assert not d.allowed and d.kernel == ("SCMP_ACT_ERRNO", 1) and d.profile == ("SCMP_ACT_KILL_PROCESS", None)


def test_a_stricter_filter_stacked_on_top_holds():
    sec = section()
    extra = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
             "syscalls": [{"names": ["socket", "openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    proof = prove([compile_section(sec), compile_section(extra)], sec)
    assert proof.holds and proof.filters == 2 and proof.stricter >= 4


def test_no_filter_at_all_allows_everything_the_profile_denies():
    proof = prove([], section())
    assert not proof.holds and "acct" in names(proof) and "mount" in names(proof)


def test_an_unlisted_architecture_is_killed_as_libseccomp_does():
    sec = section(arches=["SCMP_ARCH_X86_64"])
    proof = prove([compile_section(sec)], sec)
    assert proof.holds
    # the profile (x86_64 only) gets a filter that lists i386 too: i386 calls now run
    wider = section(arches=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    proof = prove([compile_section(wider)], sec)
    assert {d.abi for d in proof.weaker} == {"i386"}


def test_i386_socketcall_carries_the_verdict_of_the_socket_calls():
    """libseccomp turns a rule on socket into socketcall(SYS_SOCKET, ...) too, on i386."""
    sec = section()
    raw = compile_section(sec)
    i386 = next(a for a in sp.MACHINE_ABIS["x86_64"] if a.name == "i386")
    words = bpf.data_words(102, i386.audit_arch, [1])  # socketcall(SYS_SOCKET)
    assert bpf.action(bpf.run(bpf.decode(raw), words))[0] == "SCMP_ACT_ALLOW"
    assert prove([raw], sec).holds


def test_runcs_enosys_stub_is_not_drift():
    """Above the highest syscall the profile names, runc returns ENOSYS; the model expects it."""
    sec = section()
    model = sp.RuncModel(sec, sp.libseccomp_tables(sp.MACHINE_ABIS["x86_64"]), sp.X86_64)
    top = model.stub_max["x86_64"]
    assert model.verdict(sp.X86_64, top + 1, []) == ("SCMP_ACT_ERRNO", 38)
    assert top == 257  # openat
    assert model.verdict(sp.X86_64, 163, []) == ("SCMP_ACT_ERRNO", 1)  # acct: below it, the default


def test_filters_computing_on_arguments_cannot_be_proved():
    prog = ((bpf.LD | bpf.W | bpf.ABS, 0, 0, 16), (bpf.ALU | bpf.ADD | bpf.K, 0, 0, 1),
            (bpf.JMP | bpf.JEQ | bpf.K, 0, 1, 6), (bpf.RET | bpf.K, 0, 0, bpf.RET_ALLOW), (bpf.RET | bpf.K, 0, 0, 0))
    proof = prove([bpf.encode(prog)], section())
    assert not proof.holds and "arithmetic" in proof.unsupported


def test_an_invalid_program_is_reported_not_evaluated():
    proof = prove([b"\x06\x00\x00\x00\x00\x00\xff\x7f", b"\x15\x00\x05\x00\x00\x00\x00\x00"], section())
    assert not proof.holds and "filter 1 is not a valid seccomp program" in proof.unsupported


def test_proofs_are_kept_by_content():
    sec = section()
    raw = compile_section(sec)
    assert prove([raw], sec) is prove([bytes(raw)], dict(sec))
