"""Fixtures for the breakout tests: the static probe, a rootfs holding it, and one run per scenario.

`probe_binary` (tests/e2e/conftest.py) is probe.c built with `gcc -static -O2`.
`escape_rootfs` copies the demo rootfs into a fresh 0755 directory under /tmp (a
user-namespaced container must be able to traverse every parent) and adds
`/probe` (0755) and `/bin/suid-probe` (root-owned, 04755).
`probe_runs` runs each scenario once per session, lazily, and caches the parsed output:

    restricted          sandbox run --profile restricted --user 1000:1000 -- /probe <all>
    strict              sandbox run --profile strict -- /probe <all>          (root in a user namespace)
    strict-uid1000      sandbox run --profile strict --user 1000:1000 -- /probe <setuid and DAC attempts>
    plain               runc run with a `runc spec` bundle, no profile -- /probe <all>
    plain-nnp-off       as plain, uid 1000 and noNewPrivileges false -- /probe setuid_binary

Where no memory limit applies (restricted, plain) the 2 GiB memory balloon only runs when
the host has 6 GiB available; the fork bomb stops at 5000 children everywhere.

test_escape.py classifies each result; with SANDBOX_ESCAPE_TABLE=PATH in the
environment it writes the Markdown results table docs/security.md is made from.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
STATE_DIR = "/run/sandbox-test"
CID_PREFIX = "sandbox-escape-"

_ATTEMPT = re.compile(r"^ATTEMPT name=(\S+) result=(\S+) errno=(\S+) detail=(.*)$")
_INFO = re.compile(r"^INFO name=(\S+)(.*)$")


def _unavailable(reason: str) -> None:
    if os.environ.get("SANDBOX_E2E") == "require":
        pytest.fail(f"end-to-end test cannot run: {reason} (SANDBOX_E2E=require)")
    pytest.skip(reason)


def _kv(text: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", text))


@dataclass
class Attempt:
    name: str
    result: str
    errno: str
    detail: dict[str, str]
    line: str


@dataclass
class ProbeRun:
    scenario: str
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    attempts: dict[str, Attempt] = field(default_factory=dict)
    info: dict[str, dict[str, str]] = field(default_factory=dict)
    done: bool = False
    container_id: str = ""

    @classmethod
    def parse(cls, scenario: str, command: list[str], res: subprocess.CompletedProcess, seconds: float,
              cid: str) -> ProbeRun:
        run = cls(scenario, command, res.returncode, res.stdout, res.stderr, seconds, container_id=cid)
        for line in res.stdout.splitlines():
            if m := _ATTEMPT.match(line):
                name, result, err, detail = m.groups()
                run.attempts[name] = Attempt(name, result, err, _kv(detail), line)
            elif m := _INFO.match(line):
                run.info[m.group(1)] = _kv(m.group(2))
            elif line == "DONE":
                run.done = True
        return run

    def describe(self) -> str:
        return (f"scenario {self.scenario}: rc={self.returncode}\n$ {' '.join(self.command)}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


@pytest.fixture(scope="session")
def escape_rootfs(demo_rootfs, probe_binary):
    """A copy of the demo rootfs with /probe and a setuid-root /bin/suid-probe."""
    parent = tempfile.mkdtemp(prefix="sandbox-escape-rootfs-")
    try:
        os.chmod(parent, 0o755)  # noqa: S103 (a user-namespaced container root must traverse it)
        rootfs = os.path.join(parent, "rootfs")
        shutil.copytree(demo_rootfs, rootfs, symlinks=True)
        os.chown(os.path.join(rootfs, "home", "app"), 1000, 1000)
        probe = os.path.join(rootfs, "probe")
        shutil.copyfile(probe_binary, probe)
        os.chmod(probe, 0o755)  # noqa: S103
        suid = os.path.join(rootfs, "bin", "suid-probe")
        shutil.copyfile(probe_binary, suid)
        os.chown(suid, 0, 0)
        os.chmod(suid, 0o4755)  # noqa: S103 (the setuid-escalation attempt needs it)
        yield rootfs
    finally:
        shutil.rmtree(parent, ignore_errors=True)


BALLOON_HOST_MIN = 6 * 1024**3  # run the 2 GiB balloon without a memory limit only with this much available


def _mem_available() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def attempt_names(probe_binary: str) -> list[str]:
    res = subprocess.run([probe_binary, "list"], capture_output=True, text=True, check=True, timeout=10)
    return res.stdout.split()


class ProbeRuns:
    """Runs each scenario once, on first use, and keeps the parsed result."""

    def __init__(self, runc: str, rootfs: str, probe_binary: str, workdir: str) -> None:
        self.runc = runc
        self.rootfs = rootfs
        self.workdir = workdir
        self.names = attempt_names(probe_binary)
        self.cache: dict[str, ProbeRun] = {}
        self.container_ids: list[str] = []

    SCENARIOS = {
        # scenario: (profile or None, user or None, attempts or None for all, config changes)
        "restricted": ("restricted", "1000:1000", None, None),
        "strict": ("strict", None, None, None),
        "strict-uid1000": ("strict", "1000:1000", ["setuid_binary", "chown_other", "write_core_pattern"], None),
        "plain": (None, None, None, None),
        "plain-nnp-off": (None, None, ["setuid_binary"], "nnp-off-uid1000"),
    }

    def profile_of(self, scenario: str) -> str | None:
        return self.SCENARIOS[scenario][0]

    def get(self, scenario: str) -> ProbeRun:
        if scenario not in self.cache:
            self.cache[scenario] = self._run(scenario)
        return self.cache[scenario]

    def _run(self, scenario: str) -> ProbeRun:
        profile, user, attempts, change = self.SCENARIOS[scenario]
        attempts = list(attempts or self.names)
        if profile != "strict" and "memory_balloon" in attempts and _mem_available() < BALLOON_HOST_MIN:
            # no memory limit in this scenario: the 2 GiB balloon would land on the host itself
            attempts.remove("memory_balloon")
        args = ["/probe", *attempts]
        cid = f"{CID_PREFIX}{scenario}-{uuid.uuid4().hex[:8]}"
        self.container_ids.append(cid)
        start = time.monotonic()
        if profile is not None:
            audit = os.path.join(self.workdir, f"{scenario}.audit.jsonl")
            cmd = [sys.executable, "-m", "sandbox", "run", "--profile", profile, "--rootfs", self.rootfs,
                   "--name", cid, "--audit-log", audit, *(("--user", user) if user else ()), "--", *args]
            env = {**os.environ, "SANDBOX_STATE_DIR": STATE_DIR}
            env.pop("SANDBOX_CONFIG", None)
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
                                 stdin=subprocess.DEVNULL)
        else:
            cmd, res = self._run_plain(scenario, cid, args, change)
        return ProbeRun.parse(scenario, cmd, res, time.monotonic() - start, cid)

    def _run_plain(self, scenario: str, cid: str, args: list[str], change: str | None):
        import json

        from sandbox.host.bundle import spec_for_rootfs

        bundle = os.path.join(self.workdir, f"bundle-{scenario}")
        os.makedirs(bundle)
        config = spec_for_rootfs(self.rootfs, args)
        if change == "nnp-off-uid1000":
            config["process"]["user"] = {"uid": 1000, "gid": 1000}
            config["process"]["noNewPrivileges"] = False
        with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        root = os.path.join(self.workdir, "runc-root")
        cmd = [self.runc, "--root", root, "run", "--bundle", bundle, cid]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        finally:
            subprocess.run([self.runc, "--root", root, "delete", "-f", cid], capture_output=True, timeout=30)
        return cmd, res


@pytest.fixture(scope="session")
def probe_runs(_e2e_state, escape_rootfs, probe_binary, tmp_path_factory):
    runc, reason = _e2e_state
    if reason:
        _unavailable(reason)
    return ProbeRuns(runc, escape_rootfs, probe_binary, str(tmp_path_factory.mktemp("escape")))
