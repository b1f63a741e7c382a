"""What a seccomp rule table does with one system call: the one evaluator of such tables.

The escape suite, the transform's property tests and `verify` all ask the same question —
"what does this filter answer for syscall S with arguments A?" — so they share this code.
Pure: tables in, verdicts out.

A table is the transform's form of an OCI `linux.seccomp` section (see
`sandbox.core.transform.seccomp`): a default rule and, per syscall name, a list of rules, each
`(action, errnoRet, conditions)` with conditions `(index, value, valueTwo, op)`.  The
semantics are runc 1.1's, as it hands the section to libseccomp
(libcontainer/seccomp/seccomp_linux.go):

- a rule whose action is the default action (same errno) is not installed at all;
- the rules of one syscall are ORed; the conditions of one rule are ANDed;
- except that a rule with more than one condition on the same argument is split by runc into
  one rule per condition ("revert to old behavior"), so its conditions are ORed;
- arguments are compared as unsigned 64-bit values; `SCMP_CMP_MASKED_EQ` is
  `(arg & value) == (valueTwo & value)` (libseccomp masks valueTwo too, so bits of valueTwo
  outside the mask do not make the rule unmatchable); `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE` without
  errnoRet return EPERM;
  `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`.

Rules that overlap with different actions have no order-free meaning: libseccomp 2.5 builds
one decision tree per syscall and the node it checks first wins (an unconditional rule, then
higher argument numbers, then EQ/NE/MASKED_EQ before LT/LE before GT/GE — an allowing rule
on arg 1 beats a denying one on arg 0, a denying EQ beats an allowing LT).  This module reads
such overlaps as the strictest matching action, so that a filter read here is never looser
than the kernel's; `conflicts` says when a table has them.  sandbox never emits them.

The second half is the algebra of argument conditions the transform uses to intersect two
filters exactly: atoms (the values of one argument a set of conditions lets through; `atom_*`,
and `cond_and`/`cond_not`/`cond_subset`/`cond_meets` on runc's conditions) and boxes (one rule's
atoms, one per argument; `box_*`).
"""

from __future__ import annotations

from . import tables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    Cond = tuple[int, int, int, str]  # index, value, valueTwo, op
    Rule = tuple[str, int | None, tuple[Cond, ...]]  # action, errno, conditions
    Verdict = tuple[str, int | None]  # action, errno (None unless the action carries one)

MASK64 = (1 << 64) - 1
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
EQ, NE, LT, LE, GT, GE, MASKED_EQ = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
                                     "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ")


def cond_matches(cond: Cond, args: Mapping[int, int] | Sequence[int]) -> bool:
    """Whether one condition holds for the call's arguments (missing arguments count as 0)."""
    index, value, value_two, op = cond
    if isinstance(args, dict):
        raw = args.get(index, 0)
    else:
        raw = args[index] if index < len(args) else 0
    a = raw & MASK64
    v = value & MASK64
    if op == EQ:
        return a == v
    if op == NE:
        return a != v
    if op == LT:
        return a < v
    if op == LE:
        return a <= v
    if op == GT:
        return a > v
    if op == GE:
        return a >= v
    if op == MASKED_EQ:
        return (a & v) == (value_two & v)  # libseccomp masks the datum too (_db_node_mask_fixup)
    raise ValueError(f"unknown seccomp operator {op!r}")


def action_of(action: str, errno: int | None) -> Verdict:
    """The action libseccomp really installs for an OCI action and errnoRet (runc's getAction)."""
    if action in _WITH_ERRNO:
        return action, 1 if errno is None else errno
    if action == "SCMP_ACT_KILL":
        return "SCMP_ACT_KILL_THREAD", None
    return action, None


def runc_rules(rule: Rule) -> list[Rule]:
    """The rules runc really installs for one OCI rule (split when an argument repeats)."""
    action, errno, conds = rule
    indexes = [c[0] for c in conds]
    if len(set(indexes)) == len(indexes):
        return [rule]
    return [(action, errno, (c,)) for c in conds]


