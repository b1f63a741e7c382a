"""Differential test of the exec command line against the real runc and the real kernel.

For generated `exec` flag lists (hypothesis; SANDBOX_ARGV_EXAMPLES=N for more), three runs:

* plain runc, on a container plain runc made: what the exec'd process really has (read from
  /proc/<its pid>/status and /proc/<its pid>/cwd inside) must be what sandbox's parser says
  runc makes of those flags (sandbox.core.runc_cli + sandbox.core.runc_policy.exec_process, through a
  model of what runc and the kernel do with a process spec).  This checks the parser.
* `sandbox-runc exec` with the same flags on a container created under `baseline`, and on one
  under `restricted` (uid 1000): sandbox either refuses (and says why) or the process has
  exactly what sandbox decided, and that is within the profile (capability sets, NoNewPrivs,
  uid, cwd).

Each outcome is counted; SANDBOX_ARGV_REPORT=PATH writes the counts as JSON.
"""

import json
import os
import posixpath
import subprocess
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.core import gojson, loader
from sandbox.core.runc_cli import parse
from sandbox.core.runc_policy import exec_process, flag_decisions, lsm_decisions
from sandbox.core.tables import CAPABILITIES, CAPABILITY_NUMBERS
from sandbox.core.transform import apply
from sandbox.core.transform.fields import proc_fd_path
from sandbox.errors import UsageError
from sandbox.host.bundle import spec_for_rootfs
from tests.e2e.engines import PrivateRunc

EXAMPLES = int(os.environ.get("SANDBOX_ARGV_EXAMPLES") or 30)
STATUS = 'cat /proc/$$/status; echo "CWD=$(readlink /proc/$$/cwd)"'
ANNOTATION = "org.sandbox-runtime.profile"
COUNTS: dict = {}


def _host_caps():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


HOST_BND = _host_caps()


def mask(names):
    m = 0
    for n in names or []:
        if n in CAPABILITY_NUMBERS:  # runc ignores (with a warning) a name it does not know
            m |= 1 << CAPABILITY_NUMBERS[n]
    return m


def kernel_view(proc):
    """What /proc/<pid>/status of the process runc execs from `proc` shows, or "fails" where runc must fail.

    runc (libcontainer/init_linux.go finalizeNamespace): drops the bounding set to `bounding`,
    setuid/setgid/setgroups, capset(effective, permitted, inheritable), raises each ambient
    capability (ignoring the failure when it is not both permitted and inheritable), then execve.
    The kernel (security/commoncap.c) at execve of a file without file capabilities: for uid 0,
    P' = bounding | inheritable (intersected with P when no_new_privs and that would gain),
    E' = P' | A; for another uid, P' = E' = A.
    """
    caps = proc.get("capabilities") or {}
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    bnd = mask(caps.get("bounding")) & HOST_BND
    prm, eff, inh = mask(caps.get("permitted")), mask(caps.get("effective")), mask(caps.get("inheritable"))
    if prm & ~HOST_BND or eff & ~prm or inh & ~(bnd | prm):
        return "fails"  # capset refuses
    if max(uid, gid) > 0x7FFFFFFF:
        return "fails"  # runc: "uids and gids must be in range 0-2147483647"
    amb = mask(caps.get("ambient")) & prm & inh
    nnp = bool(proc.get("noNewPrivileges"))
    if uid == 0:
        p2 = bnd | inh
        if nnp and p2 & ~prm:
            p2 &= prm
        p2 |= amb
        e2 = p2
    else:
        p2 = e2 = amb
    return {"Uid": [uid] * 4, "Gid": [gid] * 4, "Groups": sorted(set(user.get("additionalGids") or [])),
            "CapBnd": bnd, "CapPrm": p2, "CapEff": e2, "CapInh": inh, "CapAmb": amb, "NoNewPrivs": int(nnp),
            "CWD": _resolved(proc.get("cwd"))}


def _resolved(cwd):
    """The working directory as readlink(/proc/<pid>/cwd) shows it (no symlinks in the paths tried)."""
    return "/" + posixpath.normpath(cwd).lstrip("/") if isinstance(cwd, str) else cwd


def observed(stdout):
    out = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(":") if not line.startswith("CWD=") else ("CWD", "", line[4:])
        value = value.strip()
        if key in ("Uid", "Gid"):
            out[key] = [int(x) for x in value.split()]
        elif key == "Groups":
            out[key] = sorted({int(x) for x in value.split()})
        elif key.startswith("Cap"):
            out[key] = int(value, 16)
        elif key == "NoNewPrivs":
            out[key] = int(value)
        elif key == "CWD":
            out[key] = value
    return out


def names(m):
    return sorted(c for i, c in enumerate(CAPABILITIES) if m >> i & 1)


# -- the containers ------------------------------------------------------------------------------

class World(dict):
    def __repr__(self):
        return "<containers plain, baseline, restricted>"


