"""Every row of runc's flag table (sandbox.core.runc_cli), tried for real through sandbox-runc and runc.

For each flag of each hardened subcommand (and each global flag) a sample invocation goes
through the installed sandbox-runc to the real runc, behind a wrapper that records what runc
was given (its argv, and the --process/--resources file it was handed).  The test asserts that
what happened is the table's action: passed on (runc got exactly the value, once), decided by
the profile (runc got the profile's value), refused (with the reason), or help.  The profile is
`capped` (restricted: uid 1000, CAP_NET_BIND_SERVICE; memory 256Mi, pids 100, 0.5 CPU).

SANDBOX_RUNC_FLAG_TABLE=PATH writes what was observed per row as JSON; `scripts/security_tables.py
--write --observed PATH` puts it into docs/security.md's flag table.
"""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from sandbox.core.runc_cli import FORWARD, HELP, PROFILE, REFUSE, SUBCOMMAND_ACTIONS
from tests.conftest import script
from tests.e2e.engines import capped_runc, running_container

WRAPPER = """#!{python}
import json, sys, os
args = sys.argv[1:]
rec = {{"argv": args}}
for a in args:
    for flag in ("--process=", "--resources="):
        if a.startswith(flag):
            with open(a[len(flag):]) as f:
                rec[flag[2:-1]] = json.load(f)
with open({log!r}, "a") as f:
    f.write(json.dumps(rec) + "\\n")
os.execv({runc!r}, [{runc!r}, *args])
"""

# (subcommand, flag) -> the tokens to try and what runc must then have been given.
# `want`: a substring of runc's argv, or ("process"|"resources", dotted path, value) for the file it got.
SAMPLES = {
    ("global", "debug"): (["--debug"], "--debug"),
    ("global", "log"): (["--log={tmp}/runc.log"], "--log={tmp}/runc.log"),
    ("global", "log-format"): (["--log-format=json"], "--log-format=json"),
    ("global", "root"): ([], "--root="),
    ("global", "criu"): (["--criu=criu"], "--criu=criu"),
    ("global", "systemd-cgroup"): (["--systemd-cgroup"], "--systemd-cgroup"),
    ("global", "rootless"): (["--rootless=true"], "rootless"),
    ("global", "help"): (["--help"], "runc - Open Container"),
    ("global", "version"): (["-v"], "runc version"),
    ("create", "bundle"): (["-b", "{bundle}"], "--bundle={bundle}"),
    ("create", "console-socket"): (["--console-socket={tmp}/console.sock"], "--console-socket={tmp}/console.sock"),
    ("create", "pid-file"): (["--pid-file", "{tmp}/pid"], "--pid-file={tmp}/pid"),
    ("create", "no-pivot"): (["--no-pivot"], "--no-pivot"),
    ("create", "no-new-keyring"): (["--no-new-keyring"], "--no-new-keyring"),
    ("create", "preserve-fds"): (["--preserve-fds", "0x1"], "--preserve-fds=1"),
    ("create", "help"): (["-h"], "runc create -"),
    ("run", "detach"): (["-d"], "--detach"),
    ("run", "keep"): (["--keep"], "--keep"),
    ("run", "no-subreaper"): (["--no-subreaper"], "--no-subreaper"),
    ("exec", "console-socket"): (["--console-socket", "{tmp}/console.sock"], "--console-socket={tmp}/console.sock"),
    ("exec", "cwd"): (["--cwd=/proc/self/fd/3"], "CVE-2024-21626"),
    ("exec", "env"): (["-e", "A=1", "-e=B=2"], ("process", "env.-1", "B=2")),
    ("exec", "tty"): (["-t=false"], ("process", "terminal", False)),
    ("exec", "user"): (["--user", "0", "--user", "1000:5"], ("process", "user.gid", 5)),
    ("exec", "additional-gids"): (["-g", "5", "-g", "6"], ("process", "user.additionalGids", [5, 6])),
    ("exec", "process"): (["--process", "{process}"], ("process", "noNewPrivileges", True)),
    ("exec", "detach"): (["--detach"], "--detach"),
    ("exec", "pid-file"): (["--pid-file={tmp}/exec.pid"], "--pid-file={tmp}/exec.pid"),
    ("exec", "process-label"): (["--process-label=system_u:system_r:spc_t:s0"], "stays in the container's LSM"),
    ("exec", "apparmor"): (["--apparmor", "unconfined"], "stays in the container's LSM"),
    ("exec", "no-new-privs"): (["--no-new-privs", "--no-new-privs=false"], ("process", "noNewPrivileges", True)),
    ("exec", "cap"): (["--cap", "CAP_SYS_ADMIN", "--cap=CAP_NET_BIND_SERVICE"],
                      ("process", "capabilities.bounding", ["CAP_NET_BIND_SERVICE"])),
    ("exec", "preserve-fds"): (["--preserve-fds=1"], "--preserve-fds=1"),
    ("exec", "cgroup"): (["--cgroup", "pids:../x"], "leaves the container's cgroup"),
    ("exec", "ignore-paused"): (["--ignore-paused"], "--ignore-paused"),
    ("exec", "help"): (["--help"], "runc exec -"),
    ("update", "resources"): (["-r", "{resources}"], ("resources", "memory.limit", 256 << 20)),
    ("update", "blkio-weight"): (["--blkio-weight", "500"], ("resources", "blockIO.weight", 500)),
    ("update", "cpu-period"): (["--cpu-period", "10000"], ("resources", "cpu.quota", 5000)),
    ("update", "cpu-quota"): (["--cpu-quota=-1"], ("resources", "cpu.quota", 50000)),
    ("update", "cpu-share"): (["--cpu-share", "512"], ("resources", "cpu.shares", 512)),
    ("update", "cpu-rt-period"): (["--cpu-rt-period", "1000000"], ("resources", "cpu.realtimePeriod", 1000000)),
    ("update", "cpu-rt-runtime"): (["--cpu-rt-runtime", "1000"], "realtime"),
    ("update", "cpuset-cpus"): (["--cpuset-cpus", "0"], ("resources", "cpu.cpus", "0")),
    ("update", "cpuset-mems"): (["--cpuset-mems=0"], ("resources", "cpu.mems", "0")),
    ("update", "kernel-memory"): (["--kernel-memory", "64m"], ("resources", "memory.kernel", 64 << 20)),
    ("update", "kernel-memory-tcp"): (["--kernel-memory-tcp", "1m"], ("resources", "memory.kernelTCP", 1 << 20)),
    ("update", "memory"): (["--memory", "1g", "--memory=-1"], ("resources", "memory.limit", 256 << 20)),
    ("update", "memory-reservation"): (["--memory-reservation", "10m"],
                                       ("resources", "memory.reservation", 10 << 20)),
    ("update", "memory-swap"): (["--memory-swap=-1"], ("resources", "memory.swap", 256 << 20)),
    ("update", "pids-limit"): (["--pids-limit", "-1"], ("resources", "pids.limit", 100)),
    ("update", "l3-cache-schema"): (["--l3-cache-schema", "L3:0=f"], "--l3-cache-schema=L3:0=f"),
    ("update", "mem-bw-schema"): (["--mem-bw-schema=MB:0=50"], "--mem-bw-schema=MB:0=50"),
    ("update", "help"): (["--help"], "runc update -"),
}
# create's rows stand for run's too where run has the same flag; restore is refused as a whole
SHARED = {("run", f): ("create", f) for f in ("bundle", "console-socket", "pid-file", "no-pivot", "no-new-keyring",
                                               "preserve-fds", "help")}
