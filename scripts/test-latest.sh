#!/usr/bin/env bash
# The parser-facing tests (fuzz, loader, bundle, CLI) against the newest releases pyproject.toml's
# ranges allow, not the lock: a new PyYAML, click, jsonschema or hypothesis that changes behaviour
# shows up here before users meet it.  Makes a fresh venv each time (LATEST_VENV, default
# .venv-latest); the whole suite stays on the locked .venv (scripts/test.sh).  Needs scripts/setup.sh's
# apt packages (python-prctl builds from source).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LATEST_VENV:-.venv-latest}
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
pip() {
  "$venv/bin/python" -m pip --disable-pip-version-check --quiet "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip install --upgrade pip setuptools
pip install --upgrade '.[test]'
"${PYTHON:-python3}" scripts/lock.py --newer "$venv/bin/python"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit/test_fuzz.py tests/unit/test_loader.py \
  tests/unit/test_bundle.py tests/unit/test_cli.py tests/unit/test_opconfig.py "$@"
