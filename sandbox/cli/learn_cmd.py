"""`sandbox learn`: run a workload with every syscall sent to an agent, write the profile it needs.

The workload runs as `sandbox run` runs it, under the base profile (its capabilities, user
namespace, mounts, limits), but with a seccomp filter that hands every syscall outside a small
base (`transform.seccomp.LEARN_BASE`) to a private agent started for the run, which lets it run
and counts it.  The records go to the audit log like any agent's.  Afterwards the profile is
written (`sandbox.core.learn`), loaded back and linted.

Exit status: 0 the profile was written (the workload's own exit status is printed and in the
profile's header), 1 it could not be written or is invalid, 2 usage, 125 the workload could not
be started.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from ..errors import SandboxError
from .options import profile_option


@click.command("learn", context_settings={"allow_interspersed_args": False})
@profile_option()
@click.option("--rootfs", type=click.Path(file_okay=False), help="Run CMD in this root filesystem.")
@click.option("--bundle", type=click.Path(file_okay=False), help="Run this OCI bundle (CMD overrides its args).")
@click.option("--demo", is_flag=True, help="Use the bundled busybox demo rootfs.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the profile.")
@click.option("--name", "profile_name", default=None, help="The learned profile's name (default: BASE-learned).")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Stop the workload after this long (SIGTERM, then SIGKILL 2 s later); default: until it exits.")
@click.option("--runc", "runc_path", metavar="PATH", help="The real runc (default: runc on PATH).")
@click.option("--root", "runc_root", metavar="DIR", help="runc's state directory (runc --root).")
@click.option("--audit-log", metavar="PATH", help="Audit log (default: the operator config's).")
@click.option("-u", "--user", metavar="UID[:GID]", help="Run the process as this user.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable.")
@click.option("-w", "--cwd", default=None, help="Working directory inside the container.")
@click.option("--progress/--no-progress", default=None, help="Show progress (default: when stderr is a terminal).")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def learn(profile_ref: str, rootfs: str | None, bundle: str | None, demo: bool, output: str,
          profile_name: str | None, duration: float | None, runc_path: str | None, runc_root: str | None,
          audit_log: str | None, user: str | None, env: tuple[str, ...], cwd: str | None, progress: bool | None,
          cmd: tuple[str, ...]) -> None:
    """Run CMD with every syscall recorded, and write a profile that extends PROFILE and allows them."""
    import secrets
    import tempfile

    from ..audit.log import AuditLog
    from ..host.opconfig import load_operator_config
    from ..runtime.agent import run_in_thread
    from .run_cmd import _Runner

    if sum(map(bool, (rootfs, bundle, demo))) != 1:
        raise click.UsageError("give exactly one of --rootfs, --bundle or --demo")
    op = load_operator_config()
    log = AuditLog(audit_log or op.audit_log, on_failure=op.on_audit_failure, hmac_key_file=op.audit_hmac_key_file,
                   max_bytes=op.audit_max_bytes, create_dir=audit_log is None)
    seen = _Seen(log.append)
    sockdir = tempfile.mkdtemp(prefix="sandbox-learn-")  # 0700, ours
    agent, thread = run_in_thread(os.path.join(sockdir, "agent.sock"), seen.record, flush_interval=1.0)
    cid = f"sandbox-learn-{secrets.token_hex(4)}"
    runner = _Runner(profile_ref, cid, runc_path, runc_root, audit_log, False, learn_agent=agent.path)
    show = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()
    code: int | None = None
    try:
        runner.prepare_or_exit(rootfs=rootfs, bundle=bundle, demo=demo, cmd=list(cmd), user=user, env=list(env),
                               cwd=cwd, tty=False)
        watch = _Watch(runner, agent, cid, duration, show, started)
        watch.start()
        code = runner.execute(None, False)
        watch.stop()
        seen.wait(cid, 10.0)
    finally:
        agent.stop()
        thread.join(30)
        import shutil

        shutil.rmtree(sockdir, ignore_errors=True)
    seconds = time.monotonic() - started
    _write(runner, seen, output, profile_ref, profile_name, list(cmd) or _args(runner.config), seconds, code)


def _args(config: dict[str, Any]) -> list[str]:
    args = (config.get("process") or {}).get("args")
    return [str(a) for a in args] if isinstance(args, list) else []


class _Seen:
    """What the private agent reports: totals and first calls per container, and the records teed to the log."""

    def __init__(self, append: Any) -> None:
        import threading

        self.append = append
        self.totals: dict[str, dict[str, int]] = {}
        self.calls: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
        self.done: set[str] = set()
        self.cond = threading.Condition()

    def record(self, batch: list[dict[str, Any]]) -> None:
        with self.cond:
            for rec in batch:
                cid, data = rec.get("container_id", ""), rec.get("data") or {}
                if rec.get("event") == "syscall" and data.get("first"):
                    self.calls.setdefault(cid, []).append((data.get("syscall", ""), data.get("args") or []))
                elif rec.get("event") == "monitor" and data.get("action") == "detached":
                    self.totals[cid] = dict(data.get("totals") or {})
                    self.done.add(cid)
            self.cond.notify_all()
        self.append(batch)

    def wait(self, cid: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: cid in self.done, timeout)


class _Watch:
    """Progress on a terminal, and the end of a --duration."""

    def __init__(self, runner: Any, agent: Any, cid: str, duration: float | None, show: bool, started: float) -> None:
        import threading

        self.runner, self.agent, self.cid, self.duration, self.show = runner, agent, cid, duration, show
        self.started = started
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sandbox-learn-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        if self.show:
            click.echo("", err=True)

    def _run(self) -> None:
        signalled = None
        while not self.stopped.wait(0.5):
            elapsed = time.monotonic() - self.started
            if self.show:
                names, calls = self._counts()
                left = f", {max(0.0, self.duration - elapsed):.0f} s left" if self.duration else ""
                click.echo(f"\rlearning: {elapsed:5.1f} s, {names} syscalls seen in {calls} calls{left}   ",
                           err=True, nl=False)
            if self.duration is not None and elapsed >= self.duration and self.runner.pid:
                if signalled is None:
                    self._kill("TERM")
                    signalled = time.monotonic()
                elif time.monotonic() - signalled > 2:
                    self._kill("KILL")
                    signalled = float("inf")

    def _counts(self) -> tuple[int, int]:
        for c in list(self.agent.containers.values()):
            if c.key[0] == self.cid:
                totals = dict(c.tally.totals)
                return len(totals), sum(totals.values())
        return 0, 0

    def _kill(self, sig: str) -> None:
        try:
            self.runner.runc.kill(self.cid, sig)
        except SandboxError:
            pass


def _write(runner: Any, seen: _Seen, output: str, base_ref: str, name: str | None, command: list[str],
           seconds: float, code: int | None) -> None:
    from ..audit.log import rfc3339_ns
    from ..core import lint
    from ..core.learn import learned_profile
    from ..core.loader import load_profile
    from ..core.transform.seccomp import LEARN_BASE, bundle_filter
    from ..runtime.service import harden

    base = runner.profile
    if runner.cid not in seen.totals:
        raise SandboxError("the agent reported nothing for the workload (did it start?); no profile written")
    enforced = harden(base, runner.config, None).config  # the base profile's filter for this bundle
    section = (enforced.get("linux") or {}).get("seccomp")
    default, table = bundle_filter(section) if isinstance(section, dict) else (("SCMP_ACT_ALLOW", None, ()), {})
    text, summary = learned_profile(
        name=name or f"{base.name}-learned"[:64], base_ref=base_ref, base_name=base.name,
        totals=seen.totals[runner.cid], calls=seen.calls.get(runner.cid, []), default=default, table=table,
        base_names=LEARN_BASE, command=command, seconds=seconds, workload_exit=code,
        when=rfc3339_ns(time.time_ns())[:19] + "Z")
    tmp = f"{output}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, output)
    learned = load_profile(os.path.abspath(output))  # validated as `sandbox profile validate` does
    findings = lint.lint(learned)
    click.echo(f"{output}: {summary['allowed']} syscalls allowed, extends {base_ref}; valid; "
               f"{len(findings)} lint findings" + (f"; workload exit status {code}" if code is not None else ""))
    if summary["not_in_base"]:
        click.echo(f"review: not allowed by {base.name}: {', '.join(summary['not_in_base'])}")
    for f in findings:
        click.echo(f"lint: {f.rule} [{f.severity}] {f.field}: {f.message}")
