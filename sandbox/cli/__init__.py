"""The `sandbox` command: the one place that turns errors into exit codes.

Exit codes: 0 ok, 1 invalid input or failed check, 2 usage, 3 refused by policy;
`sandbox run` uses 125/126/127 before the workload starts, as Docker does.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import SandboxError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SandboxError as e:
            click.echo(f"sandbox: {e}", err=True)
            ctx.exit(e.exit_code)
        except BrokenPipeError:
            sys.stderr.close()
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sandbox")
def cli() -> None:
    """sandbox: a hardened container runtime wrapper in front of runc."""


def _register() -> None:
    from .agent_cmd import agent
    from .audit_cmd import audit
    from .check_cmd import apply_cmd, check
    from .daemon_cmd import daemon
    from .doctor_cmd import doctor
    from .learn_cmd import learn
    from .profile_cmd import profile
    from .run_cmd import run
    from .verify_cmd import verify

    for cmd in (profile, check, apply_cmd, run, verify, audit, daemon, doctor, agent, learn):
        cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="sandbox")
