"""sandbox.host.bundle: reading config.json safely, writing it atomically, making bundles."""

import json
import os
import stat
import threading

import pytest

from sandbox.errors import BundleError
from sandbox.host import bundle as bundle_mod
from sandbox.host.bundle import make_bundle, read_config, read_json_file, spec_for_rootfs, write_config_atomic
from tests.conftest import OCI

MINIMAL = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/"}}


def write(tmp_path, text, mode="w"):
    p = tmp_path / "config.json"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


# -- reading ------------------------------------------------------------------------------

def test_reads_a_minimal_config_and_keeps_unknown_fields(tmp_path):
    write(tmp_path, json.dumps({**MINIMAL, "x-vendor": {"a": [1, 2]}}))
    cfg = read_config(str(tmp_path))
    assert cfg["x-vendor"] == {"a": [1, 2]}


def test_bad_json_names_the_file_line_and_column(tmp_path):
    write(tmp_path, '{\n  "ociVersion": "1.0.2",\n  "root": {"path": "r"}\n  "process": {}\n}\n')
    with pytest.raises(BundleError) as ei:
        read_config(str(tmp_path))
    e = ei.value
    assert (e.location.line, e.location.col) == (4, 3)
    text = str(e)
    # sandbox's part: file:line:col and the kind of error; the parser's own wording after it may change
    assert text.startswith(f"{tmp_path / 'config.json'}:4:3: invalid JSON: ")
    assert len(text) > len(f"{tmp_path / 'config.json'}:4:3: invalid JSON: ") and "\n" not in text


def test_duplicate_keys_are_refused_with_the_key_name(tmp_path):
    write(tmp_path, '{"ociVersion": "1.0.2", "root": {"path": "a", "path": "b"}, "process": {}}')
    with pytest.raises(BundleError, match='duplicate key "path"'):
        read_config(str(tmp_path))


