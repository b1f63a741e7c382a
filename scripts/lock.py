#!/usr/bin/env python3
"""The lock files: exact versions and sha256 hashes of everything scripts/setup.sh puts in .venv.

    scripts/lock.py              re-resolve after pyproject.toml changed; other pins stay as they are
    scripts/lock.py --upgrade    the newest versions pyproject.toml's ranges allow (refresh everything)
    scripts/lock.py -P NAME      upgrade only NAME (repeatable)
    scripts/lock.py --check      exit 1 if the lock files were made from another pyproject.toml (no network)
    scripts/lock.py --newer PY   list what interpreter PY has installed at other versions than the lock

Then commit requirements/.  Two files, installed in this order by scripts/setup.sh:

    requirements/build.txt   pip and the build backend (pyproject.toml's build-system.requires): the
                             project and python-prctl (an sdist) are built without isolation, with these
    requirements/lock.txt    the runtime dependencies and the test/lint tools (`.[test]`)

Each ends with `# inputs-sha256: ...`, the digest of the parts of pyproject.toml they come from;
`--check` (run by setup.sh) compares it, so a dependency added without re-locking fails loudly.

Resolved with uv (pinned below, installed into a throwaway venv) against PyPI only, for the
interpreter setup.sh uses (python3, CPython 3.11 on Debian 12), with every distribution's hash, so
`pip install --require-hashes` works on any machine of that kind.  This machine's pip configuration
(find-links, extra indexes, constraints) is not read: a local wheel's hash is not PyPI's.  Needs
network access to PyPI, and gcc + libcap-dev (apt) to build python-prctl's metadata.
Set LOCK_INDEX_URL for a PyPI mirror that serves PyPI's own files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(ROOT, "pyproject.toml")
REQ = os.path.join(ROOT, "requirements")
BUILD_LOCK = os.path.join(REQ, "build.txt")
LOCK = os.path.join(REQ, "lock.txt")
UV = "uv==0.13.9"  # the resolver; bump deliberately
STAMP = "# inputs-sha256: "
# The extras setup.sh installs.
EXTRAS = ("test",)
# Settings that only say how to reach an index (kept); every other PIP_* setting is this machine's.
PIP_TRANSPORT = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "PIP_RETRIES")


def inputs() -> dict[str, object]:
    with open(PYPROJECT, "rb") as f:
        doc = tomllib.load(f)
    project = doc.get("project", {})
    extras = project.get("optional-dependencies", {})
    return {
        "build-system.requires": doc.get("build-system", {}).get("requires", []),
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": {k: extras.get(k, []) for k in EXTRAS},
    }


def inputs_digest() -> str:
    return hashlib.sha256(json.dumps(inputs(), sort_keys=True).encode()).hexdigest()


def stamp_of(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(STAMP):
                    return line[len(STAMP):].strip()
    except OSError:
        return None
    return None


def check() -> int:
    want = inputs_digest()
    stale = [os.path.relpath(p, ROOT) for p in (BUILD_LOCK, LOCK) if stamp_of(p) != want]
    if stale:
        print(f"{', '.join(stale)}: not made from this pyproject.toml's dependencies; "
              "run scripts/lock.py and commit requirements/", file=sys.stderr)
        return 1
    return 0


def pins(path: str = LOCK) -> dict[str, str]:
    """Normalised project name -> pinned version."""
    import re

    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", line)
            if m:
                out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def newer(python: str) -> int:
    """Print the distributions `python` has at other versions than requirements/lock.txt pins."""
    import re

    code = ("import json, importlib.metadata as m; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    have = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    have = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in have.items()}
    diff = [f"{name} {have[name]} (locked {ver})" for name, ver in sorted(pins().items())
            if name in have and have[name] != ver]
    print("newer than the lock: " + (", ".join(diff) if diff else "nothing (the lock is current)"))
    return 0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("PIP_", "UV_")) and k not in PIP_TRANSPORT)}
    env["PIP_CONFIG_FILE"] = os.devnull  # no pip.conf at all (find-links, extra indexes, constraints)
    env["UV_NO_CONFIG"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if os.environ.get("PIP_CERT") and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = os.environ["PIP_CERT"]  # a TLS-intercepting proxy's CA, as pip is told
    return env


def compile_lock(uv: str, python: str, index: str, env: dict[str, str], out: str, sources: list[str],
                 extra: list[str], upgrade: list[str], stdin: str | None = None) -> None:
    cmd = [uv, "pip", "compile", "--quiet", "--generate-hashes", "--python", python, "--index-url", index,
           "--no-emit-index-url", "--custom-compile-command", "scripts/lock.py", "--output-file", out,
           *upgrade, *extra, *sources]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, input=stdin, text=True)
    with open(out, encoding="utf-8") as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if not ln.startswith(STAMP)]
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + f"\n{STAMP}{inputs_digest()}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check that the lock files match pyproject.toml")
    ap.add_argument("-U", "--upgrade", action="store_true", help="the newest versions the ranges allow")
    ap.add_argument("-P", "--upgrade-package", action="append", default=[], metavar="NAME")
    ap.add_argument("--newer", metavar="PYTHON", help="compare what PYTHON has installed with the lock")
    ap.add_argument("--python", default=os.environ.get("PYTHON", "python3"),
                    help="the interpreter setup.sh uses (default: $PYTHON or python3)")
    args = ap.parse_args()
    if args.check:
        return check()
    if args.newer:
        return newer(args.newer)
    python = shutil.which(args.python) or args.python
    index = os.environ.get("LOCK_INDEX_URL", "https://pypi.org/simple")
    env = clean_env()
    upgrade = ["--upgrade"] if args.upgrade else [a for p in args.upgrade_package for a in ("-P", p)]
    os.makedirs(REQ, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sandbox-lock-") as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([python, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "--index-url", index, UV],
                       check=True, env=env)
        uv = os.path.join(venv, "bin", "uv")
        build_in = "\n".join(["pip", *inputs()["build-system.requires"]]) + "\n"  # type: ignore[list-item]
        compile_lock(uv, python, index, env, BUILD_LOCK, ["-"], [], upgrade, stdin=build_in)
        # The build tools are pinned once: anything in the main lock that needs them gets the same ones.
        compile_lock(uv, python, index, env, LOCK, ["pyproject.toml"],
                     [*(a for e in EXTRAS for a in ("--extra", e)), "--constraints", BUILD_LOCK], upgrade)
    for path in (BUILD_LOCK, LOCK):
        with open(path, encoding="utf-8") as f:
            pins = [ln.split(" ")[0] for ln in f if ln[:1].isalnum()]
        print(f"{os.path.relpath(path, ROOT)}: {len(pins)} pinned: {' '.join(pins)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
