"""The pure core (sandbox/core/) takes data and returns data: it imports nothing that execs,
opens sockets or touches files, and nothing from the edges (host/, runtime/, audit/, cli/).

One exception, named here: the loader reads the profile files it is asked for (and the seccomp
JSON a profile names), so it may use `os` for that; it still runs nothing and opens no socket.
"""

import ast
import os

import pytest

from tests.conftest import ROOT

CORE = os.path.join(ROOT, "sandbox", "core")
PURE = sorted(os.path.relpath(os.path.join(d, f), CORE) for d, _, files in os.walk(CORE) for f in files
              if f.endswith(".py"))
READS_FILES = {"loader.py": {"os"}}
FORBIDDEN = {"os", "subprocess", "socket", "shutil", "pathlib", "io", "fcntl", "ctypes", "signal", "select",
             "tempfile", "mmap", "multiprocessing", "threading", "asyncio", "urllib", "http"}
EDGES = {"host", "runtime", "audit", "cli"}


def _package(module_path: str) -> list[str]:
    parts = ["sandbox", "core", *module_path[:-3].split(os.sep)]
    return parts[:-1]  # the package a relative import starts from


@pytest.mark.parametrize("module", PURE)
def test_core_module_imports_nothing_that_touches_the_world(module):
    path = os.path.join(CORE, module)
    tree = ast.parse(open(path).read(), path)
    allowed = READS_FILES.get(module, set())
    for node in ast.walk(tree):
        names: list[str] = []
        target = None
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = _package(module)
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        for n in names:
            top = n.split(".")[0]
            assert top not in FORBIDDEN - allowed, f"{module} imports {n}"
            if top == "sandbox":
                target = n
        if target:
            parts = target.split(".")
            assert not (len(parts) > 1 and parts[1] in EDGES), f"{module} imports the edge {target}"


def test_the_core_is_all_there():
    """A sanity check that the walk found the core (a moved folder would make every test above vacuous)."""
    assert {"profile.py", "loader.py", "fields.py", "tables.py", "decisions.py", "lint.py", "diff.py", "verify.py",
            os.path.join("transform", "__init__.py")} <= set(PURE)