def test_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    result = {}

    def go():
        try:
            read_config(str(tmp_path))
        except BundleError as e:
            result["err"] = str(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "read_config hung on a FIFO"
    assert "FIFO" in result["err"] and "config.json" in result["err"]


def test_a_fifo_swapped_in_after_the_stat_does_not_hang(tmp_path, monkeypatch):
    # the path passes the stat as a regular file, then is a FIFO when opened
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(__file__)
    monkeypatch.setattr(bundle_mod.os, "stat", lambda p, *a, **k: regular if str(p) == str(fifo) else real_stat(p, *a, **k))
    with pytest.raises(BundleError, match="FIFO"):
        read_json_file(str(fifo))


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_other_non_regular_files_are_refused(tmp_path, kind):
    if kind == "directory":
        (tmp_path / "config.json").mkdir()
    else:
        os.symlink("/dev/zero", tmp_path / "config.json")
    with pytest.raises(BundleError, match=f"is a {kind}, not a regular file"):
        read_config(str(tmp_path))


def test_missing_file(tmp_path):
    with pytest.raises(BundleError, match="config.json does not exist"):
        read_config(str(tmp_path))


def test_files_over_16_mib_are_refused(tmp_path):
    with open(tmp_path / "config.json", "wb") as f:
        f.truncate(16 * 1024 * 1024 + 1)
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        read_config(str(tmp_path))


@pytest.mark.parametrize("depth", [100, 5000, 200000])
def test_huge_nesting_is_a_bundle_error_not_a_recursion_error(tmp_path, depth):
    write(tmp_path, '{"ociVersion": "1.0.2", "x": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(BundleError, match="nested"):
        read_config(str(tmp_path))


def test_non_utf8_is_refused_with_its_position(tmp_path):
    write(tmp_path, b'{"ociVersion": "1.0.2",\n "x": "caf\xe9"}')
    with pytest.raises(BundleError, match="not valid UTF-8") as ei:
        read_config(str(tmp_path))
    assert (ei.value.location.line, ei.value.location.col) == (2, 11)


def test_nan_is_refused(tmp_path):
    write(tmp_path, '{"ociVersion": "1.0.2", "x": NaN}')
    with pytest.raises(BundleError, match="NaN"):
        read_config(str(tmp_path))


@pytest.mark.parametrize("doc, field, msg", [
    ("[]", None, "top level must be a JSON object, not an array"),
    ('{"root": {"path": "r"}, "process": {}}', "ociVersion", "missing"),
    ('{"ociVersion": 1, "root": {"path": "r"}, "process": {}}', "ociVersion", "must be a string"),
    ('{"ociVersion": "2.0.0", "root": {"path": "r"}, "process": {}}', "ociVersion", "unsupported"),
    ('{"ociVersion": "1.0.2", "process": {}}', "root", "missing"),
    ('{"ociVersion": "1.0.2", "root": {}, "process": {}}', "root.path", "missing"),
    ('{"ociVersion": "1.0.2", "root": {"path": 3}, "process": {}}', "root.path", "must be a string"),
    ('{"ociVersion": "1.0.2", "root": {"path": ""}, "process": {}}', "root.path", "non-empty string"),
    ('{"ociVersion": "1.0.2", "root": {"path": "r"}}', "process", "missing"),
    ('{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": []}', "process", "must be an object"),
])
def test_required_fields(tmp_path, doc, field, msg):
    write(tmp_path, doc)
    with pytest.raises(BundleError, match=msg) as ei:
        read_config(str(tmp_path))
    assert ei.value.field == field


# complain mode reads leniently: what runc itself runs is reported, not refused

@pytest.mark.parametrize("doc, field", [
    ('{"root": {"path": "r"}, "process": {}}', "ociVersion"),  # runc never reads ociVersion
    ('{"ociVersion": "2.0.0", "root": {"path": "r"}, "process": {}}', "ociVersion"),
    ('{"ociVersion": "0.1", "root": {"path": "r"}, "process": {}}', "ociVersion"),
    ('{"ociVersion": "1.0.2", "root": {}, "process": {}}', "root.path"),  # runc: the bundle directory
    ('{"ociVersion": "1.0.2", "root": {"path": ""}, "process": {}}', "root.path"),
    (b'{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {}, "x": "caf\xe9"}', None),  # Go: U+FFFD
])
def test_what_runc_runs_is_a_problem_not_an_error_when_asked(tmp_path, doc, field):
    write(tmp_path, doc)
    with pytest.raises(BundleError):
        read_config(str(tmp_path))
    problems = []
    cfg = read_config(str(tmp_path), problems=problems)
    assert isinstance(cfg, dict) and len(problems) == 1 and problems[0].field == field
    if field is None:
        assert cfg["x"] == "caf\ufffd"


@pytest.mark.parametrize("doc, msg", [
    ('{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {}', "invalid JSON"),  # runc rejects too
    ('{"ociVersion": 1, "root": {"path": "r"}, "process": {}}', "must be a string"),  # a Go type error
    ('{"ociVersion": "1.0.2", "process": {}}', "missing"),  # runc: "root must be specified"
    ('{"ociVersion": "1.0.2", "root": {"path": "r"}}', "missing"),  # runc: "process property must not be empty"
    ('{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"args": 1}}', "expected an array"),
    # sandbox's reading would differ from runc's: an audit record of it would be false
    ('{"ociVersion": "1.0.2", "root": {"path": "a", "path": "b"}, "process": {}}', "duplicate key"),
    ('{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {}, "Process": {}}', "same field"),
    ('{"ociVersion": "1.0.2", "root": {"path": "r\\u0000"}, "process": {}}', "NUL"),
])
def test_what_runc_rejects_or_reads_differently_is_refused_even_when_lenient(tmp_path, doc, msg):
    write(tmp_path, doc)
    with pytest.raises(BundleError, match=msg):
        read_config(str(tmp_path), problems=[])


# -- writing -------------------------------------------------------------------------------

def leftovers(d):
    return [n for n in os.listdir(d) if n.startswith(".config.json.sandbox-")]


def test_atomic_write_keeps_mode_and_round_trips_unknown_fields(tmp_path):
    p = write(tmp_path, json.dumps(MINIMAL))
    os.chmod(p, 0o640)
    cfg = read_config(str(tmp_path))
    cfg["x-unknown"] = {"nested": [1, {"k": None}], "unicodé": "✓"}
    cfg["annotations"] = {"a": "b"}
    write_config_atomic(str(tmp_path), cfg)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    assert read_config(str(tmp_path)) == cfg
    assert leftovers(tmp_path) == []


def test_atomic_write_keeps_ownership(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    p = write(tmp_path, json.dumps(MINIMAL))
    os.chown(p, 1234, 5678)
    write_config_atomic(str(tmp_path), dict(MINIMAL, hostname="h"))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_a_new_config_is_private(tmp_path):
    write_config_atomic(str(tmp_path), MINIMAL)
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o600


def test_crash_before_the_rename_leaves_the_original_intact_and_no_temp_files(tmp_path, monkeypatch):
    original = json.dumps(MINIMAL)
    p = write(tmp_path, original)

    def boom(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(bundle_mod.os, "rename", boom)
    with pytest.raises(BundleError, match="cannot write"):
        write_config_atomic(str(tmp_path), dict(MINIMAL, hostname="changed"))
    assert p.read_text() == original
    assert leftovers(tmp_path) == []


def test_interrupt_during_write_leaves_the_original_intact(tmp_path, monkeypatch):
    original = json.dumps(MINIMAL)
    p = write(tmp_path, original)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_mod.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_config_atomic(str(tmp_path), dict(MINIMAL, hostname="changed"))
    assert p.read_text() == original
    assert leftovers(tmp_path) == []


def test_unserialisable_config_is_a_bundle_error_and_writes_nothing(tmp_path):
    p = write(tmp_path, json.dumps(MINIMAL))
    with pytest.raises(BundleError, match="cannot serialise"):
        write_config_atomic(str(tmp_path), dict(MINIMAL, x=float("nan")))
    assert json.loads(p.read_text()) == MINIMAL
    assert leftovers(tmp_path) == []


def test_a_symlinked_config_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(MINIMAL))
    os.symlink(target, tmp_path / "config.json")
    write_config_atomic(str(tmp_path), dict(MINIMAL, hostname="h"))
    assert json.loads(target.read_text()) == MINIMAL
    assert not os.path.islink(tmp_path / "config.json")


# -- spec_for_rootfs / make_bundle -----------------------------------------------------------

def test_spec_for_rootfs_matches_runc_spec_except_the_fields_we_set():
    with open(os.path.join(OCI, "runc-spec-1.1.json")) as f:
        expected = json.load(f)
    got = spec_for_rootfs("/srv/rootfs", ["echo", "hi"], hostname="box")
    expected["process"]["args"] = ["echo", "hi"]
    expected["process"]["terminal"] = False
    expected["root"]["path"] = "/srv/rootfs"
    expected["hostname"] = "box"
    assert got == expected
    # same key order as runc writes, so diffs against `runc spec` stay readable
    assert json.dumps(got) == json.dumps(expected)


def test_spec_for_rootfs_options_and_independence():
    a = spec_for_rootfs("r", ["sh"], env=["FOO=1"], cwd="/tmp", tty=True)
    assert a["process"]["env"][0].startswith("PATH=/usr/local/sbin")
    assert a["process"]["env"][1:] == ["FOO=1"]
    assert a["process"]["cwd"] == "/tmp" and a["process"]["terminal"] is True
    assert spec_for_rootfs("r", ["sh"], env=["PATH=/bin"])["process"]["env"] == ["PATH=/bin"]
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"].clear()
    b = spec_for_rootfs("r", ["sh"])
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"] and b["mounts"]
    assert b["process"]["capabilities"]["effective"] is not b["process"]["capabilities"]["bounding"]


def test_make_bundle_is_private_and_points_at_the_absolute_rootfs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rootfs").mkdir()
    cfg = spec_for_rootfs("ignored", ["true"])
    b = make_bundle(str(tmp_path / "state"), "rootfs", cfg)
    assert os.path.isabs(b) and os.path.dirname(b) == str(tmp_path / "state")
    assert stat.S_IMODE(os.stat(b).st_mode) == 0o700
    assert read_config(b)["root"] == {"path": str(tmp_path / "rootfs"), "readonly": True}
    assert cfg["root"]["path"] == "ignored"
    named = make_bundle(str(tmp_path / "state"), "rootfs", cfg, name="c1")
    assert named == str(tmp_path / "state" / "c1")
    with pytest.raises(BundleError, match="already exists"):
        make_bundle(str(tmp_path / "state"), "rootfs", cfg, name="c1")
    with pytest.raises(BundleError, match="invalid bundle name"):
        make_bundle(str(tmp_path / "state"), "rootfs", cfg, name="../x")


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys; import sandbox.host.bundle, sandbox.host.runc; "
            "heavy = {'json', 'subprocess', 'yaml', 'click', 'psutil', 'tempfile', 'secrets'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(OCI)).stdout
    assert out.strip() == "[]"


def test_a_non_durable_write_is_still_atomic_and_never_fsyncs(tmp_path, monkeypatch):
    p = write(tmp_path, json.dumps(MINIMAL))
    calls = []
    monkeypatch.setattr(bundle_mod.os, "fsync", lambda fd: calls.append(fd))
    write_config_atomic(str(tmp_path), dict(MINIMAL, hostname="changed"), durable=False)
    assert json.loads(p.read_text())["hostname"] == "changed" and calls == []
    assert leftovers(tmp_path) == []
    write_config_atomic(str(tmp_path), dict(MINIMAL, hostname="again"))
    assert len(calls) == 2  # the default: the file and its directory