def installed(default: Rule, rules: Iterable[Rule]) -> list[Rule]:
    """The rules runc installs for one syscall: split where an argument repeats, and none whose
    action is the default action (runc skips those as redundant)."""
    dflt = action_of(default[0], default[1])
    out: list[Rule] = []
    for r in rules:
        if action_of(r[0], r[1]) != dflt:
            out.extend(runc_rules(r))
    return out


def rule_matches(rule: Rule, args: Mapping[int, int] | Sequence[int]) -> bool:
    """Whether `rule`, as runc installs it, matches a call with `args`."""
    return any(all(cond_matches(c, args) for c in r[2]) for r in runc_rules(rule))


def stricter(a: Verdict, b: Verdict) -> Verdict:
    """The stricter of two verdicts by SCMP_ACT rank; `a` on a tie."""
    rank = tables.SECCOMP_ACTION_RANK
    return b if rank.get(b[0], 7) > rank.get(a[0], 7) else a


def strength(v: Verdict) -> tuple[int, str, int]:
    """A total order of verdicts, strictest last: the rank, then (for ties inside one filter) the
    action's name and errno, so that overlapping rules are read the same whatever their order."""
    return tables.SECCOMP_ACTION_RANK.get(v[0], 7), v[0], v[1] or 0


def verdict(default: Rule, rules: Iterable[Rule], args: Mapping[int, int] | Sequence[int] = ()) -> Verdict:
    """The action (and errno) a filter with `default` and this syscall's `rules` gives the call.

    The strictest matching installed rule wins (by `strength`; see the module docstring for
    overlaps); no match, the default.
    """
    out: Verdict | None = None
    for r in installed(default, rules):
        if all(cond_matches(c, args) for c in r[2]):
            v = action_of(r[0], r[1])
            if out is None or strength(v) > strength(out):
                out = v
    return out if out is not None else action_of(default[0], default[1])


def evaluate(default: Rule, table: Mapping[str, list[Rule]], syscall: str,
             args: Mapping[int, int] | Sequence[int] = ()) -> Verdict:
    """The verdict of the whole table for `syscall(args)`."""
    return verdict(default, table.get(syscall, ()), args)


def allows(v: Verdict) -> bool:
    """Whether the call runs (SCMP_ACT_NOTIFY counts: a supervisor may let it)."""
    return v[0] in tables.SECCOMP_PERMISSIVE_ACTIONS


def evaluate_section(section: Mapping[str, object] | None, syscall: str,
                     args: Mapping[int, int] | Sequence[int] = ()) -> Verdict:
    """The verdict of an OCI `linux.seccomp` section (None: no filter, everything runs)."""
    if not section:
        return "SCMP_ACT_ALLOW", None
    from .transform.seccomp import bundle_filter

    default, table = bundle_filter(dict(section))
    return evaluate(default, table, syscall, args)


def section_table(section: Mapping[str, object]) -> tuple[Rule, dict[str, list[Rule]]]:
    """(default rule, per-syscall rules) of an OCI `linux.seccomp` section, to evaluate many calls with `evaluate`."""
    from .transform.seccomp import bundle_filter

    return bundle_filter(dict(section))


def conflicts(default: Rule, rules: Iterable[Rule]) -> list[tuple[Rule, Rule]]:
    """Pairs of installed rules of one syscall that some call matches with different actions.

    libseccomp resolves those by its tree order, not by strictness; `verdict` reads them as
    the strictest.  Empty for every table the transform emits.
    """
    inst = installed(default, rules)
    out = []
    for i, a in enumerate(inst):
        for b in inst[i + 1:]:
            if action_of(a[0], a[1]) == action_of(b[0], b[1]):
                continue
            x, y = box_of(a[2]), box_of(b[2])
            if x is not None and y is not None and box_meets(x, y):
                out.append((a, b))
    return out


