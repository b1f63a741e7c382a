"""Does a task's installed seccomp filter stack allow more than a profile demands?  Pure.

The kernel side is the filters themselves (classic-BPF programs read from the kernel), run by
`sandbox.core.seccomp_bpf` exactly as the kernel runs them.  The profile side is the OCI
`linux.seccomp` section the profile makes of the container's config, evaluated by the shared
rule-table evaluator (`sandbox.core.seccomp_eval`, runc 1.1 semantics) and completed with what runc
1.1 and libseccomp add when they install such a section (`RuncModel`):

- architectures the section does not list get libseccomp's bad-architecture action, KILL_THREAD
  (runc does not change it); no list means the native architecture only;
- unless the default action lets calls run (ALLOW, LOG, TRACE), runc prepends a stub returning
  ENOSYS for syscall numbers above the highest one the section names, per architecture;
- on 32-bit ABIs (i386, x32, arm) libseccomp compares only the low 32 bits of an argument;
- on i386, socket and SysV IPC calls also enter through socketcall(2) and ipc(2); libseccomp
  allows `socketcall(SYS_X, ...)` when either socketcall or X is allowed, and cannot look at X's
  own arguments behind the pointer, so the profile's verdict there is the more permissive of the
  two entry points.

`prove` derives, for every syscall number of every ABI the kernel runs (native and compat) and
every class of argument values that any of the filters or the profile's conditions tells apart,
the kernel's verdict and the profile's, and reports where the kernel is less strict (by the
kernel's own precedence of actions).  Stricter verdicts (runc's ENOSYS stub, an extra stacked
filter) are counted but are not failures.
"""

from __future__ import annotations

import errno as _errno
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import seccomp_bpf as bpf
from . import seccomp_eval

M32 = bpf.M32
# Syscall numbers examined per ABI: every Linux ABI's table is far below this (x86_64 has ~470).
NR_SPAN = 1024
MAX_CASES_PER_SYSCALL = 4096
# Actions under which runc 1.1 adds no ENOSYS stub (patchbpf isAllowAction).
_NO_STUB_DEFAULTS = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"})


@dataclass(frozen=True)
class Abi:
    """One way a task can enter the kernel: the `arch` seccomp sees and the syscall numbers it uses."""

    name: str
    scmp_arch: str  # the OCI / libseccomp name
    audit_arch: int  # seccomp_data.arch
    nr_base: int = 0  # x32 numbers carry __X32_SYSCALL_BIT
    args32: bool = False  # libseccomp compares only the low 32 bits of each argument
    high_zero: bool = False  # the kernel zero-extends 32-bit registers: the high words are always 0


X86_64 = Abi("x86_64", "SCMP_ARCH_X86_64", 0xC000003E)
X32 = Abi("x32", "SCMP_ARCH_X32", 0xC000003E, nr_base=0x40000000, args32=True)
I386 = Abi("i386", "SCMP_ARCH_X86", 0x40000003, args32=True, high_zero=True)
AARCH64 = Abi("aarch64", "SCMP_ARCH_AARCH64", 0xC00000B7)
ARM = Abi("arm", "SCMP_ARCH_ARM", 0x40000028, args32=True, high_zero=True)
# uname -m -> the native ABI and the compat ABIs a kernel for it may run.
MACHINE_ABIS: dict[str, tuple[Abi, ...]] = {"x86_64": (X86_64, X32, I386), "aarch64": (AARCH64, ARM)}
SCMP_ARCH_ABI: dict[str, Abi] = {abi.scmp_arch: abi for abis in MACHINE_ABIS.values() for abi in abis}