OBSERVED: dict = {}


TABLES = script("security_tables")  # the one table of runc's flags, as docs/security.md shows it
rows, flag_key = TABLES.flag_rows, TABLES.flag_key


@pytest.fixture(scope="module")
def table_env(e2e_module, demo_rootfs, tmp_path_factory):
    from sandbox.host.bundle import spec_for_rootfs

    tmp = tmp_path_factory.mktemp("flagtable")
    log = tmp / "runc-argv.jsonl"
    wrapper = tmp / "runc-wrapper"
    wrapper.write_text(WRAPPER.format(python=sys.executable, log=str(log), runc=e2e_module))
    os.chmod(wrapper, 0o755)
    env = capped_runc(tmp, str(wrapper), demo_rootfs)
    env.log = log
    env.cid, env.bundle_dir = running_container(env, demo_rootfs, "table")
    cfg = spec_for_rootfs(demo_rootfs, ["sleep", "3600"])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    env.spec = cfg
    proc = dict(cfg["process"], args=["true"], noNewPrivileges=False)
    (tmp / "process.json").write_text(json.dumps(proc))
    (tmp / "resources.json").write_text(json.dumps({"memory": {"limit": 1 << 40}}))
    yield env
    env.delete_all()
    path = os.environ.get("SANDBOX_RUNC_FLAG_TABLE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({flag_key(sub, spec): re.sub(r"bundle-[0-9a-f]{8}", "bundle-ID",
                                                   OBSERVED[(sub, spec.name)].replace(str(tmp), "…"))
                       for sub, spec in rows() if (sub, spec.name) in OBSERVED}, f, indent=1, ensure_ascii=False)


def make_bundle(tmp, name, cfg):
    b = tmp / f"bundle-{name}"
    b.mkdir()
    (b / "config.json").write_text(json.dumps(cfg))
    return str(b)


