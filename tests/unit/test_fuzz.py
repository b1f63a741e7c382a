"""Bad input: property and fuzz tests over everything sandbox parses from outside.

Each property is "only a SandboxError (with a message for a person) or a valid result, never
another exception, never a hang, never a crash of the interpreter":

(a) the profile loader, `sandbox.core.loader.load_profile(path)`, over arbitrary bytes, arbitrary YAML
    and profile-shaped YAML with wrong types, huge numbers, deep nesting, duplicate keys,
    anchors/aliases (billion laughs) and non-UTF-8;
(b) `sandbox.host.bundle.read_config(dir)` over arbitrary config.json bytes and JSON of every shape,
    then `sandbox check --profile strict DIR` (click's CliRunner): exit 0, 1 or 3, no traceback;
(c) `sandbox.core.runc_cli.parse(argv)` over arbitrary argv, and against a model of how runc 1.1 itself
    (Go's flag package + urfave/cli v1) reads the same argv: the shim must harden the bundle and
    container that runc will actually use;
(d) the `exec --process` JSON, through `sandbox.host.bundle.read_json_file`;
and symlinked and FIFO paths where a file is expected (profile, config.json, operator config).

Inputs are derandomized by default so CI is reproducible; set SANDBOX_FUZZ_EXAMPLES=N to run N
examples per property with fresh randomness (see docs/reliability.md).  A watchdog (SIGALRM)
turns a hang into a failure instead of a stuck test run.
"""

import atexit
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from sandbox.cli import cli
from sandbox.core import fields
from sandbox.core.loader import load_profile
from sandbox.core.profile import Profile
from sandbox.core.runc_cli import parse
from sandbox.errors import BundleError, ConfigError, ProfileError, SandboxError
from sandbox.host.bundle import read_config, read_json_file, spec_for_rootfs
from sandbox.host.opconfig import load_operator_config
from tests.conftest import ROOT

_FRESH = os.environ.get("SANDBOX_FUZZ_EXAMPLES")
EXAMPLES = int(_FRESH) if _FRESH else None


def fuzz_settings(default_examples, deadline_ms=2000):
    # No "explain" phase: it re-runs failing tests under a tracer, several times slower, and would
    # turn one real failure into spurious deadline failures of the inputs around it.
    return settings(max_examples=EXAMPLES or default_examples, deadline=deadline_ms, derandomize=not _FRESH,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], database=None, print_blob=True,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])


class Hang(Exception):
    pass


@contextlib.contextmanager
def watchdog(seconds=10):
    """Fail (instead of hanging the run) if the body takes longer than `seconds`."""
    def fire(_signum, _frame):
        raise Hang(f"no answer within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def work():
    d = tempfile.mkdtemp(prefix="sandbox-fuzz-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return path


# ------------------------------------------------------------------------------------------------
# (a) the profile loader
# ------------------------------------------------------------------------------------------------

HEADER = "apiVersion: sandbox/v1\nkind: Profile\nname: fuzz\n"

# every key the loader knows (from the one declaration of fields), so generated profiles get past the
# unknown-key check into validation
SECTIONS = {key: (tuple(node) if isinstance(node, dict) else None) for key, node in fields.tree().items()
            if key not in ("apiVersion", "kind", "name")}
INNER_KEYS = sorted({k for f in fields.FIELDS for k in (*f.kind.keys(), *f.path[2:])} | {"allow"})
ODD_STRINGS = ["", "512Mi", "1Gi", "500m", "1.5", "1e400", "-1", "0x10", "abc", "/", "/proc", "/etc/passwd",
               "relative/path", "CAP_SYS_ADMIN", "net_bind_service", "ALL", "errno", "kill", "allow",
               "SCMP_ACT_ALLOW", "EPERM", "mount", "ptrace", "required", "optional", "exact", "subtree",
               "enforce", "complain", "runtime-default", "none", "baseline", "strict", "./x.yaml", "\x00",
               "ünïcödé", "a" * 300, "~", "null", "yes", "no", "on", ".inf", ".nan", "!!binary", "*a", "&a"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.one_of(st.sampled_from(INNER_KEYS), st.text(max_size=8)), inner,
                                            max_size=5)),
    max_leaves=25,
)