@pytest.fixture(scope="module")
def world(e2e_module, demo_rootfs, tmp_path_factory):
    e2e = e2e_module
    tmp = tmp_path_factory.mktemp("exec-argv")
    os.chmod(tmp, 0o755)
    env = PrivateRunc(tmp, e2e, demo_rootfs, allowed_profiles=["restricted"])
    w = World(env=env, profiles={})
    base = spec_for_rootfs(demo_rootfs, ["sleep", "3600"])
    for name, uid, profile in (("plain", 0, None), ("baseline", 0, "baseline"), ("restricted", 1000, "restricted")):
        b = tmp / f"bundle-{name}"
        b.mkdir()
        cfg = json.loads(json.dumps(base))
        cfg["process"]["user"] = {"uid": uid, "gid": uid}
        if profile == "restricted":
            cfg["annotations"] = {ANNOTATION: "restricted"}
        (b / "config.json").write_text(json.dumps(cfg))
        cid = f"argv-{name}-{uuid.uuid4().hex[:8]}"
        if profile is None:
            # not pipes: the container's init inherits stdout/stderr and would hold them open
            res = subprocess.run([e2e, "--root", env.root, "create", "--bundle", str(b), cid],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                                 stdin=subprocess.DEVNULL)
        else:
            res = env.run_shim("create", "--bundle", str(b), cid)
        assert res.returncode == 0, res.stderr
        subprocess.run([e2e, "--root", env.root, "start", cid], check=True, timeout=60)
        w[name] = cid
        w["profiles"][name] = loader.load_profile(profile) if profile else None
        w[f"{name}-config"] = json.loads((b / "config.json").read_text())
        w[f"{name}-bundle"] = str(b)
    yield w
    env.delete_all()
    report = os.environ.get("SANDBOX_ARGV_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump(COUNTS, f, indent=1, sort_keys=True)


# -- generated flag lists ------------------------------------------------------------------------

CAPS = ["CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SYS_PTRACE", "CAP_SETUID", "",
        "CAP_BOGUS", "cap_chown"]
USERS = ["0", "1000", "1000:1000", "0:0", "65534", "+1000", "0001000", "1000:0", "4294967296", "-1", "x"]
CWDS = ["/", "/tmp", "/home/app", "/bin", "/proc/self/fd/3", "/tmp/../proc", "/dev/fd/3"]
BOOLS = ["true", "false", "0", "1", "t", "F", "yes"]


@st.composite
def exec_flags(draw):
    """A flag list for `exec` (before the container id), and what follows the id."""
    forms = {f: draw(st.sampled_from(forms)) for f, forms in (
        ("cap", ["--cap", "-c"]), ("user", ["--user", "-u"]), ("gids", ["--additional-gids", "-g"]),
        ("env", ["--env", "-e"]))}
    if draw(st.integers(0, 9)) == 9:  # now and then both forms of one flag: runc refuses that
        forms[draw(st.sampled_from(sorted(forms)))] = None
    out = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["cap", "cap", "nnp", "user", "cwd", "gids", "env", "tty", "fds"]))
        if kind in forms:
            form = forms[kind] or draw(st.sampled_from({"cap": ["--cap", "-c"], "user": ["--user", "-u"],
                                                        "gids": ["--additional-gids", "-g"],
                                                        "env": ["--env", "-e"]}[kind]))
            value = draw(st.sampled_from({"cap": CAPS, "user": USERS, "gids": ["0", "5", "1000", "65534"],
                                          "env": ["A=1", "B=a b"]}[kind]))
            out += draw(st.sampled_from([[form, value], [f"{form}={value}"]]))
        elif kind == "nnp":
            out += draw(st.sampled_from([["--no-new-privs"], [f"--no-new-privs={draw(st.sampled_from(BOOLS))}"]]))
        elif kind == "cwd":
            out += draw(st.sampled_from([["--cwd", draw(st.sampled_from(CWDS))],
                                         [f"-cwd={draw(st.sampled_from(CWDS))}"]]))
        elif kind == "tty":
            out += [draw(st.sampled_from(["--tty=false", "-t=0"]))]
        else:
            out += ["--preserve-fds", draw(st.sampled_from(["0", "-1", "0x0"]))]
    tail = draw(st.sampled_from([[]] * 6 + [["--"], ["--cap", "CAP_SYS_ADMIN"], ["--no-new-privs=false"]]))
    process = draw(process_files()) if draw(st.sampled_from([False] * 4 + [True])) else None
    return out, tail, process


@st.composite
def process_files(draw):
    """The text of a --process file: keys as runc's Go decoder matches them, now and then twice."""
    pairs = [("args", ["sh", "-c", STATUS]), ("env", ["PATH=/bin"]), ("cwd", draw(st.sampled_from(["/", "/tmp"])))]
    pairs.append(("user", {"uid": draw(st.sampled_from([0, 1000, 65534])), "gid": draw(st.sampled_from([0, 1000]))}))
    caps = draw(st.lists(st.sampled_from(CAPS[:6]), max_size=3))
    sets = draw(st.lists(st.sampled_from(["bounding", "effective", "permitted", "inheritable", "ambient"]),
                         max_size=5, unique=True))
    pairs.append((draw(st.sampled_from(["capabilities", "Capabilities"])), {k: caps for k in sets}))
    nnp_keys = draw(st.sampled_from([[], ["noNewPrivileges"], ["NoNewPrivileges"], ["noNewPrivileges", "NONEWPRIVILEGES"]]))
    pairs += [(k, draw(st.booleans())) for k in nnp_keys]
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


