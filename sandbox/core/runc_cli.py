"""runc 1.1.5's command line: its flags as data, and a parser that reads an argv as runc does.

The table (`GLOBAL_FLAGS`, `SUBCOMMAND_FLAGS`) is the one declaration of runc's flags in
sandbox: the parser, the shim's decisions (sandbox.core.runc_policy, sandbox.core.update), the
dispatchers' routing (csrc/sandbox-runc.c, bin/sandbox-runc, checked alike by
tests/unit/test_dispatcher.py) and the table in docs/security.md all come from it.  It is
taken from runc v1.1.5's main.go, create.go, run.go, restore.go, exec.go and update.go.

The parser is a model of what the runc installed here does with its argv: Debian builds runc
1.1.5 with Go 1.19's `flag` package and Debian's urfave/cli 1.22.9 (not the 1.22.1 that
upstream vendors; `apt-cache show runc`, Built-Using), and the real runc checks the model
(tests/e2e/test_runc_argv.py):

* global flags come before the subcommand; `-name` and `--name` are the same flag;
  `--name=value` and `--name value` (the next argument, whatever it looks like) for every
  flag but a bool, which takes a value only after `=` and then only one of Go's ParseBool
  spellings; `--` ends the flags; the first argument that is not a flag is the subcommand;
* a flag given twice: the last value wins, except slices (`--cap`, `--env`,
  `--additional-gids`, ...), which accumulate; both forms of one flag (`--cap` and `-c`)
  is an error ("Cannot use two forms of the same flag");
* integers are Go's ParseInt with base 0 (`0x10`, `010`, `1_000`) for int flags and base
  10 for int64 slices;
* every subcommand but `exec` and `ps` (SkipArgReorder) first has its arguments reordered
  by urfave/cli's reorderArgs, which moves the subcommand's flags, and the argument after one
  written without `=`, in front of the others, and a `--` in front of what it leaves (so
  `create ID --bundle B` works, and `run --detach ID --bundle B` does not);
* urfave/cli 1.22.9 reads a string slice without its first empty element (unless that is
  all there is), and gives a one-element int64 slice written with either name twice (its
  normalizeFlags copies the value onto the other name, which shares the slice);
* an unknown flag, a missing value or a bad bool/int is an error and runc runs nothing.

What runc would refuse is reported in `Invocation.error`, never guessed around.  No `re`,
`json` or `typing` here: this is imported on every `sandbox-runc create`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Kinds of flag value, as urfave/cli declares them.
BOOL = "bool"
STRING = "string"
INT = "int"  # cli.IntFlag: Go's ParseInt(s, 0, 64)
STRINGS = "string slice"  # cli.StringSliceFlag: accumulates
INT64S = "int64 slice"  # cli.Int64SliceFlag: accumulates, ParseInt(s, 10, 64)

# What sandbox does with a flag on a hardened subcommand.
FORWARD = "pass"  # parsed, validated as runc would, re-emitted once with its final value
PROFILE = "profile"  # decided by the profile; the decided value is what runc gets
REFUSE = "refuse"  # refused (in enforce mode) when it is turned on
HELP = "help"  # runc prints help or its version and does nothing else: passed through


class FlagSpec:
    """One runc flag: its names (the first is the canonical one), kind, sandbox's action and why."""

    __slots__ = ("names", "kind", "action", "why")

    def __init__(self, names: tuple[str, ...], kind: str, action: str, why: str) -> None:
        self.names = names
        self.kind = kind
        self.action = action
        self.why = why

    @property
    def name(self) -> str:
        return self.names[0]

    def __repr__(self) -> str:
        return f"FlagSpec({'/'.join(self.names)}, {self.kind}, {self.action})"


def _f(names: str, kind: str, action: str, why: str) -> FlagSpec:
    return FlagSpec(tuple(n.strip() for n in names.split(",")), kind, action, why)


