"""`sandbox check` (the dry run) and `sandbox apply` (print or write the hardened config.json)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import EXIT_REFUSED
from .options import FORMAT, profile_option


@click.command("check")
@profile_option(required=False)
@click.option("--host", "host", is_flag=True,
              help="Show what sandbox-runc finds on this host instead: the engines' directories, the id pool, "
                   "user namespace and idmapped mount support.")
@click.argument("bundle_dir", type=click.Path(file_okay=False), required=False)
@FORMAT
def check(profile_ref: str | None, host: bool, bundle_dir: str | None, fmt: str) -> None:
    """Show what PROFILE would do to the bundle in BUNDLE_DIR, and whether it would start.

    Exit 0 allowed, 3 refused, 1 invalid input.  With --host: what sandbox-runc finds on
    this host (exit 1 when user namespaces or idmapped mounts are unavailable).
    """
    from ..core import formats
    from ..core.decisions import Outcome
    from ..host.bundle import read_config
    from ..runtime.service import bundle_problems, harden, resolve_profile

    if host:
        _host_report(fmt)
        return
    if not profile_ref or not bundle_dir:
        raise click.UsageError("give --profile and BUNDLE_DIR (or --host)")

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
        rules = formats.network_rules_text(outcome)
        if rules:
            click.echo(rules, nl=False)
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

    from ..core import formats
    from ..host.bundle import read_config, write_config_atomic
    from ..runtime.service import bundle_problems, harden, resolve_profile

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


def _host_report(fmt: str) -> None:
    """`sandbox check --host`."""
    import os

    from ..host.engines import discover
    from ..host.idpool import in_use
    from ..host.opconfig import load_operator_config, runtime_dir

    op = load_operator_config()
    found = discover()
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            max_userns = int(f.read())
    except (OSError, ValueError):
        max_userns = 0
    idmap = _idmap_support() if os.geteuid() == 0 else "unknown (run as root)"
    used = in_use(op)
    report: dict[str, Any] = {
        "engine_dirs": [{"engine": d.engine, "path": d.path, "found": d.why, "exists": os.path.isdir(d.path)}
                        for d in found],
        "id_pool": [f"{s}:{n}" for s, n in op.id_pool],
        "id_ranges_in_use": [{"range": f"{r['start']}:{r.get('size', 65536)}", "key": r.get("key", "?"),
                              "members": r.get("members", [])} for r in used],
        "runtime_dir": runtime_dir(op),
        "max_user_namespaces": max_userns,
        "idmapped_mounts": idmap,
    }
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("engine directories (bind sources sandbox-runc allows as the engines' own):")
        for d in report["engine_dirs"]:
            mark = "" if d["exists"] else "  (absent)"
            click.echo(f"  {d['engine']:<10} {d['path']}{mark}  [{d['found']}]")
        if not found:
            click.echo("  none found")
        click.echo(f"id pool: {', '.join(report['id_pool'])}; {len(used)} range(s) in use "
                   f"(recorded under {report['runtime_dir']}/ids)")
        for r in report["id_ranges_in_use"]:
            click.echo(f"  {r['range']}  {r['key']}  ({len(r['members'])} container(s))")
        click.echo(f"user namespaces: max_user_namespaces={max_userns}")
        click.echo(f"idmapped mounts: {idmap}")
    if max_userns == 0 or not str(idmap).startswith(("yes", "unknown")):
        sys.exit(1)


def _idmap_support() -> str:
    """Try an idmapped clone of the filesystem holding the engines' usual storage (nothing is attached)."""
    import os

    from ..core.profile import IdMapping
    from ..errors import PolicyRefusal
    from ..host.mountns import filesystem_of, idmapped_clone, userns_fd

    path = next((p for p in ("/var/lib/containerd", "/var/lib/docker", "/var/lib") if os.path.isdir(p)), "/")
    try:
        maps = (IdMapping(0, 1 << 30, 65536),)
        fd = userns_fd(maps, maps)
        try:
            os.close(idmapped_clone(path, fd))
        finally:
            os.close(fd)
    except PolicyRefusal as e:
        return f"no: {e}"
    return f"yes ({filesystem_of(path)} at {path}; overlay rootfs views are built from idmapped layers)"
