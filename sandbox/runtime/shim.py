"""sandbox-runc's hardening path: `create`, `run`, `restore`, `exec` and `update`.

The POSIX sh dispatcher (bin/sandbox-runc) execs the real runc directly for every
other subcommand, so passthrough never starts Python.  This module is only
reached for the subcommands that carry something to harden.  It never writes to
standard output (engines parse runc's) and keeps unknown config.json fields.

A refusal or error is told in this order, each step whatever became of the one before: the
audit record, runc's --log file (in --log-format, as runc writes it; containerd and the CRI
show the person its last error), then stderr (podman and Docker show it).  Engines hand the
runtime any stdio: closed descriptors, /dev/null opened read-only (containerd's shim for a
process without stdio, e.g. every pod's pause container), a full disk, a pipe whose reader is
gone.  None of that may lose the reason or change the exit code: sandbox-runc exits 0 or runc's
own status when runc ran, else 1, 126 (runc cannot be executed) or 127 (runc not found);
docs/integrations.md lists them.
"""

from __future__ import annotations

import os
import sys

from ..core.runc_cli import Invocation, parse
from ..errors import EXIT_CANNOT_INVOKE, EXIT_INVALID, EXIT_NOT_FOUND, PolicyRefusal, SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn


APPLIED_ANNOTATION_SUFFIX = ".applied"


def main(argv: list[str] | None = None) -> NoReturn:
    standard_fds()
    args = list(sys.argv[1:] if argv is None else argv)
    shim = _Shim(Invocation(args))

    def run() -> int:
        shim.inv = parse(args)
        return shim.dispatch(args)

    exit_quietly(shim.guarded(run))


