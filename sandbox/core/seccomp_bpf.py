"""Classic BPF as seccomp runs it: the kernel's checks, its interpreter, stacked filters.  Pure.

A seccomp filter is a classic-BPF program over `struct seccomp_data` (64 bytes: `nr`, `arch`,
`instruction_pointer`, `args[6]`), read here as 16 32-bit words in the host's byte order:
word 0 `nr`, 1 `arch`, 2-3 the instruction pointer, 4+2i and 5+2i the low and high halves of
argument i (little-endian; swapped on a big-endian host).

- `check` refuses what the kernel refuses (bpf_check_classic + seccomp_check_filter): only the
  instructions seccomp allows, 32-bit aligned loads inside seccomp_data, jumps inside the
  program, a RET at the end, no read of a scratch word before it is written.
- `run` is the kernel's interpreter: 32-bit unsigned arithmetic, A and X start at 0, division by
  X == 0 returns 0 (SECCOMP_RET_KILL_THREAD), shifts by X use its low 5 bits.
- `stacked` is seccomp_run_filters(): every installed filter runs and the return value whose
  action is the smallest as a signed 32-bit number wins (KILL_PROCESS < KILL_THREAD < TRAP <
  ERRNO < USER_NOTIF < TRACE < LOG < ALLOW); on a tie the newest filter's value is kept.
- `explore` walks every path of a program with some words fixed and the rest symbolic, and
  returns each comparison the program makes on a symbolic word (`Pred`), the syscall-number
  values it separates, and where the verdict is the same whatever the other words hold.
  `representatives` turns the comparisons made on one word into one value per class of values
  that no comparison tells apart.  Together they make "what does this filter do for every
  argument value" a finite, exact question: every comparison here looks at a single word, so
  the classes of all words combined are products, and one call per product cell covers them all.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    Insn = tuple[int, int, int, int]  # code, jt, jf, k
    Program = tuple[Insn, ...]
    Pred = tuple[int, int, str, int]  # word, mask, op ("eq" | "gt" | "ge"), constant: (word & mask) op constant

M32 = 0xFFFFFFFF
DATA_SIZE = 64  # sizeof(struct seccomp_data)
WORDS = DATA_SIZE // 4
MEMWORDS = 16
MAXINSNS = 4096
NR, ARCH = 0, 1

# Instruction classes, sizes, modes, operations (linux/filter.h, linux/bpf_common.h).
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, ABS, IMM, MEM, LEN = 0x00, 0x20, 0x00, 0x60, 0x80
K, X = 0x00, 0x08
RET_A = 0x10
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, XOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0xA0
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
TAX, TXA = 0x00, 0x80

# Return values (linux/seccomp.h): action in the high 16 bits, data in the low 16.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
ACTION_FULL = 0xFFFF0000
DATA = 0x0000FFFF
MAX_ERRNO = 4095

# Kernel action -> the OCI / libseccomp name of the action.
ACTION_NAMES: dict[int, str] = {
    RET_KILL_PROCESS: "SCMP_ACT_KILL_PROCESS", RET_KILL_THREAD: "SCMP_ACT_KILL_THREAD", RET_TRAP: "SCMP_ACT_TRAP",
    RET_ERRNO: "SCMP_ACT_ERRNO", RET_USER_NOTIF: "SCMP_ACT_NOTIFY", RET_TRACE: "SCMP_ACT_TRACE",
    RET_LOG: "SCMP_ACT_LOG", RET_ALLOW: "SCMP_ACT_ALLOW",
}
ACTION_VALUES: dict[str, int] = {name: value for value, name in ACTION_NAMES.items()}
ACTION_VALUES["SCMP_ACT_KILL"] = RET_KILL_THREAD  # runc and libseccomp: KILL is KILL_THREAD

# The codes seccomp accepts (kernel/seccomp.c seccomp_check_filter), as the user wrote them.
_ALLOWED: frozenset[int] = frozenset({
    LD | W | ABS, LD | W | LEN, LDX | W | LEN, RET | K, RET | RET_A,
    *(ALU | op | src for op in (ADD, SUB, MUL, DIV, AND, OR, XOR, LSH, RSH) for src in (K, X)), ALU | NEG,
    LD | IMM, LDX | IMM, MISC | TAX, MISC | TXA, LD | MEM, LDX | MEM, ST, STX,
    JMP | JA, *(JMP | op | src for op in (JEQ, JGE, JGT, JSET) for src in (K, X)),
})


class BpfError(ValueError):
    """A program the kernel would not install (or a seccomp_data offset it cannot load)."""


class Unsupported(Exception):  # noqa: N818 - an answer, not a failure of this code
    """`explore` met a computation on syscall data it does not analyse exactly."""

    def __init__(self, pc: int, reason: str) -> None:
        super().__init__(f"instruction {pc}: {reason}")
        self.pc = pc
        self.reason = reason


# ---------------------------------------------------------------------------------------------------------
# Programs
# ---------------------------------------------------------------------------------------------------------

def decode(raw: bytes, byteorder: str = "little") -> Program:
    """`struct sock_filter[]` bytes (u16 code, u8 jt, u8 jf, u32 k, host order) -> instructions."""
    if len(raw) % 8:
        raise BpfError(f"{len(raw)} bytes is not a whole number of 8-byte instructions")
    out = []
    for i in range(0, len(raw), 8):
        code = int.from_bytes(raw[i:i + 2], byteorder)  # type: ignore[arg-type]
        k = int.from_bytes(raw[i + 4:i + 8], byteorder)  # type: ignore[arg-type]
        out.append((code, raw[i + 2], raw[i + 3], k))
    return tuple(out)


def encode(program: Sequence[Insn], byteorder: str = "little") -> bytes:
    return b"".join(code.to_bytes(2, byteorder) + bytes((jt, jf)) + k.to_bytes(4, byteorder)  # type: ignore[arg-type]
                    for code, jt, jf, k in program)


def check(program: Sequence[Insn]) -> None:
    """Raise BpfError unless the kernel would install `program` as a seccomp filter."""
    n = len(program)
    if not 0 < n <= MAXINSNS:
        raise BpfError(f"a filter has 1 to {MAXINSNS} instructions, this one {n}")
    for pc, (code, jt, jf, k) in enumerate(program):
        if code not in _ALLOWED:
            raise BpfError(f"instruction {pc}: code {code:#06x} is not allowed in a seccomp filter")
        if code == LD | W | ABS and (k >= DATA_SIZE or k & 3):
            raise BpfError(f"instruction {pc}: load at offset {k} is outside seccomp_data or not 32-bit aligned")
        if code in (LD | MEM, LDX | MEM, ST, STX) and k >= MEMWORDS:
            raise BpfError(f"instruction {pc}: scratch word {k} does not exist")
        if code == ALU | DIV | K and k == 0:
            raise BpfError(f"instruction {pc}: division by the constant 0")
        if code in (ALU | LSH | K, ALU | RSH | K) and k >= 32:
            raise BpfError(f"instruction {pc}: shift by {k}")
        if code == JMP | JA:
            if k >= n - pc - 1:
                raise BpfError(f"instruction {pc}: jump beyond the end")
        elif code & 0x07 == JMP and (pc + jt + 1 >= n or pc + jf + 1 >= n):
            raise BpfError(f"instruction {pc}: jump beyond the end")
    if program[-1][0] not in (RET | K, RET | RET_A):
        raise BpfError("the last instruction is not a return")
    _check_scratch(program)


def _check_scratch(program: Sequence[Insn]) -> None:
    """No scratch word is read before every path to the read has written it (check_load_and_stores)."""
    n = len(program)
    valid: list[int | None] = [None] * n  # bitmask of written words on every path reaching pc
    valid[0] = 0
    for pc, (code, jt, jf, k) in enumerate(program):
        mask = valid[pc]
        if mask is None:
            continue  # unreachable
        if code in (LD | MEM, LDX | MEM) and not mask >> k & 1:
            raise BpfError(f"instruction {pc}: reads scratch word {k} before it is written")
        if code in (ST, STX):
            mask |= 1 << k
        cls = code & 0x07
        if cls == RET:
            continue
        targets = [pc + 1 + k] if code == JMP | JA else [pc + 1 + jt, pc + 1 + jf] if cls == JMP else [pc + 1]
        for t in targets:
            valid[t] = mask if valid[t] is None else valid[t] & mask  # type: ignore[operator]


def data_words(nr: int, arch: int, args: Sequence[int] = (), ip: int = 0, byteorder: str = "little") -> tuple[int, ...]:
    """seccomp_data as the 16 words a program loads (arguments are unsigned 64-bit)."""
    words = [nr & M32, arch & M32]
    for v in (ip, *(list(args) + [0] * (6 - len(args)))[:6]):
        lo, hi = v & M32, (v >> 32) & M32
        words += [lo, hi] if byteorder == "little" else [hi, lo]
    return tuple(words)


def arg_words(i: int, byteorder: str = "little") -> tuple[int, int]:
    """The (low, high) word indexes of argument i."""
    lo, hi = 4 + 2 * i, 5 + 2 * i
    return (lo, hi) if byteorder == "little" else (hi, lo)


# ---------------------------------------------------------------------------------------------------------
# The interpreter
# ---------------------------------------------------------------------------------------------------------

def run(program: Sequence[Insn], words: Sequence[int]) -> int:
    """The value the kernel's interpreter returns for `program` over seccomp_data `words`.

    `program` must have passed `check` (as every installed filter has).
    """
    return run_counted(program, words)[0]


def run_counted(program: Sequence[Insn], words: Sequence[int]) -> tuple[int, int]:
    """`run`, and how many instructions the program executed to its verdict (what the call pays)."""
    a = x = 0
    mem = [0] * MEMWORDS
    pc = steps = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        steps += 1
        cls = code & 0x07
        if cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += k
                continue
            b = x if code & X else k
            if op == JEQ:
                hit = a == b
            elif op == JGT:
                hit = a > b
            elif op == JGE:
                hit = a >= b
            else:
                hit = (a & b) != 0
            pc += jt if hit else jf
        elif cls == LD:
            mode = code & 0xE0
            a = words[k >> 2] if mode == ABS else k if mode == IMM else mem[k] if mode == MEM else DATA_SIZE
        elif cls == RET:
            return (a if code & RET_A else k) & M32, steps
        elif cls == ALU:
            r = alu(code, a, x if code & X else k)
            if r is None:
                return RET_KILL_THREAD, steps
            a = r
        elif cls == LDX:
            mode = code & 0xE0
            x = k if mode == IMM else mem[k] if mode == MEM else DATA_SIZE
        elif cls == ST:
            mem[k] = a
        elif cls == STX:
            mem[k] = x
        else:
            if code & 0xF8 == TXA:
                a = x
            else:
                x = a


def alu(code: int, a: int, b: int) -> int | None:
    """A after one ALU instruction with operand `b` (None: division by zero, the program returns 0)."""
    op = code & 0xF0
    if op == ADD:
        return (a + b) & M32
    if op == SUB:
        return (a - b) & M32
    if op == MUL:
        return (a * b) & M32
    if op == DIV:
        return a // b if b else None
    if op == OR:
        return a | b
    if op == AND:
        return a & b
    if op == XOR:
        return a ^ b
    if op == LSH:
        return (a << (b & 31)) & M32
    if op == RSH:
        return a >> (b & 31)
    return -a & M32  # NEG


def precedence(ret: int) -> int:
    """The kernel's order of return values: smaller wins (ACTION_ONLY, a signed 32-bit compare)."""
    v = ret & ACTION_FULL
    return v - (1 << 32) if v & 0x80000000 else v


