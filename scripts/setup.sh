#!/usr/bin/env bash
# Install everything sandbox needs on a fresh Debian 12 machine (as root), into ./.venv.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PKGS=(runc busybox-static libseccomp2 libseccomp-dev libcap-dev gcc libc6-dev python3-venv python3-dev
      podman containerd docker.io containernetworking-plugins umoci skopeo uidmap iproute2
      golang-github-opencontainers-specs-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip >/dev/null
# A plain (non-editable) install: the built-in profiles must ship inside the package.
.venv/bin/pip install -q --disable-pip-version-check '.[test]'
