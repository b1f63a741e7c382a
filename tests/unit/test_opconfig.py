import os

import pytest

from sandbox.errors import ConfigError
from sandbox.host.opconfig import OperatorConfig, load_operator_config


def write(tmp_path, text, mode=0o644):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    os.chmod(p, mode)
    return str(p)


def test_missing_default_file_means_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("SANDBOX_CONFIG", raising=False)
    assert load_operator_config(str(tmp_path / "absent.yaml")) == OperatorConfig()


def test_missing_file_named_by_env_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_operator_config()


def test_values_read(tmp_path):
    cfg = load_operator_config(write(tmp_path, "runc: /usr/sbin/runc\nallowed_profiles: [strict]\nfloor: restricted\n"
                                               "on_audit_failure: warn\nmode: complain\n"))
    assert cfg.runc == "/usr/sbin/runc" and cfg.allowed_profiles == ("strict",) and cfg.floor == "restricted"
    assert cfg.on_audit_failure == "warn" and cfg.mode == "complain"


@pytest.mark.parametrize("text,msg", [
    ("runc: [1]\n", "runc: wrong type list"),
    ("on_audit_failure: maybe\n", "on_audit_failure: must be 'fail' or 'warn'"),
    ("audit_logg: /x\n", "unknown key 'audit_logg'"),
    ("runc: /a\nrunc: /b\n", "duplicate key 'runc'"),
    ("- a\n", "must be a YAML mapping"),
    ("runc: [\n", "invalid YAML"),
])
def test_invalid_config_names_file_and_line(tmp_path, text, msg):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_operator_config(path)
    assert str(e.value).startswith(path + ":") and msg in str(e.value)


def test_loose_permissions_refused(tmp_path):
    with pytest.raises(ConfigError, match="writable by group or others"):
        load_operator_config(write(tmp_path, "runc: /usr/sbin/runc\n", mode=0o666))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_not_owned_by_root_refused(tmp_path):
    path = write(tmp_path, "runc: /usr/sbin/runc\n")
    os.chown(path, 1000, 1000)
    with pytest.raises(ConfigError, match="not owned by root"):
        load_operator_config(path)