def stacked(programs: Sequence[Program], words: Sequence[int]) -> int:
    """The return value of every filter of a task together (`programs` oldest first)."""
    ret = RET_ALLOW
    for program in reversed(programs):  # the kernel walks from the newest filter
        cur = run(program, words)
        if precedence(cur) < precedence(ret):
            ret = cur
    return ret


def combine(rets: Iterable[int]) -> int:
    """`stacked` over return values already computed (newest first)."""
    ret = RET_ALLOW
    for cur in rets:
        if precedence(cur) < precedence(ret):
            ret = cur
    return ret


def action(ret: int) -> tuple[str, int | None]:
    """(OCI action name, errno or trace data) of a return value as the kernel acts on it.

    An action value the kernel does not know kills the process (the `default:` of __seccomp_filter).
    """
    act, data = ret & ACTION_FULL, ret & DATA
    name = ACTION_NAMES.get(act)
    if name is None:
        return "SCMP_ACT_KILL_PROCESS", None
    if act == RET_ERRNO:
        return name, min(data, MAX_ERRNO)
    if act == RET_TRACE:
        return name, data
    return name, None


# ---------------------------------------------------------------------------------------------------------
# Exploration: which comparisons on which words decide the verdict
# ---------------------------------------------------------------------------------------------------------

