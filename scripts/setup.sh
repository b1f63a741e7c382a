#!/usr/bin/env bash
# Install everything sandbox needs on a fresh Debian 12 machine (as root), into ./.venv.
# Python packages come from the lock files in requirements/ (exact versions, sha256-checked), so
# this installs the same thing today and in a year; refresh them with scripts/lock.py
# (docs/development.md).  `pip install .` on its own keeps pyproject.toml's ranges.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PKGS=(runc busybox-static libseccomp2 libseccomp-dev libcap-dev gcc libc6-dev python3-venv python3-dev
      podman containerd docker.io containernetworking-plugins umoci skopeo uidmap iproute2 nftables
      golang-github-opencontainers-specs-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
"$PY" scripts/lock.py --check
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() {
  # this machine's pip.conf may name local indexes that lack most projects: pip's notice for each is noise
  .venv/bin/python -m pip --disable-pip-version-check --quiet "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# pip and the build backend first: python-prctl (an sdist) and sandbox itself are built with these,
# not with whatever an isolated build would download today.
pip install --require-hashes --no-deps -r requirements/build.txt
pip install --require-hashes --no-deps --no-build-isolation -r requirements/lock.txt
# A plain (non-editable) install: the built-in profiles must ship inside the package.
# setuptools reuses build/ from an earlier install: a module moved or removed since would ship again
rm -rf build
pip install --no-deps --no-build-isolation .
if ! pip check >/dev/null; then
  .venv/bin/python -m pip check >&2 || true
  echo "setup: requirements/lock.txt does not satisfy pyproject.toml: run scripts/lock.py" >&2
  exit 1
fi
