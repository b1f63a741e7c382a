"""sandbox.core.seccomp_bpf: the classic-BPF interpreter, held against the kernel itself.

The oracle (tests/seccomp_probe.py, program_outcome) installs a program in a forked child and makes the call:
whatever the interpreter says must be what the process gets.  Two kinds of programs:
random programs over every instruction seccomp accepts (arithmetic, scratch memory, jumps on K
and X, RET A), and filters libseccomp compiles (pyseccomp's export_bpf) from random rule sets,
alone and stacked.  Examples are derandomized and few by default; SANDBOX_SECCOMP_EXAMPLES=N runs
N fresh examples per property.
"""

import os
import tempfile

import pyseccomp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.core import seccomp_bpf as bpf
from tests.seccomp_probe import HARNESS, NR_GETPPID, bpf_outcome, program_accepts, program_outcome

_FRESH = os.environ.get("SANDBOX_SECCOMP_EXAMPLES")
X86_64 = 0xC000003E


def examples(n):
    return settings(max_examples=int(_FRESH) if _FRESH else n, deadline=None, derandomize=not _FRESH,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the kernel oracle uses x86_64 numbers")

LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)


def ins(code, k=0, jt=0, jf=0):
    return (code, jt, jf, k & 0xFFFFFFFF)


def ret(k):
    return ins(bpf.RET | bpf.K, k)


def words(nr=NR_GETPPID, args=()):
    return bpf.data_words(nr, X86_64, args)


# ---------------------------------------------------------------------------------------------------------
# Hand-written programs
# ---------------------------------------------------------------------------------------------------------

def test_loads_compare_and_return_like_the_kernel():
    prog = (ins(bpf.LD | bpf.W | bpf.ABS, 16),  # arg0 low word
            ins(bpf.JMP | bpf.JEQ | bpf.K, 7, 0, 1),
            ret(bpf.RET_ERRNO | 7),
            ret(bpf.RET_ALLOW))
    bpf.check(prog)
    assert bpf.run(prog, words(args=[7])) == bpf.RET_ERRNO | 7
    assert bpf.run(prog, words(args=[7 | 1 << 32])) == bpf.RET_ERRNO | 7  # the low word only
    assert bpf.run(prog, words(args=[8])) == bpf.RET_ALLOW
    assert program_outcome([bpf.encode(prog)], args=[7]) == ("errno", 7)
    assert program_outcome([bpf.encode(prog)], args=[8]) == ("allow", None)


def test_arithmetic_is_32_bit_and_division_by_x_zero_returns_0():
    prog = (ins(bpf.LD | bpf.IMM, 0xFFFFFFFF), ins(bpf.ALU | bpf.ADD | bpf.K, 2),  # wraps to 1
            ins(bpf.LDX | bpf.W | bpf.LEN), ins(bpf.ALU | bpf.MUL | bpf.X),  # 1 * 64
            ins(bpf.ALU | bpf.OR | bpf.K, bpf.RET_ERRNO), ins(bpf.RET | bpf.RET_A))
    assert bpf.run(prog, words()) == bpf.RET_ERRNO | 64
    div0 = (ins(bpf.LDX | bpf.IMM, 0), ins(bpf.LD | bpf.IMM, 5), ins(bpf.ALU | bpf.DIV | bpf.X), ret(bpf.RET_ALLOW))
    assert bpf.run(div0, words()) == bpf.RET_KILL_THREAD
    shift = (ins(bpf.LDX | bpf.IMM, 33), ins(bpf.LD | bpf.IMM, 1), ins(bpf.ALU | bpf.LSH | bpf.X),
             ins(bpf.ALU | bpf.OR | bpf.K, bpf.RET_ERRNO), ins(bpf.RET | bpf.RET_A))
    assert bpf.run(shift, words()) == bpf.RET_ERRNO | 2  # shift by 33 & 31
    for body, want in ((prog, ("errno", 64)), (shift, ("errno", 2))):
        assert program_outcome([_only_getppid(body)]) == want


def test_stacked_filters_the_strictest_action_wins_and_the_newest_on_a_tie():
    errno5, errno9 = (ret(bpf.RET_ERRNO | 5),), (ret(bpf.RET_ERRNO | 9),)
    trap, allow = (ret(bpf.RET_TRAP),), (ret(bpf.RET_ALLOW),)
    w = words()
    assert bpf.stacked([allow, errno5], w) == bpf.RET_ERRNO | 5
    assert bpf.stacked([errno5, errno9], w) == bpf.RET_ERRNO | 9  # newest first; a tie keeps it
    assert bpf.stacked([errno9, errno5], w) == bpf.RET_ERRNO | 5
    assert bpf.stacked([errno5, trap], w) == bpf.RET_TRAP
    assert bpf.stacked([(ret(bpf.RET_KILL_PROCESS),), (ret(bpf.RET_KILL_THREAD),)], w) == bpf.RET_KILL_PROCESS
    assert bpf.stacked([], w) == bpf.RET_ALLOW
    progs = [_only_getppid(p) for p in (errno5, errno9)]
    assert program_outcome(progs) == ("errno", 9)
    assert program_outcome(list(reversed(progs))) == ("errno", 5)


