"""The edge's probe (sandbox/host/probe.py) on the real filesystem: what it hands the gate."""

import os

from sandbox.host import probe as host


def test_unsafe_ancestors_name_directories_others_can_swap(tmp_path):
    top = tmp_path / "top"
    (top / "user" / "data").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chown(top / "user", 1000, 1000)
    got = dict(host._Owners().unsafe_ancestors(str(top / "user" / "data")))
    assert got[str(top / "user")] == "is owned by uid 1000"
    assert str(top) not in got
    sticky = tmp_path / "sticky"
    (sticky / "mine").mkdir(parents=True)
    os.chmod(sticky, 0o1777)
    assert str(sticky) not in dict(host._Owners().unsafe_ancestors(str(sticky / "mine" / "x")))
    os.chown(sticky / "mine", 1000, 1000)
    assert str(sticky) in dict(host._Owners().unsafe_ancestors(str(sticky / "mine" / "x")))


def test_running_process_executable_is_identified():
    exe = host._executable(f"/proc/{os.getpid()}/exe", host._Owners())
    assert exe.pid == os.getpid() and exe.process_uid == os.getuid()
    assert exe.real == os.path.realpath(f"/proc/{os.getpid()}/exe")


def test_device_nodes_and_namespace_kinds():
    assert host._device_node("/dev/null") == ("c", 1, 3)
    assert host._device_node("/etc/hostname") is None
    assert host.namespace_kind("/proc/self/ns/net") == "net"
    assert host.namespace_kind("/proc/self/ns/mnt") == "mnt"
    assert host.namespace_kind("/etc/hostname") == ""  # not on nsfs: never opened
    assert host.userns_maps_host_root(f"/proc/{os.getpid()}/ns/user") is True  # the host's own maps 0
    assert host.userns_maps_host_root("/run/some-userns") is None


def test_probe_resolves_what_the_core_enumerates(tmp_path):
    bundle = tmp_path / "b"
    (bundle / "rootfs" / "proc").mkdir(parents=True)
    os.symlink("/etc", bundle / "link")
    config = {"root": {"path": "rootfs"},
              "mounts": [{"destination": "/mnt", "type": "bind", "source": "link", "options": ["rbind"]},
                         {"destination": "/proc", "type": "proc", "source": "proc"},
                         {"destination": "/sys", "type": "sysfs", "source": "sysfs"}],
              "linux": {"devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]}}
    os.rmdir(bundle / "rootfs" / "proc")
    os.symlink("/tmp", bundle / "rootfs" / "proc")
    facts = host.probe(config, str(bundle), "cid")
    assert facts.probed and facts.bundle_dir == str(bundle) and facts.container_id == "cid"
    assert facts.realpaths["link"] == "/etc" and facts.realpaths["rootfs"] == str(bundle / "rootfs")
    assert facts.devices["/dev/null"] == ("c", 1, 3)
    assert facts.rootfs_symlinks == frozenset({"/proc"})


def test_unreadable_path_is_left_unresolved(monkeypatch):
    def boom(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(host.os.path, "realpath", boom)
    facts = host.probe({"root": {"path": "/proc/1/root"}}, None)
    assert "/proc/1/root" not in facts.realpaths
