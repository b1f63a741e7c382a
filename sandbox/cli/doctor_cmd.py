"""`sandbox doctor`: what this host supports and lacks, and what that means for the profiles."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from .options import FORMAT

if TYPE_CHECKING:
    from ..host.doctor import Report

_STYLE = {"ok": "green", "note": "cyan", "warn": "yellow", "missing": "red", "fail": "bold red"}


@click.command("doctor")
@FORMAT
@click.option("--brief", is_flag=True,
              help="Only the summary line, and only when something is missing or worth a look.")
@click.pass_context
def doctor(ctx: click.Context, fmt: str, brief: bool) -> None:
    """Check this host for what the profiles need.

    Each line says what was found and what it means for the built-in profiles (and the operator's
    default profile): runc and its known CVEs, cgroups, namespaces, user namespaces, idmapped mounts,
    seccomp, LSMs, Landlock, nftables, the engines and whether they use sandbox-runc, the operator
    config, the audit log, the daemon.  Exit 1 when the default profile cannot be enforced here.
    Reads only: nothing is created or changed.
    """
    from ..host.doctor import run

    report = run()
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif brief:
        if report.attention or report.exit_code:
            click.echo(report.summary)
    elif sys.stdout.isatty():
        _rich(report)
    else:
        click.echo(plain(report))
    ctx.exit(report.exit_code)


def plain(report: Report) -> str:
    """One line per check (status, name, what was found) and its meaning indented below: for pipes and logs."""
    lines = [report.summary]
    for c in report.checks:
        lines.append(f"{c.status:<8}{c.name}: {c.found}")
        if c.impact:
            lines.append(f"{'':8}-> {c.impact}")
    return "\n".join(lines)


def _rich(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=report.summary, title_justify="left", show_lines=True, expand=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("found", ratio=3)
    table.add_column("for the profiles", ratio=2)
    for c in report.checks:
        table.add_row(c.name, f"[{_STYLE.get(c.status, '')}]{c.status}[/]", c.found, c.impact, end_section=False)
    Console(highlight=False).print(table)
