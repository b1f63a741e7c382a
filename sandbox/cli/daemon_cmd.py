"""`sandbox daemon`: the warm process that takes sandbox-runc's create/run work.

Optional: without it sandbox-runc does the same work in a fresh Python per create, only slower.
"""

from __future__ import annotations

import json
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
    from ..daemon import socket_path

    return os.path.abspath(path or socket_path())


@daemon.command("run")
@SOCKET
@IDLE_TIMEOUT
def run(path: str | None, idle_timeout: float) -> None:
    """Serve in the foreground (for a service manager); stops on SIGTERM or `sandbox daemon stop`."""
    from ..daemon import Daemon
    from ..shim import standard_fds

    standard_fds()  # a service manager may start it with fds closed: the socket must not take one
    d = Daemon(_path(path), idle_timeout=idle_timeout)
    d.bind()
    click.echo(f"sandbox daemon: listening on {d.path} (pid {os.getpid()})", err=True)
    d.serve_forever()


@daemon.command("start")
@SOCKET
@IDLE_TIMEOUT
@click.option("--log", "log", metavar="FILE", default=os.devnull, help="Where the daemon's own messages go.")
def start(path: str | None, idle_timeout: float, log: str) -> None:
    """Start the daemon in the background and return once it answers."""
    from ..daemon import Daemon, ping
    from ..shim import standard_fds

    standard_fds()
    d = Daemon(_path(path), idle_timeout=idle_timeout)
    d.bind()  # errors (already running, unsafe directory) are reported here, in the foreground
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        for fd, src in ((0, null), (1, null), (2, out)):
            os.dup2(src, fd)
        try:
            d.serve_forever()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    d.close_listener()  # the daemon holds its own copy
    info = ping(d.path)
    if info is None:
        raise click.ClickException(f"the daemon did not answer on {d.path}")
    click.echo(f"sandbox daemon: listening on {d.path} (pid {info['pid']})")


@daemon.command("stop")
@SOCKET
def stop(path: str | None) -> None:
    """Ask the daemon to exit (a request in hand is finished first)."""
    import time

    from ..daemon import call, ping

    p = _path(path)
    info = ping(p)
    if info is None:
        raise click.ClickException(f"no sandbox daemon answers on {p}")
    call(p, [("op", "stop")])
    for _ in range(100):
        if not os.path.exists(f"/proc/{info['pid']}"):
            break
        time.sleep(0.05)
    click.echo(f"sandbox daemon: stopped (pid {info['pid']})")


@daemon.command("status")
@SOCKET
@FORMAT
def status(path: str | None, fmt: str) -> None:
    """Exit 0 if a daemon answers on the socket, 1 if not."""
    from ..daemon import ping

    p = _path(path)
    info = ping(p)
    if fmt == "json":
        click.echo(json.dumps({"running": info is not None, "socket": p, **(info or {})}))
    elif info:
        click.echo(f"sandbox daemon: running on {p} (pid {info['pid']}, {info['served']} requests served)")
    else:
        click.echo(f"sandbox daemon: not running on {p}")
    if info is None:
        raise SystemExit(1)