@st.composite
def profile_dicts(draw):
    d = {"apiVersion": draw(st.sampled_from(["sandbox/v1", "sandbox/v1", "sandbox/v2", 1])),
         "kind": draw(st.sampled_from(["Profile", "Profile", "profile"])),
         "name": draw(st.sampled_from(["fuzz", "fuzz", "Bad Name", "", "a" * 70]))}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), unique=True, max_size=6)):
        keys = SECTIONS[section]
        if keys is None or draw(st.integers(0, 5)) == 0:
            d[section] = draw(values)
        else:
            d[section] = {k: draw(values) for k in draw(st.lists(st.sampled_from(keys), unique=True, max_size=4))}
    if draw(st.booleans()):
        d["extends"] = draw(st.sampled_from(["baseline", "restricted", "strict", "nosuch", "./nosuch.yaml"]))
    return d


def _dump(d):
    try:
        return yaml.safe_dump(d, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError):
        return json.dumps(d, default=str)


@st.composite
def mutated(draw, texts):
    """YAML text with a few edits: truncation, spliced-in YAML syntax, flipped bytes."""
    text = draw(texts)
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["cut", "insert", "flip"]))
        if op == "cut":
            text = text[:pos]
        elif op == "insert":
            text = text[:pos] + draw(st.sampled_from(
                ["&a ", "*a", "<<: *a\n", "!!binary ", "!!python/object:os.system ", "\t", "---\n", "...\n",
                 "? ", ": ", "- ", "[", "]", "{", "}", "#", "\"", "'", "|\n", ">\n", "%YAML 1.1\n", "\ufeff",
                 "\x00", "\udcff", "name: dup\n", "\n  ", "!!set ", "!!timestamp 2001-01-01 "])) + text[pos:]
        else:
            text = text[:pos] + draw(st.characters()) + text[pos + 1:]
    return text


@st.composite
def laughs(draw):
    """Alias bombs of every size around the loader's node budget (100 000 after expansion)."""
    width, depth = draw(st.integers(2, 12)), draw(st.integers(1, 8))
    lines = [HEADER.rstrip("\n"), f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    if draw(st.booleans()):
        lines.append(f"capabilities: *l{depth}")
    return "\n".join(lines) + "\n"


@st.composite
def nested(draw):
    depth = draw(st.integers(1, 3000))
    kind = draw(st.sampled_from(["flow-seq", "flow-map", "block"]))
    if kind == "flow-seq":
        body = "x: " + "[" * depth + "]" * depth + "\n"
    elif kind == "flow-map":
        body = "x: " + "{a: " * depth + "1" + "}" * depth + "\n"
    else:
        depth = min(depth, 400)
        body = "".join("  " * i + f"k{i}:\n" for i in range(depth))
    return HEADER + body


@st.composite
def duplicates(draw):
    d = draw(profile_dicts())
    text = _dump(d)
    lines = text.splitlines(keepends=True)
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    return "".join(lines[: i + 1] + lines[i: i + 1] + lines[i + 1:])


profile_texts = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400),
    profile_dicts().map(_dump),
    mutated(profile_dicts().map(_dump)),
    values.map(_dump),
    laughs(),
    nested(),
    duplicates(),
    st.binary(max_size=200).map(lambda b: HEADER.encode() + b"description: " + b + b"\n"),
)


def _load(path):
    with watchdog(10):
        try:
            return load_profile(path)
        except SandboxError as e:
            assert str(e)  # a message for a person
            return e


@fuzz_settings(300)
@given(data=profile_texts)
@example(data=HEADER + "x: " + "[" * 5000 + "]" * 5000 + "\n")
@example(data=open(os.path.join(ROOT, "tests", "fixtures", "invalid-billion-laughs.yaml")).read())
@example(data=HEADER + "name: again\n")
@example(data=(HEADER + "description: caf\xe9\n").encode("latin-1"))
@example(data=b"\xff\xfe\x00\x00")
@example(data=HEADER + "resources:\n  memory: {max: 1e400}\n  cpu: {max: .nan}\n  pids: {max: 99999999999999999999}\n")
@example(data=HEADER + "seccomp:\n  default_errno: 99999999999999999999999\n")
@example(data=HEADER + "capabilities: !!set {a, b}\n")
@example(data=HEADER + "? [a, b]\n: 1\n")
def test_profile_loader_gives_a_profile_or_a_profile_error(work, data):
    out = _load(_write(os.path.join(work, "p.yaml"), data))
    assert isinstance(out, Profile | SandboxError)


