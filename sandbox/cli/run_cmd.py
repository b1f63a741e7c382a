"""`sandbox run`: start a workload under a profile with the real runc, audited and optionally verified.

Before the workload starts, every failure exits 125 (126/127 when runc cannot be
invoked or found), as Docker does; after, the exit code is the workload's.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

import click

from ..errors import EXIT_RUN_FAILED, SandboxError
from .options import profile_option

DEFAULT_STATE_DIR = "/run/sandbox"


@click.command("run", context_settings={"allow_interspersed_args": False})
@profile_option()
@click.option("--rootfs", type=click.Path(file_okay=False), help="Run CMD in this root filesystem.")
@click.option("--bundle", type=click.Path(file_okay=False), help="Run this OCI bundle (CMD overrides its args).")
@click.option("--demo", is_flag=True, help="Use the bundled busybox demo rootfs (built on first use).")
@click.option("--name", "container_id", help="Container id (default: a random sandbox-<hex>).")
@click.option("--runc", "runc_path", metavar="PATH", help="The real runc (default: runc on PATH).")
@click.option("--root", "runc_root", metavar="DIR", help="runc's state directory (runc --root).")
@click.option("--audit-log", metavar="PATH", help="Audit log (default: the operator config's, or "
              "/var/log/sandbox/audit.jsonl).")
@click.option("--verify", "verify_mode", type=click.Choice(["record", "enforce"]), is_flag=False,
              flag_value="record", default=None,
              help="Inspect the container's kernel state before its workload starts and record the result; "
                   "--verify=enforce also removes the container, unstarted, if any control fails.")
@click.option("--verify-enforce", "verify_mode", flag_value="enforce", hidden=True)
@click.option("-u", "--user", metavar="UID[:GID]", help="Run the process as this user (with --rootfs/--demo).")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable.")
@click.option("-w", "--cwd", default=None, help="Working directory inside the container.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal (runs `runc run` in the foreground).")
@click.option("-v", "--verbose", is_flag=True, help="Print the decisions and verification to stderr.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def run(profile_ref: str, rootfs: str | None, bundle: str | None, demo: bool, container_id: str | None,
        runc_path: str | None, runc_root: str | None, audit_log: str | None, verify_mode: str | None,
        user: str | None, env: tuple[str, ...], cwd: str | None, tty: bool, verbose: bool,
        cmd: tuple[str, ...]) -> None:
    """Run CMD under PROFILE in a rootfs, a bundle, or the demo rootfs."""
    if sum(map(bool, (rootfs, bundle, demo))) != 1:
        raise click.UsageError("give exactly one of --rootfs, --bundle or --demo")
    runner = _Runner(profile_ref, container_id or f"sandbox-{secrets.token_hex(6)}", runc_path, runc_root,
                     audit_log, verbose)
    runner.prepare_or_exit(rootfs=rootfs, bundle=bundle, demo=demo, cmd=list(cmd), user=user, env=list(env),
                           cwd=cwd, tty=tty)
    sys.exit(runner.execute(verify_mode, tty))


def _parse_user(user: str) -> dict[str, Any]:
    uid, _, gid = user.partition(":")
    try:
        return {"uid": int(uid), "gid": int(gid or uid)}
    except ValueError:
        raise click.BadParameter("expected UID[:GID] as numbers", param_hint="--user") from None


class _Runner:
    def __init__(self, profile_ref: str, cid: str, runc_path: str | None, runc_root: str | None,
                 audit_log: str | None, verbose: bool, learn_agent: str | None = None) -> None:
        self.profile_ref = profile_ref
        self.cid = cid
        self.runc_path = runc_path
        self.runc_root = runc_root
        self.audit_path = audit_log
        self.verbose = verbose
        self.profile: Any = None
        self.audit: Any = None
        self.bundle_dir = ""
        self.runc: Any = None
        self.learn_agent = learn_agent  # `sandbox learn`: its own agent's socket
        self.config: dict[str, Any] = {}  # the bundle's config before hardening
        self.pid = 0  # the container's init, once created
        self.op: Any = None
        self.prep: Any = None  # RuntimePrep: done in our own mount namespace before runc
        self.allocated: dict[str, Any] | None = None  # the id range allocated for the container

    # -- audit ------------------------------------------------------------------
    def _record(self, events: list[dict[str, Any]]) -> None:
        if self.audit is None:
            return
        base = {"container_id": self.cid, "bundle": self.bundle_dir,
                "profile": getattr(self.profile, "name", self.profile_ref),
                "profile_sha256": getattr(self.profile, "sha256", "")}
        self.audit.append([{**base, **e} for e in events])

    def fail(self, e: SandboxError) -> None:
        click.echo(f"sandbox: {e}", err=True)
        try:
            self._record([{"event": "refused" if e.exit_code == 3 else "error", "data": {"reason": str(e)}}])
        except SandboxError as ae:
            click.echo(f"sandbox: {ae}", err=True)

    # -- before start -------------------------------------------------------------
    def prepare_or_exit(self, **kw: Any) -> None:
        """`prepare`; a failure is recorded and said, and exits 125 (126/127 when runc cannot be run)."""
        try:
            self.prepare(**kw)
        except SandboxError as e:
            self.fail(e)
            sys.exit(e.exit_code if e.exit_code in (126, 127) else EXIT_RUN_FAILED)

    def prepare(self, *, rootfs: str | None, bundle: str | None, demo: bool, cmd: list[str], user: str | None,
                env: list[str], cwd: str | None, tty: bool) -> None:
        from ..audit.log import AuditLog
        from ..core import formats
        from ..core.transform.user import has_userns, userns_required
        from ..errors import PolicyRefusal
        from ..host.bundle import make_bundle, read_config, spec_for_rootfs
        from ..host.opconfig import load_operator_config
        from ..host.runc import Runc, find_runc
        from ..runtime.service import harden, resolve_profile, userns_facts

        op = load_operator_config()
        self.audit = AuditLog(self.audit_path or op.audit_log, on_failure=op.on_audit_failure,
                              hmac_key_file=op.audit_hmac_key_file, max_bytes=op.audit_max_bytes,
                              create_dir=self.audit_path is None)
        self.profile = resolve_profile(self.profile_ref, op.profile_dirs)
        self.runc = Runc(find_runc(self.runc_path or op.runc), root=self.runc_root)
        if bundle:
            config = read_config(bundle)
            root = config.get("root", {}).get("path", "rootfs")
            rootfs_path = root if os.path.isabs(root) else os.path.join(os.path.abspath(bundle), root)
            proc = config.setdefault("process", {})
            if cmd:
                proc["args"] = cmd
        else:
            if demo:
                from ..host.demo import demo_rootfs

                rootfs = demo_rootfs()
            assert rootfs is not None
            rootfs_path = os.path.abspath(rootfs)
            if not os.path.isdir(rootfs_path):
                raise SandboxError(f"rootfs {rootfs} is not a directory")
            config = spec_for_rootfs(rootfs_path, cmd or ["sh"], tty=tty, cwd=cwd or "/")
            proc = config["process"]
        if env:
            proc["env"] = [*(proc.get("env") or []), *env]
        if user:
            proc["user"] = {**(proc.get("user") or {}), **_parse_user(user)}
        if cwd:
            proc["cwd"] = cwd
        proc["terminal"] = tty
        config.setdefault("root", {})["path"] = rootfs_path
        state_dir = os.environ.get("SANDBOX_STATE_DIR", DEFAULT_STATE_DIR)
        from ..host.dirs import ensure_dir

        ensure_dir(state_dir, 0o700)
        self.config = config
        facts: dict[str, Any] = {}
        resolved: dict[str, Any] = {"source": self.profile.source, "mode": self.profile.mode}
        if userns_required(self.profile) and not has_userns(config):
            facts, self.allocated = userns_facts(op, self.profile, config,
                                                 os.path.abspath(self.runc_root or "/run/runc"), self.cid)
            self.op = op
            if self.allocated:
                resolved["id_range"] = f"{self.allocated['range'].host_id}:{self.allocated['range'].size}"
        # the rootfs or bundle named here is the person's choice, not a hostile config.json's
        outcome = harden(self.profile, config, None, self.cid, named_root=os.path.abspath(bundle or rootfs_path),
                         named_root_subtree=bool(bundle), learn_agent=self.learn_agent, **facts)
        self.prep = outcome.prep
        self.bundle_dir = os.path.join(state_dir, self.cid)
        self._record([{"event": "profile_resolved", "data": resolved}]
                     + [{"event": "decision", "decision": d.to_dict()} for d in outcome.decisions])
        if self.verbose:
            click.echo(formats.decisions_text(outcome.decisions), err=True)
            click.echo(formats.verdict_line(self.profile, outcome), err=True)
        if outcome.refused:
            if self.allocated:
                from ..runtime.service import release_ids

                release_ids(op, self.allocated)
            raise PolicyRefusal(formats.refusal_message(self.profile, outcome), profile=self.profile.name)
        # the rootfs runc is given: the engine's, or the view sandbox prepares for a user namespace
        self.bundle_dir = make_bundle(state_dir, outcome.config["root"]["path"], outcome.config, name=self.cid)

    # -- start, wait, clean up ------------------------------------------------------
    def execute(self, verify_mode: str | None, tty: bool) -> int:
        import shutil

        try:
            if self.prep is not None:
                from ..host.mountns import prepare

                prepare(self.prep)  # our own mount namespace: runc and the container inherit it
            if tty:
                code = self._run_foreground()
            else:
                code = self._create_start_wait(verify_mode)
        except SandboxError as e:
            self.fail(e)
            code = e.exit_code if e.exit_code in (126, 127) else EXIT_RUN_FAILED
        finally:
            self.runc.cleanup(self.cid)
            shutil.rmtree(self.bundle_dir, ignore_errors=True)
        try:
            self._record([{"event": "deleted", "data": {}}])
        except SandboxError as e:
            click.echo(f"sandbox: {e}", err=True)
        return code

    def _run_foreground(self) -> int:
        self._record([{"event": "started", "data": {"tty": True}}])
        code: int = self.runc.run_foreground(self.cid, self.bundle_dir)
        self._record([{"event": "exited", "data": {"exit_code": code}}])
        return code

    def _create_start_wait(self, verify_mode: str | None) -> int:
        import signal

        import prctl

        # Become the subreaper so the container's init is re-parented to us when
        # `runc create` exits: we can wait for it and learn its exit status.
        prctl.set_child_subreaper(1)
        pid_file = os.path.join(self.bundle_dir, "init.pid")
        self.runc.create(self.cid, self.bundle_dir, pid_file=pid_file)
        with open(pid_file, encoding="ascii") as f:
            pid = self.pid = int(f.read().strip())
        self._record([{"event": "created", "data": {"pid": pid}}])

        def forward(signum: int, _frame: Any) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, forward)
        # Verify between create and start: runc has applied every control to the init
        # process (it waits on the exec fifo), so even a workload that exits at once is
        # checked, and under --verify-enforce a failing container never runs its workload.
        if verify_mode and not self._verify(verify_mode):
            self.runc.cleanup(self.cid)
            self._wait(pid)
            return EXIT_RUN_FAILED
        self.runc.start(self.cid)
        self._record([{"event": "started", "data": {"pid": pid}}])
        return self._wait(pid)

    def _verify(self, mode: str) -> bool:
        """Record the verification; False when the container must not start."""
        from ..core.verify import format_text, to_json
        from ..host.bundle import read_config
        from .verify_cmd import verify_container

        config = read_config(self.bundle_dir)
        _, checks = verify_container(self.cid, root=self.runc_root, runc=self.runc.path, expected_config=config)
        failed = [c for c in checks if c.status == "FAIL"]
        self._record([{"event": "verified", "data": {"mode": mode, "passed": not failed, "checks": to_json(checks)}}])
        if self.verbose or failed:
            click.echo(format_text(checks), err=True)
        if failed and mode == "enforce":
            click.echo(f"sandbox: verification failed ({len(failed)} controls); the container is removed", err=True)
            return False
        return True

    def _wait(self, pid: int) -> int:
        while True:
            try:
                got, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return EXIT_RUN_FAILED
            except InterruptedError:
                continue
            if got == pid:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                self._record([{"event": "exited", "data": {"exit_code": code}}])
                return code
