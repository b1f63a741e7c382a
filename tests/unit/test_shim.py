import json
import os
import subprocess
import sys

import pytest

from sandbox.core.runc_cli import parse
from sandbox.errors import PolicyRefusal
from sandbox.host.opconfig import OperatorConfig
from sandbox.runtime.shim import _Shim, write_runc_log
from tests.conftest import ROOT


def test_runc_log_json_line_as_runc_writes_it(tmp_path):
    log = tmp_path / "log.json"
    write_runc_log(str(log), "json", "refused by sandbox profile strict: bind mount source /etc")
    rec = json.loads(log.read_text())
    assert rec["level"] == "error" and rec["msg"].startswith("refused by sandbox profile strict")
    assert rec["time"].endswith("Z")


def test_runc_log_text_line(tmp_path):
    log = tmp_path / "log"
    write_runc_log(str(log), "text", 'say "no"')
    assert 'level=error msg="say \\"no\\""' in log.read_text()


def shim_with(op, argv=("create", "c1")):
    s = _Shim(parse(list(argv)))
    s.op = op
    return s


def test_annotation_profile_must_be_allowed():
    s = shim_with(OperatorConfig(allowed_profiles=("strict",)))
    cfg = {"annotations": {"org.sandbox-runtime.profile": "restricted"}}
    with pytest.raises(PolicyRefusal, match="does not allow"):
        s.select_profile(cfg)
    cfg["annotations"]["org.sandbox-runtime.profile"] = "strict"
    assert s.select_profile(cfg).name == "strict"
    assert s.select_profile({}).name == "baseline"


def test_floor_refuses_a_looser_allowed_profile():
    s = shim_with(OperatorConfig(allowed_profiles=("baseline", "strict"), default_profile="restricted",
                                 floor="restricted"))
    with pytest.raises(PolicyRefusal, match="looser than the floor"):
        s.select_profile({"annotations": {"org.sandbox-runtime.profile": "baseline"}})
    assert s.select_profile({"annotations": {"org.sandbox-runtime.profile": "strict"}}).name == "strict"


def test_operator_mode_override():
    s = shim_with(OperatorConfig(mode="complain"))
    assert s.select_profile({}).mode == "complain"


def test_recorded_profile_used_for_exec():
    s = shim_with(OperatorConfig(), ("exec", "c1", "sh"))
    cfg = {"annotations": {"org.sandbox-runtime.profile.applied": "strict@0123456789abcdef"}}
    assert s.select_profile(cfg).name == "strict"


def test_shim_module_imports_lazily():
    # the hardening path pays for YAML, the transform and libseccomp only when it uses them
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import sandbox.runtime.shim, sandbox.core.runc_cli as r;"
            "r.parse(['state','x']);"
            "print([m for m in ('yaml','sandbox.core.loader','sandbox.core.transform','click','pyseccomp','psutil')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-I", "-c", code, ROOT], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