# -- the algebra of conditions on one argument -------------------------------------------------------
#
# A set of values of one argument is an atom (lo, hi, mask, value, excluded): the x in [lo, hi] with
# x & mask == value, other than the few values in `excluded`.  Every runc condition is one atom
# (EQ, LT, LE, GT, GE a range; NE one excluded value; MASKED_EQ a mask) and atoms are closed under
# intersection, so conjunctions never multiply; only complements and the final translation back
# into runc's conditions (`atom_conds`) make several.  Atoms are kept normal: [lo, hi] is the set's
# exact extent, mask bits the range already fixes are dropped, `excluded` holds only values
# strictly inside that would otherwise be in the set.

if TYPE_CHECKING:
    Atom = tuple[int, int, int, int, tuple[int, ...]]  # lo, hi, mask, value, excluded (sorted)
    ArgBox = dict[int, Atom]  # one rule's conditions as atoms, at most one per argument

EVERY: Atom = (0, MASK64, 0, 0, ())


def next_masked(x: int, m: int, v: int) -> int | None:
    """The smallest y >= x with y & m == v (v within m), or None."""
    if x > MASK64:
        return None
    y = (x & ~m) | v
    if y == x:
        return x
    p = (y ^ x).bit_length() - 1  # the highest bit where they differ is a mask bit
    low = (1 << p) - 1
    if y >> p & 1:  # forced up there: the free bits below go to 0
        return (y & ~low) | (v & low)
    above = (MASK64 ^ m) & ~((low << 1) | 1) & ~y  # a free 0 bit above p to carry into
    if not above:
        return None
    q = above & -above
    below = q - 1
    return ((y | q) & ~below) | (v & below)


def prev_masked(x: int, m: int, v: int) -> int | None:
    """The largest y <= x with y & m == v (v within m), or None."""
    if x < 0:
        return None
    y = (x & ~m) | v
    if y == x:
        return x
    p = (y ^ x).bit_length() - 1
    low = (1 << p) - 1
    free = MASK64 ^ m
    if not y >> p & 1:  # forced down there: the free bits below go to 1
        return (y & ~low) | (free & low) | (v & low)
    above = free & ~((low << 1) | 1) & y  # a free 1 bit above p to borrow from
    if not above:
        return None
    q = above & -above
    below = q - 1
    return (y & ~q & ~below) | (free & below) | (v & below)


def _norm(lo: int, hi: int, m: int, v: int, excluded: Iterable[int]) -> Atom | None:
    """The normal atom of a set, or None when it is empty."""
    if v & ~m or lo > hi:
        return None
    ex = set(excluded)
    first = next_masked(lo, m, v)
    while first is not None and first in ex and first < hi:
        first = next_masked(first + 1, m, v)
    if first is None or first > hi or first in ex:
        return None
    last = prev_masked(hi, m, v)
    while last is not None and last in ex:
        last = prev_masked(last - 1, m, v)
    if last is None or last < first:
        return None
    if first == last:
        return (first, first, 0, 0, ())
    # mask bits above the highest bit that varies in [first, last] are fixed by the range itself
    varying = (1 << (first ^ last).bit_length()) - 1
    m &= varying
    v &= varying
    return (first, last, m, v, tuple(sorted(x for x in ex if first < x < last and x & m == v)))


def atom_of(c: Cond) -> Atom | None:
    """The values one condition lets through (None: no value)."""
    _, v, v2, op = c
    v &= MASK64
    if op == EQ:
        return (v, v, 0, 0, ())
    if op == NE:
        return _norm(0, MASK64, 0, 0, (v,))
    if op == LT:
        return (0, v - 1, 0, 0, ()) if v else None
    if op == LE:
        return (0, v, 0, 0, ())
    if op == GT:
        return (v + 1, MASK64, 0, 0, ()) if v != MASK64 else None
    if op == GE:
        return (v, MASK64, 0, 0, ())
    if op == MASKED_EQ:
        return _norm(0, MASK64, v, v2 & v, ())
    raise ValueError(f"unknown seccomp operator {op!r}")