@pytest.mark.parametrize("text", [
    HEADER + "seccomp:\n  default_errno:\n",
    HEADER + "seccomp:\n  default_errno: 1.5\n",
    HEADER + "seccomp:\n  default_errno: [1]\n",
    HEADER + "seccomp:\n  default_errno: {a: 1}\n",
], ids=["null", "float", "list", "mapping"])
def test_default_errno_of_the_wrong_type_is_a_profile_error(work, text):
    """Found by the property above: tables.errno_number calls .strip() on whatever it is given."""
    with pytest.raises(ProfileError):
        load_profile(_write(os.path.join(work, "errno.yaml"), text))


@pytest.mark.parametrize("text", [
    HEADER + "!custom key: 1\n", HEADER + "!!python/name:os.system x: 1\n", HEADER + "? !!binary aGk=\n: 1\n",
    HEADER + "description: !!int abc\n", HEADER + "description: !!float abc\n",
    HEADER + "description: !!timestamp not-a-date\n", HEADER + "description: !!bool maybe\n",
], ids=["key-local-tag", "key-python-tag", "key-binary", "int-abc", "float-abc", "timestamp", "bool"])
def test_an_explicitly_tagged_node_is_a_profile_error(work, text):
    """Found by the property above: a tagged mapping key is constructed outside the loader's try, and
    PyYAML's constructors raise ValueError/AttributeError (not YAMLError) for `!!int abc` and friends."""
    with pytest.raises(ProfileError):
        load_profile(_write(os.path.join(work, "tagkey.yaml"), text))


@pytest.mark.parametrize("digits", [4301, 5000, 100_000])
def test_huge_integer_in_a_profile_is_a_profile_error(work, digits):
    """Python refuses int() of more than 4300 digits with a ValueError, which must not escape."""
    path = _write(os.path.join(work, "huge.yaml"), HEADER + "resources:\n  pids:\n    max: " + "9" * digits + "\n")
    with pytest.raises(ProfileError):
        load_profile(path)


def test_huge_integer_in_the_operator_config_is_a_config_error(work):
    path = _write(os.path.join(work, "op-huge.yaml"), "audit_max_bytes: " + "9" * 5000 + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError):
        load_operator_config(path)


@pytest.mark.parametrize("what", ["profile", "operator-config"])
@pytest.mark.parametrize("depth", [40_000, 200_000])
def test_deeply_nested_yaml_does_not_crash_the_interpreter(work, what, depth):
    """libyaml's composer recurses once per level: tens of thousands of `[` overflow the C stack.

    Run in a child interpreter: a segmentation fault there must not take pytest down with it.
    """
    body = "x: " + "[" * depth + "]" * depth + "\n"
    path = _write(os.path.join(work, f"deep-{what}-{depth}.yaml"), (HEADER if what == "profile" else "") + body)
    os.chmod(path, 0o644)
    call = "load_profile(p)" if what == "profile" else "load_operator_config(p)"
    code = ("import sys\nfrom sandbox.core.loader import load_profile\nfrom sandbox.host.opconfig import load_operator_config\n"
            "from sandbox.errors import SandboxError\np = sys.argv[1]\n"
            f"try:\n    {call}\n    print('LOADED')\nexcept SandboxError as e:\n"
            "    print('REFUSED', type(e).__name__, e)\n")
    res = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, f"interpreter died with {res.returncode} (-11 = SIGSEGV): {res.stderr[-500:]}"
    # sandbox's behaviour, not the YAML library's wording (PyYAML 6.0.4 refuses deep nesting itself):
    # refused with the error kind of that file, naming the file and a line, and no traceback
    kind = "ProfileError" if what == "profile" else "ConfigError"
    assert res.stdout.startswith(f"REFUSED {kind} {path}:"), res.stdout + res.stderr
    assert re.match(rf"REFUSED {kind} {re.escape(path)}:\d+", res.stdout), res.stdout
    assert "Traceback" not in res.stderr


