"""`sandbox agent`: the service runc hands monitored containers' seccomp notifications to."""

from __future__ import annotations

import os

import click

from .options import FORMAT

SOCKET = click.option("--socket", "path", metavar="PATH", default=None,
                      help="Unix socket (default $SANDBOX_AGENT_SOCKET, else /run/sandbox/agent.sock).")
AUDIT_LOG = click.option("--audit-log", metavar="PATH", default=None,
                         help="Where records go (default: the operator config's audit_log).")
MAX_FDS = click.option("--max-fds", type=click.IntRange(min=1), default=4096, show_default=True,
                       help="Notification descriptors held at most (one per monitored process tree: the container "
                            "and each exec); beyond, a descriptor is refused and its routed syscalls fail.")
FLUSH = click.option("--flush-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
                     metavar="SECONDS", help="How often each container's call counts are recorded.")


@click.group("agent")
def agent() -> None:
    """Run, start, stop or query the sandbox agent (runtime monitoring through seccomp notifications)."""


def _path(path: str | None) -> str:
    from ..runtime.agent_client import DEFAULT_SOCKET, socket_path

    return os.path.abspath(path or socket_path() or DEFAULT_SOCKET)


def _agent(path: str | None, audit_log: str | None, max_fds: int, flush_interval: float) -> object:
    from ..runtime.agent import Agent, audit_appender

    append, on_failure = audit_appender(audit_log)
    return Agent(_path(path), append, fail_closed=on_failure == "fail", max_fds=max_fds, flush_interval=flush_interval)


@agent.command("run")
@SOCKET
@AUDIT_LOG
@MAX_FDS
@FLUSH
def run(path: str | None, audit_log: str | None, max_fds: int, flush_interval: float) -> None:
    """Serve in the foreground (for a service manager); stops on SIGTERM or `sandbox agent stop`."""
    from .service import run_foreground

    run_foreground(_agent(path, audit_log, max_fds, flush_interval), "sandbox agent")  # type: ignore[arg-type]


@agent.command("start")
@SOCKET
@AUDIT_LOG
@MAX_FDS
@FLUSH
@click.option("--log", "log", metavar="FILE", default=os.devnull, help="Where the agent's own messages go.")
def start(path: str | None, audit_log: str | None, max_fds: int, flush_interval: float, log: str) -> None:
    """Start the agent in the background and return once it answers."""
    from .service import start_background

    start_background(_agent(path, audit_log, max_fds, flush_interval), "sandbox agent", log)  # type: ignore[arg-type]


@agent.command("stop")
@SOCKET
def stop(path: str | None) -> None:
    """Ask the agent to exit. The containers it monitors lose it: their routed syscalls fail (ENOSYS)."""
    from .service import stop as stop_service

    stop_service(_path(path), "sandbox agent")


@agent.command("status")
@SOCKET
@FORMAT
def status(path: str | None, fmt: str) -> None:
    """Exit 0 if an agent answers on the socket, 1 if not."""
    from ..runtime.unixsock import call
    from .service import status as show

    p = _path(path)
    reply = call(p, [("op", "status")], timeout=2.0)
    info = dict(reply) if reply and dict(reply).get("status") == "ok" else None
    text = (f"{info['containers']} containers, {info['notifications']} notifications, "
            f"{info['records_written']} records written" if info else "")
    show(p, "sandbox agent", fmt, info, text)