_HELP = _f("help, h", BOOL, HELP, "runc shows the subcommand's help and runs nothing")
_PRESERVE_FDS = _f("preserve-fds", INT, PROFILE,
                   "each descriptor passed is inspected: a directory or block device (a handle outside the "
                   "root, the CVE-2024-21626 shape) is refused, a file goes through the profile's host-path "
                   "rule, sockets, pipes and the standard character devices pass")
_NO_PIVOT = _f("no-pivot", BOOL, REFUSE,
               "without pivot_root the old root stays reachable: a chroot is escaped with CAP_SYS_CHROOT or "
               "CAP_SYS_ADMIN")
_NO_NEW_KEYRING = _f("no-new-keyring", BOOL, REFUSE,
                     "the container would share the caller's (root's) session keyring")
_BUNDLE = _f("bundle, b", STRING, FORWARD, "the bundle whose config.json sandbox hardens; emitted as an absolute path")
_CONSOLE = _f("console-socket", STRING, FORWARD, "where runc sends the pty master; the engine's own socket")
_PID_FILE = _f("pid-file", STRING, FORWARD, "written by runc on the host for the engine")
_DETACH = _f("detach, d", BOOL, FORWARD, "runc's own process handling")
_NO_SUBREAPER = _f("no-subreaper", BOOL, FORWARD, "runc's own process handling")

GLOBAL_FLAGS: tuple[FlagSpec, ...] = (
    _f("debug", BOOL, FORWARD, "runc's logging"),
    _f("log", STRING, FORWARD, "runc's log file; sandbox writes its refusals there too"),
    _f("log-format", STRING, FORWARD, "runc's log format (runc refuses anything but text and json)"),
    _f("root", STRING, FORWARD, "runc's state directory; sandbox reads container state from the same one"),
    _f("criu", STRING, FORWARD, "the criu binary; only checkpoint and restore run it, and restore is refused"),
    _f("systemd-cgroup", BOOL, FORWARD, "the cgroup driver; the limits are the same"),
    _f("rootless", STRING, REFUSE,
       "true makes runc ignore cgroup permission errors, so limits could silently not apply; "
       "auto and false pass"),
    _f("help, h", BOOL, HELP, "runc shows its help and runs nothing"),
    _f("version, v", BOOL, HELP, "runc shows its version and runs nothing"),
)