def atom_contains(a: Atom, x: int) -> bool:
    """Whether value `x` is in `a`."""
    lo, hi, m, v, ex = a
    return lo <= x <= hi and x & m == v and x not in ex


def atom_and(a: Atom, b: Atom) -> Atom | None:
    """The values in both (None: none)."""
    if a == EVERY or a == b:
        return b
    if b == EVERY:
        return a
    if (a[3] ^ b[3]) & a[2] & b[2]:
        return None
    return _norm(max(a[0], b[0]), min(a[1], b[1]), a[2] | b[2], a[3] | b[3], a[4] + b[4])


def atom_not(a: Atom) -> list[Atom]:
    """The values not in `a`, as ORed atoms."""
    lo, hi, m, v, ex = a
    out: list[Atom] = []
    if lo:
        out.append((0, lo - 1, 0, 0, ()))
    if hi != MASK64:
        out.append((hi + 1, MASK64, 0, 0, ()))
    rest = m
    while rest:  # some mask bit differs from value's (overlapping the ranges above does no harm)
        bit = rest & -rest
        rest ^= bit
        out.append(_norm(0, MASK64, bit, bit & ~v, ()))  # type: ignore[arg-type]  # never empty
    out.extend((x, x, 0, 0, ()) for x in ex)
    return out


def atom_subset(a: Atom, b: Atom) -> bool:
    """Whether every value in `a` is in `b`."""
    if b == EVERY or a == b:
        return True
    if a[0] < b[0] or a[1] > b[1]:
        return False
    rest = b[2] & ~(a[2] & ~(a[3] ^ b[3]))  # mask bits of b that a does not already fix the same way
    while rest:
        bit = rest & -rest
        rest ^= bit
        if atom_and(a, (0, MASK64, bit, bit & ~b[3], ())) is not None:
            return False
    return not any(atom_contains(a, x) for x in b[4])


def _fixed(a: Atom) -> tuple[int, int]:
    """(mask, value) of every bit all of `a`'s values share that its mask or range fixes."""
    lo, hi, m, v, _ = a
    if lo == hi:
        return MASK64, lo
    varying = (1 << (lo ^ hi).bit_length()) - 1
    return m | (MASK64 ^ varying), v | (lo & ~varying)


def atom_union(a: Atom, b: Atom) -> Atom | None:
    """`a` or `b` as one atom, when one atom is exactly their union; else None."""
    if atom_subset(a, b):
        return b
    if atom_subset(b, a):
        return a
    (ma, va), (mb, vb) = _fixed(a), _fixed(b)
    m = ma & mb & ~(va ^ vb)
    ex = [x for x in a[4] + b[4] if not atom_contains(a, x) and not atom_contains(b, x)]
    hull = _norm(min(a[0], b[0]), max(a[1], b[1]), m, va & m, ex)
    if hull is None:
        return None
    for n in atom_not(a):  # the hull less a must lie in b
        rest = atom_and(hull, n)
        if rest is not None and not atom_subset(rest, b):
            return None
    return hull


def _blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] as the fewest aligned power-of-two blocks, each (mask, value): x & mask == value."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 64
        while lo + size - 1 > hi:
            size >>= 1
        out.append((MASK64 ^ (size - 1), lo))
        lo += size
    return out


# A piece is a set one runc condition can say: (lo, hi, 0, 0) a range touching 0 or 2**64-1 or a
# point, (0, 2**64-1, mask, value) a mask set; (lo, hi, 0, 0) inside is split into blocks last.
if TYPE_CHECKING:
    Piece = tuple[int, int, int, int]


def _pieces(lo: int, hi: int, m: int, v: int) -> list[Piece]:
    if not m:
        return [(lo, hi, 0, 0)]
    if lo == next_masked(0, m, v) and hi == prev_masked(MASK64, m, v):
        return [(0, MASK64, m, v)]  # the range adds nothing to the mask
    return [(0, MASK64, bm | m, bv | v) for bm, bv in _blocks(lo, hi) if not ((bv ^ v) & bm & m)]