def test_actions_decode_as_the_kernel_acts_on_them():
    assert bpf.action(bpf.RET_ERRNO | 0xFFFF) == ("SCMP_ACT_ERRNO", 4095)  # clamped to MAX_ERRNO
    assert bpf.action(bpf.RET_TRACE | 3) == ("SCMP_ACT_TRACE", 3)
    assert bpf.action(0x00010000) == ("SCMP_ACT_KILL_PROCESS", None)  # unknown actions kill
    assert program_outcome([_only_getppid((ret(bpf.RET_ERRNO | 0xFFFF),))]) == ("errno", 4095)
    assert program_outcome([_only_getppid((ret(0x00010000),))]) == ("kill", None)
    assert program_outcome([_only_getppid((ret(bpf.RET_TRAP),))]) == ("trap", None)


BAD = {
    "an instruction seccomp does not allow (LD|B|ABS)": (ins(bpf.LD | 0x10 | bpf.ABS, 0), ret(0)),
    "a load outside seccomp_data": (ins(bpf.LD | bpf.W | bpf.ABS, 64), ret(0)),
    "an unaligned load": (ins(bpf.LD | bpf.W | bpf.ABS, 2), ret(0)),
    "a jump past the end": (ins(bpf.JMP | bpf.JEQ | bpf.K, 0, 5, 0), ret(0)),
    "JA past the end": (ins(bpf.JMP | bpf.JA, 1), ret(0)),
    "no return at the end": (ret(0), ins(bpf.LD | bpf.IMM, 0)),
    "a scratch read before any write": (ins(bpf.LD | bpf.MEM, 3), ret(0)),
    "a scratch read written on one path only": (ins(bpf.JMP | bpf.JEQ | bpf.K, 0, 1, 0), ins(bpf.ST, 2),
                                                 ins(bpf.LD | bpf.MEM, 2), ret(0)),
    "a scratch word that does not exist": (ins(bpf.ST, 16), ret(0)),
    "division by the constant 0": (ins(bpf.ALU | bpf.DIV | bpf.K, 0), ret(0)),
    "a shift by 32": (ins(bpf.ALU | bpf.LSH | bpf.K, 32), ret(0)),
    "MOD (not in seccomp's list)": (ins(bpf.ALU | 0x90 | bpf.K, 3), ret(0)),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_check_refuses_what_the_kernel_refuses(what):
    prog = BAD[what]
    with pytest.raises(bpf.BpfError):
        bpf.check(prog)
    assert program_accepts(bpf.encode(prog)) is False


def test_decode_reads_what_encode_wrote_and_refuses_a_partial_instruction():
    prog = (ins(bpf.LD | bpf.W | bpf.ABS, 4), ins(bpf.JMP | bpf.JEQ | bpf.K, X86_64, 1, 0), ret(0), ret(bpf.RET_ALLOW))
    assert bpf.decode(bpf.encode(prog)) == prog
    with pytest.raises(bpf.BpfError):
        bpf.decode(bpf.encode(prog)[:-3])


# ---------------------------------------------------------------------------------------------------------
# Random programs: every instruction seccomp accepts, against the kernel
# ---------------------------------------------------------------------------------------------------------

def _only_getppid(body):
    """`body` decides getppid; every other call (the child's own) is allowed."""
    head = (ins(bpf.LD | bpf.W | bpf.ABS, 0), ins(bpf.JMP | bpf.JEQ | bpf.K, NR_GETPPID, 1, 0), ret(bpf.RET_ALLOW))
    prog = head + tuple(body)
    bpf.check(prog)
    return bpf.encode(prog)


U32 = st.one_of(st.sampled_from([0, 1, 2, 31, 32, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]), st.integers(0, 2**32 - 1))
OFFSETS = [0, 4, *range(16, 64, 4)]  # nr, arch, the arguments (the instruction pointer is not ours to know)
ALU_OPS = [bpf.ADD, bpf.SUB, bpf.MUL, bpf.DIV, bpf.OR, bpf.AND, bpf.XOR, bpf.LSH, bpf.RSH]
RETURNS = [bpf.RET_ALLOW, bpf.RET_LOG, bpf.RET_TRAP, bpf.RET_KILL_THREAD, bpf.RET_KILL_PROCESS, bpf.RET_TRACE | 4,
           bpf.RET_USER_NOTIF, 0x00010000]


@st.composite
def bodies(draw):
    n = draw(st.integers(1, 24))
    body = [ins(bpf.LD | bpf.W | bpf.ABS, draw(st.sampled_from(OFFSETS)))]
    body += [ins(bpf.ST, i) for i in range(4)]  # scratch words 0-3 are written before any jump
    kinds = ["ld", "ldx", "imm", "alu", "neg", "misc", "st", "ldmem", "jmp", "ret"]
    for i in range(n):
        kind = draw(st.sampled_from(kinds))
        if kind == "ld":
            body.append(ins(bpf.LD | bpf.W | bpf.ABS, draw(st.sampled_from(OFFSETS))))
        elif kind == "ldx":
            body.append(ins(draw(st.sampled_from([bpf.LDX | bpf.IMM, bpf.LDX | bpf.W | bpf.LEN])), draw(U32)))
        elif kind == "imm":
            body.append(ins(draw(st.sampled_from([bpf.LD | bpf.IMM, bpf.LD | bpf.W | bpf.LEN])), draw(U32)))
        elif kind == "alu":
            op, src = draw(st.sampled_from(ALU_OPS)), draw(st.sampled_from([bpf.K, bpf.X]))
            k = draw(U32)
            if src == bpf.K and op in (bpf.LSH, bpf.RSH):
                k %= 32
            if src == bpf.K and op == bpf.DIV and k == 0:
                k = 3
            body.append(ins(bpf.ALU | op | src, k))
        elif kind == "neg":
            body.append(ins(bpf.ALU | bpf.NEG))
        elif kind == "misc":
            body.append(ins(bpf.MISC | draw(st.sampled_from([bpf.TAX, bpf.TXA]))))
        elif kind == "st":
            body.append(ins(draw(st.sampled_from([bpf.ST, bpf.STX])), draw(st.integers(0, 3))))
        elif kind == "ldmem":
            body.append(ins(draw(st.sampled_from([bpf.LD | bpf.MEM, bpf.LDX | bpf.MEM])), draw(st.integers(0, 3))))
        elif kind == "ret":
            body.append(ret(draw(st.sampled_from(RETURNS))))
        else:
            op = draw(st.sampled_from([bpf.JEQ, bpf.JGT, bpf.JGE, bpf.JSET]))
            src = draw(st.sampled_from([bpf.K, bpf.X]))
            left = n - i + 1  # instructions after this one, up to the final return (the epilogue has 3)
            body.append(ins(bpf.JMP | op | src, draw(U32), draw(st.integers(0, left)), draw(st.integers(0, left))))
    # the epilogue makes A visible: errno = A & 0xfff
    body += [ins(bpf.ALU | bpf.AND | bpf.K, 0xFFF), ins(bpf.ALU | bpf.OR | bpf.K, bpf.RET_ERRNO),
             ins(bpf.RET | bpf.RET_A)]
    return tuple(body)


ARGS = st.lists(st.one_of(st.integers(0, 2**64 - 1), U32, st.sampled_from([0, 1, 2**32, 2**64 - 1])),
                min_size=6, max_size=6)


@examples(40)
@given(body=bodies(), args=ARGS)
def test_random_programs_answer_as_the_kernel_does(body, args):
    raw = _only_getppid(body)
    prog = bpf.decode(raw)
    assert bpf_outcome(bpf.run(prog, words(args=args))) == program_outcome([raw], args=args)


# ---------------------------------------------------------------------------------------------------------
# libseccomp's own filters: random rule sets, alone and stacked
# ---------------------------------------------------------------------------------------------------------

OPS = [pyseccomp.EQ, pyseccomp.NE, pyseccomp.LT, pyseccomp.LE, pyseccomp.GT, pyseccomp.GE, pyseccomp.MASKED_EQ]
VALUES = st.one_of(st.sampled_from([0, 1, 7, 0xFFFFFFFF, 2**32, 2**32 + 7, 2**63, 2**64 - 1]),
                   st.integers(0, 2**64 - 1), st.integers(0, 64))
ACTIONS = st.one_of(st.sampled_from([pyseccomp.ALLOW, pyseccomp.LOG, pyseccomp.TRAP, pyseccomp.KILL_PROCESS,
                                     pyseccomp.KILL_THREAD]),
                    st.builds(pyseccomp.ERRNO, st.integers(0, 200)), st.builds(pyseccomp.TRACE, st.integers(0, 9)))


@st.composite
def rule_sets(draw):
    default = draw(ACTIONS)
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        indexes = draw(st.lists(st.integers(0, 5), max_size=3, unique=True))
        conds = [(i, draw(st.sampled_from(OPS)), draw(VALUES), draw(VALUES)) for i in indexes]
        rules.append((draw(ACTIONS), conds))
    return default, rules


def compile_rules(default, rules):
    """libseccomp's filter (x86_64 only) for getppid `rules`, the child's housekeeping allowed."""
    f = pyseccomp.SyscallFilter(default)
    if default not in (pyseccomp.ALLOW, pyseccomp.LOG):
        for name in HARNESS:
            f.add_rule(pyseccomp.ALLOW, name)
    for action, conds in rules:
        if action == default:
            continue  # as runc does: libseccomp refuses a rule with the default action
        args = [pyseccomp.Arg(i, op, a, b if op == pyseccomp.MASKED_EQ else 0) for i, op, a, b in conds]
        try:
            f.add_rule(action, "getppid", *args)
        except OSError:
            pass  # a rule libseccomp refuses (a conflicting duplicate): not part of the filter
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        return t.read()


@st.composite
def calls(draw, rule_sets_):
    consts = [c[2] for _, rules in rule_sets_ for _, conds in rules for c in conds]
    near = st.sampled_from(consts).flatmap(lambda v: st.sampled_from([v, v + 1, v - 1, v & 0xFFFFFFFF])) \
        if consts else st.integers(0, 9)
    return [draw(st.one_of(near, VALUES)) % 2**64 for _ in range(6)]


@examples(40)
@given(data=st.data(), first=rule_sets())
def test_libseccomp_filters_answer_as_the_kernel_does(data, first):
    raw = compile_rules(*first)
    args = data.draw(calls([first]))
    prog = bpf.decode(raw)
    bpf.check(prog)
    assert bpf_outcome(bpf.run(prog, words(args=args))) == program_outcome([raw], args=args)


@examples(25)
@given(data=st.data(), first=rule_sets(), second=rule_sets())
def test_stacked_libseccomp_filters_answer_as_the_kernel_does(data, first, second):
    raws = [compile_rules(*first), compile_rules(*second)]
    args = data.draw(calls([first, second]))
    got = bpf.stacked([bpf.decode(r) for r in raws], words(args=args))
    assert bpf_outcome(got) == program_outcome(raws, args=args)


# ---------------------------------------------------------------------------------------------------------
# Classes of values and exploration
# ---------------------------------------------------------------------------------------------------------

PREDS = st.lists(st.tuples(st.one_of(st.just(0xFFFFFFFF), U32), st.sampled_from(["eq", "gt", "ge"]), U32),
                 max_size=6)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(preds=PREDS, values=st.lists(U32, min_size=1, max_size=20))
def test_representatives_cover_every_class_once(preds, values):
    reps = bpf.representatives(preds)

    def truth(v):
        return tuple(bpf.pred_holds(m, o, c, v) for m, o, c in preds)

    seen = [truth(r) for r in reps]
    assert len(set(seen)) == len(seen)  # one value per class
    for v in values:
        assert truth(v) in seen  # every value's class is represented


def test_explore_reports_the_comparisons_on_symbolic_words_and_the_fixed_verdicts():
    raw = compile_rules(pyseccomp.ERRNO(1), [(pyseccomp.ALLOW, [(0, pyseccomp.EQ, 5, 0)])])
    prog = bpf.decode(raw)
    fixed = {bpf.ARCH: X86_64}
    found = bpf.explore(prog, fixed)
    assert (4, 0xFFFFFFFF, "eq", 5) in {p for p, _ in found.preds}  # arg0 low word == 5
    runs = bpf.explore(prog, fixed, bpf.NR, [NR_GETPPID, 39])
    assert NR_GETPPID in runs.conditional and 39 not in runs.conditional
    assert runs.fixed_ret[39] == bpf.RET_ERRNO | 1
    assert (5, 0xFFFFFFFF, "eq", 0) in runs.preds_for(NR_GETPPID)  # the high word is checked too


def test_explore_refuses_arithmetic_it_does_not_analyse():
    prog = (ins(bpf.LD | bpf.W | bpf.ABS, 16), ins(bpf.ALU | bpf.ADD | bpf.K, 1),
            ins(bpf.JMP | bpf.JEQ | bpf.K, 6, 0, 1), ret(bpf.RET_ALLOW), ret(0))
    with pytest.raises(bpf.Unsupported):
        bpf.explore(prog, {bpf.ARCH: X86_64})