SUBCOMMAND_FLAGS: dict[str, tuple[FlagSpec, ...]] = {
    "create": (
        _BUNDLE, _CONSOLE, _PID_FILE, _NO_PIVOT, _NO_NEW_KEYRING, _PRESERVE_FDS, _HELP,
    ),
    "run": (
        _BUNDLE, _CONSOLE, _DETACH, _f("keep", BOOL, FORWARD, "runc's own clean-up"), _PID_FILE, _NO_SUBREAPER,
        _NO_PIVOT, _NO_NEW_KEYRING, _PRESERVE_FDS, _HELP,
    ),
    "restore": (
        _CONSOLE,
        _f("image-path", STRING, FORWARD, "the checkpoint image (restore itself is refused)"),
        _f("work-path", STRING, FORWARD, "criu's work directory"),
        _f("tcp-established", BOOL, FORWARD, "criu option"),
        _f("ext-unix-sk", BOOL, FORWARD, "criu option"),
        _f("shell-job", BOOL, FORWARD, "criu option"),
        _f("file-locks", BOOL, FORWARD, "criu option"),
        _f("manage-cgroups-mode", STRING, FORWARD, "criu option"),
        _BUNDLE, _DETACH, _PID_FILE, _NO_SUBREAPER, _NO_PIVOT,
        _f("empty-ns", STRINGS, FORWARD, "criu option"),
        _f("auto-dedup", BOOL, FORWARD, "criu option"),
        _f("lazy-pages", BOOL, FORWARD, "criu option"),
        _f("lsm-profile", STRING, FORWARD, "criu option"),
        _f("lsm-mount-context", STRING, FORWARD, "criu option"),
        _HELP,
    ),
    "exec": (
        _CONSOLE,
        _f("cwd", STRING, PROFILE, "process.cwd, checked as config.json's is (runc_mitigations: never through "
                                   "/proc/*/fd, /proc/*/cwd, /proc/*/root or /dev/fd, CVE-2024-21626)"),
        _f("env, e", STRINGS, FORWARD, "appended to the process's environment"),
        _f("tty, t", BOOL, FORWARD, "process.terminal"),
        _f("user, u", STRING, PROFILE, "uid[:gid], checked as process.user (run_as_non_root); a value runc "
                                       "would wrap around 2^32 is refused"),
        _f("additional-gids, g", INT64S, FORWARD, "process.user.additionalGids; negative or above 2^32-1 refused"),
        _f("process, p", STRING, PROFILE, "the process file is read as runc reads it and hardened like "
                                          "config.json's process"),
        _DETACH, _PID_FILE,
        _f("process-label", STRING, PROFILE, "process.selinuxLabel: the container's label (the profile's, when "
                                             "it sets one); any other is refused"),
        _f("apparmor", STRING, PROFILE, "process.apparmorProfile: the container's profile (the profile's, when it "
                                        "sets one); any other is refused"),
        _f("no-new-privs", BOOL, PROFILE, "process.noNewPrivileges: true whenever the profile asks for it"),
        _f("cap, c", STRINGS, PROFILE, "added to the bounding, effective, permitted and ambient sets; what the "
                                       "profile does not allow is dropped"),
        _PRESERVE_FDS,
        _f("cgroup", STRINGS, PROFILE, "sub-cgroup to run in: a path leaving the container's cgroup ('..') is "
                                       "refused (runc 1.1.5 only checks a string prefix)"),
        _f("ignore-paused", BOOL, FORWARD, "exec into a paused container"),
        _HELP,
    ),
    "update": (
        _f("resources, r", STRING, PROFILE, "read as runc reads it (file or -), clamped, written to a new file"),
        _f("blkio-weight", INT, FORWARD, "blockIO.weight (refused above 65535, where runc wraps around)"),
        _f("cpu-period", STRING, PROFILE, "cpu.period: quota/period is kept within the profile's CPU maximum"),
        _f("cpu-quota", STRING, PROFILE, "cpu.quota, clamped to the profile's CPU maximum"),
        _f("cpu-share", STRING, FORWARD, "cpu.shares"),
        _f("cpu-rt-period", STRING, FORWARD, "cpu.realtimePeriod"),
        _f("cpu-rt-runtime", STRING, PROFILE, "cpu.realtimeRuntime: realtime time escapes the CFS quota; "
                                              "refused (non-zero) under a CPU maximum"),
        _f("cpuset-cpus", STRING, FORWARD, "cpu.cpus"),
        _f("cpuset-mems", STRING, FORWARD, "cpu.mems"),
        _f("kernel-memory", STRING, FORWARD, "ignored by runc 1.1.5 (a warning)"),
        _f("kernel-memory-tcp", STRING, FORWARD, "ignored by runc 1.1.5 (a warning)"),
        _f("memory", STRING, PROFILE, "memory.limit, clamped to the profile's maximum (-1 is unlimited)"),
        _f("memory-reservation", STRING, FORWARD, "memory.reservation (a soft limit)"),
        _f("memory-swap", STRING, PROFILE, "memory.swap, clamped to the profile's memory maximum"),
        _f("pids-limit", INT, PROFILE, "pids.limit, clamped to the profile's maximum (negative is unlimited)"),
        _f("l3-cache-schema", STRING, FORWARD, "Intel RDT; runc refuses it where RDT is not enabled"),
        _f("mem-bw-schema", STRING, FORWARD, "Intel RDT; runc refuses it where RDT is not enabled"),
        _HELP,
    ),
}

