"""Fixtures of the oracle suite: one `Oracle` (canary, marker, probe rootfs, private runc root) per session.

At the end of the session the counts of configs tried, refused, run and failed are printed, and
written as JSON to $SANDBOX_ORACLE_REPORT when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.e2e.conftest import e2e_unavailable
from tests.e2e.engines import shim_path
from tests.e2e.oracle.harness import RESULTS, Oracle

COUNTS: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="session")
def oracle(_e2e_state, demo_rootfs, probe_binary):
    runc, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    o = Oracle(tempfile.mkdtemp(prefix="sandbox-oracle-work-"), runc, probe_binary, demo_rootfs, shim_path())
    try:
        yield o
    finally:
        COUNTS["all"] = dict(o.stats)
        COUNTS["exec"] = dict(o.exec_stats)
        o.close()
        shutil.rmtree(o.workdir, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    if not COUNTS:
        return
    counts = COUNTS["all"]
    tried = sum(v for k, v in counts.items() if k in ("refused", "ran", "failed"))
    line = (f"oracle: {tried} configs tried, {counts.get('refused', 0)} refused, {counts.get('ran', 0)} ran, "
            f"{counts.get('failed', 0)} failed in runc, {counts.get('breached', 0)} reached the canary, marker or "
            "more than the profile allows")
    ex = COUNTS.get("exec", {})
    ex_tried = sum(v for k, v in ex.items() if k in ("refused", "ran", "failed"))
    ex_line = (f"oracle: {ex_tried} exec argv tried in running containers, {ex.get('refused', 0)} refused, "
               f"{ex.get('ran', 0)} ran, {ex.get('failed', 0)} failed in runc or its parser, "
               f"{ex.get('breached', 0)} reached the canary, marker or more than the profile allows")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
        reporter.write_line(ex_line)
    path = os.environ.get("SANDBOX_ORACLE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({**counts, "tried": tried, "exec": {**ex, "tried": ex_tried}}, f)
    path = os.environ.get("SANDBOX_ORACLE_TABLE")
    if path and RESULTS:
        with open(path, "w") as f:
            f.write(results_table() + "\n")


def results_table() -> str:
    """The hand-written attacks' outcomes as a Markdown table (docs/security.md)."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row, attack, profile, outcome, reason in RESULTS:
        reason = reason if len(reason) <= 150 else reason[:149] + "…"
        cell = f"refused: {reason}" if outcome == "refused" else \
            ("ran, nothing reached" if outcome == "ran" else "runc did not start it, nothing reached")
        rows.setdefault((row, attack), {})[profile] = cell.replace("|", "\\|")
    lines = ["| row | attack | baseline | restricted | strict |", "|---|---|---|---|---|"]
    for (row, attack), cells in rows.items():
        lines.append(f"| {row} | `{attack}` | " + " | ".join(cells.get(p, "—") for p in ("baseline", "restricted",
                                                                                        "strict")) + " |")
    return "\n".join(lines)


class HostProcess:
    """A copy of /bin/sh named `name` in `directory`, running a wait loop as `uid` (a stand-in engine)."""

    def __init__(self, directory: str, name: str, uid: int, dir_owner: int = 0) -> None:
        os.makedirs(directory, exist_ok=True)
        os.chown(directory, dir_owner, 0)
        os.chmod(directory, 0o755)  # noqa: S103
        self.binary = os.path.join(directory, name)
        shutil.copyfile("/bin/sh", self.binary)
        os.chmod(self.binary, 0o755)  # noqa: S103
        self.proc = subprocess.Popen([self.binary, "-c", "while :; do sleep 1; done"], user=uid,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def host_processes(oracle):
    """Stand-in engine processes: a root one whose binary is root-owned all the way up, a root one
    whose directory belongs to uid 1000, and a non-root one."""
    base = os.path.join(oracle.base, "engines")
    procs = {
        "trusted": HostProcess(os.path.join(base, "trusted"), "dockerd", 0),
        "untrusted-dir": HostProcess(os.path.join(base, "userdir"), "dockerd", 0, dir_owner=1000),
        "non-root": HostProcess(os.path.join(base, "nonroot"), "dockerd", 65534),
    }
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture(scope="session")
def victim(oracle):
    """Another container (plain runc, no profile) whose namespaces and cgroup attacks name."""
    from sandbox.host.bundle import spec_for_rootfs

    bundle = tempfile.mkdtemp(prefix="victim-", dir=oracle.base)
    config = spec_for_rootfs(oracle.rootfs, ["sleep", "600"])
    cid = f"oracle-victim-{os.path.basename(oracle.base)[-8:]}"
    config["linux"]["cgroupsPath"] = f"/{cid}-parent/{cid}"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    pid_file = os.path.join(bundle, "pid")
    # not pipes: the container's init inherits runc's stdout and stderr
    subprocess.run([oracle.runc, "--root", oracle.runc_root, "create", "--bundle", bundle, "--pid-file", pid_file,
                    cid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                   stdin=subprocess.DEVNULL)
    subprocess.run([oracle.runc, "--root", oracle.runc_root, "start", cid], check=True, capture_output=True,
                   timeout=60)
    with open(pid_file) as f:
        pid = int(f.read())
    yield {"pid": pid, "cid": cid, "cgroup": config["linux"]["cgroupsPath"]}
    subprocess.run([oracle.runc, "--root", oracle.runc_root, "delete", "-f", cid], capture_output=True, timeout=60)
    from tests.e2e.daemons import remove_cgroup

    remove_cgroup(f"/{cid}-parent")
