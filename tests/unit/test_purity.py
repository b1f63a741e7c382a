"""The pure core imports no os, subprocess or socket: it takes data and returns data."""

import ast
import os

import pytest

from tests.conftest import ROOT

PURE = ["decisions.py", "fields.py", "profile.py", "tables.py", "seccomp_eval.py", "seccomp_bpf.py", "seccomp_proof.py",
        "hostfacts.py", "lint.py", "diff.py", "schema.py", "verify.py", "node_report.py", "formats.py", "ocishape.py",
        "monitor.py", "learn.py", "suggest.py",
        "runc_cves.py", "runc_cli.py", "runc_policy.py", "update.py", "gojson.py"] + [os.path.join("transform", f) for f in os.listdir(os.path.join(ROOT, "sandbox", "transform"))
                        if f.endswith(".py")]
FORBIDDEN = {"os", "subprocess", "socket", "shutil", "pathlib", "io", "fcntl", "ctypes"}


@pytest.mark.parametrize("module", PURE)
def test_core_module_imports_nothing_that_touches_the_world(module):
    path = os.path.join(ROOT, "sandbox", module)
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module.split(".")[0]]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            # relative imports must stay inside the pure core
            mod = (node.module or "").split(".")[0]
            assert mod not in {"host", "bundle", "runc", "audit", "inspect", "shim", "cli", "opconfig", "demo",
                               "service"}, f"{module} imports edge module {mod}"
        bad = FORBIDDEN.intersection(names)
        assert not bad, f"{module} imports {bad}"