# Subcommands the shim hardens; every other one is passed to runc as it is.
HARDENED = frozenset(SUBCOMMAND_FLAGS)
# What sandbox does with a hardened subcommand as a whole, where that is more than its flags.
SUBCOMMAND_ACTIONS = {
    "restore": (REFUSE, "a checkpoint image restores its processes' credentials, capabilities and seccomp "
                        "filters as they were saved, which sandbox cannot check"),
}
# urfave/cli's SkipArgReorder (exec.go, ps.go): their arguments keep their order.
SKIP_ARG_REORDER = frozenset({"exec", "ps"})
# runc 1.1.5's other subcommands (and urfave/cli's own `help`/`h`): passed through untouched.
PASSTHROUGH = ("checkpoint", "delete", "events", "kill", "list", "pause", "ps", "resume", "spec", "start",
               "state", "features", "help", "h")
# Exact argument counts runc checks (checkArgs): exec needs at least one.
EXACT_ARGS = {"create": 1, "run": 1, "restore": 1, "update": 1}

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_bool(s: str) -> bool | None:
    """strconv.ParseBool; None where Go says "invalid syntax"."""
    if s in _GO_TRUE:
        return True
    if s in _GO_FALSE:
        return False
    return None


def _underscore_ok(s: str) -> bool:
    """strconv's underscoreOK: `_` only between digits (or after a base prefix)."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i, saw, hexa = 2, "0", s[1] in "xX"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
        i += 1
    return saw != "_"


def go_uint(s: str, base: int = 10, bits: int = 64) -> int | None:
    """strconv.ParseUint(s, base, bits) for base 0 or 10; None on a syntax or range error."""
    if not s:
        return None
    s0 = s
    base0 = base == 0
    if base0:
        base = 10
        if s[0] == "0":
            if len(s) >= 3 and s[1] in "bB":
                base, s = 2, s[2:]
            elif len(s) >= 3 and s[1] in "oO":
                base, s = 8, s[2:]
            elif len(s) >= 3 and s[1] in "xX":
                base, s = 16, s[2:]
            else:
                base, s = 8, s[1:]
    n = 0
    underscores = False
    for c in s:
        if c == "_" and base0:
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z" and c.isascii():
            d = ord(c.lower()) - 87
        else:
            return None
        if d >= base:
            return None
        n = n * base + d
    if n >= 1 << bits:
        return None
    if underscores and not _underscore_ok(s0):
        return None
    return n


def go_int(s: str, base: int = 10, bits: int = 64) -> int | None:
    """strconv.ParseInt(s, base, bits) (base 0 or 10); Atoi is base 10, 64 bits here."""
    if not s:
        return None
    neg = s[0] == "-"
    un = go_uint(s[1:] if s[0] in "+-" else s, base, bits)
    if un is None:
        return None
    cutoff = 1 << (bits - 1)
    if (not neg and un >= cutoff) or (neg and un > cutoff):
        return None
    return -un if neg else un


def _convert(spec: FlagSpec, value: str) -> tuple[bool, Any]:
    if spec.kind == BOOL:
        b = go_bool(value)
        return b is not None, b
    if spec.kind == INT:
        n = go_int(value, 0)
        return n is not None, n
    if spec.kind == INT64S:
        n = go_int(value, 10)
        return n is not None, n
    return True, value


_INDEX: dict[str, dict[str, FlagSpec]] = {}


def flag_index(sub: str | None) -> dict[str, FlagSpec]:
    """Every name (long and short) of the flags of `sub` (None: the global flags)."""
    key = sub or ""
    idx = _INDEX.get(key)
    if idx is None:
        specs = GLOBAL_FLAGS if sub is None else SUBCOMMAND_FLAGS[sub]
        idx = _INDEX[key] = {n: s for s in specs for n in s.names}
    return idx


class FlagSet:
    """What one Go FlagSet parse left: values by canonical name, the rest, or runc's error."""

    __slots__ = ("values", "rest", "error")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}  # canonical name -> bool | str | int | list (set flags only)
        self.rest: list[str] = []
        self.error: str | None = None


