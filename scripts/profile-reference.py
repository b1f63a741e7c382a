#!/usr/bin/env python3
"""Rewrite the generated tables of docs/profile-reference.md from the field declaration.

`scripts/profile-reference.py` writes the file; `--check` exits 1 when it is out of date.
The tables come from `sandbox.core.fields.FIELDS` (and each lint rule's field), so adding a
field and running this is all the reference needs.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sandbox.core.fields import render_reference  # noqa: E402
from sandbox.core.lint import rules_by_field  # noqa: E402

PATH = os.path.join(ROOT, "docs", "profile-reference.md")


def main() -> int:
    with open(PATH, encoding="utf-8") as f:
        text = f.read()
    new = render_reference(text, rules_by_field())
    if "--check" in sys.argv[1:]:
        if new != text:
            print(f"{PATH} is out of date: run scripts/profile-reference.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(PATH, "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