def pred_holds(mask: int, op: str, const: int, value: int) -> bool:
    v = value & mask
    return v == const if op == "eq" else v > const if op == "gt" else v >= const


class Exploration:
    """What `explore` found in one program.

    `preds`: (comparison, the varying-word values on whose paths it is made) for every comparison
    on a symbolic word.  `fixed_ret`: varying-word value -> the return value when no symbolic
    comparison lies on its path (the verdict whatever the symbolic words hold).  `conditional`:
    varying-word values whose verdict depends on a symbolic word.  With no varying word, the
    single key is None.
    """

    def __init__(self) -> None:
        self.preds: list[tuple[Pred, frozenset[int | None]]] = []
        self.fixed_ret: dict[int | None, int] = {}
        self.conditional: set[int | None] = set()

    def preds_for(self, value: int | None) -> set[Pred]:
        return {p for p, values in self.preds if value in values}


def explore(program: Sequence[Insn], fixed: Mapping[int, int], vary: int | None = None,
            values: Iterable[int] = ()) -> Exploration:
    """Walk every path of `program` with the words in `fixed` known, word `vary` taking each of
    `values` and every other word symbolic.

    A comparison of a symbolic word (possibly masked by AND) with a constant follows both
    branches; one of the varying word splits `values`.  Anything else done with symbolic data
    (arithmetic other than AND, comparing two symbolic values, returning one) raises Unsupported.
    """
    out = Exploration()
    start_values: frozenset[int | None] = frozenset(values) if vary is not None else frozenset({None})
    joins = _join_points(program)
    seen: set[tuple[object, ...]] = set()
    # state: pc, A, X, scratch, varying values, conditional so far; a value is ("c", v) or ("w", word, mask)
    zero = ("c", 0)
    stack: list[tuple[int, tuple, tuple, tuple, frozenset[int | None], bool]] = [
        (0, zero, zero, (zero,) * MEMWORDS, start_values, False)]
    while stack:
        pc, a, x, mem, vals, cond = stack.pop()
        while True:
            if pc in joins:
                key = (pc, a, x, mem, vals, cond)
                if key in seen:
                    break
                seen.add(key)
            code, jt, jf, k = program[pc]
            cls = code & 0x07
            if cls == RET:
                r = a if code & RET_A else ("c", k)
                if r[0] != "c":
                    raise Unsupported(pc, "returns a value computed from syscall data")
                for v in vals:
                    if cond:
                        out.conditional.add(v)
                    else:
                        out.fixed_ret[v] = r[1] & M32
                break
            if cls == JMP:
                op = code & 0xF0
                if op == JA:
                    pc += 1 + k
                    continue
                b = x if code & X else ("c", k)
                branches = _branch(pc, op, a, b, vary, vals, out)
                if branches is None:  # symbolic: both ways
                    stack.append((pc + 1 + jt, a, x, mem, vals, True))
                    pc, cond = pc + 1 + jf, True
                    continue
                taken, not_taken = branches
                if taken and not_taken:
                    stack.append((pc + 1 + jt, a, x, mem, taken, cond))
                    pc, vals = pc + 1 + jf, not_taken
                elif taken:
                    pc += 1 + jt
                else:
                    pc += 1 + jf
                continue
            if cls == LD:
                mode = code & 0xE0
                if mode == ABS:
                    w = k >> 2
                    a = ("c", fixed[w]) if w in fixed else ("w", w, M32)
                else:
                    a = ("c", k) if mode == IMM else mem[k] if mode == MEM else ("c", DATA_SIZE)
            elif cls == LDX:
                mode = code & 0xE0
                x = ("c", k) if mode == IMM else mem[k] if mode == MEM else ("c", DATA_SIZE)
            elif cls == ST:
                mem = mem[:k] + (a,) + mem[k + 1:]
            elif cls == STX:
                mem = mem[:k] + (x,) + mem[k + 1:]
            elif cls == MISC:
                if code & 0xF8 == TXA:
                    a = x
                else:
                    x = a
            else:
                res = _alu(pc, code, k, a, x)
                if res is not None:
                    a = res
                else:  # division by X == 0: the program returns 0
                    for v in vals:
                        if cond:
                            out.conditional.add(v)
                        else:
                            out.fixed_ret[v] = RET_KILL_THREAD
                    break
            pc += 1
    return out


