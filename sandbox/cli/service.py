"""Running a root-only socket service (the sandbox daemon, the sandbox agent): foreground,
background, stop and status, the same way for both."""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

import click


class Server(Protocol):
    path: str

    def bind(self) -> None: ...

    def serve_forever(self) -> None: ...

    def close_listener(self) -> None: ...


def run_foreground(server: Server, name: str) -> None:
    from ..runtime.shim import standard_fds

    standard_fds()  # a service manager may start it with fds closed: the socket must not take one
    server.bind()
    click.echo(f"{name}: listening on {server.path} (pid {os.getpid()})", err=True)
    server.serve_forever()


def start_background(server: Server, name: str, log: str) -> None:
    """Bind in the foreground (errors are reported here), serve from a detached child."""
    from ..runtime.shim import standard_fds
    from ..runtime.unixsock import ping

    standard_fds()
    server.bind()
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
            server.serve_forever()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    server.close_listener()  # the child holds its own copy
    info = ping(server.path)
    if info is None:
        raise click.ClickException(f"the {name} did not answer on {server.path}")
    click.echo(f"{name}: listening on {server.path} (pid {info['pid']})")


def stop(path: str, name: str) -> None:
    """Ask the service to exit and wait (up to 5 s) until it has."""
    import time

    from ..runtime.unixsock import call, ping

    info = ping(path)
    if info is None:
        raise click.ClickException(f"no {name} answers on {path}")
    call(path, [("op", "stop")])
    for _ in range(100):
        if not os.path.exists(f"/proc/{info['pid']}"):
            break
        time.sleep(0.05)
    click.echo(f"{name}: stopped (pid {info['pid']})")


def status(path: str, name: str, fmt: str, info: dict[str, Any] | None, text: str) -> None:
    """Print `info` (None: not running) and exit 1 when nothing answers."""
    if fmt == "json":
        click.echo(json.dumps({"running": info is not None, "socket": path, **(info or {})}))
    elif info:
        click.echo(f"{name}: running on {path} (pid {info['pid']}{', ' + text if text else ''})")
    else:
        click.echo(f"{name}: not running on {path}")
    if info is None:
        raise SystemExit(1)
