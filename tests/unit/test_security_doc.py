"""docs/security.md shows sandbox's own tables: the generated blocks must match the code."""

import os
import re

import pytest

from tests.conftest import ROOT, script


def _script():
    return script("security_tables")


@pytest.mark.parametrize("block", ["hostpaths", "mounttypes", "fields", "cves", "runcflags"])
def test_generated_table_in_the_document_matches_the_code(block):
    mod = _script()
    with open(os.path.join(ROOT, "docs", "security.md"), encoding="utf-8") as f:
        doc = f.read()
    m = re.search(rf"<!-- BEGIN {block} -->\n(.*?)\n<!-- END {block} -->", doc, re.S)
    assert m, f"no {block} block in docs/security.md"
    assert m.group(1) == mod.BLOCKS[block](), "docs/security.md is stale: run scripts/security_tables.py --write"


def test_the_document_is_rewritten_in_place_without_loss(tmp_path):
    mod = _script()
    with open(os.path.join(ROOT, "docs", "security.md"), encoding="utf-8") as f:
        doc = f.read()
    assert mod.replace_blocks(doc) == doc


def test_every_runc_flag_row_was_tried_in_a_test_run():
    """The flag table's last column comes from tests/e2e/test_runc_flag_table.py (--observed)."""
    mod = _script()
    with open(os.path.join(ROOT, "docs", "security.md"), encoding="utf-8") as f:
        seen = mod.observed_in(f.read())
    missing = [mod.flag_key(sub, spec) for sub, spec in mod.flag_rows() if seen.get(mod.flag_key(sub, spec),
                                                                                     "not run") == "not run"]
    assert not missing, f"flag rows without an observation: {missing}"