def try_row(env, sub, spec):
    name = spec.name
    if sub == "restore":  # refused as a whole: any value shows it
        tokens, want = ([f"--{name}"] if spec.kind == "bool" else [f"--{name}=x"]), ""
        if name == "bundle":
            tokens = ["--bundle={bundle}"]
    else:
        tokens, want = SAMPLES[SHARED.get((sub, name), (sub, name))]
    tmp = env.tmp
    fill = {"tmp": str(tmp), "bundle": "", "process": str(tmp / "process.json"),
            "resources": str(tmp / "resources.json")}
    if sub in ("create", "run", "restore"):
        fill["bundle"] = make_bundle(tmp, uuid.uuid4().hex[:8], dict(env.spec, process=dict(env.spec["process"],
                                                                                       args=["true"])))
    tokens = [t.format(**fill) for t in tokens]
    want = want.format(**fill) if isinstance(want, str) else want
    before = env.log.read_text().count("\n") if env.log.exists() else 0
    kw = {}
    if sub == "global":
        argv = [*tokens, "exec", env.cid, "true"]
    elif sub == "exec":
        argv = ["exec", *tokens, env.cid, *([] if "--process" in tokens else ["true"])]
    elif sub == "update":
        argv = ["update", *tokens, env.cid]
    else:
        cid = f"t-{uuid.uuid4().hex[:8]}"
        has_bundle = any(t in ("-b", "--bundle") or t.startswith("--bundle=") for t in tokens)
        argv = [sub, *tokens, *([] if has_bundle else ["--bundle", fill["bundle"]]), cid]
    if "--preserve-fds" in " ".join(tokens) and "=1" in " ".join(tokens) or "0x1" in tokens:
        r, w = os.pipe()
        kw["fd3"] = r
    res = run_with_fd3(env, argv, kw.get("fd3"))
    if "fd3" in kw:
        os.close(kw["fd3"])
        os.close(w)
    lines = env.log.read_text().splitlines()[before:] if env.log.exists() else []
    got = [json.loads(line) for line in lines]
    got = [g for g in got if g["argv"] and "state" not in g["argv"] and "delete" not in g["argv"]]
    return res, got, want


def run_with_fd3(env, argv, fd):
    import tempfile

    cmd = [env.shim, "--root", env.root, *argv]
    if fd is not None:
        cmd = ["/bin/bash", "-c", f'exec 3<&{fd} {fd}<&-; exec "$@"', "sh", *cmd]
    # not pipes: a created container's init inherits stdout/stderr and would hold a pipe open
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stdout=out, stderr=err, env=env.env, timeout=60, cwd=str(env.tmp),
                              stdin=subprocess.DEVNULL, pass_fds=(fd,) if fd is not None else ())
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read().decode("utf-8", "replace"),
                                           err.read().decode("utf-8", "replace"))


def dig(doc, dotted):
    for part in dotted.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


@pytest.mark.parametrize("sub, spec", rows(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_flag_row_does_what_the_table_says(table_env, sub, spec):
    res, got, want = try_row(table_env, sub, spec)
    whole = SUBCOMMAND_ACTIONS.get(sub)
    out = res.stdout + res.stderr
    if whole and whole[0] == REFUSE and spec.action != HELP:
        assert res.returncode != 0 and f"runc {sub} is refused" in res.stderr and not got, out
        OBSERVED[(sub, spec.name)] = f"refused with `{sub}` itself (exit {res.returncode})"
        return
    if spec.action == HELP:
        assert res.returncode == 0 and want.replace("runc create", f"runc {sub}") in out, out
        OBSERVED[(sub, spec.name)] = "runc printed its help/version; nothing ran"
        return
    if spec.action == REFUSE or (isinstance(want, str) and not want.startswith("--")):
        assert res.returncode != 0 and "refused" in res.stderr and want in res.stderr and not got, out
        line = next(ln for ln in res.stderr.splitlines() if ln.startswith("sandbox-runc: "))
        OBSERVED[(sub, spec.name)] = f"refused: {line[len('sandbox-runc: '):][:140]}"
        return
    assert got, f"runc was never called: {out}"
    argv = got[0]["argv"]
    if isinstance(want, str):
        assert [a for a in argv if a == want or (want.endswith("=") and a.startswith(want))], (argv, want)
        assert sum(a.split("=")[0] == want.split("=")[0] for a in argv) == 1, argv  # once
        OBSERVED[(sub, spec.name)] = f"runc got `{want}` (exit {res.returncode})"
    else:
        kind, path, value = want
        assert dig(got[0][kind], path) == value, (got[0].get(kind), want)
        OBSERVED[(sub, spec.name)] = f"runc got {kind} `{path}` = `{json.dumps(value)}` (exit {res.returncode})"
    assert spec.action in (FORWARD, PROFILE)

