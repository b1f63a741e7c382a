"""Fixtures and checks shared by the network-policy tests (test_network*.py).

`netprobe` compiles netprobe.c (static), `net_rootfs` is the demo rootfs with /netprobe,
`lab` a fresh NetLab (server namespace with its listeners; containers' namespaces are made
by each test with `lab.netns()` and joined to it with `lab.connect()`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.e2e.conftest import e2e_unavailable
from tests.e2e.network.netlab import HERE, TCP_NO, TCP_OK, UDP_NO, UDP_OK, NetLab


@pytest.fixture(scope="session")
def netprobe(_e2e_state):
    _, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    for tool in ("gcc", "nft", "nsenter", "ip"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            e2e_unavailable(f"{tool} is not installed")
    out = tempfile.mkdtemp(prefix="sandbox-netprobe-")
    path = os.path.join(out, "netprobe")
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", path, os.path.join(HERE, "netprobe.c")],
                   check=True, timeout=120)
    yield path
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def net_rootfs(demo_rootfs, netprobe):
    """The demo rootfs plus /netprobe, in a 0755 directory (user-namespaced roots must reach it)."""
    parent = tempfile.mkdtemp(prefix="sandbox-net-rootfs-")
    os.chmod(parent, 0o755)
    root = os.path.join(parent, "rootfs")
    shutil.copytree(demo_rootfs, root, symlinks=True)
    shutil.copy(netprobe, os.path.join(root, "netprobe"))
    os.chmod(os.path.join(root, "netprobe"), 0o755)
    yield root
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def lab(e2e):
    net = NetLab(tcp=(TCP_OK, TCP_NO), udp=(UDP_OK, UDP_NO)).up()
    try:
        yield net
    finally:
        net.down()
