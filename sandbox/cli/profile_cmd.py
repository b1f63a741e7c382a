"""`sandbox profile list|show|validate|lint|diff|schema`: profiles in CI and code review."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import ProfileError, ProfileErrors
from .options import FORMAT


@click.group("profile")
def profile() -> None:
    """Inspect, validate, lint and compare security profiles."""


@profile.command("list")
def list_cmd() -> None:
    """List the built-in profiles."""
    from ..loader import BUILTIN_PROFILES, load_profile

    for name in BUILTIN_PROFILES:
        p = load_profile(name)
        click.echo(f"{name:<12} {p.description}")


@profile.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True, help="Show the profile with its extends chain and defaults merged.")
def show(name: str, resolved: bool) -> None:
    """Print a profile (a built-in name or a path)."""
    import yaml

    from ..loader import BUILTIN_PROFILES, builtin_profile_text, load_profile, read_text_file

    if resolved:
        p = load_profile(name)
        data = {"apiVersion": "sandbox/v1", "kind": "Profile", **p.resolved, "sha256": p.sha256}
        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100), nl=False)
    elif name in BUILTIN_PROFILES and "/" not in name:
        click.echo(builtin_profile_text(name)[0], nl=False)
    else:
        click.echo(read_text_file(name), nl=False)


@profile.command("validate")
@click.argument("paths", nargs=-1, required=True)
@FORMAT
def validate(paths: tuple[str, ...], fmt: str) -> None:
    """Check profiles; print `file:line:col: field: message` per problem. Exit 1 if any is invalid."""
    from ..loader import load_profile_with_warnings

    bad = False
    report: list[dict[str, Any]] = []
    for path in paths:
        errors: list[ProfileError] = []
        warnings: list[Any] = []
        try:
            _, warnings = load_profile_with_warnings(path)
        except ProfileErrors as many:
            errors = many.errors
        except ProfileError as one:
            errors = [one]
        bad = bad or bool(errors)
        if fmt == "json":
            report.append({"path": path, "valid": not errors, "errors": [_err_json(e) for e in errors],
                           "warnings": [{"location": str(w.location), "field": w.field, "message": w.message}
                                        for w in warnings]})
        else:
            for e in errors:
                click.echo(str(e) if e.location else f"{path}: {e}")
            for w in warnings:
                click.echo(str(w))
            if not errors:
                click.echo(f"{path}: valid")
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    sys.exit(1 if bad else 0)


def _err_json(e: ProfileError) -> dict[str, Any]:
    loc = e.location
    return {"file": loc.file if loc else None, "line": loc.line if loc else None, "col": loc.col if loc else None,
            "field": e.field, "message": e.message, "hint": e.hint}


@profile.command("lint")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--fail-on", type=click.Choice(["low", "medium", "high", "never"]), default="high",
              show_default=True, help="Exit 1 when a finding of at least this severity is found.")
def lint_cmd(paths: tuple[str, ...], fmt: str, fail_on: str) -> None:
    """Report where profiles are weaker than they could be, with stable rule ids."""
    from ..lint import RULES, SEVERITIES, lint
    from ..loader import field_location, load_profile

    results = []
    for path in paths:
        p = load_profile(path)
        for f in lint(p):
            results.append((path, field_location(p, f.field), f))
    threshold = 99 if fail_on == "never" else SEVERITIES.index(fail_on)
    failed = any(SEVERITIES.index(f.severity) >= threshold for _, _, f in results)
    if fmt == "text":
        for _path, loc, f in results:
            click.echo(f"{loc}: {f.rule} [{f.severity}] {f.field}: {f.message}")
        click.echo(f"{len(results)} findings in {len(paths)} profiles")
    elif fmt == "json":
        click.echo(json.dumps([{"path": path, "file": loc.file, "line": loc.line, "col": loc.col, "rule": f.rule,
                                "severity": f.severity, "field": f.field, "message": f.message}
                               for path, loc, f in results], indent=2))
    else:
        click.echo(json.dumps(_sarif(results, RULES), indent=2))
    sys.exit(1 if failed else 0)


def _sarif(results: list[Any], rules: list[Any]) -> dict[str, Any]:
    level = {"low": "note", "medium": "warning", "high": "error"}
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {"name": "sandbox-lint", "informationUri": "https://sandbox.invalid/docs/lint",
                                "rules": [{"id": rid, "shortDescription": {"text": (fn.__doc__ or "").split("\n")[0]},
                                           "fullDescription": {"text": (fn.__doc__ or "").strip()},
                                           "defaultConfiguration": {"level": level[sev]}}
                                          for rid, sev, fn in rules]}},
            "results": [{"ruleId": f.rule, "level": level[f.severity], "message": {"text": f.message},
                         "locations": [{"physicalLocation": {
                             "artifactLocation": {"uri": loc.file or path},
                             "region": {"startLine": loc.line or 1, "startColumn": loc.col or 1}}}]}
                        for path, loc, f in results],
        }],
    }


@profile.command("diff")
@click.argument("old")
@click.argument("new")
@FORMAT
def diff_cmd(old: str, new: str, fmt: str) -> None:
    """What NEW loosens and tightens compared with OLD. Exit 1 if anything loosens."""
    from ..diff import diff
    from ..loader import load_profile

    changes = diff(load_profile(old), load_profile(new))
    if fmt == "json":
        click.echo(json.dumps([c.__dict__ for c in changes], indent=2))
    else:
        for c in changes:
            click.echo(str(c))
        if not changes:
            click.echo("no changes in effect")
    sys.exit(1 if any(c.direction == "loosen" for c in changes) else 0)


@profile.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of profiles (for editors' YAML validation)."""
    from ..schema import profile_schema

    click.echo(json.dumps(profile_schema(), indent=2))