def test_profile_validate_cli_survives_deep_nesting(work):
    path = _write(os.path.join(work, "deep-cli.yaml"), HEADER + "x: " + "[" * 60_000 + "]" * 60_000 + "\n")
    res = subprocess.run([sys.executable, "-m", "sandbox", "profile", "validate", path], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 1, f"exit {res.returncode}: {res.stderr[-300:]}"
    assert "Traceback" not in res.stderr
    assert re.search(rf"{re.escape(path)}:\d+:\d+: ", res.stdout + res.stderr), res.stdout + res.stderr


# ------------------------------------------------------------------------------------------------
# (b) config.json: read_config, then `sandbox check --profile strict`
# ------------------------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.sampled_from([0, -1, 2**32, 2**63, 2**64]),
                         st.floats(allow_nan=False, allow_infinity=False),
                         st.sampled_from(["", "ALL", "CAP_SYS_ADMIN", "/", "/proc/1/ns/net", "/var/run/docker.sock",
                                          "/etc", "bind", "rbind", "ro", "network", "user", "SCMP_ACT_ALLOW", "1G",
                                          "..", "rootfs", "/tmp\x00x", "\x00"]),
                         st.text(max_size=16))
json_values = st.recursive(json_scalars,
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=20)

# where a weird value is put into an otherwise runc-spec-shaped config
POINTERS = [
    ("process", "capabilities"), ("process", "capabilities", "bounding"), ("process", "capabilities", "ambient"),
    ("process", "user"), ("process", "user", "uid"), ("process", "user", "additionalGids"),
    ("process", "noNewPrivileges"), ("process", "rlimits"), ("process", "args"), ("process", "env"),
    ("process", "apparmorProfile"), ("process", "selinuxLabel"), ("process", "oomScoreAdj"),
    ("root", "readonly"), ("root", "path"), ("mounts",), ("mounts", 0), ("mounts", 0, "options"),
    ("mounts", 0, "destination"), ("mounts", 0, "source"), ("mounts", 0, "type"), ("hooks",),
    ("hooks", "prestart"), ("hooks", "createRuntime"), ("annotations",), ("linux",), ("linux", "namespaces"),
    ("linux", "namespaces", 0), ("linux", "namespaces", 0, "type"), ("linux", "namespaces", 0, "path"),
    ("linux", "seccomp"), ("linux", "seccomp", "syscalls"), ("linux", "seccomp", "defaultAction"),
    ("linux", "resources"), ("linux", "resources", "memory"), ("linux", "resources", "memory", "limit"),
    ("linux", "resources", "pids"), ("linux", "resources", "cpu"), ("linux", "resources", "devices"),
    ("linux", "devices"), ("linux", "sysctl"), ("linux", "uidMappings"), ("linux", "gidMappings"),
    ("linux", "maskedPaths"), ("linux", "readonlyPaths"), ("linux", "cgroupsPath"), ("ociVersion",), ("process",),
]


