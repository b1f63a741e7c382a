#!/usr/bin/env python3
"""Print (or, with --write, update in docs/security.md) the tables generated from sandbox's own tables:

- `hostpaths`: every place config.json names a host path (transform/hostpath.USES);
- `mounttypes`: the filesystem types allowed, where, with which data options (tables.MOUNT_TYPES);
- `fields`: every config.json field runc 1.1.5 acts on and what sandbox does with it (ocishape.FIELDS);
- `cves`: known runc CVEs, the status of Debian's runc on the test machine, sandbox's mitigation.

Each block sits in docs/security.md between `<!-- BEGIN name -->` and `<!-- END name -->`;
tests/unit/test_security_doc.py checks the document matches.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DOC = os.path.join(ROOT, "docs", "security.md")
# The runc on the machine the tables were checked on (`runc --version`, `dpkg-query -W runc`).
MACHINE_RUNC = ("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def hostpaths() -> str:
    from sandbox.transform.hostpath import USES

    lines = ["| use | config.json field | what runc 1.1.5 does with it | rule |", "|---|---|---|---|"]
    for name, u in USES.items():
        lines.append(f"| `{name}` | {_cell(u.field)} | {_cell(u.runc)} | {u.rule} |")
    return "\n".join(lines)


def mounttypes() -> str:
    from sandbox import tables

    lines = ["| type | destination | filesystem data options allowed |", "|---|---|---|"]
    for t, (dest, opts) in tables.MOUNT_TYPES.items():
        shown = ", ".join(f"`{o}`" for o in sorted(opts)) or "none"
        lines.append(f"| `{t}` | {f'`{dest}` only' if dest else 'anywhere'} | {shown} |")
    return "\n".join(lines)


def fields() -> str:
    from sandbox import ocishape

    lines = ["| field | JSON type | sandbox | what / why |", "|---|---|---|---|"]
    for path, kind, how, note in ocishape.FIELDS:
        shown = {"keep": "kept", "policy": "policy (refused / warned)"}.get(how, how.replace("step:", "step "))
        lines.append(f"| `{path}` | {kind} | {shown} | {_cell(note)} |")
    return "\n".join(lines)


def cves() -> str:
    from sandbox.runc_cves import status

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


BLOCKS = {"hostpaths": hostpaths, "mounttypes": mounttypes, "fields": fields, "cves": cves}


def replace_blocks(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/security.md has no {name} block")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update docs/security.md in place")
    ap.add_argument("block", nargs="?", choices=sorted(BLOCKS), help="print only this block")
    args = ap.parse_args()
    if args.write:
        with open(DOC, encoding="utf-8") as f:
            text = replace_blocks(f.read())
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    for name, make in BLOCKS.items():
        if args.block in (None, name):
            print(f"<!-- BEGIN {name} -->\n{make()}\n<!-- END {name} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
