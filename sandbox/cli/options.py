"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                      help="Output format.")


def profile_option(required: bool = True) -> Callable[[Any], Any]:
    return click.option("--profile", "-p", "profile_ref", required=required, metavar="NAME|PATH",
                        help="A built-in profile (baseline, restricted, strict) or a profile file.")