def parse_flags(args: list[str], index: dict[str, FlagSpec]) -> FlagSet:
    """Go's FlagSet.Parse over `args`, then urfave/cli's normalizeFlags (one form per flag)."""
    out = FlagSet()
    used: dict[str, set[str]] = {}  # canonical name -> the names it was written with
    i = 0
    while i < len(args):
        s = args[i]
        if len(s) < 2 or s[0] != "-":
            break
        minuses = 1
        if s[1] == "-":
            minuses = 2
            if len(s) == 2:  # "--" ends the flags
                i += 1
                break
        name = s[minuses:]
        if not name or name[0] in "-=":
            out.error = f"bad flag syntax: {s}"
            return out
        i += 1
        eq = name.find("=", 1)
        has_value = eq > 0
        value = name[eq + 1:] if has_value else ""
        if has_value:
            name = name[:eq]
        spec = index.get(name)
        if spec is None:
            out.error = f"flag provided but not defined: -{name}"
            return out
        if spec.kind == BOOL:
            value = value if has_value else "true"
        elif not has_value:
            if i >= len(args):
                out.error = f"flag needs an argument: -{name}"
                return out
            value = args[i]
            i += 1
        ok, v = _convert(spec, value)
        if not ok:
            kind = "boolean value" if spec.kind == BOOL else "value"
            out.error = f"invalid {kind} {value!r} for flag -{name}: parse error"
            return out
        used.setdefault(spec.name, set()).add(name)
        if spec.kind in (STRINGS, INT64S):
            out.values.setdefault(spec.name, []).append(v)
        else:
            out.values[spec.name] = v
    out.rest = args[i:]
    for canonical, names in used.items():  # normalizeFlags, after a successful parse
        if len(names) > 1:
            spec = index[canonical]
            first, second = [n for n in spec.names if n in names][:2]
            out.error = f"Cannot use two forms of the same flag: {second} {first}"
            return out
    for canonical, v in out.values.items():
        spec = index[canonical]
        if spec.kind == STRINGS and v != [""] and "" in v:
            v.remove("")  # lookupStringSlice drops the flag's default, "", once
        elif spec.kind == INT64S and len(v) == 1 and len(spec.names) > 1:
            v.append(v[0])  # copyFlag sets the other name to "5", appending to the shared slice
    return out


def _is_flag(index: dict[str, FlagSpec], arg: str) -> bool:
    """urfave/cli 1.22.9's argIsFlag: one of the subcommand's flags, by a loose reading of its name."""
    if arg in ("-", "--") or not arg.startswith("-"):
        return False
    if arg.startswith("--"):
        arg = arg.replace("-", "", 2)
    if arg.startswith("-"):
        arg = arg.replace("-", "", 1)
    return arg.split("=")[0] in index


def reorder_args(args: list[str], index: dict[str, FlagSpec]) -> list[str]:
    """urfave/cli 1.22.9's reorderArgs: the subcommand's flags (and what may be their values) first."""
    flags: list[str] = []
    rest: list[str] = []
    may_be_value = False
    for i, arg in enumerate(args):
        if may_be_value and not _is_flag(index, arg):
            may_be_value = False
            flags.append(arg)
        elif arg == "--":
            rest = ["--", *rest, *args[i + 1:]]
            break
        elif _is_flag(index, arg):
            flags.append(arg)
            may_be_value = "=" not in arg
        else:
            rest.append(arg)
    return flags + rest