@dataclass(frozen=True)
class AbiTable:
    """libseccomp's syscall table for one ABI."""

    names: Mapping[int, str]  # number -> name
    numbers: Mapping[str, int]  # name -> number (multiplexed names map to their pseudo number)
    # multiplexer number -> (sub-call number -> name), e.g. socketcall(1) is socket on i386
    multiplexed: Mapping[int, Mapping[int, str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# What runc installs for an OCI section
# ---------------------------------------------------------------------------------------------------------

def action_value(action: str) -> int:
    """The kernel return value an OCI action name stands for (unknown names: the strictest)."""
    return bpf.ACTION_VALUES.get(action, bpf.RET_KILL_PROCESS)


def precedence(verdict: tuple[str, int | None]) -> int:
    return bpf.precedence(action_value(verdict[0]))


def _normal(verdict: tuple[str, int | None]) -> tuple[str, int | None]:
    """Verdicts as the kernel states them: KILL is KILL_THREAD, ERRNO/TRACE without a value is EPERM."""
    name, value = verdict
    if name == "SCMP_ACT_KILL":
        name = "SCMP_ACT_KILL_THREAD"
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return name, _errno.EPERM if value is None else value
    return name, None


class RuncModel:
    """The verdicts runc 1.1 + libseccomp give to an OCI `linux.seccomp` section (None: no filter)."""

    def __init__(self, section: Mapping[str, Any] | None, tables: Mapping[str, AbiTable], native: Abi) -> None:
        self.section = section
        self.tables = tables
        self.default: tuple[str, int | None] = ("SCMP_ACT_ALLOW", None)
        self._default_rule: Any = ("SCMP_ACT_ALLOW", None, ())
        self.rules: Mapping[str, list[Any]] = {}
        self.covered: frozenset[str] = frozenset()
        self.stub_max: dict[str, int] = {}
        if not section:
            return
        default, rules = seccomp_eval.section_table(section)
        self.default, self._default_rule, self.rules = (default[0], default[1]), default, rules
        arches = [a for a in section.get("architectures") or [] if isinstance(a, str)] or [native.scmp_arch]
        self.covered = frozenset(SCMP_ARCH_ABI[a].name for a in arches if a in SCMP_ARCH_ABI)
        if default[0] not in _NO_STUB_DEFAULTS:
            names = [n for entry in section.get("syscalls") or [] if isinstance(entry, dict)
                     for n in _entry_names(entry)]
            for abi_name in self.covered:
                table = tables.get(abi_name)
                nrs = [table.numbers[n] for n in names if table and n in table.numbers]
                top = max([n for n in nrs if n >= 0], default=0)
                if top:
                    self.stub_max[abi_name] = top

    def verdict(self, abi: Abi, nr: int, args: Sequence[int]) -> tuple[str, int | None]:
        if not self.section:
            return "SCMP_ACT_ALLOW", None
        if abi.name not in self.covered:
            return "SCMP_ACT_KILL_THREAD", None  # libseccomp's bad-architecture action
        top = self.stub_max.get(abi.name)
        if top is not None and nr > top:
            return "SCMP_ACT_ERRNO", _errno.ENOSYS
        table = self.tables[abi.name]
        if abi.args32:
            args = [a & M32 for a in args]
        name = table.names.get(nr)
        if name is None:
            return _normal(self.default)
        v = _normal(seccomp_eval.evaluate(self._default_rule, self.rules, name, args))
        sub = table.multiplexed.get(nr, {}).get(args[0] if args else 0)
        if sub is not None:
            other = self._most_permissive(sub)
            if precedence(other) > precedence(v):
                v = other
        return v

    def _most_permissive(self, name: str) -> tuple[str, int | None]:
        """The most permissive verdict `name` gets for some arguments."""
        verdicts = [_normal((r[0], r[1])) for r in self.rules.get(name, [])]
        if not verdicts or any(r[2] for r in self.rules.get(name, [])):
            verdicts.append(_normal(self.default))
        return max(verdicts, key=precedence)

    def nr_preds(self, abi: Abi) -> list[tuple[int, str, int]]:
        """The syscall-number classes this section tells apart on `abi` (as `representatives` takes them)."""
        table = self.tables.get(abi.name)
        if table is None or not self.section:
            return []
        out = [(M32, "eq", table.numbers[n]) for n in self.rules if table.numbers.get(n, -1) >= 0]
        out += [(M32, "eq", nr) for nr in table.multiplexed]
        if abi.name in self.stub_max:
            out.append((M32, "gt", self.stub_max[abi.name]))
        return out

    def arg_preds(self, abi: Abi, nr: int) -> list[bpf.Pred]:
        """Word comparisons equivalent to the conditions the section puts on syscall `nr`'s arguments."""
        table = self.tables.get(abi.name)
        if table is None or not self.section:
            return []
        name = table.names.get(nr)
        out: list[bpf.Pred] = []
        for rule in self.rules.get(name, []) if name else []:
            for index, value, value_two, op in rule[2]:
                out += _cond_preds(index, value, value_two, op, abi.args32)
        for call in table.multiplexed.get(nr, {}):
            out.append((bpf.arg_words(0)[0], M32, "eq", call))
        return out


def _entry_names(entry: Mapping[str, Any]) -> list[str]:
    names = entry.get("names")
    if isinstance(names, list):
        return [n for n in names if isinstance(n, str)]
    return [entry["name"]] if isinstance(entry.get("name"), str) else []


def _cond_preds(index: int, value: int, value_two: int, op: str, args32: bool) -> list[bpf.Pred]:
    """One 64-bit argument condition as comparisons of its two 32-bit words."""
    if not 0 <= index < 6:
        return []
    lo_w, hi_w = bpf.arg_words(index)
    v = value & ((1 << 64) - 1)
    lo, hi = v & M32, v >> 32
    if op == "SCMP_CMP_MASKED_EQ":
        v2 = value_two & ((1 << 64) - 1)
        out = [(lo_w, lo, "eq", v2 & M32)]
        return out if args32 else out + [(hi_w, hi, "eq", v2 >> 32)]
    out = [(lo_w, M32, "eq", lo), (lo_w, M32, "gt", lo), (lo_w, M32, "ge", lo)]
    return out if args32 else out + [(hi_w, M32, "eq", hi), (hi_w, M32, "gt", hi)]


# ---------------------------------------------------------------------------------------------------------
# The proof
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """Calls the kernel answers differently from the profile."""

    abi: str
    syscalls: tuple[str, ...]  # the names (or "#N") of the syscall-number class
    args: str  # the argument values of the case ("" when no argument matters)
    kernel: tuple[str, int | None]
    profile: tuple[str, int | None]

    @property
    def allowed(self) -> bool:
        """The kernel lets the call run (or a supervisor decide) where the profile denies it."""
        return self.kernel[0] in _RUNS and self.profile[0] not in _RUNS

    def describe(self) -> str:
        call = _syscall_text(self.syscalls) + (f"({self.args})" if self.args else "")
        abi = "" if self.abi == "x86_64" or self.abi == "aarch64" else f" [{self.abi}]"
        return f"{call}{abi}: {_verdict_text(self.kernel)}, the profile: {_verdict_text(self.profile)}"


_RUNS = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"})


@dataclass(frozen=True)
class Proof:
    filters: int
    instructions: tuple[int, ...]  # per filter, oldest first
    abis: tuple[str, ...]  # ABIs examined
    absent_abis: tuple[str, ...]  # ABIs this kernel does not run (nothing to examine)
    cases: int  # (syscall class, argument class) pairs evaluated
    weaker: tuple[Difference, ...]  # the kernel is less strict than the profile
    stricter: int  # cases where the kernel is stricter (e.g. runc's ENOSYS stub)
    errno_only: int  # same action, another errno
    unsupported: str | None = None  # why the filters could not be evaluated exactly

    @property
    def holds(self) -> bool:
        return self.unsupported is None and not self.weaker


def _syscall_text(names: Sequence[str]) -> str:
    if len(names) <= 3:
        return "/".join(names)
    return f"{'/'.join(names[:3])}/... ({len(names)} numbers)"


def _verdict_text(v: tuple[str, int | None]) -> str:
    name = v[0].removeprefix("SCMP_ACT_")
    if v[0] == "SCMP_ACT_ERRNO" and v[1] is not None:
        return f"ERRNO({_errno.errorcode.get(v[1], v[1])})"
    return name


def prove(programs: Sequence[bpf.Program], model: RuncModel, abis: Sequence[Abi],
          tables: Mapping[str, AbiTable], absent: Sequence[str] = ()) -> Proof:
    """Compare the filters (oldest first) with `model` for every syscall of every ABI in `abis`."""
    counts = {"cases": 0, "stricter": 0, "errno": 0}
    weaker: list[Difference] = []
    try:
        for abi in abis:
            weaker += _prove_abi(programs, model, abi, tables[abi.name], counts)
    except bpf.Unsupported as e:
        return Proof(len(programs), tuple(len(p) for p in programs), tuple(a.name for a in abis), tuple(absent),
                     counts["cases"], (), 0, 0, unsupported=str(e))
    return Proof(len(programs), tuple(len(p) for p in programs), tuple(a.name for a in abis), tuple(absent),
                 counts["cases"], tuple(weaker), counts["stricter"], counts["errno"])


def _prove_abi(programs: Sequence[bpf.Program], model: RuncModel, abi: Abi, table: AbiTable,
               counts: dict[str, int]) -> list[Difference]:
    fixed = {bpf.ARCH: abi.audit_arch}
    lo, hi = abi.nr_base, abi.nr_base + NR_SPAN - 1
    nr_preds: list[tuple[int, str, int]] = [(M32, "ge", lo), (M32, "gt", hi)]
    for program in programs:
        nr_preds += [(p[1], p[2], p[3]) for p, _ in bpf.explore(program, fixed).preds if p[0] == bpf.NR]
    nr_preds += model.nr_preds(abi)
    nr_preds = list(dict.fromkeys(nr_preds))
    reps = [r for r in bpf.representatives(nr_preds) if lo <= r <= hi]
    runs = [bpf.explore(program, fixed, bpf.NR, reps) for program in programs]
    out: list[Difference] = []
    classes: dict[tuple[bool, ...], tuple[str, ...]] | None = None
    for nr in reps:
        preds = set(model.arg_preds(abi, nr))
        for r in runs:
            preds |= r.preds_for(nr)
        cases = _cases(preds, abi)
        by_args: list[tuple[str, tuple[str, int | None], tuple[str, int | None]]] = []
        for words in cases:
            data = (nr, abi.audit_arch, *words[2:])
            rets = [r.fixed_ret[nr] if nr in r.fixed_ret else bpf.run(p, data) for p, r in zip(programs, runs)]
            kernel = bpf.action(bpf.combine(reversed(rets)))
            args = [words[lw] | words[hw] << 32 for lw, hw in (bpf.arg_words(i) for i in range(6))]
            profile = model.verdict(abi, nr, args)
            counts["cases"] += 1
            pk, pp = precedence(kernel), precedence(profile)
            if pk > pp:
                by_args.append((_args_text(words, preds), kernel, profile))
            elif pk < pp:
                counts["stricter"] += 1
            elif kernel != profile:
                counts["errno"] += 1
        if by_args:
            if classes is None:
                classes = _classes(nr_preds, lo, hi, table)
            names = classes[_key(nr_preds, nr)]
            out += [Difference(abi.name, names, a, k, p) for a, k, p in by_args]
    return out


def _cases(preds: set[bpf.Pred], abi: Abi) -> list[tuple[int, ...]]:
    """seccomp_data words (nr and arch left 0) for one value of each class of argument values."""
    by_word: dict[int, list[tuple[int, str, int]]] = {}
    for word, mask, op, const in preds:
        if word in (bpf.NR, bpf.ARCH):
            continue
        if abi.high_zero and word in _HIGH_WORDS:
            continue
        by_word.setdefault(word, []).append((mask, op, const))
    choices = [(w, bpf.representatives(ps)) for w, ps in sorted(by_word.items())]
    total = 1
    for _, values in choices:
        total *= len(values)
    if total > MAX_CASES_PER_SYSCALL:
        raise bpf.Unsupported(-1, f"{total} classes of argument values for one syscall (limit "
                                  f"{MAX_CASES_PER_SYSCALL})")
    out = []
    for combo in itertools.product(*(values for _, values in choices)):
        words = [0] * bpf.WORDS
        for (w, _), v in zip(choices, combo):
            words[w] = v
        out.append(tuple(words))
    return out


_HIGH_WORDS = frozenset(bpf.arg_words(i)[1] for i in range(6)) | {3}


def _args_text(words: Sequence[int], preds: set[bpf.Pred]) -> str:
    used = {p[0] for p in preds}
    parts = []
    for i in range(6):
        lw, hw = bpf.arg_words(i)
        if lw in used or hw in used:
            parts.append(f"arg{i}={words[lw] | words[hw] << 32:#x}")
    return ", ".join(parts)


def _key(preds: Sequence[tuple[int, str, int]], nr: int) -> tuple[bool, ...]:
    return tuple(bpf.pred_holds(m, o, c, nr) for m, o, c in preds)


def _classes(preds: Sequence[tuple[int, str, int]], lo: int, hi: int,
             table: AbiTable) -> dict[tuple[bool, ...], tuple[str, ...]]:
    """Each class of syscall numbers (by its truth values) -> its members, by name where libseccomp knows one."""
    members: dict[tuple[bool, ...], list[int]] = {}
    for n in range(lo, hi + 1):
        members.setdefault(_key(preds, n), []).append(n)
    out = {}
    for key, nrs in members.items():
        names = [table.names[n] for n in nrs if n in table.names]
        unnamed = [n - lo for n in nrs if n not in table.names]
        if unnamed:
            names.append(_ranges(unnamed) + " (unknown to libseccomp)")
        out[key] = tuple(names)
    return out


def _ranges(nrs: Sequence[int]) -> str:
    parts, start, prev = [], nrs[0], nrs[0]
    for n in [*nrs[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"#{start}" if start == prev else f"#{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


_PROOFS: dict[tuple[object, ...], Proof] = {}
_PROOFS_KEPT = 256


def prove_raw(raw_programs: Sequence[bytes], section: Mapping[str, Any] | None, machine: str,
              absent_abis: Sequence[str] = ()) -> Proof:
    """`prove` for filters as the kernel returned them, against an OCI section, on a `machine` (uname -m).

    Proofs are kept by content: a node's containers mostly share a handful of filters and
    profiles, and the answer depends on nothing else.
    """
    key = (tuple(raw_programs), json.dumps(section, sort_keys=True, default=str), machine, tuple(absent_abis))
    if key in _PROOFS:
        return _PROOFS[key]
    abis_all = MACHINE_ABIS.get(machine)
    sizes = tuple(len(r) // 8 for r in raw_programs)
    if abis_all is None:
        return Proof(len(raw_programs), sizes, (), tuple(absent_abis), 0, (), 0, 0,
                     unsupported=f"no syscall tables for machine {machine}")
    programs = []
    for i, raw in enumerate(raw_programs):
        try:
            program = bpf.decode(raw)
            bpf.check(program)
        except bpf.BpfError as e:
            return Proof(len(raw_programs), sizes, (), tuple(absent_abis), 0, (), 0, 0,
                         unsupported=f"filter {i} is not a valid seccomp program: {e}")
        programs.append(program)
    tables = libseccomp_tables(abis_all)
    model = RuncModel(section, tables, abis_all[0])
    abis = [a for a in abis_all if a.name not in absent_abis]
    proof = prove(programs, model, abis, tables, [a.name for a in abis_all if a.name in absent_abis])
    if len(_PROOFS) >= _PROOFS_KEPT:
        _PROOFS.pop(next(iter(_PROOFS)))
    _PROOFS[key] = proof
    return proof


# ---------------------------------------------------------------------------------------------------------
# libseccomp's tables (read lazily, like sandbox.core.tables)
# ---------------------------------------------------------------------------------------------------------

_TABLES: dict[str, AbiTable] = {}


def libseccomp_tables(abis: Sequence[Abi]) -> dict[str, AbiTable]:
    """Syscall names and numbers per ABI, as libseccomp (and so runc) resolves them."""
    for abi in abis:
        if abi.name not in _TABLES:
            _TABLES[abi.name] = _load_table(abi)
    return {abi.name: _TABLES[abi.name] for abi in abis}


def _load_table(abi: Abi) -> AbiTable:
    import pyseccomp

    arch = int(getattr(pyseccomp.Arch, abi.scmp_arch.removeprefix("SCMP_ARCH_")))
    names: dict[int, str] = {}
    for nr in range(abi.nr_base, abi.nr_base + NR_SPAN):
        try:
            name = pyseccomp.resolve_syscall(arch, nr)
        except (ValueError, OSError):
            continue
        if isinstance(name, bytes) and name:
            names[nr] = name.decode()
    numbers = {name: nr for nr, name in names.items()}
    mux: dict[int, dict[int, str]] = {}
    from .tables import known_syscalls

    for name in known_syscalls():
        n = pyseccomp.resolve_syscall(arch, name)
        if isinstance(n, int) and -300 < n <= -100:  # libseccomp's pseudo numbers of socketcall/ipc sub-calls
            group, call = divmod(-n, 100)
            mux_nr = numbers.get("socketcall" if group == 1 else "ipc")
            if mux_nr is not None:
                mux.setdefault(mux_nr, {})[call] = name
            numbers.setdefault(name, n)
    return AbiTable(names, numbers, mux)
