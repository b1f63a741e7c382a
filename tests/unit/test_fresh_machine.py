""".ci/fresh-machine.sh: the host state is moved aside, the run's own is removed, the machine's comes back."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(tmp_path, script):
    res = subprocess.run(["bash", "-c", f"set -euo pipefail; . {ROOT}/.ci/fresh-machine.sh; "
                                        f"HOST_STATE=({tmp_path}/log {tmp_path}/cache {tmp_path}/absent); "
                                        f"ENGINE_STATE=(); {script}"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return res


def test_clear_twice_then_restore_gives_back_exactly_what_was_there(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "audit.jsonl").write_text("the machine's own records\n")
    (tmp_path / "cache").mkdir()
    (tmp_path / ".venv").mkdir()
    run(tmp_path, f"""
        fresh_clear --venv
        [ ! -e {tmp_path}/log ] && [ ! -e {tmp_path}/cache ] && [ ! -e .venv ]
        mkdir -p {tmp_path}/log {tmp_path}/absent && echo demo > {tmp_path}/log/audit.jsonl   # the demo's
        fresh_clear
        [ ! -e {tmp_path}/log ] && [ ! -e {tmp_path}/absent ]
        mkdir -p {tmp_path}/log {tmp_path}/absent && echo tests > {tmp_path}/log/audit.jsonl  # the tests'
        fresh_restore
        [ ! -e "$FRESH_STASH" ]
    """)
    assert (tmp_path / "log" / "audit.jsonl").read_text() == "the machine's own records\n"
    assert (tmp_path / "cache").is_dir()
    assert not (tmp_path / "absent").exists()  # did not exist before: what the run made is gone


def test_a_path_with_a_mount_below_it_is_left_alone(tmp_path):
    res = run(tmp_path, "_fresh_mounted_below /proc && ! _fresh_mounted_below /nonexistent-path-x && echo ok")
    assert res.stdout.strip() == "ok"


def test_fresh_expect_checks_the_bits_that_matter(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    script = f"""
        chmod 750 {d}; ! fresh_expect {d} 022 001 2>/dev/null   # others cannot traverse: a userns root is locked out
        chmod 755 {d}; fresh_expect {d} 022 001
        chmod 775 {d}; ! fresh_expect {d} 022 001 2>/dev/null   # group-writable
        chmod 700 {d}; fresh_expect {d} 077 700
        chmod 701 {d}; ! fresh_expect {d} 077 700 2>/dev/null
        ! fresh_expect {tmp_path}/never-made 077 700 2>/dev/null
        echo ok
    """
    assert run(tmp_path, script).stdout.strip() == "ok"
