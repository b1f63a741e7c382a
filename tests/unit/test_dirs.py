"""Directories made at first use: modes independent of the umask, nothing existing changed."""

import contextlib
import os
import stat

import pytest

from sandbox.audit import log as audit_mod
from sandbox.audit.log import AuditLog
from sandbox.host.dirs import ensure_dir


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o000])
def test_missing_parents_get_0755_and_the_leaf_its_mode_whatever_the_umask(tmp_path, mask):
    leaf = tmp_path / "var" / "cache" / "sandbox" / "compiled"
    with umask(mask):
        assert ensure_dir(str(leaf), 0o700) is True
    assert [mode(p) for p in (leaf.parent.parent.parent, leaf.parent.parent, leaf.parent)] == [0o755] * 3
    assert mode(leaf) == 0o700


def test_an_existing_directory_is_left_as_the_operator_made_it(tmp_path):
    d = tmp_path / "audit"
    d.mkdir()
    os.chmod(d, 0o750)
    assert ensure_dir(str(d), 0o700) is False
    assert mode(d) == 0o750


def test_a_file_in_the_way_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_dir(str(tmp_path / "f" / "sub"), 0o700)


def test_a_concurrent_first_use_that_wins_the_mkdir_is_not_an_error(tmp_path, monkeypatch):
    target = tmp_path / "run" / "sandbox"
    real_mkdir = os.mkdir

    def racing_mkdir(path, m=0o777):
        if str(path) == str(target):
            real_mkdir(path, 0o711)  # the other process was first
            raise FileExistsError(17, "File exists", str(path))
        return real_mkdir(path, m)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    assert ensure_dir(str(target), 0o700) is False
    assert mode(target) == 0o711


def test_the_default_audit_directory_is_made_root_only_even_when_named_explicitly(tmp_path, monkeypatch):
    """scripts/demo.sh names /var/log/sandbox/audit.jsonl with --audit-log; on a fresh machine the
    directory does not exist yet and must be created (0700), not refused."""
    default_dir = tmp_path / "var" / "log" / "sandbox"
    monkeypatch.setattr(audit_mod, "DEFAULT_DIR", str(default_dir))
    with umask(0):
        log = AuditLog(str(default_dir / "audit.jsonl"), create_dir=False)
        [rec] = log.append([{"event": "started", "container_id": "c1"}])
    assert rec["seq"] == 1
    assert mode(default_dir) == 0o700 and mode(default_dir.parent) == 0o755
    assert mode(default_dir / "audit.jsonl") == 0o600
    assert os.stat(default_dir).st_uid == os.geteuid()


def test_another_missing_directory_named_explicitly_is_still_refused(tmp_path):
    log = AuditLog(str(tmp_path / "typo" / "audit.jsonl"), create_dir=False)
    with pytest.raises(audit_mod.AuditError, match="does not exist"):
        log.append([{"event": "started", "container_id": "c1"}])
    assert not (tmp_path / "typo").exists()