def _set(cfg, pointer, value):
    node = cfg
    for k in pointer[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(k, {})
        elif isinstance(node, list) and isinstance(k, int) and k < len(node):
            node = node[k]
        else:
            return
    last = pointer[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value


BASE_CONFIG = spec_for_rootfs("rootfs", ["true"])
BASE_CONFIG["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "rw"]})
BASE_CONFIG["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}


@st.composite
def weird_configs(draw):
    cfg = copy.deepcopy(BASE_CONFIG)
    for pointer in draw(st.lists(st.sampled_from(POINTERS), min_size=1, max_size=4)):
        _set(cfg, pointer, draw(json_values))
    return cfg


def _dumps(value):
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


config_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(_dumps),
    weird_configs().map(_dumps),
    st.builds(lambda c, cut: _dumps(c)[:cut], weird_configs(), st.integers(0, 3000)),
)


def _bundle(work, data, name="b"):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    _write(os.path.join(d, "config.json"), data)
    return d


@fuzz_settings(400)
@given(data=config_bytes)
@example(data=b"[" * 100_000)
@example(data=b'{"a": 1, "a": 2}')
@example(data=b'{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {}, "x": NaN}')
@example(data=b"1" * 5000)
@example(data=b"\xef\xbb\xbf{}")
@example(data=b'"\\ud800"')
def test_read_config_gives_a_dict_or_a_bundle_error(work, data):
    d = _bundle(work, data)
    with watchdog(10):
        try:
            out = read_config(d)
        except BundleError as e:
            assert str(e)
            return
    assert isinstance(out, dict)


@pytest.mark.parametrize("where,key", [
    ("process", "NoNewPrivileges"), ("process", "CAPABILITIES"), ("linux", "Seccomp"), ("linux", "\u017feccomp"),
    ("", "Process"), ("", "LINUX"), ("", "Mounts"), ("linux", "NAMESPACES"), ("process", "u\u017fer"),
])
def test_read_config_refuses_keys_runc_reads_as_the_same_field(work, where, key):
    """Go's encoding/json (runc) matches object keys to struct fields case-insensitively, with Unicode
    simple folding (`\u017f`, the long s, is `s`), and the last key in the document wins: a later
    `Seccomp: null` undoes the profile's `seccomp`.  Such keys are duplicates to runc, so refuse them
    as read_config refuses exact duplicates."""
    cfg = copy.deepcopy(BASE_CONFIG)
    target = cfg[where] if where else cfg
    target[key] = None
    d = _bundle(work, json.dumps(cfg, ensure_ascii=False).encode(), "casefold")
    with pytest.raises(BundleError, match="(?i)duplicate|case"):
        read_config(d)


_CACHE = tempfile.mkdtemp(prefix="sandbox-fuzz-cache-")  # private (0700): not the host's profile cache
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def _check(bundle_dir):
    with watchdog(20):
        res = CliRunner().invoke(cli, ["check", "--profile", "strict", bundle_dir], env={"SANDBOX_CACHE_DIR": _CACHE})
    exc = res.exception
    crashed = exc is not None and not isinstance(exc, SystemExit)
    detail = ""
    if crashed:
        import traceback

        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-1500:]
    return res, crashed, detail


@fuzz_settings(300)
@given(cfg=weird_configs())
@example(cfg={**BASE_CONFIG, "process": {**BASE_CONFIG["process"], "capabilities": "ALL"}})
@example(cfg={**BASE_CONFIG, "mounts": {"destination": "/x"}})
@example(cfg={**BASE_CONFIG, "linux": {**BASE_CONFIG["linux"], "namespaces": [1, 2, 3]}})
@example(cfg={**BASE_CONFIG, "mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": [None]}]})
def test_check_of_a_weird_config_exits_0_1_or_3_without_a_traceback(work, cfg):
    d = _bundle(work, _dumps(cfg), "check")
    res, crashed, detail = _check(d)
    assert not crashed, f"{type(res.exception).__name__}: {res.exception}\n{detail}"
    assert res.exit_code in (0, 1, 3), res.output
    assert "Traceback" not in res.output


