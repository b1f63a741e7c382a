"""`sandbox audit`: verify the hash chain, show records, seal a log after a crash.

A failed verify prints its finding on stdout and exits 1 (via SystemExit); errors that stop the
command itself (no log, unreadable key) are AuditErrors for the top-level CLI.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .options import FORMAT


@click.group("audit")
def audit() -> None:
    """Verify, read and repair the tamper-evident audit log."""


def _paths(given: tuple[str, ...]) -> list[str]:
    """One path (or none: the default) means that log and its rotated siblings; several are taken as given."""
    from ..audit.log import DEFAULT_PATH, rotated_set
    from ..errors import AuditError

    if len(given) > 1:
        return list(given)
    path = given[0] if given else DEFAULT_PATH
    paths = rotated_set(path)
    if not paths:
        raise AuditError(f"no audit log at {path}")
    return paths


@audit.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--key-file", metavar="FILE", help="HMAC key the log was written with (root-only file).")
@click.option("--expect-seq", type=click.IntRange(min=0), metavar="N",
              help="Fail if the last record's seq is below N (catches records cut from the end).")
@FORMAT
def verify(paths: tuple[str, ...], key_file: str | None, expect_seq: int | None, fmt: str) -> None:
    """Check that an audit log is one unbroken hash chain.

    PATH defaults to /var/log/sandbox/audit.jsonl; its rotated siblings PATH.N are checked with it.
    Several PATHs are taken as given, oldest first.  Records cut from the very end leave a valid
    chain: pass the last seq you know of as --expect-seq to catch that.

    Exit 0 whole, 1 edited, removed, reordered or torn records (first bad file:line and why).
    """
    import os

    from ..audit.log import load_key, verify_files

    files = _paths(paths)
    key = load_key(key_file, owners=(0, os.geteuid())) if key_file else None
    r = verify_files(files, key=key, expect_seq=expect_seq)
    if fmt == "json":
        click.echo(json.dumps({"ok": r.ok, "records": r.records, "files": files, "file": r.file,
                               "line": r.first_bad_line, "reason": r.reason, "last_seq": r.last_seq}))
    elif r.ok:
        click.echo(f"OK: {r.records} records in {len(files)} file{'s' if len(files) != 1 else ''}")
    else:
        where = r.file or ""
        if r.first_bad_line is not None:
            where += f":{r.first_bad_line}"
        click.echo(f"{where}: {r.reason}")
    if not r.ok:
        raise SystemExit(1)


_COLUMNS = (("TIME", 30), ("SEQ", 6), ("CONTAINER", 12), ("EVENT", 16), ("CONTROL", 12), ("ACTION", 8),
            ("POINTER", 30))


def _cut(v: Any, width: int) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def _row(rec: dict[str, Any]) -> str:
    d = rec.get("decision") or {}
    data = rec.get("data") or {}
    if d:
        action = d.get("action", "") if d.get("applied", True) else f"({d.get('action', '')})"
        reason = d.get("reason", "")
    elif rec.get("event") in ("monitor", "syscall", "exec"):
        from ..core.monitor import describe

        action, reason = "", describe(rec)
    else:
        action = ""
        reason = data.get("reason") or ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                                                 for k, v in data.items())
    cells = (rec.get("ts"), rec.get("seq"), rec.get("container_id"), rec.get("event"), d.get("control"),
             action, d.get("pointer"))
    out = []
    for (name, width), v in zip(_COLUMNS, cells, strict=True):
        out.append(f"{_cut(v, width):>{width}}" if name == "SEQ" else f"{_cut(v, width):<{width}}")
    return " ".join([*out, _cut(reason, 200)]).rstrip()


@audit.command("show")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--container", "container", metavar="ID", help="Only records of this container.")
@click.option("--event", "events", multiple=True, metavar="EVENT",
              help="Only records of this event (repeatable; e.g. syscall, exec, monitor, decision, refused).")
@FORMAT
def show(path: str | None, container: str | None, events: tuple[str, ...], fmt: str) -> None:
    """Print audit records, oldest first.

    PATH defaults to /var/log/sandbox/audit.jsonl, shown with its rotated siblings PATH.N.
    This does not check the chain: use `sandbox audit verify` for that.  The sandbox agent's
    records (`--event syscall --event exec`) say what a monitored container did: each syscall
    complain mode let run that enforcement would deny, each denial, each program it ran.
    """
    from ..audit.log import read_records

    if fmt == "text":
        header = " ".join(f"{n:>{w}}" if n == "SEQ" else f"{n:<{w}}" for n, w in _COLUMNS)
        click.echo(f"{header} REASON")
    for rec in read_records(_paths((path,) if path else ())):
        if container is not None and rec.get("container_id") != container:
            continue
        if events and rec.get("event") not in events:
            continue
        click.echo(json.dumps(rec, ensure_ascii=False) if fmt == "json" else _row(rec))


@audit.command("seal")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--key-file", metavar="FILE", help="HMAC key, if the log uses one.")
def seal_cmd(path: str, key_file: str | None) -> None:
    """Continue a log after a crash left a torn last record in PATH.

    The torn bytes are moved to PATH.torn-<time> and a `sealed` record is appended, chained to the
    last good record, so the log verifies again and nothing is lost.
    """
    from ..audit.log import seal

    rec = seal(path, hmac_key_file=key_file)
    if not rec:
        click.echo(f"nothing to seal: {path} ends with a complete record")
        return
    data = rec["data"]
    click.echo(f"sealed {path}: {data['torn_bytes']} torn bytes saved to {data['saved_to']}; "
               f"appended `sealed` record seq {rec['seq']}")