def _piece_minus(piece: Piece, x: int) -> list[Piece]:
    lo, hi, m, v = piece
    if not (lo <= x <= hi and x & m == v):
        return [piece]
    if not m:
        return [p for p in ((lo, x - 1, 0, 0), (x + 1, hi, 0, 0)) if p[0] <= p[1]]
    out = []
    free = MASK64 ^ m
    while free:  # the mask set less x: some free bit differs from x's
        bit = free & -free
        free ^= bit
        out.append((0, MASK64, m | bit, v | (bit & ~x)))
    return out


def _piece_conds(index: int, piece: Piece, ranges: bool = True) -> list[Cond]:
    lo, hi, m, v = piece
    if m:
        return [(index, v, 0, EQ) if m == MASK64 else (index, m, v, MASKED_EQ)]
    if lo == hi:
        return [(index, lo, 0, EQ)]
    if lo == 0 and hi == MASK64:
        return []
    if ranges and lo == 0:
        return [(index, hi, 0, LE)]
    if ranges and hi == MASK64:
        return [(index, lo, 0, GE)]
    return [(index, bv, 0, EQ) if bm == MASK64 else (index, bm, bv, MASKED_EQ) for bm, bv in _blocks(lo, hi)]


def atom_conds(index: int, a: Atom, ranges: bool = True) -> list[Cond]:
    """The fewest runc conditions on argument `index`, to be ORed (one rule each), that say exactly `a`.

    One when one can: a range touching 0 or 2**64-1 (LE, GE), a point (EQ), a mask (MASKED_EQ),
    all values but one (NE); otherwise aligned blocks (MASKED_EQ) for a range inside, and for a
    mask set or range that must lose a few values.  [] for every value (no condition needed).
    Without `ranges`, no LT/LE/GT/GE at all: blocks instead.
    """
    if a == EVERY:
        return []
    lo, hi, m, v, ex = a
    if len(ex) == 1 and not m and lo == 0 and hi == MASK64:
        return [(index, ex[0], 0, NE)]
    out = _minus_points(_pieces(lo, hi, m, v), ex, index, ranges)
    if m:  # the whole mask set less the few of its values outside [lo, hi] may be shorter
        outside = _outside(lo, hi, m, v)
        if outside is not None:
            other = _minus_points([(0, MASK64, m, v)], outside + ex, index, ranges)
            if len(other) < len(out):
                return other
    return out


def _minus_points(pieces: list[Piece], points: Iterable[int], index: int, ranges: bool = True) -> list[Cond]:
    for x in points:
        pieces = [q for p in pieces for q in _piece_minus(p, x)]
    return [c for p in pieces for c in _piece_conds(index, p, ranges)]


def _outside(lo: int, hi: int, m: int, v: int, most: int = 4) -> tuple[int, ...] | None:
    """The values with x & m == v below lo or above hi, if there are at most `most`."""
    out: list[int] = []
    x = next_masked(0, m, v)
    while x is not None and x < lo:
        out.append(x)
        x = next_masked(x + 1, m, v)
        if len(out) > most:
            return None
    x = prev_masked(MASK64, m, v)
    while x is not None and x > hi:
        out.append(x)
        x = prev_masked(x - 1, m, v)
        if len(out) > most:
            return None
    return tuple(out)


def cond_meets(a: Cond, b: Cond) -> bool:
    """Whether some value satisfies both conditions (both on the same argument)."""
    x, y = atom_of(a), atom_of(b)
    return x is not None and y is not None and atom_and(x, y) is not None


def cond_subset(a: Cond, b: Cond) -> bool:
    """Whether every value that satisfies `a` satisfies `b` (both on the same argument)."""
    x, y = atom_of(a), atom_of(b)
    return x is None or (y is not None and atom_subset(x, y))