def standard_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2, first thing.

    Otherwise the next file opened (the audit log, runc's --log, config.json) takes that number
    and what is later written to "stderr" lands in it.  Open descriptors are left as they are,
    even read-only ones: they are the engine's, and runc's stdio.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            new = os.open("/dev/null", os.O_RDWR)
        except OSError:
            try:
                new = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # holds the number; nothing can be written to it
            except OSError:
                continue
        if new != fd:
            os.dup2(new, fd)  # inheritable
            os.close(new)
        else:
            os.set_inheritable(fd, True)  # runc gets it as its own stdio


def exit_quietly(code: int) -> NoReturn:
    """Exit with `code` whatever stdout and stderr are: a failed flush at exit makes Python exit 120."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            setattr(sys, name, None)  # what cannot be written is dropped, not retried at exit
    sys.exit(code)


def exit_code(e: SandboxError) -> int:
    """sandbox-runc's own exit codes (docs/integrations.md): 127 runc not found, 126 runc cannot be
    executed, 1 everything else (a refusal, bad input, an audit record that cannot be written)."""
    return e.exit_code if e.exit_code in (EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND) else EXIT_INVALID


def write_stderr(text: str) -> None:
    """Write to fd 2 if it takes it (closed, read-only, full, a pipe without a reader: dropped)."""
    data = text.encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass


def tell(level: str, msg: str, log: str | None, log_format: str | None) -> None:
    """runc's --log file first (the engine reads it), then stderr; each whatever became of the other."""
    note = ""
    if log:
        try:
            write_runc_log(log, log_format or "text", msg, level)
        except OSError as e:
            note = f"sandbox-runc: cannot write runc log {log}: {e.strerror}\n"
    write_stderr(stderr_line(level, msg) + note)


def stderr_line(level: str, msg: str) -> str:
    return f"sandbox-runc: {'warning: ' if level == 'warning' else ''}{msg}\n"


class _Shim:
    def __init__(self, inv: Invocation) -> None:
        self.inv = inv
        self.op: Any = None
        self.runc = ""
        self.profile: Any = None
        self.audit: Any = None
        self.bundle = ""  # once known: named in a refusal's or error's audit record
        self.temp_files: list[str] = []  # rewritten --process/--resources files: removed once runc returns
        self.served_by = ""  # "daemon" when the sandbox daemon does this work (recorded in the audit log)
        # the daemon: what is to be said goes back to its client, which writes --log and stderr
        self.said: list[tuple[str, str]] | None = None
        self.cleanup_wanted = False  # the daemon's client runs `runc delete` itself
        self.fd_pid: int | None = None  # whose descriptors runc inherits (the daemon's client), None: ours
        self.runc_argv: list[str] = []  # the canonical command line runc is given
        self.container_problems: list[Any] = []  # what reading the container's config.json tolerated
        self.prep: Any = None  # RuntimePrep: what this process does before runc (an added user namespace)
        self.allocated: dict[str, Any] | None = None  # the id range allocated for this create
        self.init_pid = 0  # exec/update: the container's init process
        self.creator_pid = 0  # the process that runs runc create (the daemon's client), default this one

    def dispatch(self, args: list[str]) -> int:
        self.load()
        inv = self.inv
        if inv.route != "hardened":
            self.exec_runc(args)  # runc runs none of the hardened subcommands for this argv
        if inv.error:
            from ..errors import UsageError

            raise UsageError(f"runc {inv.subcommand} would refuse this command line ({inv.error}); sandbox does "
                             "not guess what it means")
        if inv.help:
            self.exec_runc([*inv.global_argv(), inv.subcommand or "", "--help"])
        if inv.subcommand in ("create", "run", "restore"):
            return self.harden_bundle()
        if inv.subcommand == "exec":
            return self.harden_exec()
        return self.harden_update()

    def guarded(self, step: Callable[[], int]) -> int:
        """Run `step`; a failure is reported where the engine shows it and becomes a documented exit code."""
        try:
            return step()
        except SandboxError as e:
            self.report(e)
            return exit_code(e)
        except KeyboardInterrupt:
            return 130
        except Exception as e:  # never a traceback into an engine's log; fail closed with the reason
            self.report(SandboxError(f"internal error ({e.__class__.__name__}): {e}"))
            return EXIT_INVALID
        finally:
            self.remove_temp_files()

    # -- set-up ---------------------------------------------------------------------
    def load(self) -> None:
        from ..host.opconfig import load_operator_config
        from ..host.runc import find_runc

        self.op = load_operator_config()
        self.runc = find_runc(self.op.runc)

    def _audit(self, events: list[dict[str, Any]], bundle: str = "") -> None:
        if self.audit is None:
            from ..audit.log import AuditLog

            self.audit = AuditLog(self.op.audit_log, on_failure=self.op.on_audit_failure,
                                  hmac_key_file=self.op.audit_hmac_key_file, max_bytes=self.op.audit_max_bytes,
                                  create_dir=True, warn=lambda m: self.say("warning", m))
        base = {"container_id": self.inv.container_id or "", "bundle": bundle,
                "profile": getattr(self.profile, "name", ""), "profile_sha256": getattr(self.profile, "sha256", "")}
        self.audit.append([{**base, **e} for e in events])

    def report(self, e: SandboxError) -> None:
        """Record, then say why: the audit record first, then runc's --log file and stderr.

        A record that cannot be written is said along with the reason; nothing here raises.
        Without an operator config there is no audit log to write to (its path is unknown).
        """
        msg = str(e)
        try:
            from ..errors import AuditError

            if self.op is not None and not isinstance(e, AuditError):
                self._audit([{"event": "refused" if isinstance(e, PolicyRefusal) else "error",
                              "data": {"reason": msg, "subcommand": self.inv.subcommand}}], self.bundle)
        except Exception as ae:  # noqa: BLE001 - the reason is said whatever happened to its record
            msg = f"{msg} [not in the audit log: {ae}]"
        self.say("error", msg)

    def say(self, level: str, msg: str) -> None:
        try:
            if self.said is not None:
                self.said.append((level, msg))
            else:
                tell(level, msg, self.inv.globals.get("log"), self.inv.globals.get("log-format"))
        except Exception:  # noqa: BLE001, S110 - nowhere left to say it; the exit code still does
            pass

    def temp_json(self, beside: str, data: Any) -> str:
        path = _write_temp_json(beside, data)
        self.temp_files.append(path)
        return path

    def remove_temp_files(self) -> None:
        """runc reads --process and --resources files before it starts anything, so once it returns they go."""
        while self.temp_files:
            try:
                os.unlink(self.temp_files.pop())
            except OSError:
                pass

    def exec_runc(self, args: list[str]) -> NoReturn:
        try:
            os.execv(self.runc, [self.runc, *args])  # noqa: S606 - runc's own argv, no shell
        except OSError as err:
            from ..errors import RuncError

            e = RuncError(f"cannot execute runc at {self.runc}: {err.strerror}")
            e.exit_code = EXIT_NOT_FOUND if isinstance(err, FileNotFoundError) else EXIT_CANNOT_INVOKE
            raise e from None

    def spawn_runc(self, args: list[str]) -> int:
        """Run the real runc as a child (so the outcome can be audited), forwarding signals."""
        import _signal  # not `signal`: its IntEnum wrappers import enum, too slow for every create

        pid = os.fork()
        if pid == 0:  # child
            try:
                os.execv(self.runc, [self.runc, *args])  # noqa: S606
            finally:
                os._exit(127)

        def forward(signum: int, _frame: Any) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
                    _signal.SIGUSR2, _signal.SIGWINCH):
            _signal.signal(sig, forward)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    def _runc_globals(self) -> list[str]:
        return self.inv.global_argv()

    def fd_facts(self) -> list[Any]:
        """What each descriptor runc would pass on with --preserve-fds is (runc passes 3 .. 3+N-1)."""
        import stat

        from ..core.runc_policy import FdFact

        n = self.inv.option("preserve-fds", 0)
        base = f"/proc/{self.fd_pid or 'self'}/fd"
        out = []
        for fd in range(3, 3 + min(n, 4096)):
            link = f"{base}/{fd}"
            try:
                path = os.readlink(link)
                st = os.stat(link)  # follows the magic link to the open file itself
            except OSError:
                out.append(FdFact(fd, "missing"))
                continue
            mode = st.st_mode
            kind = ("reg" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "chr" if stat.S_ISCHR(mode)
                    else "blk" if stat.S_ISBLK(mode) else "fifo" if stat.S_ISFIFO(mode)
                    else "sock" if stat.S_ISSOCK(mode) else "lnk" if stat.S_ISLNK(mode) else "other")
            out.append(FdFact(fd, kind, path, (os.major(st.st_rdev), os.minor(st.st_rdev))))
        if n > 4096:
            out.append(FdFact(3 + 4096, "other", f"{n - 4096} more"))
        return out

    def refuse_if_refused(self, decisions: list[Any]) -> None:
        from ..core.decisions import Outcome

        outcome = Outcome(config={}, decisions=decisions)
        if outcome.refused:
            from ..core.formats import refusal_message

            raise PolicyRefusal(refusal_message(self.profile, outcome), profile=self.profile.name)

    # -- profile selection ----------------------------------------------------------------
    def select_profile(self, config: dict[str, Any]) -> Any:
        """The default profile, or the one an annotation asks for if the operator allows it."""
        from .._record import replace
        from ..host.cache import load_profile
        from ..host.opconfig import check_trusted_file

        op = self.op
        annotations: dict[str, Any] = config["annotations"] if isinstance(config.get("annotations"), dict) else {}
        applied = annotations.get(op.annotation_key + APPLIED_ANNOTATION_SUFFIX)
        requested = annotations.get(op.annotation_key)
        ref = op.default_profile
        if isinstance(requested, str) and requested and requested != op.default_profile:
            if requested not in op.allowed_profiles:
                allowed = ", ".join([op.default_profile, *op.allowed_profiles])
                raise PolicyRefusal(f"refused by sandbox: annotation {op.annotation_key}={requested} asks for a "
                                    f"profile the operator does not allow (allowed: {allowed})")
            ref = requested
        elif isinstance(applied, str) and "@" in applied and not requested:
            # exec/update: the profile the container was created under (recorded by name; the
            # default profile may be configured by path)
            name = applied.split("@", 1)[0]
            if name != load_profile(op.default_profile, op.profile_dirs).name:
                ref = name
        profile = load_profile(ref, op.profile_dirs)
        from ..errors import ProfileError

        for path in profile.files:  # the whole chain and any seccomp file, not only the leaf
            check_trusted_file(path, "profile", ProfileError)
        if op.floor and ref != op.default_profile and ref != op.floor:
            from ..core.diff import diff

            looser = [c for c in diff(load_profile(op.floor, op.profile_dirs), profile)
                      if c.direction == "loosen"]
            if looser:
                raise PolicyRefusal(f"refused by sandbox: profile {profile.name} is looser than the floor "
                                    f"{op.floor} ({looser[0].field}: {looser[0].message})")
        if op.mode and op.mode != profile.mode:
            profile = replace(profile, mode=op.mode)
        return profile

    # -- create / run / restore -------------------------------------------------------------
    def harden_bundle(self) -> int:
        bundle = self.prepare_bundle()
        if self.prep is not None:
            from ..host.mountns import prepare

            try:
                prepare(self.prep)  # this process's own mount namespace, which runc inherits
            except BaseException:
                self.release_ids()
                raise
        return self.finish_bundle(bundle, self.spawn_runc(self.runc_argv))

    def runc_root(self) -> str:
        return os.path.abspath(self.inv.globals.get("root") or "/run/runc")

    def adds_userns(self, config: dict[str, Any]) -> bool:
        """Whether the profile gives this bundle a user namespace it does not have."""
        from ..core.transform.user import has_userns, userns_required

        return userns_required(self.profile) and not has_userns(config)

    def _userns_facts(self, config: dict[str, Any]) -> dict[str, Any]:
        from .service import userns_facts

        if not self.adds_userns(config) or not self.inv.container_id:
            return {}
        facts, self.allocated = userns_facts(self.op, self.profile, config, self.runc_root(), self.inv.container_id,
                                             creator=self.creator_pid or None)
        return facts

    def release_ids(self) -> None:
        if self.allocated is not None:
            from .service import release_ids

            a, self.allocated = self.allocated, None
            release_ids(self.op, a)

    def prepare_bundle(self) -> str:
        """Everything before runc: select, harden, audit the decisions, write config.json; the bundle path."""
        from ..core.runc_policy import flag_decisions
        from ..host.bundle import read_config, write_config_atomic
        from .service import bundle_problems, harden_with_engine_dirs

        inv = self.inv
        # runc reads <bundle>/config.json relative to its working directory, which is ours
        bundle = self.bundle = os.path.abspath(inv.option("bundle") or ".")
        problems: list[Any] = []
        config = read_config(bundle, problems=problems)
        self.profile = self.select_profile(config)
        tolerated = bundle_problems(self.profile, problems)  # complain mode: recorded, not refused
        extra = self._userns_facts(config)
        try:
            outcome = harden_with_engine_dirs(self.op, self.profile, config, bundle,
                                              container_id=inv.container_id or "", **extra)
            decisions = tolerated + outcome.decisions + flag_decisions(
                self.profile, inv, self.fd_facts() if inv.option("preserve-fds", 0) > 0 else [])
        except BaseException:
            self.release_ids()
            raise
        self.prep = outcome.prep
        resolved = {"source": self.profile.source, "mode": self.profile.mode, "subcommand": inv.subcommand}
        if self.served_by:
            resolved["served_by"] = self.served_by
        if self.allocated is not None:
            rng = self.allocated["range"]
            resolved["id_range"] = f"{rng.host_id}:{rng.size}"
            if self.allocated["pod"]:
                resolved["pod"] = self.allocated["pod"]
        if outcome.prep is not None and outcome.prep.rootfs is not None:
            resolved["rootfs"] = {"kind": outcome.prep.rootfs.kind, "source": outcome.prep.rootfs.source}
        self._audit([{"event": "profile_resolved", "data": resolved}]
                    + [{"event": "decision", "decision": d.to_dict()} for d in decisions], bundle)
        try:
            self.refuse_if_refused(decisions)
        except PolicyRefusal:
            self.release_ids()
            raise
        self.runc_argv = inv.canonical({**inv.options, "bundle": bundle})
        new = outcome.config
        if self.profile.mode == "enforce":
            applied = f"{self.profile.name}@{self.profile.sha256[:16]}"
            if self.allocated is not None:
                applied += f";userns={self.allocated['range'].host_id}:{self.allocated['range'].size}"
            new.setdefault("annotations", {})[self.op.annotation_key + APPLIED_ANNOTATION_SUFFIX] = applied
        if new != config:
            # Atomic (rename), not fsynced: runc reads it from the page cache at once, and after a
            # host crash no container runs from it without a new `create` through sandbox (engines
            # regenerate config.json). The decisions' audit record before it is fsynced.
            write_config_atomic(bundle, new, durable=False)
        return bundle

    def finish_bundle(self, bundle: str, code: int) -> int:
        """Record what runc did with the hardened bundle; a failed create is removed."""
        data: dict[str, Any] = {"runc_exit": code}
        if self.inv.subcommand == "run":
            event = "exited"
        elif code == 0:
            event = "created"
        else:
            # a failed create must not leave a half-made container behind
            self._cleanup()
            self.release_ids()
            event, data["reason"] = "error", f"runc {self.inv.subcommand} failed"
        try:
            self._audit([{"event": event, "data": data}], bundle)
        except SandboxError:
            if event == "created":
                self._cleanup()  # a container whose creation cannot be recorded must not stay
            raise
        return code

    def _cleanup(self) -> None:
        if self.served_by:
            self.cleanup_wanted = True
            return
        import subprocess

        cid = self.inv.container_id
        if cid:
            subprocess.run([self.runc, *self._runc_globals(), "delete", "--force", *_id_args(cid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def _container(self) -> tuple[dict[str, Any], str]:
        """The running container's config.json (as hardened at create) and bundle path."""
        import subprocess

        from .. import _fastjson as json
        from ..errors import RuncError
        from ..host.bundle import read_config

        cid = self.inv.container_id
        if not cid:
            raise RuncError(f"{self.inv.subcommand}: no container id given")
        res = subprocess.run([self.runc, *self._runc_globals(), "state", *_id_args(cid)], capture_output=True,
                             check=False)
        if res.returncode != 0:
            # runc's own answer (e.g. "container does not exist"); never the caller's argv unhardened
            said = res.stderr.decode("utf-8", "replace").strip().splitlines()
            msg = said[-1] if said else f"runc state exited with {res.returncode}"
            if 'msg="' in msg:
                msg = msg.split('msg="', 1)[1].rsplit('"', 1)[0]
            raise RuncError(f"{self.inv.subcommand} {cid}: {msg}")
        state = json.loads(res.stdout.decode("utf-8", "replace"))
        bundle = state.get("bundle", "")
        self.init_pid = state.get("pid") if isinstance(state.get("pid"), int) else 0
        # leniently: a container complain mode let start must stay reachable (see _container_profile)
        return read_config(bundle, problems=self.container_problems), bundle

    def _container_profile(self, config: dict[str, Any]) -> Any:
        from .service import bundle_problems

        profile = self.select_profile(config)
        bundle_problems(profile, self.container_problems)  # recorded at create; enforce mode raises
        return profile

    def enter_inherited_namespaces(self, config: dict[str, Any]) -> None:
        """A container in a user namespace whose config.json names no network, ipc or uts namespace got
        them from sandbox-runc (it entered the engine's for runc create: see transform.user); `runc
        exec` would leave the new process in its own, so it is started inside the container's."""
        from ..core.transform.user import has_userns
        from ..host.mountns import enter_namespace

        if not has_userns(config) or not self.init_pid:
            return
        listed = {n.get("type") for n in (config.get("linux") or {}).get("namespaces") or [] if isinstance(n, dict)}
        for kind, proc_name in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")):
            if kind not in listed:
                enter_namespace(kind, f"/proc/{self.init_pid}/ns/{proc_name}")

    # -- exec ---------------------------------------------------------------------------------
    def harden_exec(self) -> int:
        """The process runc would start is built as runc builds it, hardened by the transform as
        config.json's process is, and handed to runc as a new --process file: the caller's flags
        never reach runc, so no repeat, `=false` or short form can switch a control back off."""
        from ..core.gojson import PROCESS, SPEC_PROCESS
        from ..core.runc_policy import RUNNER_FLAGS, exec_process, flag_decisions, ignored_with_process, lsm_decisions
        from .service import harden

        inv = self.inv
        config, bundle = self._container()
        self.bundle = bundle
        self.profile = self._container_profile(config)
        decisions: list[Any] = []
        # the container's process as runc reads it from the bundle's config.json (hardened at create)
        base = read_go_json(os.path.join(bundle, "config.json"), "config.json", SPEC_PROCESS).get("process")
        proc_file = inv.option("process")
        if proc_file:
            proc = read_go_json(proc_file, "process", PROCESS)
            decisions += ignored_with_process(self.profile, inv)
        else:
            proc = exec_process(base, inv)  # what runc exec builds from config.json and the flags
        trial = dict(config)
        trial["process"] = proc
        out = harden(self.profile, trial, bundle)
        decisions = [d for d in out.decisions if d.pointer.startswith("/process")] + decisions
        decisions += lsm_decisions(self.profile, base, out.config["process"])
        decisions += flag_decisions(self.profile, inv, self.fd_facts() if inv.option("preserve-fds", 0) > 0 else [])
        self._audit([{"event": "decision", "decision": dict(d.to_dict(), subcommand="exec")} for d in decisions],
                    bundle)
        self.refuse_if_refused(decisions)
        decided = out.config["process"] if self.profile.mode == "enforce" else proc
        path = self.temp_json(proc_file or os.path.join(bundle, "config.json"), decided)
        runner = {k: v for k, v in inv.options.items() if k in RUNNER_FLAGS}
        self.runc_argv = inv.canonical({**runner, "process": path}, [inv.args[0]])
        self.enter_inherited_namespaces(config)
        return self.spawn_runc(self.runc_argv)

    # -- update ---------------------------------------------------------------------------------
    def harden_update(self) -> int:
        """runc update's resources are built as runc builds them, clamped, and handed over as a new
        --resources file (never `-`, never the caller's flags)."""
        from ..core.gojson import RESOURCES
        from ..core.runc_policy import flag_decisions
        from ..core.update import clamp_resources, ignored_with_resources, resources_from_flags, resources_from_json

        inv = self.inv
        config, bundle = self._container()
        self.bundle = bundle
        self.profile = self._container_profile(config)
        decisions: list[Any] = []
        res_file = inv.option("resources")
        if res_file:
            if res_file == "-":
                data = sys.stdin.buffer.read(MAX_RESOURCES + 1)
                if len(data) > MAX_RESOURCES:
                    from ..errors import BundleError

                    raise BundleError(f"update --resources -: more than {MAX_RESOURCES} bytes on standard input")
            else:
                data = None
            res = resources_from_json(read_go_json(res_file, "resources", RESOURCES, data))
            decisions += ignored_with_resources(self.profile, inv)
        else:
            res = resources_from_flags(inv)
        current = (config.get("linux") or {}).get("resources") if isinstance(config.get("linux"), dict) else None
        from ..host.probe import swap_accounting

        new, clamped = clamp_resources(self.profile, res, current if isinstance(current, dict) else None,
                                       swap_accounting())
        decisions = clamped + decisions + flag_decisions(self.profile, inv)
        if decisions:
            self._audit([{"event": "decision", "decision": dict(d.to_dict(), subcommand="update")}
                         for d in decisions], bundle)
        self.refuse_if_refused(decisions)
        decided = new if self.profile.mode == "enforce" else res
        beside = res_file if res_file and res_file != "-" else os.path.join(bundle, "config.json")
        opts = {k: v for k, v in inv.options.items() if k in ("l3-cache-schema", "mem-bw-schema")}
        self.runc_argv = inv.canonical({**opts, "resources": self.temp_json(beside, decided)}, [inv.args[0]])
        return self.spawn_runc(self.runc_argv)


MAX_RESOURCES = 1 << 20


def _id_args(cid: str) -> list[str]:
    """A container id as the last argument: after `--` when runc would take it for a flag."""
    return ["--", cid] if cid.startswith("-") else [cid]


def read_go_json(path: str, what: str, schema: Any, data: bytes | None = None) -> Any:
    """A JSON file (or `data`) read as runc's encoding/json reads it into `schema` (sandbox.core.gojson)."""
    from ..core import gojson
    from ..errors import BundleError, Location
    from ..host.bundle import _read_bytes

    loc = Location(file=path)
    if data is None:
        data = _read_bytes(path, what, MAX_RESOURCES * 16)
    try:
        doc = gojson.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BundleError(f"{what} is not valid UTF-8 (byte {e.start})", location=loc) from None
    except RecursionError:
        raise BundleError(f"{what} is nested too deeply", location=loc) from None
    except ValueError as e:
        raise BundleError(f"invalid JSON: {e}", location=loc) from None
    try:
        return gojson.decode(doc, schema) or {}
    except gojson.GoJSONError as e:
        raise BundleError(f"{what} is refused: {e}", location=loc) from None


def _private_dir(beside: str) -> str:
    """Where a file runc will read can be written so that nobody but root can swap it.

    The directory of `beside` if only root may write there (or it is sticky and ours), else
    /run, else /tmp (root's and sticky): a writable directory would let someone rename a
    different file into place between our write and runc's read.
    """
    import stat

    for d in (os.path.dirname(os.path.abspath(beside)), "/run", "/tmp"):  # noqa: S108 - checked below
        try:
            st = os.lstat(d)
        except OSError:
            continue
        if (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
                and (not st.st_mode & 0o022 or st.st_mode & stat.S_ISVTX)):
            return d
    raise SandboxError(f"no directory only root can write to near {beside} for runc's input file")


def _write_temp_json(beside: str, data: Any) -> str:
    """Write `data` to a new root-only file near `beside` and return its path."""
    from .. import _fastjson

    d = _private_dir(beside)
    path = os.path.join(d, f".sandbox-{os.urandom(8).hex()}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_fastjson.dumps(data))
    return path


def runc_log_line(fmt: str, level: str, msg: str, when: float) -> str:
    """One line as runc 1.1 writes its --log (logrus, RFC 3339 time): JSON for `json`, else text."""
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    if fmt == "json":
        from .. import _fastjson as json

        return json.dumps({"level": level, "msg": msg, "time": stamp}) + "\n"
    return f'time="{stamp}" level={level} msg={go_quote(msg)}\n'


def go_quote(s: str) -> str:
    """Go's strconv.Quote, as logrus's text format quotes a value (a byte that was not UTF-8: \\xNN)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif 0xDC80 <= o <= 0xDCFF:  # surrogateescape: an undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def write_runc_log(path: str, fmt: str, msg: str, level: str = "error") -> None:
    """Append one line to runc's --log file the way runc writes it; OSError if it cannot be written.

    One write(2) with O_APPEND, so a line is never interleaved with runc's own; O_NONBLOCK so
    that a FIFO put there cannot hang the engine.
    """
    import time

    data = runc_log_line(fmt, level, msg, time.time()).encode("utf-8", "backslashreplace")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