class Invocation:
    """An argv as runc 1.1.5 reads it.

    `route` is what the dispatchers decide: "hardened" when runc would run create, run,
    restore, exec or update; otherwise "passthrough" (another subcommand, no subcommand,
    help or version, or global flags runc refuses before running anything).
    """

    __slots__ = ("argv", "global_values", "global_error", "global_help", "help", "subcommand", "options", "args",
                 "error")

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)
        self.global_values: dict[str, Any] = {}
        self.global_error: str | None = None  # runc refuses the global flags and runs nothing
        self.global_help = False  # -h/--help/-v/--version: runc prints and runs nothing
        self.help = False  # the subcommand's --help: runc prints its help and runs nothing
        self.subcommand: str | None = None
        self.options: dict[str, Any] = {}  # the subcommand's flags that were set, by canonical name
        self.args: list[str] = []  # the subcommand's positional arguments, as runc sees them
        self.error: str | None = None  # runc would refuse this command line (subcommand level)

    @property
    def route(self) -> str:
        if self.global_error or self.global_help or self.subcommand not in HARDENED:
            return "passthrough"
        return "hardened"

    @property
    def globals(self) -> dict[str, str]:
        """The global flags that were set, as text (bools as "true"/"false")."""
        return {k: (("true" if v else "false") if isinstance(v, bool) else v) for k, v in self.global_values.items()}

    @property
    def container_id(self) -> str | None:
        return self.args[0] if self.args else None

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def global_argv(self) -> list[str]:
        """The global flags as one canonical occurrence each, in the table's order."""
        return _emit(GLOBAL_FLAGS, self.global_values)

    def canonical(self, options: dict[str, Any] | None = None, args: list[str] | None = None) -> list[str]:
        """globals, subcommand, each flag once (slices once per element), `--` if needed, arguments."""
        assert self.subcommand in HARDENED
        opts = self.options if options is None else options
        rest = self.args if args is None else args
        out = [*self.global_argv(), self.subcommand, *_emit(SUBCOMMAND_FLAGS[self.subcommand], opts)]
        if rest and rest[0].startswith("-"):
            out.append("--")
        return out + list(rest)


def _emit(specs: tuple[FlagSpec, ...], values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for spec in specs:
        if spec.name not in values or spec.action == HELP and not values[spec.name]:
            continue
        v = values[spec.name]
        if spec.kind == BOOL:
            out.append(f"--{spec.name}" if v else f"--{spec.name}=false")
        elif spec.kind in (STRINGS, INT64S):
            if spec.kind == STRINGS and v != [""] and "" in v:
                v = ["", *v]  # urfave/cli will drop one empty element
            out.extend(f"--{spec.name}={x}" for x in v)
        else:
            out.append(f"--{spec.name}={v}")
    return out


def parse(argv: list[str]) -> Invocation:
    inv = Invocation(argv)
    g = parse_flags(list(argv), flag_index(None))
    inv.global_values = g.values
    if g.error is None:
        # urfave/cli: -h/--help and -v/--version make runc print and return
        inv.global_help = bool(g.values.get("help") or g.values.get("version"))
        if g.rest:
            inv.subcommand = g.rest[0]
    else:
        inv.global_error = g.error
        return inv
    if inv.global_help or inv.subcommand not in HARDENED:
        return inv
    sub = inv.subcommand
    tail = g.rest[1:]
    if sub not in SKIP_ARG_REORDER:
        tail = reorder_args(tail, flag_index(sub))
    s = parse_flags(tail, flag_index(sub))
    inv.options, inv.args, inv.error = s.values, s.rest, s.error
    if s.error is None and g.values.get("log-format", "text") not in ("", "text", "json"):
        inv.error = f"invalid log-format: {g.values['log-format']}"  # runc's Before hook, before any subcommand
    elif s.error is None:
        if s.values.get("help"):
            inv.help = True
        elif sub in EXACT_ARGS and len(s.rest) != EXACT_ARGS[sub]:
            inv.error = f"runc: {sub!r} requires exactly 1 argument(s)"
        elif sub == "exec" and not s.rest:
            inv.error = "runc: 'exec' requires a minimum of 1 argument(s)"
        elif sub == "exec" and len(s.rest) == 1 and not s.values.get("process"):
            inv.error = "process args cannot be empty"
        elif not s.rest[0]:
            inv.error = "container id cannot be empty"
    return inv
