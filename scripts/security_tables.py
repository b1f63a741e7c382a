#!/usr/bin/env python3
"""Print (or, with --write, update in docs/security.md) the tables generated from sandbox's own tables:

- `hostpaths`: every place config.json names a host path (transform/hostpath.USES);
- `mounttypes`: the filesystem types allowed, where, with which data options (tables.MOUNT_TYPES);
- `fields`: every config.json field runc 1.1.5 acts on and what sandbox does with it (ocishape.FIELDS);
- `cves`: known runc CVEs, the status of Debian's runc on the test machine, sandbox's mitigation;
- `runcflags`: runc 1.1.5's flags per subcommand and what sandbox does with each (runc_cli's
  GLOBAL_FLAGS and SUBCOMMAND_FLAGS), with what a test run saw: `--observed FILE` takes the JSON
  tests/e2e/test_runc_flag_table.py writes to $SANDBOX_RUNC_FLAG_TABLE; without it the observations
  already in the document are kept.

Each block sits in docs/security.md between `<!-- BEGIN name -->` and `<!-- END name -->`;
tests/unit/test_security_doc.py checks the document matches.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DOC = os.path.join(ROOT, "docs", "security.md")
# The runc on the machine the tables were checked on (`runc --version`, `dpkg-query -W runc`).
MACHINE_RUNC = ("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def hostpaths() -> str:
    from sandbox.core.transform.hostpath import USES

    lines = ["| use | config.json field | what runc 1.1.5 does with it | rule |", "|---|---|---|---|"]
    for name, u in USES.items():
        lines.append(f"| `{name}` | {_cell(u.field)} | {_cell(u.runc)} | {u.rule} |")
    return "\n".join(lines)


def mounttypes() -> str:
    from sandbox.core import tables

    lines = ["| type | destination | filesystem data options allowed |", "|---|---|---|"]
    for t, (dest, opts) in tables.MOUNT_TYPES.items():
        shown = ", ".join(f"`{o}`" for o in sorted(opts)) or "none"
        lines.append(f"| `{t}` | {f'`{dest}` only' if dest else 'anywhere'} | {shown} |")
    return "\n".join(lines)


def fields() -> str:
    from sandbox.core import ocishape

    lines = ["| field | JSON type | sandbox | what / why |", "|---|---|---|---|"]
    for path, kind, how, note in ocishape.FIELDS:
        shown = {"keep": "kept", "policy": "policy (refused / warned)"}.get(how, how.replace("step:", "step "))
        lines.append(f"| `{path}` | {kind} | {shown} | {_cell(note)} |")
    return "\n".join(lines)


def cves() -> str:
    from sandbox.core.runc_cves import status

    version, package = MACHINE_RUNC
    lines = [f"| CVE | what | fixed upstream in | runc {package} here | what sandbox applies | tested by |",
             "|---|---|---|---|---|---|"]
    for cve, st in status(version, package):
        note = " (backported by Debian)" if st == "fixed" and cve.debian else ""
        note += " (rootless runc only)" if cve.rootless_only else ""
        tests = "<br>".join(f"`{t}`" for t in cve.tests) or "—"
        lines.append(f"| {cve.id} | {_cell(cve.summary)} | {', '.join(cve.fixed)} | **{st}**{note} | "
                     f"{_cell(cve.mitigation)} | {tests} |")
    return "\n".join(lines)


def flag_rows() -> list[tuple[str, Any]]:
    """(subcommand or "global", FlagSpec) for every row of runc's flag table, in the table's order."""
    from sandbox.core.runc_cli import GLOBAL_FLAGS, SUBCOMMAND_FLAGS

    return [("global", s) for s in GLOBAL_FLAGS] + [(sub, s) for sub, specs in SUBCOMMAND_FLAGS.items()
                                                    for s in specs]


def flag_key(sub: str, spec: Any) -> str:
    return f"{sub} {spec.names[0]}"


def _block(text: str, name: str) -> str:
    m = re.search(rf"<!-- BEGIN {name} -->\n(.*?)\n<!-- END {name} -->", text, re.S)
    return m.group(1) if m else ""


def observed_in(text: str) -> dict[str, str]:
    """The observations of a `runcflags` block already in `text`, by flag_key."""
    out = {}
    for line in _block(text, "runcflags").splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) == 6:
            names = cells[1].strip("`").split(", ")[0].lstrip("-")
            out[f"{cells[0]} {names}"] = cells[5].replace("\\|", "|")
    return out


def runcflags(observed: dict[str, str] | None = None, text: str | None = None) -> str:
    if observed is None:
        if text is None:
            with open(DOC, encoding="utf-8") as f:
                text = f.read()
        observed = observed_in(text)
    lines = ["| subcommand | flag | kind | sandbox | why | observed in the test run |", "|---|---|---|---|---|---|"]
    for sub, spec in flag_rows():
        flag = ", ".join(("-" if len(n) == 1 else "--") + n for n in spec.names)
        seen = observed.get(flag_key(sub, spec), "not run")
        lines.append(f"| {sub} | `{flag}` | {spec.kind} | {spec.action} | "
                     f"{_cell(spec.why)} | {_cell(seen)} |")
    return "\n".join(lines)


BLOCKS = {"hostpaths": hostpaths, "mounttypes": mounttypes, "fields": fields, "cves": cves, "runcflags": runcflags}


def replace_blocks(text: str, observed: dict[str, str] | None = None) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/security.md has no {name} block")
        table = runcflags(observed, text) if name == "runcflags" else make()
        text = pattern.sub(lambda m, table=table: m.group(1) + table + "\n" + m.group(2), text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update docs/security.md in place")
    ap.add_argument("--observed", metavar="FILE",
                    help="runcflags: the JSON tests/e2e/test_runc_flag_table.py wrote to $SANDBOX_RUNC_FLAG_TABLE")
    ap.add_argument("block", nargs="?", choices=sorted(BLOCKS), help="print only this block")
    args = ap.parse_args()
    observed = None
    if args.observed:
        import json

        with open(args.observed, encoding="utf-8") as f:
            observed = json.load(f)
    if args.write:
        with open(DOC, encoding="utf-8") as f:
            text = replace_blocks(f.read(), observed)
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    for name, make in BLOCKS.items():
        if args.block in (None, name):
            table = runcflags(observed) if name == "runcflags" else make()
            print(f"<!-- BEGIN {name} -->\n{table}\n<!-- END {name} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
