"""`sandbox daemon`: the warm process that takes sandbox-runc's create/run work.

Optional: without it sandbox-runc does the same work in a fresh Python per create, only slower.
"""

from __future__ import annotations

import os

import click

from .options import FORMAT

SOCKET = click.option("--socket", "path", metavar="PATH", default=None,
                      help="Unix socket (default $SANDBOX_DAEMON_SOCKET, else /run/sandbox/daemon.sock).")
IDLE_TIMEOUT = click.option("--idle-timeout", type=click.FloatRange(min=0), default=0.0, show_default=True,
                            metavar="SECONDS", help="Exit after this long without a request (0: never).")


@click.group("daemon")
def daemon() -> None:
    """Run, start, stop or query the sandbox daemon (faster sandbox-runc create/run)."""


def _path(path: str | None) -> str:
    from ..runtime.daemon import socket_path

    return os.path.abspath(path or socket_path())


@daemon.command("run")
@SOCKET
@IDLE_TIMEOUT
def run(path: str | None, idle_timeout: float) -> None:
    """Serve in the foreground (for a service manager); stops on SIGTERM or `sandbox daemon stop`."""
    from ..runtime.daemon import Daemon
    from .service import run_foreground

    run_foreground(Daemon(_path(path), idle_timeout=idle_timeout), "sandbox daemon")


@daemon.command("start")
@SOCKET
@IDLE_TIMEOUT
@click.option("--log", "log", metavar="FILE", default=os.devnull, help="Where the daemon's own messages go.")
def start(path: str | None, idle_timeout: float, log: str) -> None:
    """Start the daemon in the background and return once it answers."""
    from ..runtime.daemon import Daemon
    from .service import start_background

    start_background(Daemon(_path(path), idle_timeout=idle_timeout), "sandbox daemon", log)


@daemon.command("stop")
@SOCKET
def stop(path: str | None) -> None:
    """Ask the daemon to exit (a request in hand is finished first)."""
    from .service import stop as stop_service

    stop_service(_path(path), "sandbox daemon")


@daemon.command("status")
@SOCKET
@FORMAT
def status(path: str | None, fmt: str) -> None:
    """Exit 0 if a daemon answers on the socket, 1 if not."""
    from ..runtime.daemon import ping
    from .service import status as show

    p = _path(path)
    info = ping(p)
    show(p, "sandbox daemon", fmt, info, f"{info['served']} requests served" if info else "")
