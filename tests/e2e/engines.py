"""Helpers shared by the end-to-end tests that drive real engines through sandbox-runc."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from sandbox.inspect import cap_names

ANNOTATION = "org.sandbox-runtime.profile"


def require_tool(name):
    if shutil.which(name) is None:
        if os.environ.get("SANDBOX_E2E") == "require":
            pytest.fail(f"{name} is not installed (SANDBOX_E2E=require)")
        pytest.skip(f"{name} is not installed")


def shim_path():
    here = os.path.join(os.path.dirname(sys.executable), "sandbox-runc")
    path = here if os.path.exists(here) else shutil.which("sandbox-runc")
    if not path:
        pytest.fail("sandbox-runc is not installed beside the test interpreter (pip install .)")
    return path


def runtime_wrapper(tmp_path, config_path, name="runc", daemon_socket="off"):
    """An executable named `name` that runs sandbox-runc with SANDBOX_CONFIG set.

    Engines do not pass their environment to the runtime (podman's conmon starts it
    with a clean one), so the operator config is handed over here.  Named `runc`, it
    also makes podman pass --log/--log-format as it does for runtimes it knows.
    `daemon_socket`: the sandbox daemon to use ("off": the Python path on every call).
    """
    d = tmp_path / "runtime-bin"
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text(f"#!/bin/sh\nSANDBOX_CONFIG={config_path} SANDBOX_DAEMON_SOCKET={daemon_socket} "
                    f"exec {shim_path()} \"$@\"\n")
    os.chmod(path, 0o755)
    return str(path)


def start_daemon(tmp_path):
    """A private `sandbox daemon run` (the installed one); returns (socket path, process)."""
    import time

    from sandbox.daemon import ping

    d = tmp_path / "daemon-run"
    d.mkdir(mode=0o700)
    sock = str(d / "daemon.sock")
    cli = os.path.join(os.path.dirname(sys.executable), "sandbox")
    proc = subprocess.Popen([cli, "daemon", "run", "--socket", sock], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        if ping(sock):
            return sock, proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the sandbox daemon did not come up")


def stop_daemon(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def operator_config(tmp_path, **extra):
    audit = str(tmp_path / "audit" / "audit.jsonl")
    lines = [f"runc: {shutil.which('runc')}", f"audit_log: {audit}", "default_profile: baseline"]
    for k, v in extra.items():
        lines.append(f"{k}: {v!r}".replace("'", '"') if not isinstance(v, list) else f"{k}: [{', '.join(v)}]")
    path = tmp_path / "sandbox-config.yaml"
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return {"path": str(path), "audit": audit}


def status_caps(text):
    """Parse /proc/self/status lines printed by a workload, with capability masks as names."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s+(\S+)", line)
        if m:
            out[m.group(1)] = m.group(2)
    for key in ("CapEff", "CapBnd", "CapPrm"):
        if key in out:
            out[key + "_names"] = set(cap_names(int(out[key], 16)))
    return out


def audit_records(path, cid=None):
    """The audit log's records (of one container, if `cid`), or [] when there is no log yet."""
    import json

    try:
        with open(path) as f:
            recs = [json.loads(line) for line in f]
    except FileNotFoundError:
        return []
    return [r for r in recs if cid is None or r["container_id"] == cid]