def read_process(path):
    with open(path) as f:
        return gojson.decode(gojson.loads(f.read()), gojson.PROCESS)


def predict_plain(world, argv):
    """What plain runc makes of `argv`: ("usage", msg) | ("fails", why) | ("runs", kernel view) | None (unknown)."""
    inv = parse(argv)
    if inv.error:
        return ("usage", inv.error)
    try:
        if inv.option("process"):
            proc = read_process(inv.option("process"))
        else:
            proc = exec_process(world["plain-config"]["process"], inv, wrap=True)
    except gojson.GoJSONError:
        return None  # two keys for one field: runc takes the last, sandbox refuses; nothing to compare
    except UsageError as e:
        return ("usage", str(e))
    if proc["args"][:1] != ["sh"]:
        return ("fails", "the command is not sh")
    view = kernel_view(proc)
    return ("fails", "capset") if view == "fails" else ("runs", view)


def predict_sandbox(world, name, argv):
    """What sandbox decides for `argv` on container `name`: ("refused", why) | ("runs", kernel view)."""
    profile = world["profiles"][name]
    inv = parse(argv)
    if inv.error:
        return ("refused", inv.error)
    base = gojson.decode(gojson.loads(json.dumps(world[f"{name}-config"])), gojson.SPEC_PROCESS)["process"]
    try:
        proc = read_process(inv.option("process")) if inv.option("process") else exec_process(base, inv)
    except (UsageError, gojson.GoJSONError) as e:
        return ("refused", str(e))
    trial = dict(world[f"{name}-config"], process=proc)
    out = apply(profile, trial)
    refusals = [d.reason for d in out.decisions if d.action == "refuse" and d.pointer.startswith("/process")]
    refusals += [d.reason for d in flag_decisions(profile, inv) + lsm_decisions(profile, base, out.config["process"])
                 if d.action == "refuse"]
    if refusals:
        return ("refused", refusals[0])
    if out.config["process"]["args"][:1] != ["sh"]:
        return ("fails", "the command is not sh")
    view = kernel_view(out.config["process"])
    return ("fails", "capset") if view == "fails" else ("runs", view)


def count(key):
    COUNTS[key] = COUNTS.get(key, 0) + 1


def within_profile(view, profile):
    allowed = mask(profile.capabilities)
    for key in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert view[key] & ~allowed == 0, f"{key} has {names(view[key] & ~allowed)} beyond {profile.name}"
    if profile.no_new_privileges:
        assert view["NoNewPrivs"] == 1
    if profile.user.run_as_non_root:
        assert view["Uid"][0] != 0
    assert not proc_fd_path(view["CWD"])  # CVE-2024-21626: never through a descriptor


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SANDBOX_ARGV_EXAMPLES"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], database=None)
@given(case=exec_flags())
def test_exec_flags_give_what_the_parser_and_the_profile_say(world, case):
    flags, tail, process = case
    env = world["env"]
    count("argv")
    if process is not None:
        path = env.tmp / f"process-{uuid.uuid4().hex[:8]}.json"
        path.write_text(process)
        flags = [*flags, "--process", str(path)]
        count("with --process")
    # plain runc on a plain container: the parser's reading of the flags against runc's
    plain_argv = ["exec", *flags, world["plain"], *tail, "sh", "-c", STATUS]
    want = predict_plain(world, plain_argv)
    if want is not None and not any("/proc" in f or "/dev/fd" in f for f in flags):  # no cwd in /proc for plain runc
        res = subprocess.run([env.runc, "--root", env.root, *plain_argv], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        count(f"plain:{want[0]}")
        if want[0] == "runs":
            assert res.returncode == 0, (plain_argv, res.stderr)
            assert observed(res.stdout) == want[1], (plain_argv, res.stdout)
        else:
            assert res.returncode != 0 and "CapEff" not in res.stdout, (plain_argv, want, res.stdout)
            if want[0] == "usage":
                assert "Incorrect Usage" in res.stdout + res.stderr or "parsing" in res.stderr, (plain_argv, res)
    # sandbox-runc on a baseline and a restricted container
    for name in ("baseline", "restricted"):
        argv = ["exec", *flags, world[name], *tail, "sh", "-c", STATUS]
        want = predict_sandbox(world, name, argv)
        res = env.run_shim(*argv)
        count(f"{name}:{want[0]}")
        if want[0] != "runs":
            count(f"{name}:{want[0]}: {want[1][:40]}")
        if want[0] == "refused":
            assert res.returncode != 0 and "CapEff" not in res.stdout, (argv, res.stdout)
            assert "refused" in res.stderr or "would refuse" in res.stderr, (argv, res.stderr)
        elif want[0] == "fails":
            assert res.returncode != 0 and "CapEff" not in res.stdout, (argv, res.stdout)
        else:
            assert res.returncode == 0, (argv, res.stderr)
            got = observed(res.stdout)
            assert got == want[1], (argv, got, want[1])
            within_profile(got, world["profiles"][name])