def cond_and(a: Cond, b: Cond) -> list[Cond]:
    """Both conditions at once, as ORed conditions on the same argument; [] when no value passes.

    One condition when one can say it (masks ORed for MASKED_EQ, the tighter bounds of two ranges,
    EQ decided by evaluating the other side); otherwise the fewest whose union is exactly the
    intersection (see `atom_conds`).  An input that is itself the intersection comes back as it is.
    """
    x, y = atom_of(a), atom_of(b)
    if x is None or y is None:
        return []
    both = atom_and(x, y)
    if both is None:
        return []
    if both == x:
        return [a]
    if both == y:
        return [b]
    return atom_conds(a[0], both)


def cond_not(c: Cond) -> list[Cond]:
    """The values `c` rejects, as ORed conditions on the same argument ([] when it takes every value)."""
    x = atom_of(c)
    if x is None:
        return [(c[0], 0, 0, GE)]
    return [d for n in atom_not(x) for d in atom_conds(c[0], n)]


# -- boxes: one installed rule's conditions as atoms, at most one per argument -----------------------

def box_of(conds: Iterable[Cond]) -> ArgBox | None:
    """The box of one rule's conditions, ANDed (None when no call matches it)."""
    box: ArgBox = {}
    for c in conds:
        a = atom_of(c)
        if a is not None and c[0] in box:
            a = atom_and(box[c[0]], a)
        if a is None:
            return None
        if a == EVERY:
            box.pop(c[0], None)
        else:
            box[c[0]] = a
    return box


def box_meets(a: ArgBox, b: ArgBox) -> bool:
    """Whether some call matches both boxes."""
    return all(atom_and(a[k], x) is not None for k, x in b.items() if k in a)


def box_subset(a: ArgBox, b: ArgBox) -> bool:
    """Whether every call matching `a` matches `b`."""
    return all(k in a and atom_subset(a[k], x) for k, x in b.items())


def box_union(a: ArgBox, b: ArgBox) -> ArgBox | None:
    """`a` or `b` as one box (they differ in one argument whose atoms unite), else None."""
    if a.keys() != b.keys():
        return None
    diff = [k for k in a if a[k] != b[k]]
    if len(diff) != 1:
        return None
    k = diff[0]
    u = atom_union(a[k], b[k])
    if u is None:
        return None
    out = dict(a)
    if u == EVERY:
        del out[k]
    else:
        out[k] = u
    return out


def box_and(a: ArgBox, b: ArgBox) -> ArgBox | None:
    """The calls matching both boxes (None: none)."""
    out = dict(a)
    for k, x in b.items():
        y = a.get(k)
        if y is None:
            out[k] = x
        else:
            both = atom_and(y, x)
            if both is None:
                return None
            out[k] = both
    return out


def box_minus(a: ArgBox, b: ArgBox) -> list[ArgBox]:
    """The calls matching `a` but not `b`, as ORed boxes."""
    if not box_meets(a, b):
        return [a]
    out: list[ArgBox] = []
    for k, x in b.items():
        y = a.get(k, EVERY)
        if atom_subset(y, x):
            continue
        for n in atom_not(x):
            both = atom_and(y, n)
            if both is not None:
                out.append({**a, k: both})
    return out


def box_conds(box: ArgBox, spelling: Mapping[tuple[int, Atom], Cond] | None = None) -> list[tuple[Cond, ...]]:
    """The rules (conditions ANDed, one per argument, sorted) whose OR is exactly `box`.

    `spelling` maps (index, atom) to a condition as an input wrote it, to emit that one.
    """
    out: list[tuple[Cond, ...]] = [()]
    for k in sorted(box):
        known = spelling.get((k, box[k])) if spelling else None
        conds = [known] if known is not None else atom_conds(k, box[k])
        if conds:
            out = [r + (c,) for r in out for c in conds]
    return out


def box_size(box: ArgBox) -> int:
    """How many rules `box_conds` makes of `box` (at most)."""
    n = 1
    for k, a in box.items():
        n *= max(1, len(atom_conds(k, a)))
    return n