def _join_points(program: Sequence[Insn]) -> frozenset[int]:
    incoming = [0] * len(program)
    for pc, (code, jt, jf, k) in enumerate(program):
        cls = code & 0x07
        if cls == RET:
            continue
        if code == JMP | JA:
            incoming[pc + 1 + k] += 1
        elif cls == JMP:
            incoming[pc + 1 + jt] += 1
            incoming[pc + 1 + jf] += 1
        else:
            incoming[pc + 1] += 1
    return frozenset(pc for pc, n in enumerate(incoming) if n > 1)


def _alu(pc: int, code: int, k: int, a: tuple, x: tuple) -> tuple | None:
    op = code & 0xF0
    b = x if code & X else ("c", k)
    if a[0] == "c" and (op == NEG or b[0] == "c"):
        r = alu(code, a[1], b[1])
        return None if r is None else ("c", r)
    if op == AND and b[0] == "c" and a[0] == "w":
        return ("w", a[1], a[2] & b[1])
    if op == AND and a[0] == "c" and b[0] == "w":
        return ("w", b[1], b[2] & a[1])
    raise Unsupported(pc, "arithmetic on syscall data other than a constant mask")


def _branch(pc: int, op: int, a: tuple, b: tuple, vary: int | None, vals: frozenset[int | None],
            out: Exploration) -> tuple[frozenset[int | None], frozenset[int | None]] | None:
    """(values taking the jump, values not taking it), or None for a symbolic comparison (recorded)."""
    if a[0] == "c" and b[0] == "c":
        av, bv = a[1], b[1]
        hit = av == bv if op == JEQ else av > bv if op == JGT else av >= bv if op == JGE else (av & bv) != 0
        return (vals, frozenset()) if hit else (frozenset(), vals)
    if a[0] != "c" and b[0] != "c":
        raise Unsupported(pc, "compares two values computed from syscall data")
    if a[0] == "c":  # constant A against symbolic X: turn it around
        word, mask, c = b[1], b[2], a[1]
        if op == JEQ:
            pred, flip = (word, mask, "eq", c), False
        elif op == JGT:  # c > w  <=>  not (w >= c)
            pred, flip = (word, mask, "ge", c), True
        elif op == JGE:  # c >= w  <=>  not (w > c)
            pred, flip = (word, mask, "gt", c), True
        else:
            pred, flip = (word, mask & c, "eq", 0), True
    else:
        word, mask, c = a[1], a[2], b[1]
        if op == JSET:
            pred, flip = (word, mask & c, "eq", 0), True
        else:
            pred, flip = (word, mask, {JEQ: "eq", JGT: "gt", JGE: "ge"}[op], c), False
    if word == vary:
        _, m, o, cc = pred
        if o == "eq" and m == M32:
            yes = frozenset({cc}) & vals
            no = vals - yes
        else:
            yes = frozenset(v for v in vals if pred_holds(m, o, cc, v))  # type: ignore[arg-type]
            no = vals - yes
        return (no, yes) if flip else (yes, no)
    out.preds.append((pred, vals))
    return None


