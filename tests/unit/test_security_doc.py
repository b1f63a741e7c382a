"""docs/security.md shows sandbox's own tables: the generated blocks must match the code."""

import importlib.util
import os
import re

import pytest

from tests.conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("security_tables", os.path.join(ROOT, "scripts",
                                                                                   "security_tables.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("block", ["hostpaths", "mounttypes", "fields", "cves"])
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
