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
    from ..core.loader import BUILTIN_PROFILES, load_profile

    for name in BUILTIN_PROFILES:
        p = load_profile(name)
        click.echo(f"{name:<12} {p.description}")


@profile.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True, help="Show the profile with its extends chain and defaults merged.")
def show(name: str, resolved: bool) -> None:
    """Print a profile (a built-in name or a path)."""
    import yaml

    from ..core.loader import BUILTIN_PROFILES, builtin_profile_text, load_profile, read_text_file

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
    from ..core.loader import load_profile_with_warnings

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
    from ..core.lint import RULES, SEVERITIES, lint
    from ..core.loader import field_location, load_profile

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
    from ..core.diff import diff
    from ..core.loader import load_profile

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
    from ..core.schema import profile_schema

    click.echo(json.dumps(profile_schema(), indent=2))


@profile.command("suggest")
@click.argument("profile_ref", metavar="PROFILE")
@click.argument("logs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--container", "containers", multiple=True, metavar="ID",
              help="Only the records of this container (repeatable; default: every container under PROFILE).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the suggested profile here.")
@FORMAT
def suggest_cmd(profile_ref: str, logs: tuple[str, ...], containers: tuple[str, ...], output: str | None,
                fmt: str) -> None:
    """The smallest change to PROFILE that would have allowed what its containers were recorded doing.

    Reads the sandbox agent's records (complain mode: what enforcement would deny; denials) of the
    containers that ran under PROFILE, from LOGS (default: the operator's audit log and its rotated
    siblings), and shows the change as a unified diff of the profile file (a new profile extending
    it, for a built-in). Exit 0 nothing to change, 1 a change is suggested (it loosens the profile).
    """
    import difflib

    from ..audit.log import read_records
    from ..core.diff import diff
    from ..core.loader import load_profile, read_text_file
    from ..core.suggest import calls_from_records, child_profile, suggest
    from ..host.opconfig import load_operator_config
    from .audit_cmd import _paths

    op = load_operator_config()
    prof = load_profile(profile_ref, search_dirs=op.profile_dirs)
    paths = _paths(logs) if logs else _paths((op.audit_log,))
    calls = calls_from_records(read_records(paths), prof.name, containers)
    s, new = suggest(prof, calls)
    builtin = prof.source.startswith("<builtin>") or not prof.source
    if builtin:
        old_text, path = "", "/dev/null"
        new_text = child_profile(prof.name, f"{prof.name}-suggested"[:64], prof, s)
    else:
        old_text, path = read_text_file(prof.source), prof.source
        new_text = _edited(old_text, prof, s)
    if s:
        _check_suggested(new_text, prof, calls, path)
    changes = diff(prof, new)
    if fmt == "json":
        click.echo(json.dumps({"profile": prof.name, "source": prof.source, "calls": len(calls),
                               "containers": sorted({c.container for c in calls}),
                               "remove_deny": list(s.remove_deny), "allow": [n for n, _ in s.add_allow],
                               "rules": [r for r, _ in s.add_rules], "already_allowed": list(s.unchanged),
                               "changes": [c.__dict__ for c in changes], "profile_text": new_text if s else None},
                              indent=2))
    else:
        n_containers = len({c.container for c in calls})
        click.echo(f"# {len(calls)} recorded calls of {len({c.syscall for c in calls})} syscalls in {n_containers} "
                   f"containers under {prof.name}" + (f"; already allowed: {', '.join(s.unchanged)}" if s.unchanged
                                                      else ""))
        if not calls:
            click.echo(f"# no records of containers under {prof.name} in {', '.join(paths)} (complain mode and "
                       "monitor.denials record them, through `sandbox agent`)")
        elif not s:
            click.echo("# nothing to change")
        else:
            click.echo("".join(difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True),
                                                    fromfile=path, tofile=output or path)), nl=False)
            for c in changes:
                click.echo(f"# {c}")
    if output and s:
        with open(output, "w", encoding="utf-8") as f:
            f.write(new_text)
    sys.exit(1 if s else 0)


def _edited(text: str, prof: Any, s: Any) -> str:
    """The profile file with the suggestion applied, comments and layout kept where they can be."""
    from ..core.loader import _parse_yaml
    from ..core.suggest import edit_profile

    data, doc = _parse_yaml(text, prof.source)
    lines_of = {path: loc.line for path, loc in doc.positions.items() if loc.line}
    return edit_profile(text, data if isinstance(data, dict) else {}, lines_of, prof, s)


def _check_suggested(text: str, prof: Any, calls: Any, path: str) -> None:
    """The suggested text must load and allow every recorded call (else it is a bug: say so)."""
    import os
    import tempfile

    from ..core.loader import load_profile
    from ..core.suggest import allowed
    from ..errors import SandboxError

    d = os.path.dirname(path) if path != "/dev/null" else None
    fd, tmp = tempfile.mkstemp(suffix=".yaml", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        new = load_profile(tmp)
    finally:
        os.unlink(tmp)
    missed = [c.syscall for c in calls if not allowed(new, c)]
    if missed:
        raise SandboxError(f"internal error: the suggested profile still denies {', '.join(sorted(set(missed)))}")
