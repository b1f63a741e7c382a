#!/usr/bin/env bash
# Install everything, then run lint, types and the whole test suite (end-to-end included when root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check sandbox tests scripts
mypy sandbox
exec python -m pytest -q -p no:cacheprovider "$@"
