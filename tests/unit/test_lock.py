"""The committed lock files: complete, hashed, and made from this pyproject.toml (scripts/lock.py)."""

import importlib.util
import os
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def lock():
    spec = importlib.util.spec_from_file_location("sandbox_lock_script", os.path.join(ROOT, "scripts", "lock.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(reqs):
    return {norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0)) for r in reqs}


def test_the_committed_lock_is_made_from_this_pyproject():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "lock.py"), "--check"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


def test_every_direct_dependency_and_build_tool_is_pinned(lock):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        doc = tomllib.load(f)
    wanted = requirement_names(doc["project"]["dependencies"] + doc["project"]["optional-dependencies"]["test"])
    assert wanted <= set(lock.pins(lock.LOCK)), wanted - set(lock.pins(lock.LOCK))
    assert requirement_names(["pip", *doc["build-system"]["requires"]]) <= set(lock.pins(lock.BUILD_LOCK))


@pytest.mark.parametrize("name", ["build.txt", "lock.txt"])
def test_every_pin_is_exact_and_hashed(name):
    """pip --require-hashes refuses a requirement without a hash or with a version range."""
    with open(os.path.join(ROOT, "requirements", name)) as f:
        text = f.read()
    stanzas = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    reqs = [s for s in stanzas if s[:1].isalnum()]
    assert reqs
    for s in reqs:
        assert re.match(r"[A-Za-z0-9._-]+==\S+ \\\n", s), s.splitlines()[0]
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", s), s.splitlines()[0]
    assert "--index-url" not in text and "--find-links" not in text and "file:" not in text


def test_a_changed_dependency_makes_the_lock_stale(lock, tmp_path, monkeypatch, capsys):
    changed = tmp_path / "pyproject.toml"
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    changed.write_text(text.replace('"click>=8.1",', '"click>=8.1",\n    "grpcio>=1.60",'))
    monkeypatch.setattr(lock, "PYPROJECT", str(changed))
    assert lock.check() == 1
    assert "run scripts/lock.py" in capsys.readouterr().err
    # a change elsewhere in pyproject.toml (a tool's settings) does not
    changed.write_text(text + "\n[tool.example]\nx = 1\n")
    assert lock.check() == 0


def test_the_lock_resolver_ignores_this_machines_pip_configuration(lock, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/xdg/pip/constraints.txt")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    env = lock.clean_env()
    assert not {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"} & set(env)
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
