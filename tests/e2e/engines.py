"""Helpers shared by the end-to-end tests that drive real engines through sandbox-runc."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from sandbox.host.inspect import cap_names

ANNOTATION = "org.sandbox-runtime.profile"
# podman run flags for rlimits runc can set here (root lacks CAP_SYS_RESOURCE: podman's defaults fail)
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


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
    path.write_text(f"#!/bin/sh\nSANDBOX_CONFIG={config_path} SANDBOX_DAEMON_SOCKET={daemon_socket} SANDBOX_AGENT_SOCKET=off "
                    f"exec {shim_path()} \"$@\"\n")
    os.chmod(path, 0o755)
    return str(path)


def start_daemon(tmp_path):
    """A private `sandbox daemon run` (the installed one); returns (socket path, process)."""
    import time

    from sandbox.runtime.daemon import ping

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
    lines = [f"runc: {shutil.which('runc')}", f"audit_log: {audit}", "default_profile: baseline",
             f"runtime_dir: {os.environ['SANDBOX_RUNTIME_DIR']}"]
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


class PrivateRunc:
    """A private runc root, profile cache, audit log and operator config for one test.

    `config` overrides the operator config's runc, audit_log and default_profile (baseline).
    sandbox-runc calls get `env`: that config, that cache, no SANDBOX_RUNC and no daemon
    (a test that wants one sets SANDBOX_DAEMON_SOCKET in `env`)."""

    def __init__(self, tmp_path, runc, rootfs, **config):
        import json

        self.tmp = tmp_path
        self.runc = runc
        self.rootfs = rootfs
        self.root = str(tmp_path / "runc-root")
        self.cache = tmp_path / "cache"
        self.cache.mkdir(mode=0o700)
        self.audit_dir = tmp_path / "audit"
        self.audit = str(self.audit_dir / "audit.jsonl")
        self.config = str(tmp_path / "sandbox-config.yaml")
        self.shim = shim_path()
        self._json = json
        self.write_config(**config)
        self.env = {**os.environ, "SANDBOX_CONFIG": self.config, "SANDBOX_CACHE_DIR": str(self.cache),
                    "SANDBOX_DAEMON_SOCKET": "off"}
        self.env.pop("SANDBOX_RUNC", None)

    def write_config(self, path=None, **keys):
        """A root-owned 0644 operator config; `keys` override runc, audit_log and default_profile."""
        values = {"runc": self.runc, "audit_log": self.audit, "default_profile": "baseline",
                  "runtime_dir": os.environ["SANDBOX_RUNTIME_DIR"], **keys}
        lines = [f"{k}: {v}" if k == "runc" else f"{k}: {self._json.dumps(v)}"
                 for k, v in values.items() if v is not None]
        path = path or self.config
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)
        return path

    def run_shim(self, *args, config=None, timeout=60, cwd=None, env=None):
        import tempfile

        e = {**self.env, **({"SANDBOX_CONFIG": config} if config else {}), **(env or {})}
        # Not pipes: a created container's init inherits stdout/stderr and would hold a pipe open.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([self.shim, "--root", self.root, *args], stdout=out, stderr=err, env=e,
                                  timeout=timeout, cwd=cwd or str(self.tmp), stdin=subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode, out.read().decode("utf-8", "replace"),
                                               err.read().decode("utf-8", "replace"))

    def containers(self):
        if not os.path.isdir(self.root):
            return []
        res = subprocess.run([self.runc, "--root", self.root, "list", "-q"], capture_output=True, text=True,
                             timeout=60)
        return res.stdout.split()

    def state(self, cid):
        """runc's state of `cid`, or None when runc does not know it."""
        res = subprocess.run([self.runc, "--root", self.root, "state", cid], capture_output=True, text=True,
                             timeout=30)
        return self._json.loads(res.stdout) if res.returncode == 0 else None

    def delete_all(self):
        for cid in self.containers():
            subprocess.run([self.runc, "--root", self.root, "delete", "-f", cid], capture_output=True, timeout=30)

    def verify(self, *paths):
        """`sandbox audit verify` of the audit log (or of `paths`)."""
        return subprocess.run([sys.executable, "-m", "sandbox", "audit", "verify", *(paths or (self.audit,))],
                              capture_output=True, text=True, timeout=120)

    def records(self, path=None):
        with open(path or self.audit, "rb") as f:
            return [self._json.loads(line) for line in f]


def doctor_report(env=None):
    """`sandbox doctor --format json` (the installed one) as data; its exit code is the report's."""
    import json

    cli = os.path.join(os.path.dirname(sys.executable), "sandbox")
    res = subprocess.run([cli, "doctor", "--format", "json"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    assert "Traceback" not in res.stderr, res.stderr
    out = json.loads(res.stdout)
    assert res.returncode == out["exit_code"], (res.returncode, out["summary"])
    out["by_name"] = {c["name"]: c for c in out["checks"]}
    return out


CAPPED_PROFILE = """apiVersion: sandbox/v1
kind: Profile
name: capped
extends: restricted
resources:
  memory: {max: 256Mi, default: 128Mi}
  pids: {max: 100, default: 50}
  cpu: {max: 500m, default: 250m}
"""


def capped_runc(tmp, runc, rootfs):
    """A PrivateRunc whose default profile is `capped`: restricted (uid 1000, CAP_NET_BIND_SERVICE,
    no_new_privileges) with memory 256Mi, pids 100 and 0.5 CPU maxima, no user namespace."""
    os.chmod(tmp, 0o755)
    pdir = tmp / "profiles"
    pdir.mkdir(mode=0o755)
    (pdir / "capped.yaml").write_text(CAPPED_PROFILE)
    os.chmod(pdir / "capped.yaml", 0o644)
    return PrivateRunc(tmp, runc, rootfs, default_profile="capped", profile_dirs=[str(pdir)])


def running_container(env, rootfs, prefix, uid=1000):
    """A container made by `env`'s sandbox-runc and started: `sleep 3600` as `uid`; (id, bundle path)."""
    import json
    import uuid

    from sandbox.host.bundle import spec_for_rootfs

    cfg = spec_for_rootfs(rootfs, ["sleep", "3600"])
    cfg["process"]["user"] = {"uid": uid, "gid": uid}
    cid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    bundle = env.tmp / f"bundle-{cid}"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    res = env.run_shim("create", "--bundle", str(bundle), cid)
    assert res.returncode == 0, res.stderr
    subprocess.run([env.runc, "--root", env.root, "start", cid], check=True, timeout=60)
    return cid, str(bundle)
