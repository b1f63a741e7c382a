#!/usr/bin/env bash
# Install everything, then run a workload under the strict profile on the bundled busybox demo rootfs,
# printing the enforcement decisions and the kernel-state verification.  When this host lacks something
# a profile needs, `sandbox doctor`'s summary line comes first (run `sandbox doctor` for all of it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/sandbox doctor --brief || true
exec .venv/bin/sandbox run --profile strict --demo --verify -v --audit-log "${AUDIT_LOG:-/var/log/sandbox/audit.jsonl}" \
  -- sh -c 'echo "hello from $(hostname) as uid $(id -u)"; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; cat /proc/self/uid_map; touch /probe 2>&1 || true'
