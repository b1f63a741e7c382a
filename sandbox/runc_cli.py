"""runc's command-line surface, declared apart from behaviour (runc 1.1, urfave/cli).

Only what the shim needs to find its way through an argument vector: which
flags take a value (so a value is never mistaken for the container id), and
where the bundle and the container id are.  Go's flag parsing accepts `-flag`
and `--flag`, `--flag value` and `--flag=value`, so this does too.
"""

from __future__ import annotations

# Global flags: must come before the subcommand, as runc requires.
GLOBAL_VALUE_FLAGS = frozenset({"log", "log-format", "root", "criu", "rootless"})
GLOBAL_BOOL_FLAGS = frozenset({"debug", "systemd-cgroup", "help", "h", "version", "v"})

# Per subcommand: flags that take a value (bool flags need no listing).
VALUE_FLAGS: dict[str, frozenset[str]] = {
    "create": frozenset({"bundle", "b", "console-socket", "pid-file", "preserve-fds", "pidfd-socket"}),
    "run": frozenset({"bundle", "b", "console-socket", "pid-file", "preserve-fds", "pidfd-socket"}),
    "restore": frozenset({"bundle", "b", "console-socket", "image-path", "work-path", "manage-cgroups-mode",
                          "pid-file", "empty-ns", "lsm-profile", "lsm-mount-context", "parent-path",
                          "status-fd", "page-server"}),
    "exec": frozenset({"console-socket", "pidfd-socket", "cwd", "env", "e", "user", "u", "additional-gids", "g",
                       "process", "p", "pid-file", "process-label", "apparmor", "cap", "c", "preserve-fds",
                       "cgroup"}),
    "update": frozenset({"resources", "r", "blkio-weight", "cpu-period", "cpu-quota", "cpu-rt-period",
                         "cpu-rt-runtime", "cpu-share", "cpuset-cpus", "cpuset-mems", "kernel-memory",
                         "kernel-memory-tcp", "memory", "memory-reservation", "memory-swap", "pids-limit",
                         "l3-cache-schema", "mem-bw-schema", "cpu-idle"}),
}
# Subcommands the shim hardens; every other one passes straight through.
HARDENED = frozenset(VALUE_FLAGS)


class Flag:
    __slots__ = ("name", "value", "start", "end")

    def __init__(self, name: str, value: str | None, start: int, end: int) -> None:
        self.name = name  # without dashes
        self.value = value  # None for a bool flag given without =value
        self.start = start  # index of the flag in argv
        self.end = end  # index after its value


class Invocation:
    __slots__ = ("argv", "globals", "subcommand", "sub_index", "flags", "positionals")

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.globals: dict[str, str | None] = {}
        self.subcommand: str | None = None
        self.sub_index = -1
        self.flags: list[Flag] = []
        self.positionals: list[int] = []  # indices into argv

    def flag(self, *names: str) -> str | None:
        """The last value given for any of `names` (runc keeps the last)."""
        val = None
        for f in self.flags:
            if f.name in names:
                val = f.value if f.value is not None else "true"
        return val

    def flags_named(self, *names: str) -> list[Flag]:
        return [f for f in self.flags if f.name in names]

    @property
    def container_id(self) -> str | None:
        return self.argv[self.positionals[0]] if self.positionals else None


def _split(arg: str) -> tuple[str, str | None] | None:
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    name = arg.lstrip("-")
    if "=" in name:
        n, v = name.split("=", 1)
        return n, v
    return name, None


def parse(argv: list[str]) -> Invocation:
    inv = Invocation(argv=list(argv))
    i = 0
    while i < len(argv):
        if argv[i] == "--":  # Go's flag parsing: the end of the global flags
            i += 1
            break
        sp = _split(argv[i])
        if sp is None:
            break
        name, value = sp
        if name in GLOBAL_VALUE_FLAGS and value is None:
            value = argv[i + 1] if i + 1 < len(argv) else None
            i += 1
        inv.globals[name] = value
        i += 1
    if i >= len(argv):
        return inv
    inv.subcommand, inv.sub_index = argv[i], i
    value_flags = VALUE_FLAGS.get(argv[i], frozenset())
    i += 1
    only_positional = False
    while i < len(argv):
        arg = argv[i]
        sp = None if only_positional else _split(arg)
        if arg == "--" and not only_positional:
            only_positional = True
            i += 1
            continue
        if sp is None:
            if inv.subcommand == "exec":
                # exec keeps its arguments in order (the command follows the id)
                inv.positionals.extend(range(i, len(argv)))
                break
            # every other command: urfave/cli moves flags written after the arguments in front of
            # them, so runc honours `create ID --bundle B`; so must we
            inv.positionals.append(i)
            i += 1
            continue
        name, value = sp
        start = i
        if name in value_flags and value is None:
            value = argv[i + 1] if i + 1 < len(argv) else None
            i += 1
        inv.flags.append(Flag(name, value, start, i + 1))
        i += 1
    return inv
