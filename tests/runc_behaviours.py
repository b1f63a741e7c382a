"""A written table of how runc 1.1.5 reads command lines, for the parser's tests.

Each row: an argv and what runc does with it.  tests/unit/test_runc_cli.py checks
sandbox.core.runc_cli against every row; tests/e2e/test_runc_argv.py runs every row through the
real runc (container "c1" does not exist there, the working directory is empty, `{root}` is a
fresh state directory) and checks that runc agrees: parses it and goes on to the subcommand's
work, prints help, or refuses it as a usage error.

Expectations:
  ("run", sub, options, args)   runc runs `sub` with these flag values (canonical names) and args
  ("passthrough", sub)          runc runs no hardened subcommand (`sub`: the one it runs, or None)
  ("usage", text)               runc refuses the command line; `text` is in its message
  ("help", sub)                 runc prints the help of `sub` and runs nothing
  ("later", sub, text)          runc parses it but refuses later on its own (`text` in sandbox's message)
"""

ROWS = [
    # -- global flags: Go's flag package until the first non-flag, which is the subcommand
    (["--root", "{root}", "--log=/dev/null", "-log-format", "json", "--debug", "create", "c1"],
     ("run", "create", {}, ["c1"])),
    (["--log", "exec", "state", "c1"], ("passthrough", "state")),
    (["--root", "exec", "update", "c1"], ("run", "update", {}, ["c1"])),
    (["--help=false", "exec", "c1", "sh"], ("run", "exec", {}, ["c1", "sh"])),
    (["--help", "exec", "c1", "sh"], ("passthrough", "exec")),
    (["-v", "exec", "c1", "sh"], ("passthrough", "exec")),
    (["-v=0", "exec", "c1", "sh"], ("run", "exec", {}, ["c1", "sh"])),
    (["-h=0", "--help=0", "exec", "c1", "sh"], ("passthrough", None)),
    (["--foo", "exec", "c1", "sh"], ("passthrough", None)),
    (["--", "exec", "c1", "sh"], ("run", "exec", {}, ["c1", "sh"])),
    (["--debug=maybe", "exec", "c1", "sh"], ("passthrough", None)),
    (["--debug=T", "-systemd-cgroup=0", "exec", "c1", "sh"], ("run", "exec", {}, ["c1", "sh"])),
    (["---log", "x", "exec", "c1", "sh"], ("passthrough", None)),
    (["-", "exec", "c1", "sh"], ("passthrough", "-")),
    (["--rootless", "exec", "c1", "sh"], ("passthrough", "c1")),
    (["--log"], ("passthrough", None)),
    (["--criu=", "--", "--", "exec"], ("passthrough", "--")),
    # -- exec: no reordering; the command after the container id is kept verbatim
    (["exec", "--no-new-privs", "--no-new-privs=false", "c1", "sh"],
     ("run", "exec", {"no-new-privs": False}, ["c1", "sh"])),
    (["exec", "--no-new-privs=0", "--no-new-privs", "c1", "sh"],
     ("run", "exec", {"no-new-privs": True}, ["c1", "sh"])),
    (["exec", "--no-new-privs", "false", "c1", "sh"], ("run", "exec", {"no-new-privs": True}, ["false", "c1", "sh"])),
    (["exec", "--cap", "CAP_SYS_ADMIN", "--cap=CAP_NET_RAW", "c1", "sh"],
     ("run", "exec", {"cap": ["CAP_SYS_ADMIN", "CAP_NET_RAW"]}, ["c1", "sh"])),
    (["exec", "-c", "CAP_SYS_ADMIN", "-c", "CAP_NET_RAW", "c1", "sh"],
     ("run", "exec", {"cap": ["CAP_SYS_ADMIN", "CAP_NET_RAW"]}, ["c1", "sh"])),
    (["exec", "-c", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW", "c1", "sh"], ("usage", "two forms")),
    (["exec", "--cap=", "c1", "sh"], ("run", "exec", {"cap": [""]}, ["c1", "sh"])),
    (["exec", "--user", "1000", "--user", "0", "c1", "sh"], ("run", "exec", {"user": "0"}, ["c1", "sh"])),
    (["exec", "-u", "1000:1000", "c1", "sh"], ("run", "exec", {"user": "1000:1000"}, ["c1", "sh"])),
    (["exec", "--cwd=/proc/self/fd/7", "c1", "sh"], ("run", "exec", {"cwd": "/proc/self/fd/7"}, ["c1", "sh"])),
    (["exec", "--cwd", "--cap", "c1", "sh"], ("run", "exec", {"cwd": "--cap"}, ["c1", "sh"])),
    (["exec", "c1", "--cap", "CAP_SYS_ADMIN", "sh"], ("run", "exec", {}, ["c1", "--cap", "CAP_SYS_ADMIN", "sh"])),
    (["exec", "--", "c1", "--no-new-privs=false"], ("run", "exec", {}, ["c1", "--no-new-privs=false"])),
    (["exec", "--tty", "--", "--cap", "x"], ("run", "exec", {"tty": True}, ["--cap", "x"])),
    (["exec", "-p", "/nonexistent/process.json", "c1"],
     ("run", "exec", {"process": "/nonexistent/process.json"}, ["c1"])),
    (["exec", "--process=/p.json", "--cap", "CAP_SYS_ADMIN", "c1"],
     ("run", "exec", {"process": "/p.json", "cap": ["CAP_SYS_ADMIN"]}, ["c1"])),
    (["exec", "--tty", "c1"], ("later", "exec", "process args cannot be empty")),
    (["exec", "--tty=yes", "c1", "sh"], ("usage", "invalid boolean value")),
    (["exec", "--cwd"], ("usage", "flag needs an argument")),
    (["exec"], ("usage", "requires a minimum of 1")),
    (["exec", "--preserve-fds", "0x10", "c1", "sh"], ("run", "exec", {"preserve-fds": 16}, ["c1", "sh"])),
    (["exec", "--preserve-fds=010", "c1", "sh"], ("run", "exec", {"preserve-fds": 8}, ["c1", "sh"])),
    (["exec", "--preserve-fds=1_0", "c1", "sh"], ("run", "exec", {"preserve-fds": 10}, ["c1", "sh"])),
    (["exec", "--preserve-fds", "08", "c1", "sh"], ("usage", "invalid value")),
    (["exec", "--preserve-fds", "_10", "c1", "sh"], ("usage", "invalid value")),
    (["exec", "--preserve-fds", "-1", "c1", "sh"], ("run", "exec", {"preserve-fds": -1}, ["c1", "sh"])),
    (["exec", "-g", "5", "-g", "6", "c1", "sh"], ("run", "exec", {"additional-gids": [5, 6]}, ["c1", "sh"])),
    (["exec", "-g", "5", "c1", "sh"], ("run", "exec", {"additional-gids": [5, 5]}, ["c1", "sh"])),
    (["exec", "--cap=", "--cap=CAP_CHOWN", "c1", "sh"], ("run", "exec", {"cap": ["CAP_CHOWN"]}, ["c1", "sh"])),
    (["exec", "--cap=CAP_CHOWN", "--cap=", "--cap=", "c1", "sh"],
     ("run", "exec", {"cap": ["CAP_CHOWN", ""]}, ["c1", "sh"])),
    (["exec", "-g", "0x5", "c1", "sh"], ("usage", "invalid value")),
    (["exec", "-g", "5", "--additional-gids", "6", "c1", "sh"], ("usage", "two forms")),
    (["exec", "--env", "A=1", "-e=B=2", "c1", "sh"], ("usage", "two forms")),
    (["exec", "-e", "A=1", "-e=B=2", "c1", "sh"], ("run", "exec", {"env": ["A=1", "B=2"]}, ["c1", "sh"])),
    (["exec", "--cgroup", "pids:../x", "--cgroup=memory:/", "c1", "sh"],
     ("run", "exec", {"cgroup": ["pids:../x", "memory:/"]}, ["c1", "sh"])),
    (["exec", "-it", "c1", "sh"], ("usage", "flag provided but not defined")),
    (["exec", "--no-such-flag", "c1", "sh"], ("usage", "flag provided but not defined")),
    (["exec", "--help", "c1", "sh"], ("help", "exec")),
    (["exec", "-h=false", "c1", "sh"], ("run", "exec", {"help": False}, ["c1", "sh"])),
    # -- create/run/restore/update: urfave/cli moves flags before the arguments first
    (["create", "c1", "--bundle", "/nonexistent/b"], ("run", "create", {"bundle": "/nonexistent/b"}, ["c1"])),
    (["create", "--bundle", "/nonexistent/a", "--bundle=/nonexistent/b", "c1"],
     ("run", "create", {"bundle": "/nonexistent/b"}, ["c1"])),
    (["create", "-b", "/nonexistent/a", "--bundle", "/nonexistent/b", "c1"], ("usage", "two forms")),
    (["create", "--no-pivot", "c1"], ("run", "create", {"no-pivot": True}, ["c1"])),
    (["create", "c1", "--no-new-keyring=true"], ("run", "create", {"no-new-keyring": True}, ["c1"])),
    (["run", "--detach", "c1", "--bundle", "/nonexistent/b"], ("usage", "requires exactly 1")),
    (["run", "c1", "--detach", "--keep"], ("run", "run", {"detach": True, "keep": True}, ["c1"])),
    (["create", "c1", "--", "x"], ("usage", "requires exactly 1")),
    (["create", "c1", "--"], ("run", "create", {}, ["c1"])),
    (["create", "--bundle", "--", "c1"], ("run", "create", {"bundle": "--"}, ["c1"])),
    (["create", "c1", "--bogus"], ("usage", "requires exactly 1")),
    (["create", "c1", "---no-pivot"], ("usage", "bad flag syntax")),
    (["create", "--", "-x"], ("run", "create", {}, ["-x"])),
    (["create", "c1", "c2"], ("usage", "requires exactly 1")),
    (["create", "--preserve-fds", "2", "c1"], ("run", "create", {"preserve-fds": 2}, ["c1"])),
    (["create", "--cap", "x", "c1"], ("usage", "flag provided but not defined")),
    (["create", "--help"], ("help", "create")),
    (["update", "c1", "--memory", "1g", "--memory=-1"], ("run", "update", {"memory": "-1"}, ["c1"])),
    (["update", "--pids-limit", "0", "c1"], ("run", "update", {"pids-limit": 0}, ["c1"])),
    (["update", "--pids-limit", "0x40", "c1"], ("run", "update", {"pids-limit": 64}, ["c1"])),
    (["update", "-r", "-", "c1"], ("run", "update", {"resources": "-"}, ["c1"])),
    (["update", "--cpu-idle", "1", "c1"], ("usage", "flag provided but not defined")),
    (["update", "--memory"], ("usage", "flag needs an argument")),
    (["restore", "--image-path", "/nonexistent/i", "c1"],
     ("run", "restore", {"image-path": "/nonexistent/i"}, ["c1"])),
    (["restore", "--page-server", "x", "c1"], ("usage", "flag provided but not defined")),
    # -- passthrough subcommands are not parsed beyond the global flags
    (["state", "--bogus", "c1"], ("passthrough", "state")),
    (["help", "exec"], ("passthrough", "help")),
    ([], ("passthrough", None)),
]


# -- generated command lines that exercise the global flags (the part the dispatchers read) --------

GLOBAL_TOKENS = [
    "--debug", "-debug", "--debug=false", "--debug=T", "--debug=maybe", "--log", "-log", "--log=/dev/null",
    "--log-format=json", "-log-format", "--root", "--root=ROOT", "-root=", "--criu", "--rootless",
    "--rootless=false", "--systemd-cgroup=0", "-systemd-cgroup", "-h", "--help", "--help=false", "-h=0",
    "--help=1", "-v", "-v=F", "--version=f", "--version", "--", "-", "---log", "--foo", "-=x", "--=", "",
    "-log=", "--log==x", "--debug=",
]
SUBCOMMAND_TOKENS = ["exec", "create", "run", "update", "restore", "state", "list", "delete", "kill", "ps",
                     "features", "help", "h", "nosuch", "json", "/dev/null", "ROOT"]


def global_argvs(st):
    """A hypothesis strategy: global-flag soup, a subcommand-ish word, and a tail."""
    token = st.one_of(st.sampled_from(GLOBAL_TOKENS), st.sampled_from(SUBCOMMAND_TOKENS))
    return st.tuples(st.lists(token, max_size=6), st.lists(st.sampled_from(SUBCOMMAND_TOKENS), max_size=1),
                     st.lists(st.sampled_from(["CID", "sh", "--cap", "-c", "CAP_SYS_ADMIN", "--", "-t"]),
                              max_size=3)).map(lambda t: t[0] + t[1] + t[2])


def subcommand_argvs(st):
    """A hypothesis strategy: one hardened subcommand and a soup of its flags, values and arguments."""
    from sandbox.core.runc_cli import BOOL, SUBCOMMAND_FLAGS

    def for_sub(sub):
        flag_tokens = []
        for spec in SUBCOMMAND_FLAGS[sub]:
            for name in spec.names:
                dash = "-" if len(name) == 1 else "--"
                flag_tokens += [f"{dash}{name}", f"-{name}", f"{dash}{name}="]
                flag_tokens += ([f"{dash}{name}=false", f"{dash}{name}=1", f"{dash}{name}=yes"] if spec.kind == BOOL
                                else [f"{dash}{name}=0x10", f"{dash}{name}=/nonexistent/x"])
        values = ["CID", "CID", "sh", "0", "010", "1_0", "-1", "/nonexistent/x", "--", "-", "", "x=y", "--bogus",
                  "---bundle"]
        return st.lists(st.one_of(st.sampled_from(flag_tokens), st.sampled_from(values)), max_size=7).map(
            lambda tail: [sub, *tail])

    return st.sampled_from(["create", "run", "exec", "update", "restore"]).flatmap(for_sub)