# Readable-but-weird shapes that reach the host probe: each must be a clean answer (0, 1 or 3).
WEIRD = {
    "linux is a string": lambda c: c.__setitem__("linux", "x"),
    "linux is a list": lambda c: c.__setitem__("linux", []),
    "mounts is a number": lambda c: c.__setitem__("mounts", 5),
    "mounts is an object": lambda c: c.__setitem__("mounts", {"destination": "/x"}),
    "hooks is a list": lambda c: c.__setitem__("hooks", [1]),
    "capabilities is a string": lambda c: c["process"].__setitem__("capabilities", "ALL"),
    "namespaces are numbers": lambda c: c["linux"].__setitem__("namespaces", [1, 2, 3]),
    "namespaces is a string": lambda c: c["linux"].__setitem__("namespaces", "network"),
    "NUL in a bind mount source": lambda c: c["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "/tmp\x00/x", "options": ["rbind"]}),
    "NUL in a namespace path": lambda c: c["linux"]["namespaces"].append(
        {"type": "network", "path": "/proc/1/ns/net\x00"}),
    "NUL in a hook path": lambda c: c.__setitem__("hooks", {"prestart": [{"path": "/bin/sh\x00"}]}),
    "NUL in root.path": lambda c: c["root"].__setitem__("path", "root\x00fs"),
    "null mount option (Go reads it as \"\")": lambda c: c["mounts"].append(
        {"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": [None, "nosuid"]}),
    "NUL in a mount destination": lambda c: c["mounts"].append(
        {"destination": "/x\x00y", "type": "tmpfs", "source": "tmpfs"}),
}


@pytest.mark.parametrize("what", list(WEIRD))
def test_check_of_a_known_weird_shape(work, what):
    cfg = copy.deepcopy(BASE_CONFIG)
    WEIRD[what](cfg)
    d = _bundle(work, _dumps(cfg), "weird-" + what.replace(" ", "-"))
    res, crashed, detail = _check(d)
    assert not crashed, f"{what}: {type(res.exception).__name__}: {res.exception}\n{detail}"
    assert res.exit_code in (0, 1, 3)


# ------------------------------------------------------------------------------------------------
# (c) runc's command line
# ------------------------------------------------------------------------------------------------

@fuzz_settings(1000, deadline_ms=500)
@given(argv=st.lists(st.one_of(st.text(max_size=12),
                               st.sampled_from(["--", "-", "--root", "-root=/r", "--log", "--log-format=json",
                                                "create", "run", "exec", "update", "restore", "state", "-b",
                                                "--bundle=/b", "--bundle", "-p", "--process", "--cap", "-c",
                                                "--memory", "--resources=-", "-r", "--pid-file", "--debug",
                                                "-d", "--detach", "-t", "c1", "sh", "--=x", "-=", "---x"])),
                     max_size=14))
def test_parse_accounts_for_every_argument(argv):
    inv = parse(argv)
    assert inv.argv == argv
    assert inv.route in ("hardened", "passthrough")
    if inv.route == "passthrough" or inv.error or inv.help:
        return
    # what runc will be given reads back to the same meaning, one occurrence per flag
    canon = inv.canonical()
    again = parse(canon)
    assert (again.subcommand, again.args, again.error) == (inv.subcommand, inv.args, None)
    assert {k: v for k, v in again.options.items() if k != "help"} == \
        {k: v for k, v in inv.options.items() if k != "help"}
    if inv.subcommand == "exec":  # exec keeps its argument order: the command follows the id
        i = len(argv) - len(inv.args)
        assert argv[i:] == inv.args


# A model of how runc 1.1 reads an argv, for the subset generated below (flags of `create`,
# `run` and `update` written `--name=value`, `--name value` with a value not starting with `-`, or
# `--name=true` for booleans; one container id).  Go's flag package: global flags first, `--`
# ends them, the next argument is the command.  urfave/cli v1 then *reorders* a command's
# arguments (every command but `exec`, which sets SkipArgReorder): its known flags, wherever
# they are, go before the positionals, so `create ID --bundle X` uses bundle X.
RUNC_VALUE_FLAGS = {
    "create": ["bundle", "b", "console-socket", "pid-file", "preserve-fds"],
    "run": ["bundle", "b", "console-socket", "pid-file", "preserve-fds"],
    "update": ["memory", "memory-swap", "pids-limit", "cpu-quota", "cpu-period", "cpuset-cpus", "resources", "r"],
}
RUNC_BOOL_FLAGS = {"create": ["no-pivot", "no-new-keyring"], "run": ["detach", "d", "keep", "no-pivot"],
                   "update": []}


@st.composite
def runc_argvs(draw):
    sub = draw(st.sampled_from(sorted(RUNC_VALUE_FLAGS)))
    argv = []
    for _ in range(draw(st.integers(0, 2))):
        name, value = draw(st.sampled_from([("root", "/run/r"), ("log", "/tmp/log"), ("log-format", "json")]))
        argv += draw(st.sampled_from([[f"--{name}", value], [f"--{name}={value}"], [f"-{name}", value]]))
    if draw(st.integers(0, 3)) == 0:
        argv.append("--")  # Go's flag package: end of the global flags
    argv.append(sub)
    cid = draw(st.sampled_from(["c1", "ctr-2", "x"]))
    flags = []  # (name, value) as runc will apply them, in order
    tokens = []
    n_before = draw(st.integers(0, 3))
    n_after = draw(st.integers(0, 3))
    for _ in range(n_before + n_after):
        if RUNC_BOOL_FLAGS[sub] and draw(st.integers(0, 3)) == 0:
            name = draw(st.sampled_from(RUNC_BOOL_FLAGS[sub]))
            tok = [f"--{name}=true"]
            flags.append((name, "true"))
        else:
            name = draw(st.sampled_from(RUNC_VALUE_FLAGS[sub]))
            numeric = name in ("preserve-fds", "pids-limit")  # cli.IntFlag: runc refuses anything else
            value = draw(st.sampled_from(["1073741824", "64", "0"] if numeric
                                         else ["/b1", "/b2", "/srv/bundle", "1073741824", "64"]))
            dash = "-" if len(name) == 1 else "--"
            tok = draw(st.sampled_from([[f"{dash}{name}", value], [f"{dash}{name}={value}"]]))
            flags.append((name, value))
        tokens.append(tok)
    for tok in tokens[:n_before]:
        argv += tok
    argv.append(cid)
    for tok in tokens[n_before:]:
        argv += tok
    return argv, sub, cid, flags


ALIASES = {"b": "bundle", "r": "resources", "d": "detach"}


@fuzz_settings(300, deadline_ms=500)
@given(case=runc_argvs())
@example(case=(["--root", "/run/r", "--", "create", "--bundle", "/b1", "c1"], "create", "c1", [("bundle", "/b1")]))
@example(case=(["create", "c1", "--bundle", "/b1"], "create", "c1", [("bundle", "/b1")]))
@example(case=(["update", "c1", "--memory", "1073741824"], "update", "c1", [("memory", "1073741824")]))
def test_parse_sees_what_runc_will_do(case):
    """The shim must harden the subcommand, bundle and container that runc itself will use."""
    argv, sub, cid, flags = case
    inv = parse(argv)
    assert inv.subcommand == sub, f"runc runs {sub!r}, the shim sees {inv.subcommand!r}: {argv}"
    if len({ALIASES.get(n, n) for n, _ in flags}) < len({n for n, _ in flags}):
        assert inv.error and "two forms" in inv.error, argv  # -b and --bundle together: runc refuses
        return
    assert inv.container_id == cid, argv
    expected = {}
    for name, value in flags:
        expected[ALIASES.get(name, name)] = value
    for name, value in expected.items():
        got = inv.option(name)
        got = str(got).lower() if isinstance(got, bool) else str(got)  # typed as runc types it
        assert got == value, f"runc uses --{name}={value}, the shim sees {got!r}: {argv}"


# ------------------------------------------------------------------------------------------------
# (d) exec --process JSON
# ------------------------------------------------------------------------------------------------

process_bytes = st.one_of(
    st.binary(max_size=300),
    json_values.map(_dumps),
    st.builds(lambda v: _dumps({"args": ["sh"], "cwd": "/", **(v if isinstance(v, dict) else {"x": v})}),
              json_values),
)


@fuzz_settings(300)
@given(data=process_bytes)
@example(data=b"{" * 50_000)
@example(data=b'{"args": ["sh"], "args": ["id"]}')
@example(data=b'{"capabilities": {"bounding": Infinity}}')
def test_process_json_gives_a_value_or_a_bundle_error(work, data):
    path = _write(os.path.join(work, "process.json"), data)
    with watchdog(10):
        try:
            read_json_file(path, "process")
        except BundleError as e:
            assert str(e)


# ------------------------------------------------------------------------------------------------
# symlinks and FIFOs where a file is expected
# ------------------------------------------------------------------------------------------------

GOOD_PROFILE = HEADER + "extends: baseline\n"


def _fifo(path):
    os.mkfifo(path, 0o644)
    return path


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-fifo", "symlink-loop", "dangling-symlink", "directory",
                                  "dev-null", "symlink-to-good"])
