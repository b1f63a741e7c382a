import json
import os

import pytest
import yaml
from click.testing import CliRunner

from sandbox.cli import cli
from tests.conftest import FIXTURES, OCI, nethook_facts

SCHEMA_DIR = "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def bundle(tmp_path, config=None, name="b"):
    d = tmp_path / name
    d.mkdir()
    if config is None:
        with open(os.path.join(OCI, "runc-spec-1.1.json")) as f:
            config = json.load(f)
    (d / "config.json").write_text(json.dumps(config) if not isinstance(config, str) else config)
    return str(d)


def test_profile_list_and_show():
    res = run("profile", "list")
    assert res.exit_code == 0
    assert [line.split()[0] for line in res.output.splitlines()] == ["baseline", "restricted", "strict"]
    res = run("profile", "show", "strict", "--resolved")
    data = yaml.safe_load(res.output)
    assert data["name"] == "strict" and data["filesystem"]["readonly_rootfs"] is True
    assert len(data["sha256"]) == 64


def test_validate_exit_codes_and_positions():
    ok = run("profile", "validate", os.path.join(FIXTURES, "valid-child.yaml"))
    assert ok.exit_code == 0 and "valid" in ok.output
    bad = run("profile", "validate", os.path.join(FIXTURES, "invalid-syscall-typo.yaml"),
              os.path.join(FIXTURES, "valid-child.yaml"))
    assert bad.exit_code == 1
    assert f"{FIXTURES}/invalid-syscall-typo.yaml:7:7: seccomp.deny[1]: unknown syscall 'ptrce'" in bad.output
    js = run("profile", "validate", "--format", "json", os.path.join(FIXTURES, "invalid-wrong-type.yaml"))
    doc = json.loads(js.output)
    assert js.exit_code == 1 and doc[0]["valid"] is False
    assert {e["field"] for e in doc[0]["errors"]} == {"filesystem.readonly_rootfs", "resources.memory.max"}
    assert all(e["line"] for e in doc[0]["errors"])


@pytest.mark.parametrize("fixture", sorted(f for f in os.listdir(FIXTURES) if f.startswith("invalid-")))
def test_every_invalid_fixture_is_one_clear_error_not_a_traceback(fixture):
    res = CliRunner().invoke(cli, ["profile", "validate", os.path.join(FIXTURES, fixture)])
    assert res.exit_code == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    assert fixture in res.output.splitlines()[0]


def test_lint_formats_and_fail_on():
    res = run("profile", "lint", "baseline", "--fail-on", "medium")
    assert res.exit_code == 1 and "SBX003 [medium]" in res.output
    assert run("profile", "lint", "strict", "--fail-on", "high").exit_code == 0
    sarif = json.loads(run("profile", "lint", "baseline", "--format", "sarif", "--fail-on", "never").output)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert results and all(r["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1 for r in results)
    as_json = json.loads(run("profile", "lint", "baseline", "--format", "json", "--fail-on", "never").output)
    assert {f["rule"] for f in as_json} >= {"SBX003", "SBX004"}


def test_diff_exit_codes():
    assert run("profile", "diff", "baseline", "strict").exit_code == 0
    res = run("profile", "diff", "strict", "baseline")
    assert res.exit_code == 1 and "loosen" in res.output


def test_schema_accepts_the_builtin_profiles_and_rejects_typos():
    import jsonschema

    from sandbox.core.loader import builtin_profile_text

    schema = json.loads(run("profile", "schema").output)
    for name in ("baseline", "restricted", "strict"):
        jsonschema.validate(yaml.safe_load(builtin_profile_text(name)[0]), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apiVersion": "sandbox/v1", "kind": "Profile", "name": "x", "capabilites": []}, schema)


def test_check_allowed_refused_and_invalid(tmp_path):
    b = bundle(tmp_path)
    res = run("check", "--profile", "strict", b)
    assert res.exit_code == 0 and "verdict: allowed under profile strict" in res.output
    res = run("check", "--profile", "restricted", b, "--format", "json")
    doc = json.loads(res.output)
    assert res.exit_code == 3 and doc["verdict"] == "refused"
    assert any(d["action"] == "refuse" and d["control"] == "user" for d in doc["decisions"])
    broken = bundle(tmp_path, '{"ociVersion": "1.0.2",\n  "root": {"path": "rootfs"\n', name="broken")
    res = CliRunner().invoke(cli, ["check", "--profile", "strict", broken])
    assert res.exit_code == 1
    assert res.output.startswith(f"sandbox: {broken}/config.json:3:")
    assert "Traceback" not in res.output


def test_apply_writes_nothing_when_refused(tmp_path):
    b = bundle(tmp_path)
    before = open(os.path.join(b, "config.json")).read()
    res = run("apply", "--profile", "restricted", b, "-o", os.path.join(b, "config.json"))
    assert res.exit_code == 3
    assert open(os.path.join(b, "config.json")).read() == before
    res = run("apply", "--profile", "strict", b, "-o", os.path.join(b, "config.json"))
    assert res.exit_code == 0
    hardened = json.load(open(os.path.join(b, "config.json")))
    assert hardened["root"]["readonly"] is True and {"type": "user"} in hardened["linux"]["namespaces"]


def test_unknown_profile_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(cli, ["check", "--profile", "strikt", bundle(tmp_path)])
    assert res.exit_code == 1
    assert res.output.strip() == ("sandbox: no profile named 'strikt' (built-in: baseline, restricted, strict) "
                                  "(did you mean 'strict'?)")


def _oci_validator():
    if not os.path.isdir(SCHEMA_DIR):
        if os.environ.get("SANDBOX_E2E") == "require":
            pytest.fail("the OCI runtime-spec schema (golang-github-opencontainers-specs-dev) is not installed")
        pytest.skip("the OCI runtime-spec schema (golang-github-opencontainers-specs-dev) is not installed")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    # the schema files name each other relatively ("defs.json#/..."): serve them under one base URI
    base = "file://" + SCHEMA_DIR + "/"
    resources = []
    for name in os.listdir(SCHEMA_DIR):
        if name.endswith(".json"):
            with open(os.path.join(SCHEMA_DIR, name)) as f:
                resources.append((base + name, Resource.from_contents(json.load(f), default_specification=DRAFT4)))
    registry = Registry().with_resources(resources)
    schema = {"$ref": base + "config-schema.json"}
    return jsonschema.Draft4Validator(schema, registry=registry)


@pytest.mark.parametrize("profile", ["baseline", "restricted", "strict"])
@pytest.mark.parametrize("fixture", ["runc-spec-1.1.json", "podman-4.3-config.json"])
def test_hardened_configs_validate_against_the_oci_schema(profile, fixture):
    from sandbox.core.hostfacts import HostFacts
    from sandbox.core.loader import load_profile
    from sandbox.core.transform import apply

    validator = _oci_validator()
    with open(os.path.join(OCI, fixture)) as f:
        config = json.load(f)
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    out = apply(load_profile(profile), config, HostFacts(bundle_dir="/var/lib/sandbox/bundle", **nethook_facts()))
    assert not out.refused, [d.reason for d in out.refusals]
    errors = sorted(validator.iter_errors(out.config), key=str)
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]
