#!/bin/sh
# Build the busybox demo rootfs at DIR from Debian's busybox-static (/bin/busybox).
# One implementation: this calls sandbox.host.demo (see its docstring for the layout).
#   scripts/build-demo-rootfs.sh DIR
set -eu
if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$here/.venv/bin/python" ]; then py=$here/.venv/bin/python; else py=python3; fi
fi
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m sandbox.host.demo build "$1"