def test_profile_path_of_every_kind_is_answered_at_once(tmp_path, kind):
    path = str(tmp_path / "p.yaml")
    good = _write(str(tmp_path / "good.yaml"), GOOD_PROFILE)
    if kind == "fifo":
        _fifo(path)
    elif kind == "symlink-to-fifo":
        os.symlink(_fifo(str(tmp_path / "f")), path)
    elif kind == "symlink-loop":
        os.symlink(path, path)
    elif kind == "dangling-symlink":
        os.symlink(str(tmp_path / "nothing"), path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "dev-null":
        os.symlink("/dev/null", path)
    else:
        os.symlink(good, path)
    with watchdog(10):
        if kind == "symlink-to-good":
            assert load_profile(path).name == "fuzz"
        else:
            with pytest.raises(ProfileError):
                load_profile(path)


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-fifo", "symlink-loop", "directory", "dev-zero",
                                  "symlink-to-good"])
def test_config_json_of_every_kind_is_answered_at_once(tmp_path, kind):
    b = tmp_path / "bundle"
    b.mkdir()
    path = str(b / "config.json")
    good = _write(str(tmp_path / "good.json"), json.dumps(BASE_CONFIG))
    if kind == "fifo":
        _fifo(path)
    elif kind == "symlink-to-fifo":
        os.symlink(_fifo(str(tmp_path / "f")), path)
    elif kind == "symlink-loop":
        os.symlink(path, path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", path)
    else:
        os.symlink(good, path)
    with watchdog(10):
        if kind == "symlink-to-good":
            assert read_config(str(b))["ociVersion"]
        else:
            with pytest.raises(BundleError):
                read_config(str(b))
            with pytest.raises(BundleError):
                read_json_file(path, "process")


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-fifo", "symlink-loop", "directory", "dev-zero"])
def test_operator_config_of_every_kind_is_answered_at_once(tmp_path, kind, monkeypatch):
    path = str(tmp_path / "config.yaml")
    if kind == "fifo":
        _fifo(path)
    elif kind == "symlink-to-fifo":
        os.symlink(_fifo(str(tmp_path / "f")), path)
    elif kind == "symlink-loop":
        os.symlink(path, path)
    elif kind == "directory":
        os.mkdir(path)
        os.chmod(path, 0o755)
    else:
        os.symlink("/dev/zero", path)
    monkeypatch.setenv("SANDBOX_CACHE_DIR", "off")
    with watchdog(10):
        with pytest.raises(ConfigError):
            load_operator_config(path)


SHIM = os.path.join(ROOT, "bin", "sandbox-runc")


@pytest.mark.parametrize("argv", [["state", "c1"], ["create", "c1"]])
def test_dispatcher_does_not_hang_on_a_fifo_operator_config(tmp_path, argv):
    """bin/sandbox-runc reads `runc:` from the operator config itself; a FIFO there must not block it."""
    conf = _fifo(str(tmp_path / "config.yaml"))
    fake = tmp_path / "runc"
    fake.write_text('#!/bin/sh\necho "REAL $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SANDBOX_CONFIG": conf, "SANDBOX_PYTHON": sys.executable}
    try:
        res = subprocess.run(["sh", SHIM, *argv], capture_output=True, text=True, env=env, timeout=5,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sandbox-runc {' '.join(argv)} hung for 5 s on a FIFO at SANDBOX_CONFIG")
    assert "Traceback" not in res.stderr
    if argv[0] == "create":
        assert res.returncode != 0 and "not a regular file" in res.stderr


def test_the_operator_configs_mode_and_owner_are_those_of_the_file_not_the_link(tmp_path):
    """A root-owned 0644 symlink cannot launder a 0666 operator config (the check follows the link)."""
    target = _write(str(tmp_path / "real.yaml"), "default_profile: baseline\n")
    os.chmod(target, 0o666)
    link = str(tmp_path / "config.yaml")
    os.symlink(target, link)
    assert stat.S_ISLNK(os.lstat(link).st_mode)
    with pytest.raises(ConfigError, match="writable"):
        load_operator_config(link)


def test_inputs_are_not_all_rejected(work):
    """Guard against a vacuous fuzz run: the generators do reach valid profiles and configs."""
    ok = _load(_write(os.path.join(work, "ok.yaml"), GOOD_PROFILE))
    assert isinstance(ok, Profile)
    d = _bundle(work, json.dumps(BASE_CONFIG), "ok-bundle")
    assert read_config(d)["process"]["args"] == ["true"]
    res, crashed, _ = _check(d)
    assert not crashed and res.exit_code in (0, 3)
