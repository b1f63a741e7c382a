"""`sandbox check` (the dry run) and `sandbox apply` (print or write the hardened config.json)."""

from __future__ import annotations

import json
import sys

import click

from ..errors import EXIT_REFUSED
from .options import FORMAT, profile_option


@click.command("check")
@profile_option()
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@FORMAT
def check(profile_ref: str, bundle_dir: str, fmt: str) -> None:
    """Show what PROFILE would do to the bundle in BUNDLE_DIR, and whether it would start.

    Exit 0 allowed, 3 refused, 1 invalid input.
    """
    from .. import formats
    from ..bundle import read_config
    from ..decisions import Outcome
    from ..service import bundle_problems, harden, resolve_profile

    profile = resolve_profile(profile_ref)
    problems: list = []
    config = read_config(bundle_dir, problems=problems)
    tolerated = bundle_problems(profile, problems)
    outcome = harden(profile, config, bundle_dir)
    outcome = Outcome(config=outcome.config, decisions=tolerated + outcome.decisions)
    if fmt == "json":
        click.echo(json.dumps(formats.outcome_json(profile, outcome), indent=2))
    else:
        click.echo(formats.decisions_text(outcome.decisions))
        click.echo(formats.verdict_line(profile, outcome))
    if outcome.refusals and profile.mode == "enforce":
        sys.exit(EXIT_REFUSED)


@click.command("apply")
@profile_option()
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", metavar="FILE", help="Write here ('-' for stdout; default stdout). "
              "Use the bundle's config.json to harden it in place.")
def apply_cmd(profile_ref: str, bundle_dir: str, output: str | None) -> None:
    """Print or write the hardened config.json of the bundle in BUNDLE_DIR under PROFILE.

    Nothing is written when the profile refuses the bundle (exit 3).
    """
    import os

    from .. import formats
    from ..bundle import read_config, write_config_atomic
    from ..service import bundle_problems, harden, resolve_profile

    profile = resolve_profile(profile_ref)
    problems: list = []
    config = read_config(bundle_dir, problems=problems)
    bundle_problems(profile, problems)
    outcome = harden(profile, config, bundle_dir)
    if outcome.refused:
        click.echo(f"sandbox: {formats.refusal_message(profile, outcome)}", err=True)
        sys.exit(EXIT_REFUSED)
    text = json.dumps(outcome.config, indent=2)
    if not output or output == "-":
        click.echo(text)
    elif os.path.abspath(output) == os.path.abspath(os.path.join(bundle_dir, "config.json")):
        write_config_atomic(bundle_dir, outcome.config)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
