#!/usr/bin/env python3
"""Write sandbox/data/syscall-signatures.json: each syscall's arguments, and which are pointers.

The sandbox agent records a notified call's arguments by value only where the argument is not a
pointer (a pointer's target is never read: docs/security.md, "The agent and TOCTOU").  Which
arguments are pointers comes from the kernel's own syscall tracepoint formats
(`events/syscalls/sys_enter_*/format` in tracefs), read once here on a development machine:

    scripts/syscall-signatures.py [TRACEFS]     # default /sys/kernel/tracing

With no tracefs mounted there, the script mounts one in a private mount namespace (`unshare -m`),
so the host's mounts are left alone.  The agent treats a syscall missing from the file as all
pointers.
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "sandbox", "data", "syscall-signatures.json")
FIELD = re.compile(r"\s*field:(.+?)\s*(\w+);\s*offset:(\d+);\s*size:(\d+);")


def signatures(tracefs: str) -> dict[str, list[list[str]]]:
    d = os.path.join(tracefs, "events", "syscalls")
    out = {}
    for event in sorted(os.listdir(d)):
        if not event.startswith("sys_enter_"):
            continue
        args = []
        with open(os.path.join(d, event, "format"), encoding="ascii") as f:
            for line in f:
                m = FIELD.match(line)
                if m and int(m.group(3)) >= 16:  # after the common fields and __syscall_nr
                    args.append([m.group(2), "ptr" if "*" in m.group(1) else "int"])
        out[event[len("sys_enter_"):]] = args
    return out


def main() -> int:
    tracefs = sys.argv[1] if len(sys.argv) > 1 else "/sys/kernel/tracing"
    if not os.path.isdir(os.path.join(tracefs, "events", "syscalls")):
        if os.environ.get("SANDBOX_SIGNATURES_PRIVATE"):
            print(f"no syscall events under {tracefs}", file=sys.stderr)
            return 1
        script = f"mount -t tracefs nodev {tracefs} && exec {sys.executable} {os.path.abspath(__file__)} {tracefs}"
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              env={**os.environ, "SANDBOX_SIGNATURES_PRIVATE": "1"}).returncode
    sigs = signatures(tracefs)
    with open(OUT, "w", encoding="ascii") as f:
        f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(sigs.items())) + "\n}\n")
    print(f"{OUT}: {len(sigs)} syscalls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