# ---------------------------------------------------------------------------------------------------------
# Classes of values of one word
# ---------------------------------------------------------------------------------------------------------

def _decided(mask: int, op: str, const: int, fixed: int, prefix: int) -> bool:
    """Whether `(w & mask) op const` has one truth value for every w whose `fixed` bits are `prefix`."""
    free = mask & ~fixed & M32
    if op == "eq":
        if const & ~mask or (prefix ^ const) & mask & fixed:
            return True  # false everywhere
        return not free  # true everywhere when no masked bit is free
    low = prefix & mask
    high = low | free
    if op == "gt":
        return low > const or high <= const
    return low >= const or high < const


def representatives(preds: Iterable[tuple[int, str, int]]) -> list[int]:
    """One 32-bit value for each combination of truth values of `preds` that some value has.

    `preds` are (mask, op, constant) meaning `(w & mask) op constant`.  Found by splitting the
    value space on one bit at a time, from the top, only on bits some unsettled comparison looks at,
    until every comparison is settled in each piece; the piece's smallest value stands for it.
    """
    preds = list(dict.fromkeys(preds))
    if not preds:
        return [0]
    out: dict[tuple[bool, ...], int] = {}
    stack: list[tuple[int, int, list[tuple[int, str, int]]]] = [(0, 0, preds)]
    while stack:
        fixed, prefix, open_ = stack.pop()
        open_ = [p for p in open_ if not _decided(p[0], p[1], p[2], fixed, prefix)]
        if not open_:
            truth = tuple(pred_holds(m, o, c, prefix) for m, o, c in preds)
            out.setdefault(truth, prefix)
            continue
        relevant = 0
        for m, _, _ in open_:
            relevant |= m
        relevant &= ~fixed & M32
        b = 1 << (relevant.bit_length() - 1)  # some open comparison looks at a free bit: it is never 0
        stack.append((fixed | b, prefix | b, open_))
        stack.append((fixed | b, prefix, open_))
    return sorted(out.values())