def test_create_path_with_a_warm_cache_imports_nothing_heavy(tmp_path):
    """The hot path's import budget: no YAML, typing, dataclasses, re, json, enum or libseccomp.

    As root, strict adds a user namespace to runc's spec, so the id range allocation and the
    rootfs view in the runtime's own mount namespace are on the path measured too."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "rootfs").mkdir()
    with open(os.path.join(ROOT, "oci", "runc-spec-1.1.json")) as f:
        spec = json.load(f)
    if os.geteuid() != 0:
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000,
                                                                          "size": 65536}]
    spec_text = json.dumps(spec)
    (b / "config.json").write_text(spec_text)
    conf = tmp_path / "config.yaml"
    conf.write_text(f"runc: /bin/true\ndefault_profile: strict\naudit_log: {tmp_path}/audit.jsonl\n")
    conf.chmod(0o644)
    import site

    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.extend(sys.argv[3].split(':'))\n"
            "sys.argv = ['sandbox-runc', 'create', '-b', sys.argv[2], 'c1']\n"
            "from sandbox.runtime.shim import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "heavy = ('yaml', 'typing', 'dataclasses', 're', 'json', 'enum', 'inspect', 'pyseccomp', 'click', "
            "'subprocess', 'hashlib', 'sandbox.core.loader')\n"
            "print(code, [m for m in heavy if m in sys.modules])\n")
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(conf), "SANDBOX_CACHE_DIR": str(cache),
           "SANDBOX_RUNC": "/bin/true", "SANDBOX_RUNTIME_DIR": str(tmp_path / "runtime")}
    paths = ":".join(site.getsitepackages())
    first = subprocess.run([sys.executable, "-I", "-S", "-c", code, ROOT, str(b), paths], capture_output=True,
                           text=True, env=env, timeout=60)
    assert first.stdout.startswith("0 "), first.stderr  # cold: loads and compiles the profile
    (b / "config.json").write_text(spec_text)
    warm = subprocess.run([sys.executable, "-I", "-S", "-c", code, ROOT, str(b), paths], capture_output=True,
                          text=True, env=env, timeout=60)
    assert warm.stdout.strip() == "0 []", warm.stdout + warm.stderr
    hardened = json.loads((b / "config.json").read_text())
    assert hardened["annotations"]["org.sandbox-runtime.profile.applied"].startswith("strict@")


def test_cache_entry_is_not_used_after_the_profile_changes(tmp_path, monkeypatch):
    from sandbox.host import cache

    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "c"))
    p = tmp_path / "p.yaml"
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: p\nextends: strict\nresources: {pids: {max: 50}}\n")
    assert cache.load_profile(str(p)).resources.pids.max == 50
    assert cache.load_profile(str(p)).resources.pids.max == 50  # from the cache
    assert cache.lookup("profile", cache.profile_key(str(p))) is not None
    p.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: p\nextends: strict\nresources: {pids: {max: 60}}\n")
    assert cache.load_profile(str(p)).resources.pids.max == 60
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(loose))
    assert cache.cache_dir() is None  # a directory others can read or write is never used


@pytest.mark.parametrize("mode", ["complain", "enforce"])
def test_complain_mode_records_what_enforce_mode_refuses_in_config_json(tmp_path, mode):
    """An ociVersion sandbox does not know: runc never reads it, so complain mode passes the bundle on
    unchanged and records the refusal an enforcing profile would make; enforce mode refuses."""
    b = tmp_path / "bundle"
    b.mkdir()
    with open(os.path.join(ROOT, "oci", "runc-spec-1.1.json")) as f:
        cfg = json.load(f)
    cfg["ociVersion"] = "9.9.9"
    text = json.dumps(cfg)
    (b / "config.json").write_text(text)
    audit = tmp_path / "audit.jsonl"
    conf = tmp_path / "config.yaml"
    conf.write_text(f"runc: /bin/true\ndefault_profile: strict\nmode: {mode}\naudit_log: {audit}\n")
    conf.chmod(0o644)
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_CONFIG": str(conf), "SANDBOX_CACHE_DIR": str(tmp_path / "cache"),
           "SANDBOX_RUNC": "/bin/true", "SANDBOX_DAEMON_SOCKET": "off"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['sandbox-runc', *sys.argv[2:]]\n"
            "from sandbox.runtime.shim import main; main()")
    res = subprocess.run([sys.executable, "-c", code, ROOT, "create", "-b", str(b), "c1"], capture_output=True,
                         text=True, env=env, timeout=60)
    records = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
    if mode == "complain":
        assert res.returncode == 0, res.stderr
        assert (b / "config.json").read_text() == text  # nothing changed
        bundle = [r["decision"] for r in records if r.get("event") == "decision"
                  and r["decision"]["control"] == "bundle"]
        assert len(bundle) == 1 and bundle[0]["pointer"] == "/ociVersion" and bundle[0]["applied"] is False
        assert "9.9.9" in bundle[0]["reason"]
    else:
        assert res.returncode == 1 and "ociVersion" in res.stderr and "need 1.x" in res.stderr
