#!/usr/bin/env python3
"""Benchmark sandbox-runc against plain runc, side by side, and check the performance budgets.

Run as root after scripts/setup.sh, with the interpreter of the environment sandbox is
installed in (sandbox-runc and sandbox are looked up beside it, then on PATH):

    .venv/bin/python scripts/bench.py [--runs N] [--json FILE] [--quick] [--analyse]

Every comparison is measured in one process, interleaved: in round r the variants run
in an order rotated by r (A B, B A, A B, ... for a pair), so a machine that drifts
(thermal, page cache, a neighbour) does not bias a ratio.  A warm-up round (or more) is
thrown away, then the median of --runs rounds is reported.  Each subprocess is timed
with perf_counter_ns around subprocess.run (stdio on /dev/null); a command that fails
aborts its section, so a failure can never be counted as a fast run.

Sections (--only picks some): lifecycle (`run`, `create`/`start`/`delete` and the
`python3 -I -S -c pass` floor), passthrough (`state`, `kill ID 0`), engine (podman), userns
(the create-time cost of the user namespace sandbox adds: id range, rootfs view, the
runtime's own mount namespace; plain runc gets the same hardened config with the rootfs as is),
transform (in-process profile application and profile loading), syscall (cost of cheap
syscalls inside containers under no seccomp, baseline and strict, timed and, exactly, as the
number of BPF instructions the loaded filter runs for them), memory (peak RSS), verify
(`sandbox verify --all` over --verify-containers running containers in each engine's root layout,
the ptrace part and the other steps timed separately, beside `runc list` of the same root), agent
(the sandbox agent: a notified syscall's round trip with one and with 20 busy containers against a
compiled supervisor, the start cost of a notify filter, an allowed syscall's loop in complain
mode vs enforce, the agent's peak RSS).  --analyse
adds where the time of `sandbox-runc create` goes: per-phase timings in fresh interpreters
started as the dispatcher starts them, `-X importtime`, and a cProfile.

The tools measured are the ones beside this interpreter: run it with the environment whose
sandbox-runc you want to measure.  An editable install cannot take the dispatcher's fast
`python -I -S` path, so measure a regular one (scripts/setup.sh) for production numbers.

By default a private `sandbox daemon` is started for the run (as an operator would run one)
and the budget rows measure sandbox-runc with it; rows marked "no daemon" measure the
Python path (a fresh interpreter per create/run: what every create costs when no daemon
is running) beside them.  --no-daemon measures without it throughout.

Plain runc always gets the already-hardened bundle (`sandbox apply --profile strict`), so
the difference is the wrapper alone; the shim is idempotent on such a bundle.  Containers
get unique ids and a private `runc --root`; everything is deleted (`delete -f`) and the
temporary directory removed on the way out, also on errors, Ctrl-C and SIGTERM.

Exit status: 0 measured (budgets may be missed: see the table; --fail-on-miss makes a
miss exit 3), 1 a section failed, 2 usage (e.g. not root).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# --- budgets (issue "Performance") ----------------------------------------------------------------

PASSTHROUGH_MAX_RATIO = 1.20  # sandbox-runc state/kill/start/delete vs runc
ADDED_MAX_FLOORS = 2.5  # create/run: time added over runc, in `python3 -I -S -c pass` floors
ENGINE_MAX_RATIO = 1.10  # podman run with sandbox-runc vs with runc
TRANSFORM_MAX_P50_MS = 2.0  # transform.apply(strict) p50, in-process
RSS_MAX_MIB = 40.0  # peak RSS of `sandbox-runc create`
# the sandbox agent (issue 17); plain runc cannot notify without an agent, so the reference of a
# notification is a compiled supervisor measured in the same run (RECV + SEND CONTINUE, nothing else)
AGENT_NOTIFY_MAX_ANCHORS = 5.0  # p50 round trip of a notified call vs the compiled supervisor's
AGENT_BUSY_MAX_TURNS = 1.0  # p50 with 19 busy neighbours vs one turn of all 20 (20 × one call's mean)
# an allowed syscall's loop, complain mode vs enforce: never routed (a round trip would be ≈ 50×); complain
# mode keeps the bundle's own filter, whose BPF path to the syscall is not the enforced profile's
AGENT_UNROUTED_MAX_RATIO = 1.25
AGENT_START_MAX_RATIO = 1.35  # `runc run true` with a notify filter vs the same profile without one
AGENT_RSS_MAX_MIB = 40.0  # the agent's peak RSS serving 20 busy containers

VERIFY_MAX_S_PER_100 = 5.0  # `sandbox verify --all` over a node of 100 running containers (issue 15)
NETWORK_MAX_SLOWDOWN = 0.05  # throughput in a netns with a 20-rule network ruleset vs without
NETWORK_RULES = 20

SH_TWIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin", "sandbox-runc")

SECTIONS = ("lifecycle", "passthrough", "engine", "userns", "transform", "syscall", "memory", "verify", "network",
            "agent")
# runc roots laid out as each engine lays them out (under the bench's temporary directory):
# podman and plain runc share runc's own layout; Docker's is <exec-root>/runtime-<runtime>/<namespace>;
# containerd's (ctr, CRI) <runc root>/<namespace>.
VERIFY_LAYOUTS = {"runc and podman": ("run-runc",), "docker": ("docker-exec", "runtime-runc", "moby"),
                  "containerd (k8s.io)": ("containerd-runc", "k8s.io")}
PROFILES = ("baseline", "restricted", "strict")

PASS, MISS, INFO, SKIP, ERROR = "PASS", "MISS", "info", "SKIP", "ERROR"


# --- pure helpers (unit-tested in tests/unit/test_bench_script.py) -------------------------------

def c_string(s: str) -> str:
    """`s` as a C string literal."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:=, ")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03o}" for b in s.encode()) + '"'


def median(values: Iterable[float]) -> float:
    """The median; the mean of the two middle values for an even count."""
    xs = sorted(values)
    if not xs:
        raise ValueError("median of no values")
    mid = len(xs) // 2
    return float(xs[mid]) if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100), linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return float(xs[lo]) + (xs[hi] - xs[lo]) * (k - lo)


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is not positive."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def rotated(items: Sequence[Any], round_index: int) -> list[Any]:
    """`items` rotated left by round_index: each item takes every position equally often."""
    if not items:
        return []
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


def fmt_num(value: float | None, digits: int = 2) -> str:
    """A number for the table: `digits` significant decimals, thousands separated; "—" for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.{digits}f}"


def fmt_delta(value: float | None) -> str:
    """A signed difference: "+1.23", "−0.50" (a real minus sign), "—" for None."""
    if value is None:
        return "—"
    return ("+" if value >= 0 else "−") + fmt_num(abs(value))


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def md_escape(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 align: Sequence[str] | None = None) -> str:
    """A Markdown table with padded columns; align is one of "l"/"r" per column (default left)."""
    align = list(align or ["l"] * len(headers))
    if len(align) != len(headers) or any(len(r) != len(headers) for r in rows):
        raise ValueError("every row and the alignment must have one entry per header")
    cells = [[md_escape(str(c)) for c in headers]] + [[md_escape(str(c)) for c in r] for r in rows]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else "-" * w for w, a in zip(widths, align)) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def verdict_ratio(runc: float | None, sandbox: float | None, limit: float) -> tuple[str, str]:
    """PASS when sandbox <= limit × runc."""
    r = ratio(sandbox, runc)
    if r is None:
        return ERROR, "no measurement"
    if r <= limit:
        return PASS, f"{r:.2f}× ≤ {limit:.2f}×"
    return MISS, f"{r:.2f}× > {limit:.2f}× (over by {(r - limit) * 100:.0f} points)"


def verdict_added(runc: float | None, sandbox: float | None, floor: float | None,
                  factor: float = ADDED_MAX_FLOORS, unit: str = "ms") -> tuple[str, str]:
    """PASS when the time sandbox adds over runc is at most `factor` floors."""
    if runc is None or sandbox is None or floor is None or floor <= 0:
        return ERROR, "no measurement"
    added, allowed = sandbox - runc, factor * floor
    text = f"{fmt_delta(added)} {unit} = {added / floor:.2f} floors"
    if added <= allowed:
        return PASS, f"{text} ≤ {factor:g}"
    return MISS, f"{text} > {factor:g} (over by {fmt_num(added - allowed)} {unit})"


def verdict_not_above(reference: float | None, value: float | None, noise: float = 0.0,
                      unit: str = "") -> tuple[str, str]:
    """PASS when value <= reference, or above it by no more than `noise` (the runs' own spread)."""
    if reference is None or value is None:
        return ERROR, "no measurement"
    u = f" {unit}" if unit else ""
    diff = value - reference
    if diff <= 0:
        return PASS, f"{fmt_num(value)} ≤ {fmt_num(reference)}{u}"
    if diff <= noise:
        return PASS, f"+{fmt_num(diff)}{u}, within the noise (±{fmt_num(noise)}{u})"
    return MISS, (f"+{fmt_num(diff)}{u} ({fmt_num(value)} > {fmt_num(reference)}), "
                  f"beyond the noise (±{fmt_num(noise)}{u})")


def verdict_max(value: float | None, limit: float, unit: str) -> tuple[str, str]:
    """PASS when value <= limit."""
    if value is None:
        return ERROR, "no measurement"
    if value <= limit:
        return PASS, f"{fmt_num(value)} ≤ {fmt_num(limit)} {unit}"
    return MISS, f"{fmt_num(value)} > {fmt_num(limit)} {unit} (over by {fmt_num(value - limit)} {unit})"


@dataclass
class Row:
    metric: str
    unit: str
    runc: float | None = None
    sandbox: float | None = None
    budget: str = "—"
    verdict: str = INFO
    detail: str = ""  # the measured numbers behind the verdict
    section: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return ratio(self.sandbox, self.runc)


TABLE_HEADERS = ("metric", "runc", "sandbox", "ratio", "budget", "verdict")


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        unit = f" {r.unit}" if r.unit else ""
        verdict = f"{r.verdict}: {r.detail}" if r.detail and r.verdict in (PASS, MISS, SKIP, ERROR) else \
            (r.detail or r.verdict)
        out.append([r.metric, fmt_num(r.runc) + unit if r.runc is not None else "—",
                    fmt_num(r.sandbox) + unit if r.sandbox is not None else "—",
                    fmt_ratio(r.ratio), r.budget, verdict])
    return out


def render(rows: Sequence[Row]) -> str:
    return format_table(TABLE_HEADERS, table_rows(rows), align=("l", "r", "r", "r", "l", "l"))


def parse_importtime(stderr: str) -> dict[str, Any]:
    """`python -X importtime` output -> total self time and the top-level imports' cumulative times (µs)."""
    total = 0
    top: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        try:
            self_us, cum_us = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        name = parts[2].rstrip()
        total += self_us
        stripped = name.lstrip()
        if len(name) - len(stripped) <= 1:  # top level: imported by the script itself
            top[stripped] = top.get(stripped, 0) + cum_us
    return {"total_us": total, "top_level_us": top}


def parse_probe_loop(text: str) -> dict[str, float]:
    """tests/e2e/agent_probe.c's `loop` line ("calls=N min=… p50=… p99=… mean=…") as numbers (ns)."""
    for line in text.splitlines():
        if line.startswith("calls="):
            return {k: float(v) for k, v in (part.split("=", 1) for part in line.split())}
    raise ValueError(f"no loop line in {text!r}")


def parse_syscall_output(text: str) -> dict[str, float]:
    """Lines "NAME NS_PER_CALL" (and "NAME.mean NS_PER_CALL") from the in-container program."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
# What the in-container program calls: x86_64 numbers and arguments as the filter sees them.
FILTER_PROBES = (("getppid", 110, (0, 0, 0, 0, 0, 0)), ("read_dev_zero", 0, (3, 0x7FFF0000, 1, 0, 0, 0)),
                 ("clock_gettime", 228, (1, 0x7FFF0000, 0, 0, 0, 0)))


def bpf_run(prog: Sequence[tuple[int, int, int, int]], nr: int, arch: int = AUDIT_ARCH_X86_64,
            args: Sequence[int] = (0,) * 6, ip: int = 0) -> tuple[int, int]:
    """Run a classic-BPF seccomp program on one syscall; (return value, instructions executed).

    `prog` is a list of (code, jt, jf, k) as the kernel holds them; sandbox.core.seccomp_bpf runs it
    as the kernel does.  The instruction count is what the filter costs that syscall,
    deterministically (timings only confirm it).
    """
    from sandbox.core import seccomp_bpf

    seccomp_bpf.check(prog)
    return seccomp_bpf.run_counted(prog, seccomp_bpf.data_words(nr, arch, args, ip))


# --- programs compiled for the in-container and memory measurements ---------------------------------

# Each syscall runs in BLOCKS equal blocks; per syscall it prints the fastest block's ns/call
# (robust against a neighbour stealing the CPU for part of the run) and the overall mean.
SYSCALL_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BLOCKS 20

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall, no seccomp */
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int fd;
static char buf[1];
static struct timespec ts;

static int call(int which) {
    switch (which) {
    case 0: return syscall(SYS_getppid) < 0;
    case 1: return read(fd, buf, 1) != 1;
    /* through syscall(2), not the vDSO, so that the filter sees it */
    default: return syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0;
    }
}

int main(int argc, char **argv) {
    static const char *names[] = {"getppid", "read_dev_zero", "clock_gettime"};
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    long per = n / BLOCKS;
    fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || per <= 0) { perror("open /dev/zero"); return 2; }
    for (int w = 0; w < 3; w++) {
        double best = 1e300, total = 0;
        for (int b = 0; b < BLOCKS; b++) {
            double t0 = now_ns();
            for (long i = 0; i < per; i++) if (call(w)) return 3 + w;
            double dt = now_ns() - t0;
            total += dt;
            if (dt < best) best = dt;
        }
        printf("%s %.3f\n%s.mean %.3f\n", names[w], best / per, names[w], total / (per * BLOCKS));
    }
    return 0;
}
"""

# `rss OUT CMD...`: run CMD as a child of this tiny process and write "MAXRSS_KIB EXIT" to OUT.
# A child forked from the (large) benchmark process itself would report at least the
# benchmark's own RSS: exec records the old address space's high-water mark in ru_maxrss.
WRAPPER_C = r"""
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argc;
    setenv("SANDBOX_CONFIG", @CONFIG@, 1);
    setenv("SANDBOX_DAEMON_SOCKET", @SOCKET@, 1);
    execv(@TARGET@, argv);
    return 127;
}
"""

RSS_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) { execvp(argv[2], argv + 2); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 2;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(argv[1], "w");
    if (!f) return 2;
    fprintf(f, "%ld %d\n", ru.ru_maxrss, code);
    fclose(f);
    return code;
}
"""

# netbench: throughput in the current network namespace, for the network section.
#   netbench tcp SECS            TCP stream over 127.0.0.1 (64 KiB writes) to a forked reader: bytes/s
#   netbench udp ADDR SECS       64-byte datagrams to ADDR with a forked drain: datagrams/s
#   netbench udpsend ADDR SECS   the same without the drain (it runs elsewhere)
#   netbench udprecv ADDR SECS   drain datagrams sent to ADDR for SECS
# Counted where they are sent (on lo and a veth the receive path, input hook included, runs in
# the sender's context too), in BLOCKS equal blocks; the fastest block is printed, which a
# neighbour stealing the CPU for part of the run does not lower (as the syscall section does).
NETBENCH_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCKS 10
static char buf[65536];
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static socklen_t address(const char *addr, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss; struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET; s4->sin_port = htons(17999); return sizeof *s4;
    }
    if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6; s6->sin6_port = htons(17999); return sizeof *s6;
    }
    exit(2);
}

static int bound(int type, struct sockaddr_storage *ss, socklen_t len) {
    int fd = socket(ss->ss_family, type, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)ss, len) != 0) { perror("bind"); exit(3); }
    return fd;
}

static void drain(int fd, double secs) {
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = now();
    while (now() - t0 < secs && recv(fd, buf, sizeof buf, 0) >= 0) {}
}

/* the fastest of BLOCKS blocks, in units (bytes or datagrams) per second */
static double send_for(int fd, size_t chunk, double secs, int bytes) {
    double best = 0;
    for (int b = 0; b < BLOCKS; b++) {
        long long n = 0; double t0 = now(), dt;
        while ((dt = now() - t0) < secs / BLOCKS)
            for (int i = 0; i < 16; i++) { ssize_t w = send(fd, buf, chunk, 0); if (w > 0) n += bytes ? w : 1; }
        if (n / dt > best) best = n / dt;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    double secs = atof(argv[argc - 1]);
    struct sockaddr_storage ss;
    socklen_t len = address(strcmp(mode, "tcp") == 0 ? "127.0.0.1" : argv[2], &ss);
    if (strcmp(mode, "udprecv") == 0) { drain(bound(SOCK_DGRAM, &ss, len), secs); return 0; }
    int tcp = strcmp(mode, "tcp") == 0, fd;
    pid_t child = -1;
    if (tcp) {
        int ls = bound(SOCK_STREAM, &ss, len);
        listen(ls, 1);
        child = fork();
        if (child == 0) { int c = accept(ls, NULL, NULL); while (recv(c, buf, sizeof buf, 0) > 0) {} _exit(0); }
    } else if (strcmp(mode, "udp") == 0) {
        int rs = bound(SOCK_DGRAM, &ss, len);
        child = fork();
        if (child == 0) { drain(rs, secs + 2); _exit(0); }
    }
    fd = socket(ss.ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        perror("connect"); if (child > 0) kill(child, SIGKILL); return 3;
    }
    double rate = send_for(fd, tcp ? sizeof buf : 64, secs, tcp);
    close(fd);
    if (child > 0) { if (!tcp) kill(child, SIGKILL); waitpid(child, NULL, 0); }
    printf("%f\n", rate);
    return 0;
}
"""

COLD_LOAD = ('import time;t=time.perf_counter();from sandbox.core.loader import load_profile;'
             'load_profile("strict");print(time.perf_counter()-t)')

# In a fresh interpreter started as the dispatcher starts it: run sandbox.runtime.shim's main with
# the functions of the create path wrapped in timers; write {"phases": {label: [calls, ns]},
# "total_ns": ...} as JSON to $BENCH_PHASES_OUT.  Only the modules the hot path imports anyway
# are imported up front; with BENCH_WRAP_LOADER=1 (a cache miss) the YAML loader too.
PHASES_PY = r"""
import os, sys, time
T0 = time.perf_counter_ns()
if os.environ.get("BENCH_SITE_PACKAGES"):
    sys.path.append(os.environ["BENCH_SITE_PACKAGES"])
phases = {}
def timed(label, fn):
    def w(*a, **k):
        t = time.perf_counter_ns()
        try:
            return fn(*a, **k)
        finally:
            c, s = phases.get(label, (0, 0))
            phases[label] = (c + 1, s + time.perf_counter_ns() - t)
    return w
HOT = ["sandbox.runtime.shim", "sandbox.host.opconfig", "sandbox.host.cache", "sandbox.host.runc",
       "sandbox.host.bundle", "sandbox.host.probe", "sandbox.core.transform", "sandbox.audit.log",
       "sandbox.runtime.service"]
if os.environ.get("BENCH_WRAP_LOADER"):
    HOT.append("sandbox.core.loader")
t = time.perf_counter_ns()
import importlib
for name in HOT:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
phases["imports of the hot-path modules (up front)"] = (1, time.perf_counter_ns() - t)
m = sys.modules
WRAPS = [
    ("sandbox.host.opconfig", "load_operator_config", "opconfig.load_operator_config (trust check, cache or YAML)"),
    ("sandbox.host.cache", "load_operator_config", "  cache.load_operator_config"),
    ("sandbox.host.runc", "find_runc", "find_runc"),
    ("sandbox.host.bundle", "read_config", "bundle.read_config (config.json)"),
    ("sandbox.host.cache", "load_profile", "cache.load_profile (cache lookup, or load on a miss)"),
    ("sandbox.core.loader", "load_profile", "  loader.load_profile (YAML, validate, merge, build)"),
    ("sandbox.core.loader", "_check_syscall_names", "    loader._check_syscall_names (libseccomp)"),
    ("sandbox.core.loader", "build_profile", "    loader.build_profile"),
    ("sandbox.core.loader", "_parse_yaml", "loader._parse_yaml (every YAML file, both callers)"),
    ("sandbox.host.cache", "lookup", "cache.lookup (read entry, sha256 each dependency; both callers)"),
    ("sandbox.host.cache", "store", "cache.store (on a miss; both callers)"),
    ("sandbox.host.probe", "probe", "host.probe"),
    ("sandbox.core.transform", "apply", "transform.apply"),
    ("sandbox.audit.log", "AuditLog.append", "AuditLog.append (lock, read tail, write, fsync)"),
    ("sandbox.host.bundle", "write_config_atomic", "bundle.write_config_atomic (write, fsync file + dir)"),
    ("sandbox.runtime.shim", "_Shim.spawn_runc", "spawn_runc (the real runc create, waited for)"),
    ("os", "fsync", "os.fsync (every caller)"),
]
ORDER = ["imports of the hot-path modules (up front)"] + [w[2] for w in WRAPS]
for mod, name, label in WRAPS:
    owner = m.get(mod)
    *path, attr = name.split(".")
    for p in path:
        owner = getattr(owner, p, None)
    if owner is not None and hasattr(owner, attr):
        setattr(owner, attr, timed(label, getattr(owner, attr)))
code = 0
try:
    m["sandbox.runtime.shim"].main(sys.argv[1:])
except SystemExit as e:
    code = e.code or 0
out = {"phases": [[k, *phases[k]] for k in ORDER if k in phases], "total_ns": time.perf_counter_ns() - T0,
       "exit": code}
import json
with open(os.environ["BENCH_PHASES_OUT"], "w") as f:
    json.dump(out, f)
"""

CPROFILE_PY = r"""
import cProfile, io, os, pstats, sys
if os.environ.get("BENCH_SITE_PACKAGES"):
    sys.path.append(os.environ["BENCH_SITE_PACKAGES"])
pr = cProfile.Profile()
pr.enable()
code = 0
try:
    import sandbox.runtime.shim
    sandbox.runtime.shim.main(sys.argv[1:])
except SystemExit as e:
    code = e.code or 0
pr.disable()
s = io.StringIO()
st = pstats.Stats(pr, stream=s)
st.sort_stats("tottime").print_stats(25)
st.sort_stats("cumulative").print_stats(30)
sys.stdout.write(s.getvalue())
sys.exit(code)
"""


# --- running things -------------------------------------------------------------------------------

class BenchError(Exception):
    pass


class CommandFailed(BenchError):
    def __init__(self, cmd: Sequence[str], code: int, stderr: str = "") -> None:
        tail = f": {stderr.strip().splitlines()[-1]}" if stderr.strip() else ""
        super().__init__(f"`{' '.join(cmd)}` exited {code}{tail}")
        self.cmd, self.code = list(cmd), code


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _is_shim(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return b"SANDBOX-RUNC-SHIM" in f.read(4096)
    except OSError:
        return False


def _find_tool(name: str) -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


def _progress(msg: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{msg}")
    else:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.python = sys.executable
        self.rows: list[Row] = []
        self.samples: dict[str, list[float]] = {}
        self.notes: list[str] = []
        self.analysis: dict[str, Any] = {}
        self.errors = 0
        self.live: set[str] = set()  # runc container ids that may still exist
        self.verify_roots: list[str] = []  # runc roots of the verify section (laid out as engines lay them out)
        self.podman_names: set[str] = set()
        self._seq = 0
        self.tmp = ""
        self.floor_ms: float | None = None

    # -- set-up and clean-up -----------------------------------------------------------------------
    def setup(self) -> None:
        a = self.args
        self.runc = a.runc or shutil.which("runc") or "/usr/sbin/runc"
        if _is_shim(self.runc):
            raise BenchError(f"{self.runc} is sandbox-runc itself; give the real one with --runc")
        shim, cli = _find_tool("sandbox-runc"), _find_tool("sandbox")
        if not shim or not cli:
            raise BenchError("sandbox-runc / sandbox not found beside this interpreter nor on PATH "
                             "(run with the environment's python, e.g. .venv/bin/python)")
        self.shim: str = shim
        self.cli: str = cli
        self.site_packages, self.shim_python = dispatcher_python(self.shim)
        self.tmp = tempfile.mkdtemp(prefix="sandbox-bench-", dir=a.tmpdir)
        # A user-namespaced container root (strict) must traverse every parent of its rootfs.
        os.chmod(self.tmp, 0o755)  # noqa: S103
        self.root = os.path.join(self.tmp, "runc-root")
        os.mkdir(self.root, 0o700)
        self.audit_dir = os.path.join(self.tmp, "audit")
        self.opconfig = os.path.join(self.tmp, "sandbox-config.yaml")
        with open(self.opconfig, "w", encoding="utf-8") as f:
            f.write(f"runc: {self.runc}\ndefault_profile: strict\naudit_log: {self.audit_dir}/audit.jsonl\n"
                    "allowed_profiles: [baseline, restricted]\n"
                    f"runtime_dir: {os.path.join(self.tmp, 'runtime')}\n")
        os.chmod(self.opconfig, 0o644)  # root-owned (we are root), not writable by others: trusted
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
        env["SANDBOX_CONFIG"] = self.opconfig  # no SANDBOX_RUNC: the dispatcher reads runc: as under engines
        env["SANDBOX_STATE_DIR"] = os.path.join(self.tmp, "run-state")
        # The daemon (the default here; --no-daemon measures without it): a private one on a private socket.
        run_dir = os.path.join(self.tmp, "run")
        os.mkdir(run_dir, 0o700)
        self.daemon_socket = os.path.join(run_dir, "daemon.sock") if not a.no_daemon else ""
        env["SANDBOX_DAEMON_SOCKET"] = self.daemon_socket or "off"
        self.env = env
        self.py_env = dict(env, SANDBOX_DAEMON_SOCKET="off")  # the Python path: a fresh interpreter per create
        self.daemon_pid = 0
        if self.daemon_socket:
            self.check([self.cli, "daemon", "start", "--socket", self.daemon_socket])
            st = json.loads(self.check([self.cli, "daemon", "status", "--format", "json", "--socket",
                                        self.daemon_socket]))
            self.daemon_pid = int(st["pid"])
        out = subprocess.run([self.python, "-m", "sandbox.host.demo", "path"], capture_output=True, text=True,
                             check=False)
        if out.returncode != 0:
            raise CommandFailed([self.python, "-m", "sandbox.host.demo", "path"], out.returncode, out.stderr)
        self.rootfs = out.stdout.strip()
        if not self.site_packages:
            self.notes.append("sandbox is an editable install here: bin/sandbox-runc cannot start Python with -S "
                              "and pays for `site` and the editable finder on every create; a regular install "
                              "(scripts/setup.sh) does not, so measure one for production numbers")
        _become_subreaper()

    def cleanup(self) -> None:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        try:
            for root in [self.root, *self.verify_roots] if self.tmp else []:
                if not os.path.isdir(root):
                    continue
                listed = subprocess.run([self.runc, "--root", root, "list", "-q"], capture_output=True,
                                        text=True, check=False, timeout=60)
                for cid in sorted(set(listed.stdout.split()) | (self.live if root == self.root else set())):
                    subprocess.run([self.runc, "--root", root, "delete", "-f", cid],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=60)
            self.live.clear()
            if self.podman_names and shutil.which("podman"):
                subprocess.run(["podman", "rm", "-f", "--ignore", *sorted(self.podman_names)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=120)
            self.reap()
            if self.daemon_pid:
                subprocess.run([self.cli, "daemon", "stop", "--socket", self.daemon_socket],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=60)
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)

    @staticmethod
    def reap() -> None:
        """Reap container processes re-parented to us (we are a subreaper)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # -- primitives --------------------------------------------------------------------------------
    def new_id(self, tag: str) -> str:
        self._seq += 1
        cid = f"bench-{os.getpid()}-{tag}-{self._seq}"
        self.live.add(cid)
        return cid

    def timed(self, cmd: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Wall time of `cmd` in ns; a non-zero exit raises (a failure is never a fast run)."""
        t0 = time.perf_counter_ns()
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env or self.env, check=False)
        t = time.perf_counter_ns() - t0
        if res.returncode != 0:
            raise CommandFailed(cmd, res.returncode)
        return t

    def check(self, cmd: Sequence[str], env: dict[str, str] | None = None) -> str:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env or self.env,
                             check=False)
        if res.returncode != 0:
            raise CommandFailed(cmd, res.returncode, res.stderr)
        return res.stdout

    def run_to_files(self, cmd: Sequence[str], env: dict[str, str]) -> tuple[int, str, str]:
        """Run `cmd` with stdout/stderr in files, not pipes: a created container's init inherits
        them and would keep a pipe open (and communicate() waiting) until it is deleted."""
        paths = [os.path.join(self.tmp, f"out.{n}") for n in ("stdout", "stderr")]
        with open(paths[0], "w+b") as out, open(paths[1], "w+b") as err:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, check=False)
            out.seek(0)
            err.seek(0)
            texts = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        for p in paths:
            os.unlink(p)
        return res.returncode, texts[0], texts[1]

    def runc_cmd(self, *args: str) -> list[str]:
        return [self.runc, "--root", self.root, *args]

    def shim_cmd(self, *args: str) -> list[str]:
        return [self.shim, "--root", self.root, *args]

    def delete_f(self, cid: str) -> None:
        subprocess.run(self.runc_cmd("delete", "-f", cid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        self.live.discard(cid)

    def wait_stopped(self, cid: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            res = subprocess.run(self.runc_cmd("state", cid), capture_output=True, text=True, check=False)
            if res.returncode == 0 and json.loads(res.stdout).get("status") == "stopped":
                return
            if time.monotonic() > deadline:
                raise BenchError(f"container {cid} did not stop within {timeout:.0f}s")
            time.sleep(0.002)

    def make_bundle(self, name: str, args: list[str], profile: str | None, rootfs: str | None = None) -> str:
        """A runc-spec-shaped bundle in the temp dir, hardened under `profile` with `sandbox apply`."""
        from sandbox.host.bundle import spec_for_rootfs

        bundle = os.path.join(self.tmp, name)
        os.mkdir(bundle, 0o755)
        with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
            json.dump(spec_for_rootfs(rootfs or self.rootfs, args, hostname="bench"), f, indent=2)
        if profile:
            self.check([self.cli, "apply", "--profile", profile, bundle, "-o", os.path.join(bundle, "config.json")])
        return bundle

    def rounds(self, label: str, variants: dict[str, Callable[[], Any]], runs: int | None = None) -> None:
        """Run every variant once per round, in rotated order; keep samples after the warm-up."""
        runs = runs or self.args.runs
        names = list(variants)
        total = self.args.warmup + runs
        for r in range(total):
            _progress(f"{label}: round {r + 1}/{total}" + (" (warm-up)" if r < self.args.warmup else ""))
            for name in rotated(names, r):
                out = variants[name]()
                self.reap()
                if r < self.args.warmup:
                    continue
                for key, value in (out.items() if isinstance(out, dict) else [(name, out)]):
                    self.samples.setdefault(key, []).append(value)
        _progress(f"{label}: done\n" if sys.stderr.isatty() else f"{label}: done")

    def med_ms(self, key: str) -> float:
        return median(self.samples[key]) / 1e6

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    # -- 1. lifecycle (and the Python floor) ------------------------------------------------------
    def lifecycle(self) -> None:
        bundle = self.make_bundle("bundle-true", ["true"], "strict")
        # The shim's first pass adds its `.applied` annotation; from then on it must not rewrite the file.
        cid = self.new_id("prime")
        self.timed(self.shim_cmd("run", "-b", bundle, cid))
        self.delete_f(cid)
        config = os.path.join(bundle, "config.json")
        before = os.stat(config).st_mtime_ns
        # A fresh (not yet hardened) copy, as engines hand it over, for the "create, fresh config" row.
        fresh = self.make_bundle("bundle-fresh", ["true"], None)
        with open(os.path.join(fresh, "config.json"), "rb") as f:
            pristine = f.read()

        def run(cmd: Callable[..., list[str]], tag: str) -> int:
            cid = self.new_id(tag)
            t = self.timed(cmd("run", "-b", bundle, cid))
            self.live.discard(cid)  # runc run deletes the container when it exits
            return t

        def cycle(cmd: Callable[..., list[str]], tag: str) -> dict[str, int]:
            cid = self.new_id(tag)
            c = self.timed(cmd("create", "-b", bundle, cid))
            s = self.timed(cmd("start", cid))
            self.wait_stopped(cid)
            d = self.timed(cmd("delete", cid))
            self.live.discard(cid)
            return {f"{tag}.create": c, f"{tag}.start": s, f"{tag}.delete": d, f"{tag}.cycle": c + s + d}

        def run_py() -> int:
            cid = self.new_id("shim.run_py")
            t = self.timed(self.shim_cmd("run", "-b", bundle, cid), self.py_env)
            self.live.discard(cid)
            return t

        def create_fresh(env: dict[str, str] | None = None) -> int:
            with open(os.path.join(fresh, "config.json"), "wb") as f:
                f.write(pristine)
            cid = self.new_id("fresh")
            t = self.timed(self.shim_cmd("create", "-b", fresh, cid), env)
            self.delete_f(cid)
            return t

        nocache_env = dict(self.py_env, SANDBOX_CACHE_DIR="off")
        floor_cmd = [self.shim_python, "-I", "-S", "-c", "pass"]
        site_cmd = [self.shim_python, "-I", "-c", "pass"]
        self.rounds("lifecycle", {
            "floor": lambda: self.timed(floor_cmd),
            "python_site": lambda: self.timed(site_cmd),
            "runc.run": lambda: run(self.runc_cmd, "runc.run"),
            "shim.run": lambda: run(self.shim_cmd, "shim.run"),
            "runc.cycle": lambda: cycle(self.runc_cmd, "runc"),
            "shim.cycle": lambda: cycle(self.shim_cmd, "shim"),
            "shim.create_fresh": create_fresh,
            "shim.create_nocache": lambda: create_fresh(nocache_env),
            **({"shim.run_py": run_py, "shim.create_fresh_py": lambda: create_fresh(self.py_env)}
               if self.daemon_socket else {}),
        })
        if os.stat(config).st_mtime_ns != before:
            self.notes.append("sandbox-runc rewrote the already-hardened config.json during the timed runs "
                              "(it is expected to be idempotent on it): the create/run rows include a config write")
        floor = self.floor_ms = self.med_ms("floor")
        self.add(Row("`python3 -I -S -c pass` (the floor)", "ms", sandbox=floor, section="lifecycle",
                     detail="the unit of the create/run budget"))
        self.add(Row("`python3 -I -c pass` (site on: how an editable install's shim starts)", "ms",
                     sandbox=self.med_ms("python_site"), section="lifecycle"))
        budget = f"added ≤ {ADDED_MAX_FLOORS:g} floors (≤ {fmt_num(ADDED_MAX_FLOORS * floor)} ms)"
        via = " via the daemon" if self.daemon_socket else " (no daemon)"
        for metric, rk, sk in (("`run` true (strict bundle)", "runc.run", "shim.run"),
                               ("`create` (strict bundle)", "runc.create", "shim.create"),
                               ("`create`, fresh config each time (as engines)", "runc.create",
                                "shim.create_fresh")):
            rm, sm = self.med_ms(rk), self.med_ms(sk)
            v, d = verdict_added(rm, sm, floor)
            self.add(Row(metric + via, "ms", rm, sm, budget, v, d, "lifecycle"))
        if self.daemon_socket:
            # Without the daemon: a fresh Python per create (also what happens whenever the daemon is down)
            for metric, rk, sk in (("`run` true, no daemon (Python per call)", "runc.run", "shim.run_py"),
                                   ("`create`, fresh config, no daemon (Python per call)", "runc.create",
                                    "shim.create_fresh_py")):
                rm, sm = self.med_ms(rk), self.med_ms(sk)
                _, d = verdict_added(rm, sm, floor)
                self.add(Row(metric, "ms", rm, sm, budget, INFO, d, "lifecycle"))
        rm, sm = self.med_ms("runc.create"), self.med_ms("shim.create_nocache")
        self.add(Row("`create`, fresh config, no daemon, profile cache off (a miss)", "ms", rm, sm, "—", INFO,
                     f"{fmt_delta(sm - rm)} ms = {(sm - rm) / floor:.2f} floors", "lifecycle"))
        rm, sm = self.med_ms("runc.cycle"), self.med_ms("shim.cycle")
        self.add(Row("`create`+`start`+`delete` cycle", "ms", rm, sm, "—", INFO,
                     f"{fmt_delta(sm - rm)} ms = {(sm - rm) / floor:.2f} floors", "lifecycle"))
        for sub in ("start", "delete"):
            rm, sm = self.med_ms(f"runc.{sub}"), self.med_ms(f"shim.{sub}")
            v, d = verdict_ratio(rm, sm, PASSTHROUGH_MAX_RATIO)
            self.add(Row(f"`{sub}` (passthrough, in the cycle)", "ms", rm, sm, f"≤ {PASSTHROUGH_MAX_RATIO:.2f}×",
                         v, d, "passthrough"))

    # -- 2. passthrough on a running container --------------------------------------------------------
    def passthrough(self) -> None:
        bundle = self.make_bundle("bundle-sleep", ["sleep", "1000000"], "strict")
        cid = self.new_id("sleep")
        self.timed(self.runc_cmd("create", "-b", bundle, cid))
        self.timed(self.runc_cmd("start", cid))
        try:
            probe = subprocess.run(self.runc_cmd("kill", cid, "0"), capture_output=True, check=False)
            signal_cmd = ["kill", cid, "0"] if probe.returncode == 0 else ["list"]
            runc_env = dict(self.env, SANDBOX_RUNC=self.runc)  # the dispatcher then skips the config file
            if probe.returncode != 0:
                self.notes.append(f"`runc kill ID 0` failed on this runc (exit {probe.returncode}); "
                                  "measured `list` instead")
            self.rounds("passthrough", {
                "runc.state": lambda: self.timed(self.runc_cmd("state", cid)),
                "shim.state": lambda: self.timed(self.shim_cmd("state", cid)),
                "runc.signal": lambda: self.timed(self.runc_cmd(*signal_cmd)),
                "shim.signal": lambda: self.timed(self.shim_cmd(*signal_cmd)),
                "shim.state_env": lambda: self.timed(self.shim_cmd("state", cid), runc_env),
                "sh_twin.state": lambda: self.timed(["/bin/sh", SH_TWIN, "--root", self.root, "state", cid]),
                "sh.noop": lambda: self.timed(["/bin/sh", "-c", ":"]),
            })
        finally:
            self.delete_f(cid)
        budget = f"≤ {PASSTHROUGH_MAX_RATIO:.2f}×"
        for metric, key in (("`state` (running container)", "state"),
                            (f"`{' '.join(signal_cmd).replace(cid, 'ID')}` (running container)", "signal")):
            rm, sm = self.med_ms(f"runc.{key}"), self.med_ms(f"shim.{key}")
            v, d = verdict_ratio(rm, sm, PASSTHROUGH_MAX_RATIO)
            self.add(Row(metric, "ms", rm, sm, budget, v, d, "passthrough"))
        rm, sm = self.med_ms("runc.state"), self.med_ms("shim.state_env")
        self.add(Row("`state` with SANDBOX_RUNC set (no config file read)", "ms", rm, sm, "—", INFO,
                     f"{fmt_delta(sm - rm)} ms", "passthrough"))
        rm, sm = self.med_ms("runc.state"), self.med_ms("sh_twin.state")
        self.add(Row("`state` through bin/sandbox-runc, the sh twin (installed without a C compiler)", "ms", rm, sm,
                     budget, INFO, f"{sm / rm:.2f}×", "passthrough"))
        self.add(Row("`/bin/sh -c :` (one sh start-up, for scale)", "ms", sandbox=self.med_ms("sh.noop"),
                     section="passthrough"))

    # -- 3. engine --------------------------------------------------------------------------------------
    def engine(self) -> None:
        metric = "podman `run --rm` true"
        budget = f"≤ {ENGINE_MAX_RATIO:.2f}×"
        if not shutil.which("podman") or not shutil.which("gcc"):
            self.add(Row(metric, "ms", budget=budget, verdict=SKIP, detail="podman or gcc is not installed",
                         section="engine"))
            return
        # Podman hands the runtime no environment, so SANDBOX_CONFIG (and the daemon socket) come
        # from a wrapper, as an operator's /etc/sandbox/config.yaml would.  The wrapper is a tiny
        # compiled exec (a sh script costs ≈ 1 ms on each of podman's ≈ 5 runtime calls, which is
        # the test set-up's cost, not sandbox's), named `runc` in a directory of its own so podman
        # treats it as it treats runc (it passes --log/--log-format only to runtimes it knows).
        # The same wrapper in front of plain runc shows what the wrapper alone costs.
        sock = self.env["SANDBOX_DAEMON_SOCKET"]
        wrapper = self._runtime_wrapper("runtime-bin", self.shim, sock)
        py_wrapper = self._runtime_wrapper("runtime-bin-py", self.shim, "off")
        plain = self._runtime_wrapper("runtime-bin-plain", self.runc, "off")

        def podman(runtime: str, tag: str) -> int:
            self._seq += 1
            name = f"bench-{os.getpid()}-{tag}-{self._seq}"
            self.podman_names.add(name)
            t = self.timed(["podman", "--runtime", runtime, "run", "--rm", "--name", name, "--network", "none",
                            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
                            "--rootfs", self.rootfs, "true"])
            self.podman_names.discard(name)
            return t

        self.rounds("engine", {
            "podman.runc": lambda: podman(self.runc, "runc"),
            "podman.shim": lambda: podman(wrapper, "shim"),
            "podman.wrapped": lambda: podman(plain, "wrapped"),
            **({"podman.shim_py": lambda: podman(py_wrapper, "shim_py")} if self.daemon_socket else {}),
        })
        rm, sm = self.med_ms("podman.runc"), self.med_ms("podman.shim")
        v, d = verdict_ratio(rm, sm, ENGINE_MAX_RATIO)
        row = self.add(Row(metric + (" via the daemon" if self.daemon_socket else " (no daemon)"), "ms", rm, sm,
                           budget, v, d, "engine"))
        if self.floor_ms:
            row.detail += f"; {fmt_delta(sm - rm)} ms = {(sm - rm) / self.floor_ms:.2f} floors"
        if self.daemon_socket:
            pm = self.med_ms("podman.shim_py")
            _, d = verdict_ratio(rm, pm, ENGINE_MAX_RATIO)
            self.add(Row(metric + ", no daemon (Python per create)", "ms", rm, pm, budget, INFO, d, "engine"))
        wm = self.med_ms("podman.wrapped")
        row.detail += f"; against the same wrapper → plain runc: {sm / wm:.2f}×"
        self.add(Row("podman `run --rm` true, runtime = the same wrapper → plain runc", "ms", rm, wm, "—", INFO,
                     f"{fmt_delta(wm - rm)} ms: the wrapper that hands SANDBOX_CONFIG over, not sandbox",
                     "engine"))

    # -- 7. sandbox verify --all over a node of containers -----------------------------------------------
    def verify(self) -> None:
        """`sandbox verify --all` over N running containers per engine layout, made through sandbox-runc
        (profiles baseline, restricted and strict in turn), beside `runc list` of the same root."""
        n = self.args.verify_containers
        budget_s = VERIFY_MAX_S_PER_100 * n / 100
        configs = {}
        for profile in PROFILES:
            bundle = self.make_bundle(f"bundle-verify-{profile}", ["sleep", "1000000"], None)
            with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
            config["annotations"] = {"org.sandbox-runtime.profile": profile}
            if profile == "restricted":
                config["process"]["user"] = {"uid": 1000, "gid": 1000}
            configs[profile] = config
        for layout, parts in VERIFY_LAYOUTS.items():
            root = os.path.join(self.tmp, "verify", *parts)
            os.makedirs(os.path.dirname(root), mode=0o700, exist_ok=True)
            self.verify_roots.append(root)
            for i in range(n):
                _progress(f"verify: {layout}: starting container {i + 1}/{n}")
                self._seq += 1
                cid = f"bench-{os.getpid()}-verify-{self._seq}"
                # a bundle each: sandbox-runc writes the config.json it hardened back, and one it hardened while
                # adding a user namespace (strict) is refused by a second create
                bundle = os.path.join(self.tmp, "verify-bundles", cid)
                os.makedirs(bundle, mode=0o755)
                with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
                    json.dump(configs[PROFILES[i % 3]], f)
                self.timed([self.shim, "--root", root, "run", "-d", "-b", bundle, cid])
            _progress(f"verify: {layout}: measuring")
            runs = max(3, self.args.runs // 4)
            reports, totals, listing = [], [], []
            for _ in range(runs):
                listing.append(self.timed([self.runc, "--root", root, "list"]))
                t0 = time.perf_counter_ns()
                code, out, err = self.run_to_files([self.cli, "verify", "--all", "--root", root, "--format", "json"],
                                                   self.py_env)
                totals.append(time.perf_counter_ns() - t0)
                if code != 0:
                    raise BenchError(f"verify --all ({layout}) exited {code}: {err.strip() or out[-2000:]}")
                reports.append(json.loads(out))
            for report in reports:
                states = report["summary"]
                if states["hardened"] != n:
                    raise BenchError(f"verify --all ({layout}): {states} instead of {n} hardened containers")
            total, runc_list = median(totals) / 1e9, median(listing) / 1e9
            steps = {k: median(r["timing_seconds"][k] for r in reports)
                     for k in ("discover", "audit_log", "profiles", "ptrace", "checks", "total", "max_stop_us")}
            v, d = verdict_max(total, budget_s, "s")
            self.add(Row(f"verify --all, {n} running containers, {layout} layout: wall time", "s", runc_list, total,
                         f"≤ {budget_s:g} s", v, d + "; runc column: `runc list` of the same root", "verify",
                         extra={"samples_ns": totals, "runc_list_ns": listing, "steps": steps}))
            self.add(Row(f"verify --all, {layout}: per container", "ms", runc_list * 1e3 / n, total * 1e3 / n,
                         "—", INFO, "wall time / containers", "verify"))
            self.add(Row(f"verify --all, {layout}: the ptrace part (filters of {n} inits)", "ms", None,
                         steps["ptrace"] * 1e3, "—", INFO,
                         f"{steps['ptrace'] * 1e3 / n:.2f} ms per container; longest stop of a task "
                         f"{steps['max_stop_us']:.0f} µs", "verify"))
            self.add(Row(f"verify --all, {layout}: the other steps", "ms", None,
                         (steps["total"] - steps["ptrace"]) * 1e3, "—", INFO,
                         f"discover {steps['discover'] * 1e3:.0f}, audit log {steps['audit_log'] * 1e3:.0f}, "
                         f"profiles {steps['profiles'] * 1e3:.0f}, checks (incl. seccomp proofs) "
                         f"{steps['checks'] * 1e3:.0f} ms; interpreter start and imports: "
                         f"{(total - steps['total']) * 1e3:.0f} ms", "verify"))
            listed = subprocess.run([self.runc, "--root", root, "list", "-q"], capture_output=True, text=True,
                                    check=False, timeout=60)
            for cid in listed.stdout.split():
                subprocess.run([self.runc, "--root", root, "delete", "-f", cid], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False, timeout=60)
        _progress("verify: done\n" if sys.stderr.isatty() else "verify: done")

    def _runtime_wrapper(self, name: str, target: str, sock: str) -> str:
        d = os.path.join(self.tmp, name)
        os.mkdir(d, 0o755)
        src = WRAPPER_C.replace("@CONFIG@", c_string(self.opconfig)).replace("@SOCKET@", c_string(sock)) \
            .replace("@TARGET@", c_string(target))
        built = self._compile(f"wrapper-{name}", src)
        path = os.path.join(d, "runc")
        os.rename(built, path)
        return path

    # -- 3b. the user namespace sandbox adds ------------------------------------------------------------------
    def userns(self) -> None:
        """`create` of a fresh bundle under strict, which adds a user namespace: the id range, the idmapped
        rootfs view and the runtime's own mount namespace.  Plain runc gets the config sandbox-runc wrote
        (same user namespace, mapping, seccomp, limits) with `root.path` back at the rootfs itself, which
        runc can reach here (every parent is 0755) and whose files then belong to nobody: the same
        container but for the view.  A third variant, the same fresh bundle with a user namespace the
        engine made (as dockerd --userns-remap or podman --userns do), needs no view: the difference to it
        is the mechanism alone."""
        from sandbox.host.bundle import spec_for_rootfs

        fresh = self.make_bundle("userns-fresh", ["true"], None)
        owned = self.make_bundle("userns-owned", ["true"], None)
        with open(os.path.join(fresh, "config.json"), "rb") as f:
            pristine = f.read()
        spec = spec_for_rootfs(self.rootfs, ["true"], hostname="bench")
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = spec["linux"]["gidMappings"] = [
            {"containerID": 0, "hostID": 1 << 29, "size": 65536}]
        owned_bytes = json.dumps(spec).encode()
        # the hardened config, once, for plain runc
        cid = self.new_id("userns.prime")
        self.timed(self.shim_cmd("create", "-b", fresh, cid), self.py_env)
        self.delete_f(cid)
        with open(os.path.join(fresh, "config.json"), encoding="utf-8") as f:
            hardened = json.load(f)
        hardened["root"]["path"] = self.rootfs
        plain = os.path.join(self.tmp, "userns-plain")
        os.mkdir(plain, 0o755)
        with open(os.path.join(plain, "config.json"), "w", encoding="utf-8") as f:
            json.dump(hardened, f)

        def create(bundle: str, data: bytes | None, tag: str, cmd: Callable[..., list[str]],
                   env: dict[str, str] | None = None) -> int:
            if data is not None:
                with open(os.path.join(bundle, "config.json"), "wb") as f:
                    f.write(data)
            cid = self.new_id(tag)
            t = self.timed(cmd("create", "-b", bundle, cid), env)
            self.delete_f(cid)
            return t

        variants: dict[str, Callable[[], Any]] = {
            "userns.runc": lambda: create(plain, None, "userns.runc", self.runc_cmd),
            "userns.shim_py": lambda: create(fresh, pristine, "userns.shim_py", self.shim_cmd, self.py_env),
            "userns.owned_py": lambda: create(owned, owned_bytes, "userns.owned_py", self.shim_cmd, self.py_env),
        }
        if self.daemon_socket:
            variants["userns.shim"] = lambda: create(fresh, pristine, "userns.shim", self.shim_cmd)
            variants["userns.owned"] = lambda: create(owned, owned_bytes, "userns.owned", self.shim_cmd)
        self.rounds("userns", variants)
        rm = self.med_ms("userns.runc")
        paths = [("no daemon (Python per call)", "_py")] + ([("via the daemon", "")] if self.daemon_socket else [])
        for label, sfx in paths:
            sm, om = self.med_ms(f"userns.shim{sfx}"), self.med_ms(f"userns.owned{sfx}")
            self.add(Row(f"`create` under strict, user namespace added (id range + idmapped rootfs view), {label}",
                         "ms", rm, sm, "—", INFO, f"{fmt_delta(sm - rm)} ms over runc given the same config",
                         "userns"))
            self.add(Row(f"… of which the mechanism ({label}): against the engine's own user namespace", "ms",
                         om, sm, "—", INFO, f"{fmt_delta(sm - om)} ms", "userns"))

    # -- 4. transform and profile loading (in-process) -----------------------------------------------------
    def transform(self) -> None:
        import gc

        from sandbox.core.hostfacts import HostFacts
        from sandbox.core.loader import load_profile
        from sandbox.core.transform import apply

        fixture = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "tests", "fixtures", "bundles", "docker-like.json")
        with open(fixture, encoding="utf-8") as f:
            config = json.load(f)
        n = self.args.iterations
        for name in PROFILES:
            _progress(f"transform: {name} ×{n}")
            profile = load_profile(name)
            host = HostFacts()
            for _ in range(min(50, n)):
                apply(profile, config, host)
            times: list[float] = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                apply(profile, config, host)
                times.append(time.perf_counter_ns() - t0)
            gc.collect()
            self.samples[f"transform.{name}"] = times
            p50, p99 = percentile(times, 50) / 1e3, percentile(times, 99) / 1e3
            if name == "strict":
                v, d = verdict_max(p50 / 1e3, TRANSFORM_MAX_P50_MS, "ms")
                budget = f"p50 ≤ {TRANSFORM_MAX_P50_MS:g} ms"
            else:
                v, d, budget = INFO, "", "—"
            self.add(Row(f"transform.apply({name}), p50 (p99 {fmt_num(p99)} µs)", "µs", sandbox=p50, budget=budget,
                         verdict=v, detail=d, section="transform", extra={"p99_us": p99, "iterations": n}))
        # Warm: in-process repeat (no cache in load_profile today, so each call re-reads and validates).
        warm: list[float] = []
        for i in range(max(20, n // 20) + 5):
            t0 = time.perf_counter_ns()
            load_profile("strict")
            if i >= 5:
                warm.append(time.perf_counter_ns() - t0)
        self.samples["load_profile.warm"] = warm
        _progress("transform: cold load_profile")
        cold = []
        for _ in range(self.args.warmup + self.args.runs):
            out = self.check([self.python, "-I", "-c", COLD_LOAD])
            cold.append(float(out.strip()) * 1e9)
        self.samples["load_profile.cold"] = cold[self.args.warmup:]
        _progress("transform: done\n" if sys.stderr.isatty() else "transform: done")
        self.add(Row("`load_profile(\"strict\")` cold (fresh `python -I`, imports included)", "ms",
                     sandbox=self.med_ms("load_profile.cold"), section="transform"))
        self.add(Row("`load_profile(\"strict\")` warm (in-process repeat)", "ms",
                     sandbox=self.med_ms("load_profile.warm"), section="transform"))

    # -- 5. in-container syscall cost -------------------------------------------------------------------------
    def _compile(self, name: str, source: str) -> str:
        src = os.path.join(self.tmp, f"{name}.c")
        out = os.path.join(self.tmp, name)
        with open(src, "w", encoding="ascii") as f:
            f.write(source)
        self.check(["gcc", "-static", "-O2", "-o", out, src])
        return out

    def syscall(self) -> None:
        if not shutil.which("gcc"):
            self.add(Row("in-container syscall cost", "ns/call", verdict=SKIP, detail="gcc is not installed",
                         section="syscall"))
            return
        prog = self._compile("syscall-bench", SYSCALL_C)
        rootfs = os.path.join(self.tmp, "rootfs-syscall")
        shutil.copytree(self.rootfs, rootfs, symlinks=True)
        os.chmod(rootfs, 0o755)  # noqa: S103
        shutil.copy2(prog, os.path.join(rootfs, "bin", "syscall-bench"))
        os.chmod(os.path.join(rootfs, "bin", "syscall-bench"), 0o755)  # noqa: S103
        args = ["/bin/syscall-bench", str(self.args.syscall_iterations)]
        bundles = {"none": self.make_bundle("bundle-sc-none", args, None, rootfs),
                   "baseline": self.make_bundle("bundle-sc-baseline", args, "baseline", rootfs),
                   "strict": self.make_bundle("bundle-sc-strict", args, "strict", rootfs)}

        def run(kind: str) -> dict[str, float]:
            cid = self.new_id(f"sc-{kind}")
            out = self.check(self.runc_cmd("run", "-b", bundles[kind], cid))
            self.live.discard(cid)
            values = parse_syscall_output(out)
            if len(values) != 6:
                raise BenchError(f"unexpected output from the syscall program under {kind}: {out!r}")
            return {f"syscall.{kind}.{k}": v for k, v in values.items()}

        self.rounds("syscall", {k: functools.partial(run, k) for k in bundles})
        for call in ("getppid", "read_dev_zero", "clock_gettime"):
            means = {k: median(self.samples[f"syscall.{k}.{call}.mean"]) for k in bundles}
            none = median(self.samples[f"syscall.none.{call}"])
            base = median(self.samples[f"syscall.baseline.{call}"])
            strict = median(self.samples[f"syscall.strict.{call}"])
            iqr = {k: (percentile(self.samples[f"syscall.{k}.{call}"], 25),
                       percentile(self.samples[f"syscall.{k}.{call}"], 75)) for k in bundles}
            noise = max(hi - lo for lo, hi in (iqr["baseline"], iqr["strict"]))  # the wider interquartile range
            v, d = verdict_not_above(base, strict, noise, "ns")
            d += f"; no seccomp {fmt_num(none)} ns; means {fmt_num(means['baseline'])} vs {fmt_num(means['strict'])}"
            self.add(Row(f"{call} in container, fastest block: baseline (runc col.) vs strict", "ns/call", base,
                         strict, "strict ≤ baseline", v, d, "syscall",
                         extra={"none_ns": none, "iqr": iqr, "means_ns": means}))
        self.filter_cost(bundles)

    def filter_cost(self, bundles: dict[str, str]) -> None:
        """Instructions the loaded seccomp filters run for each probed syscall: exact for one filter.

        runc lays the same config's filter out slightly differently from one container to the
        next (an instruction or two), so several containers are read and the median is kept.
        """
        samples = 3 if self.args.quick else 5
        steps: dict[str, dict[str, list[int]]] = {}
        sizes: dict[str, set[int]] = {}
        spread: dict[str, tuple[int, float, int]] = {}
        for kind in ("baseline", "strict"):
            with open(os.path.join(bundles[kind], "config.json"), encoding="utf-8") as f:
                config = json.load(f)
            config["process"]["args"] = ["sleep", "1000000"]
            bundle = os.path.join(self.tmp, f"bundle-filter-{kind}")
            os.mkdir(bundle, 0o755)
            with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f)
            steps[kind] = {name: [] for name, _, _ in FILTER_PROBES}
            sizes[kind] = set()
            for i in range(samples):
                _progress(f"syscall: reading the {kind} filter {i + 1}/{samples}")
                cid = self.new_id(f"filter-{kind}")
                try:
                    self.timed(self.runc_cmd("create", "-b", bundle, cid))
                    self.timed(self.runc_cmd("start", cid))
                    pid = json.loads(self.check(self.runc_cmd("state", cid)))["pid"]
                    progs = seccomp_filters(pid)
                finally:
                    self.delete_f(cid)
                if not progs:
                    raise BenchError(f"no seccomp filter found in the {kind} container")
                sizes[kind].add(sum(len(p) for p in progs))
                for name, nr, args in FILTER_PROBES:
                    total = 0
                    for prog in progs:  # the kernel runs every attached filter
                        ret, n = bpf_run(prog, nr, args=args)
                        total += n
                        if ret != SECCOMP_RET_ALLOW:
                            raise BenchError(f"the {kind} filter does not allow {name} (returns {ret:#x})")
                    steps[kind][name].append(total)
                if i == 0:
                    allowed = []  # over every x86_64 syscall number: what an allowed call pays
                    for nr in range(0, 460):
                        results = [bpf_run(prog, nr) for prog in progs]
                        if all(r == SECCOMP_RET_ALLOW for r, _ in results):
                            allowed.append(sum(n for _, n in results))
                    spread[kind] = (len(allowed), median(allowed), max(allowed)) if allowed else (0, 0.0, 0)
        _progress("syscall: done\n" if sys.stderr.isatty() else "syscall: done")

        def rng(xs: list[int]) -> str:
            return f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}–{max(xs)}"

        size_text = (f"filter size baseline {rng(sorted(sizes['baseline']))}, strict {rng(sorted(sizes['strict']))} "
                     f"insns; {samples} containers each")
        for name, _, _ in FILTER_PROBES:
            bs, ss = steps["baseline"][name], steps["strict"][name]
            b, st = (int(m) if m.is_integer() else m for m in (median(bs), median(ss)))
            v = PASS if st <= b else MISS
            self.add(Row(f"{name}: BPF instructions the filter runs, baseline vs strict", "insns", b, st,
                         "strict ≤ baseline", v, f"{rng(ss)} vs {rng(bs)}; {size_text}", "syscall",
                         extra={"baseline": bs, "strict": ss}))
        (nb, mb, xb), (ns, ms, xs) = spread["baseline"], spread["strict"]
        self.add(Row("every allowed syscall number (args 0): median BPF insns", "insns", mb, ms, "—", INFO,
                     f"allowed {nb} vs {ns} syscall numbers; worst {xb} vs {xs} insns", "syscall",
                     extra={"baseline": spread["baseline"], "strict": spread["strict"]}))

    # -- 6. memory --------------------------------------------------------------------------------------------
    # -- 7. the sandbox agent (issue 17) -------------------------------------------------------------------
    def agent(self) -> None:
        """Notification latency (1 and 20 busy containers), start cost of a notify filter, loop throughput."""
        if not shutil.which("gcc"):
            self.add(Row("sandbox agent", "", verdict=SKIP, detail="gcc is not installed", section="agent"))
            return
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(here, "tests", "e2e", "agent_probe.c"), encoding="ascii") as f:
            probe = self._compile("agent-probe", f.read())
        rootfs = os.path.join(self.tmp, "rootfs-agent")
        shutil.copytree(self.rootfs, rootfs, symlinks=True)
        os.chmod(rootfs, 0o755)  # noqa: S103
        shutil.copy2(probe, os.path.join(rootfs, "bin", "agent-probe"))
        sockdir = os.path.join(self.tmp, "agent-run")
        os.mkdir(sockdir, 0o700)
        sock = os.path.join(sockdir, "agent.sock")
        agent = subprocess.Popen([self.cli, "agent", "run", "--socket", sock, "--audit-log",
                                  os.path.join(self.tmp, "agent-audit.jsonl")], env=self.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._agent_rows(rootfs, sock, agent.pid, probe)
        finally:
            agent.terminate()
            agent.wait(60)

    def _agent_rows(self, rootfs: str, sock: str, agent_pid: int, probe: str) -> None:
        from sandbox.runtime.unixsock import ping

        for _ in range(200):
            if ping(sock):
                break
            time.sleep(0.05)
        else:
            raise BenchError("the sandbox agent did not come up")
        env = dict(self.env, SANDBOX_AGENT_SOCKET=sock)
        complain = os.path.join(self.tmp, "strict-complain.yaml")
        with open(complain, "w", encoding="utf-8") as f:
            f.write("apiVersion: sandbox/v1\nkind: Profile\nname: strict-complain\nextends: strict\nmode: complain\n")
        os.chmod(complain, 0o644)  # noqa: S103
        denials = os.path.join(self.tmp, "strict-denials.yaml")  # strict, and a notify filter: nothing else differs
        with open(denials, "w", encoding="utf-8") as f:
            f.write("apiVersion: sandbox/v1\nkind: Profile\nname: strict-denials\nextends: strict\n"
                    "monitor:\n  denials: true\n")
        os.chmod(denials, 0o644)  # noqa: S103
        n = 20_000 if self.args.quick else 100_000
        saved, self.env = self.env, env
        try:
            b = {(mode, what): self.make_bundle(f"bundle-agent-{mode}-{what.replace(' ', '-')}",
                                                ["/bin/agent-probe", *what.split()] if what != "true" else ["true"],
                                                complain if mode == "complain" else "strict", rootfs)
                 for mode in ("complain", "enforce")
                 for what in (f"loop {n} keyctl", f"loop {n} getppid", "true", "loop 5000 keyctl")}
            busy = self.make_bundle("bundle-agent-busy", ["/bin/agent-probe", "loop", "2000000000", "keyctl"],
                                    complain, rootfs)
            b["denials", "true"] = self.make_bundle("bundle-agent-denials-true", ["true"], denials, rootfs)
        finally:
            self.env = saved
        with open(os.path.join(b["complain", "true"], "config.json"), encoding="utf-8") as f:
            routed = json.load(f)["linux"]["seccomp"]
        if routed.get("listenerPath") != sock:
            raise BenchError("the complain-mode bundle was not routed to the agent")

        def loop(mode: str, what: str, tag: str) -> dict[str, float]:
            cid = self.new_id(f"ag-{tag}")
            out = self.check(self.runc_cmd("run", "-b", b[mode, what], cid), env=env)
            self.live.discard(cid)
            return {f"agent.{tag}.{k}": v for k, v in parse_probe_loop(out).items()}

        keyctl, getppid = f"loop {n} keyctl", f"loop {n} getppid"
        runs = max(3, self.args.runs // 3)
        self.rounds("agent: one container", {
            "c-keyctl": functools.partial(loop, "complain", keyctl, "complain.keyctl"),
            "e-keyctl": functools.partial(loop, "enforce", keyctl, "enforce.keyctl"),
            "c-getppid": functools.partial(loop, "complain", getppid, "complain.getppid"),
            "e-getppid": functools.partial(loop, "enforce", getppid, "enforce.getppid")}, runs)
        med = {k: median(v) for k, v in self.samples.items() if k.startswith("agent.")}
        # the anchor: agent-probe as a compiled supervisor on the host (its `supervise` mode)
        res = {mode: [float(self.check([probe, "supervise", str(n), mode]).split("=")[1]) for _ in range(3)]
               for mode in ("plain", "sync")}
        one_p50 = med["agent.complain.keyctl.p50"] / 1e3
        v, d = verdict_ratio(median(res["plain"]), one_p50, AGENT_NOTIFY_MAX_ANCHORS)
        self.add(Row("notified keyctl round trip, one container: p50 (runc col.: a compiled supervisor)", "µs",
                     median(res["plain"]), one_p50, f"≤ {AGENT_NOTIFY_MAX_ANCHORS:.1f}×", v,
                     f"{d}; p99 {fmt_num(med['agent.complain.keyctl.p99'] / 1e3)} µs; the same call denied in the "
                     f"kernel (enforce): {fmt_num(med['agent.enforce.keyctl.p50'])} ns; the supervisor with "
                     f"SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP {fmt_num(median(res['sync']))} µs; published (Vagin, 2023): "
                     "8.57 µs, 2.77 µs in sync mode", "agent", extra={"anchor_us": res}))
        # 19 busy neighbours, each notifying as fast as the agent answers
        neighbours = []
        for i in range(19):
            cid = self.new_id(f"ag-busy{i}")
            subprocess.run(self.runc_cmd("run", "-d", "-b", busy, cid), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
            neighbours.append(cid)
        try:
            time.sleep(1)
            self.rounds("agent: 20 busy containers", {
                "busy": functools.partial(loop, "complain", "loop 5000 keyctl", "busy.keyctl")}, runs)
            rss = _vm_hwm_kib(agent_pid)
        finally:
            for cid in neighbours:
                self.delete_f(cid)
        busy_p50 = median(self.samples["agent.busy.keyctl.p50"]) / 1e3
        busy_p99 = median(self.samples["agent.busy.keyctl.p99"]) / 1e3
        turn = 20 * med["agent.complain.keyctl.mean"] / 1e3  # every container served once, one call each
        v, d = verdict_ratio(turn, busy_p50, AGENT_BUSY_MAX_TURNS)
        self.add(Row("notified keyctl round trip, 19 busy neighbours: p50 (runc col.: 20 × one call's mean)", "µs",
                     turn, busy_p50, f"≤ {AGENT_BUSY_MAX_TURNS:.2f}×", v, f"{d}: a call waits less than one turn of "
                     f"all 20; p99 {fmt_num(busy_p99)} µs (21 processes on the CPUs: the tail is the scheduler's)",
                     "agent"))
        v, d = verdict_max(rss / 1024, AGENT_RSS_MAX_MIB, "MiB")
        self.add(Row("the agent's peak RSS serving 20 busy containers", "MiB", None, rss / 1024,
                     f"≤ {fmt_num(AGENT_RSS_MAX_MIB)} MiB", v, d, "agent", extra={"agent_vmhwm_kib": rss}))
        v, d = verdict_ratio(med["agent.enforce.getppid.mean"], med["agent.complain.getppid.mean"],
                             AGENT_UNROUTED_MAX_RATIO)
        self.add(Row("loop of getppid (not routed), complain vs enforce (runc col.)", "ns/call",
                     med["agent.enforce.getppid.mean"], med["agent.complain.getppid.mean"],
                     f"≤ {AGENT_UNROUTED_MAX_RATIO:.2f}×", v, f"{d}: calls the profile allows never reach the agent",
                     "agent"))
        self.add(Row("loop of keyctl (routed in complain, denied in the kernel in enforce)", "ns/call",
                     med["agent.enforce.keyctl.mean"], med["agent.complain.keyctl.mean"], "—", INFO,
                     f"{fmt_num(1e9 / med['agent.complain.keyctl.mean'])} calls/s through the agent", "agent"))

        def start(mode: str) -> int:
            cid = self.new_id(f"ag-start-{mode}")
            t = self.timed(self.runc_cmd("run", "-b", b[mode, "true"], cid), env=env)
            self.live.discard(cid)
            return t

        self.rounds("agent: start", {"agent.start.denials": functools.partial(start, "denials"),
                                     "agent.start.enforce": functools.partial(start, "enforce")})
        rm, sm = self.med_ms("agent.start.enforce"), self.med_ms("agent.start.denials")
        v, d = verdict_ratio(rm, sm, AGENT_START_MAX_RATIO)
        self.add(Row("`runc run true`: strict (runc col.) vs strict with a notify filter (monitor.denials)", "ms",
                     rm, sm, f"≤ {AGENT_START_MAX_RATIO:.2f}×", v, f"{d}; {fmt_delta(sm - rm)} ms: runc connects to "
                     "the agent and hands it the descriptor; the filter is the same size", "agent"))

    def memory(self) -> None:
        if not shutil.which("gcc"):
            self.add(Row("peak RSS of `sandbox-runc create`", "MiB", verdict=SKIP, detail="gcc is not installed",
                         section="memory"))
            return
        helper = self._compile("rss", RSS_C)
        bundle = os.path.join(self.tmp, "bundle-true")
        if not os.path.isdir(bundle):
            bundle = self.make_bundle("bundle-true", ["true"], "strict")
        result = os.path.join(self.tmp, "rss.out")

        def peak(cmd: list[str], env: dict[str, str] | None = None) -> float:
            self.timed([helper, result, *cmd], env)
            with open(result, encoding="ascii") as f:
                kib, code = f.read().split()
            if code != "0":
                raise CommandFailed(cmd, int(code))
            return int(kib) / 1024

        def create(cmd: Callable[..., list[str]], tag: str, env: dict[str, str] | None = None) -> float:
            cid = self.new_id(tag)
            try:
                return peak(cmd("create", "-b", bundle, cid), env)
            finally:
                self.delete_f(cid)

        def sandbox_run() -> float:
            cid = self.new_id("cli")
            v = peak([self.cli, "run", "--profile", "strict", "--rootfs", self.rootfs, "--name", cid,
                      "--root", self.root, "--audit-log", os.path.join(self.audit_dir, "run.jsonl"), "--", "true"])
            self.live.discard(cid)
            return v

        self.rounds("memory", {
            "rss.floor": lambda: peak([self.python, "-I", "-S", "-c", "pass"]),
            "rss.runc.create": lambda: create(self.runc_cmd, "rss-runc"),
            "rss.shim.create": lambda: create(self.shim_cmd, "rss-shim"),
            "rss.sandbox.run": sandbox_run,
            **({"rss.shim.create_py": lambda: create(self.shim_cmd, "rss-shim-py", self.py_env)}
               if self.daemon_socket else {}),
        })
        floor = max(self.samples["rss.floor"])
        runc_peak, shim_peak = max(self.samples["rss.runc.create"]), max(self.samples["rss.shim.create"])
        budget = f"≤ {RSS_MAX_MIB:g} MiB"
        v, d = verdict_max(shim_peak, RSS_MAX_MIB, "MiB")
        via = " via the daemon (the client)" if self.daemon_socket else " (no daemon)"
        self.add(Row(f"peak RSS of `create`{via} (max over runs)", "MiB", runc_peak, shim_peak, budget,
                     v, d + f"; `python3 -I -S -c pass`: {fmt_num(floor)} MiB", "memory"))
        if self.daemon_socket:
            py_peak = max(self.samples["rss.shim.create_py"])
            v, d = verdict_max(py_peak, RSS_MAX_MIB, "MiB")
            self.add(Row("peak RSS of `create`, no daemon (Python per call)", "MiB", runc_peak, py_peak, budget,
                         v, d, "memory"))
            with open(f"/proc/{self.daemon_pid}/status", encoding="ascii") as f:
                hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
            v, d = verdict_max(hwm, RSS_MAX_MIB, "MiB")
            self.add(Row("peak RSS of the daemon itself (VmHWM, after every section)", "MiB", None, hwm, budget,
                         v, d + "; paid once per host, not per container", "memory"))
        self.add(Row("peak RSS of `sandbox run --profile strict -- true`", "MiB", None,
                     max(self.samples["rss.sandbox.run"]), "—", INFO, "", "memory"))

    # -- --analyse: where the time of `sandbox-runc create` goes --------------------------------------------------
    # -- 7. network policy: the hook's cost per start, the rules' cost per packet ---------------------------
    def network(self) -> None:
        from sandbox.core.netrules import canonical, ruleset
        from sandbox.core.profile import NetRule, NetworkPolicy

        if not shutil.which("nft") and not os.path.exists("/usr/sbin/nft"):
            self.add(Row("network", "", verdict=SKIP, detail="nftables is not installed", section="network"))
            return
        # The hook: `runc run true` of the same hardened bundle with and without a network section
        # (baseline vs baseline + restricted's deny_always and a 20-entry egress list).  Timed with
        # plain runc: the hardening is the same, only the hook differs.
        entries = "".join(f"    - {{cidr: 10.{i}.0.0/16, ports: [{443 + i}]}}\n" for i in range(NETWORK_RULES))
        prof = os.path.join(self.tmp, "net-bench.yaml")
        with open(prof, "w", encoding="utf-8") as f:
            f.write("apiVersion: sandbox/v1\nkind: Profile\nname: net-bench\nextends: baseline\nnetwork:\n"
                    "  deny_always: [169.254.0.0/16, fe80::/10, node]\n  dns: [10.0.0.2]\n  egress:\n" + entries)
        plain = self.make_bundle("bundle-nonet", ["true"], "baseline")
        netted = self.make_bundle("bundle-net", ["true"], prof)
        variants = {"hook.none": plain, "hook.compiled": netted}
        with open(os.path.join(netted, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        hook = cfg["hooks"]["createRuntime"][-1]["path"]
        twin = self._python_hook_twin(hook)
        if twin:
            cfg["hooks"]["createRuntime"][-1]["path"] = twin
            sh_bundle = os.path.join(self.tmp, "bundle-net-sh")
            os.mkdir(sh_bundle, 0o755)
            with open(os.path.join(sh_bundle, "config.json"), "w", encoding="utf-8") as f:
                json.dump(cfg, f)
            variants["hook.python"] = sh_bundle

        def run(bundle: str, tag: str) -> int:
            cid = self.new_id(tag)
            t = self.timed(self.runc_cmd("run", "-b", bundle, cid))
            self.live.discard(cid)
            return t

        self.rounds("network hook", {k: (lambda b=b, k=k: run(b, k)) for k, b in variants.items()})
        none = self.med_ms("hook.none")
        for key, what in (("hook.compiled", "the compiled hook (csrc/sandbox-nethook.c)"),
                          ("hook.python", "its sh + Python twin (installs without a C compiler)")):
            if key in self.samples:
                m = self.med_ms(key)
                self.add(Row(f"`runc run` true with a network section: {what}", "ms", none, m, "—", INFO,
                             f"{fmt_delta(m - none)} ms per container start ({m / none:.2f}×)", "network"))
        # Per packet: a 20-entry ruleset (the generator's own output) loaded in a namespace made here,
        # against the same namespace without it; loopback (TCP stream, UDP 64-byte datagrams) and a
        # veth to an address the last entry allows.
        pol = NetworkPolicy(egress=tuple(NetRule(f"fd00:{i + 1:x}::/64", "udp", ((17999, 17999),))
                                         for i in range(NETWORK_RULES)),
                            deny_always=("169.254.0.0/16", "fe80::/10"))
        doc = ruleset(pol, (), ())
        assert doc is not None
        rules_file = os.path.join(self.tmp, "net-rules.json")
        with open(rules_file, "wb") as f:
            f.write(canonical(doc.document))
        netbench = self._compile("netbench", NETBENCH_C)
        tag = f"sbxbench{os.getpid()}"
        client, server = f"{tag}c", f"{tag}s"
        target = f"fd00:{NETWORK_RULES:x}::1"  # inside the last entry's network
        nft = shutil.which("nft") or "/usr/sbin/nft"
        try:
            for ns in (client, server):
                self.check(["ip", "netns", "add", ns])
                self.check(["ip", "-n", ns, "link", "set", "lo", "up"])
            self.check(["ip", "-n", server, "link", "add", "bv0", "type", "veth", "peer", "name", "bv1", "netns",
                        client])
            self.check(["ip", "-n", server, "addr", "add", f"{target}/64", "dev", "bv0", "nodad"])
            self.check(["ip", "-n", client, "addr", "add", f"fd00:{NETWORK_RULES:x}::2/64", "dev", "bv1", "nodad"])
            for ns, dev in ((server, "bv0"), (client, "bv1")):
                self.check(["ip", "-n", ns, "link", "set", dev, "up"])
            enter = ["nsenter", f"--net=/run/netns/{client}", "--"]

            def measure(with_rules: bool, kind: str) -> float:
                present = subprocess.run([*enter, nft, "list", "table", "inet", "sandbox"], capture_output=True,
                                         check=False).returncode == 0
                if with_rules and not present:
                    self.check([*enter, nft, "-j", "-f", rules_file])
                elif present and not with_rules:
                    self.check([*enter, nft, "delete", "table", "inet", "sandbox"])
                secs = "0.3" if self.args.quick else "0.5"
                if kind == "veth":  # the receiver in the server namespace, the sender in the client's
                    srv = subprocess.Popen(["nsenter", f"--net=/run/netns/{server}", "--", netbench, "udprecv",
                                            target, "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    try:
                        out = self.check([*enter, netbench, "udpsend", target, secs])
                    finally:
                        srv.kill()
                        srv.wait()
                else:
                    out = self.check([*enter, netbench, kind, *(["::1"] if kind == "udp" else []), secs])
                return float(out.split()[0])

            self.rounds("network packets", {
                f"pkt.{'rules' if r else 'none'}.{k}": (lambda r=r, k=k: measure(r, k))
                for r in (False, True) for k in ("tcp", "udp", "veth")
            })
        finally:
            for ns in (client, server):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        budget = f"≤ {NETWORK_MAX_SLOWDOWN:.0%} slower"
        for k, what, unit, scale in (
                ("tcp", "TCP stream over loopback (64 KiB writes)", "MB/s", 1e6),
                ("udp", "UDP 64-byte datagrams over loopback", "kpps", 1e3),
                # one-way UDP never becomes `established`: every datagram is matched against every rule
                ("veth", f"one-way UDP 64-byte datagrams over a veth to the {NETWORK_RULES}th entry's network "
                 "(worst case: every packet through every rule)", "kpps", 1e3)):
            without = median(self.samples[f"pkt.none.{k}"]) / scale
            with_ = median(self.samples[f"pkt.rules.{k}"]) / scale
            slower = 1 - with_ / without if without else None
            if k == "tcp":
                v = PASS if slower is not None and slower <= NETWORK_MAX_SLOWDOWN else MISS
                d = f"{slower:.1%} slower" if slower is not None else "no measurement"
            else:
                v, d = INFO, f"{slower:.1%} slower" if slower is not None else ""
            self.add(Row(f"{what}, {NETWORK_RULES}-entry egress list ({doc.rules} rules; runc col.: without)", unit,
                         without, with_,
                         budget if k == "tcp" else "—", v, d, "network"))

    def _python_hook_twin(self, compiled: str) -> str | None:
        """bin/sandbox-nethook (the sh launcher of the Python hook) set up beside the installed package."""
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin", "sandbox-nethook")
        venv_bin = os.path.dirname(compiled)
        if not os.path.exists(src) or not os.path.exists(os.path.join(venv_bin, "python3")):
            return None
        d = os.path.join(self.tmp, "pyhook")
        os.makedirs(os.path.join(d, "bin"), 0o755)
        os.symlink(os.path.join(venv_bin, "python3"), os.path.join(d, "bin", "python3"))
        os.symlink(os.path.join(os.path.dirname(venv_bin), "lib"), os.path.join(d, "lib"))
        path = os.path.join(d, "bin", "sandbox-nethook")
        shutil.copy(src, path)
        os.chmod(path, 0o755)  # noqa: S103
        return path

    def analyse(self) -> None:
        runs = max(3, min(self.args.runs, 11))
        fresh = os.path.join(self.tmp, "bundle-analyse")
        if not os.path.isdir(fresh):
            fresh = self.make_bundle("bundle-analyse", ["true"], None)
        with open(os.path.join(fresh, "config.json"), "rb") as f:
            pristine = f.read()
        env = dict(self.py_env, SANDBOX_RUNC=self.runc)  # what the dispatcher exports
        flags = ["-I", "-S"] if self.site_packages else ["-I"]  # as the dispatcher starts Python
        if self.site_packages:
            env["BENCH_SITE_PACKAGES"] = self.site_packages

        def prepare(hardened: bool) -> None:
            with open(os.path.join(fresh, "config.json"), "wb") as f:
                f.write(pristine)
            if hardened:  # the shim's own first pass, so the next one has nothing to write
                cid = self.new_id("an-prime")
                self.timed(self.shim_cmd("create", "-b", fresh, cid))
                self.delete_f(cid)

        # 1. per-phase timings
        variants: list[tuple[str, str, bool, dict[str, str]]] = [
            ("fresh", "fresh config.json (as engines hand it over), warm profile cache", False, {}),
            ("hardened", "already-hardened config.json (nothing to write), warm profile cache", True, {}),
            ("nocache", "fresh config.json, profile cache off (SANDBOX_CACHE_DIR=off: what a cache miss costs)",
             False, {"SANDBOX_CACHE_DIR": "off", "BENCH_WRAP_LOADER": "1"}),
        ]
        for key, title, hardened, extra_env in variants:
            per: dict[str, list[int]] = {}
            calls: dict[str, int] = {}
            totals = []
            for i in range(runs):
                _progress(f"analyse: phases ({key}) {i + 1}/{runs}")
                prepare(hardened)
                cid = self.new_id("an")
                out_path = os.path.join(self.tmp, "phases.json")
                try:
                    code, _, err = self.run_to_files([self.shim_python, *flags, "-c", PHASES_PY, "--root",
                                                      self.root, "create", "-b", fresh, cid],
                                                     dict(env, BENCH_PHASES_OUT=out_path, **extra_env))
                    data: dict[str, Any] = {"exit": "no output"}
                    if os.path.exists(out_path):
                        with open(out_path, encoding="utf-8") as jf:
                            data = json.load(jf)
                        os.unlink(out_path)
                finally:
                    self.delete_f(cid)
                if code != 0 or data.get("exit"):
                    raise CommandFailed(["phases", "create"], code or 1, err)
                for label, c, ns in data["phases"]:
                    per.setdefault(label, []).append(ns)
                    calls[label] = c
                totals.append(data["total_ns"])
            self.analysis[f"phases_{key}"] = {
                "title": title, "runs": runs, "total_in_process_ms": median(totals) / 1e6,
                "phases_ms": {k: {"calls": calls[k], "median_ms": median(v) / 1e6} for k, v in per.items()},
            }
        # 2. imports: the real dispatcher, with a SANDBOX_PYTHON that adds -X importtime
        wrapper = os.path.join(self.tmp, "python-importtime")
        with open(wrapper, "w", encoding="utf-8") as wf:
            wf.write(f'#!/bin/sh\nexec {self.shim_python} -X importtime "$@"\n')
        os.chmod(wrapper, 0o755)  # noqa: S103
        tops: dict[str, list[int]] = {}
        totals = []
        for i in range(runs):
            _progress(f"analyse: importtime {i + 1}/{runs}")
            prepare(False)
            cid = self.new_id("an-imp")
            try:
                code, _, err = self.run_to_files(self.shim_cmd("create", "-b", fresh, cid),
                                                 dict(self.py_env, SANDBOX_PYTHON=wrapper))
            finally:
                self.delete_f(cid)
            if code != 0:
                raise CommandFailed(["SANDBOX_PYTHON=python -X importtime", "sandbox-runc", "create"], code, err)
            parsed = parse_importtime(err)
            totals.append(parsed["total_us"])
            for k, v in parsed["top_level_us"].items():
                tops.setdefault(k, []).append(v)
        top = sorted(((median(v) / 1e3, k) for k, v in tops.items()), reverse=True)[:15]
        self.analysis["imports"] = {"runs": runs, "total_ms": median(totals) / 1e3,
                                    "top_level_cumulative_ms": [{"module": k, "ms": ms} for ms, k in top]}
        # 3. cProfile of one fresh-config create
        _progress("analyse: cProfile")
        prepare(False)
        cid = self.new_id("an-prof")
        try:
            code, out, err = self.run_to_files([self.shim_python, *flags, "-c", CPROFILE_PY, "--root", self.root,
                                                "create", "-b", fresh, cid], env)
        finally:
            self.delete_f(cid)
        if code != 0:
            raise CommandFailed(["cProfile", "create"], code, err)
        self.analysis["cprofile"] = out
        _progress("analyse: done\n" if sys.stderr.isatty() else "analyse: done")

    def analysis_markdown(self) -> str:
        a = self.analysis
        if not a:
            return ""
        parts = ["## Where the time of `sandbox-runc create` goes", ""]
        for key in ("phases_fresh", "phases_hardened", "phases_nocache"):
            if key not in a:
                continue
            ph = a[key]
            parts += [f"### In-process phases, {ph['title']}: median of {ph['runs']} fresh interpreters", "",
                      f"Total in-process (after interpreter start-up): {fmt_num(ph['total_in_process_ms'])} ms", ""]
            parts.append(format_table(("phase", "calls", "ms"),
                                      [[k, str(v["calls"]), fmt_num(v["median_ms"])]
                                       for k, v in ph["phases_ms"].items()], align=("l", "r", "r")))
            parts.append("")
        if "imports" in a:
            im = a["imports"]
            parts += [f"### `-X importtime` (median of {im['runs']}): {fmt_num(im['total_ms'])} ms of imports in all",
                      ""]
            parts.append(format_table(("top-level import", "cumulative ms"),
                                      [[r["module"], fmt_num(r["ms"])] for r in im["top_level_cumulative_ms"]],
                                      align=("l", "r")))
            parts.append("")
        if "cprofile" in a:
            parts += ["### cProfile of one create (fresh config)", "", "```", a["cprofile"].strip(), "```", ""]
        return "\n".join(parts)


def dispatcher_python(shim: str) -> tuple[str | None, str]:
    """(site-packages holding sandbox beside the shim, or None for an editable install; its python3),
    found as bin/sandbox-runc finds them: with the first, it starts Python with -I -S."""
    import glob

    here = os.path.dirname(os.path.realpath(shim))
    py = os.path.join(here, "python3")
    py = py if os.access(py, os.X_OK) else (shutil.which("python3") or sys.executable)
    for sp in sorted(glob.glob(os.path.join(here, "..", "lib", "python3*", "site-packages"))):
        if os.path.isfile(os.path.join(sp, "sandbox", "shim.py")):
            return os.path.normpath(sp), py
    return None, py


def seccomp_filters(pid: int) -> list[list[tuple[int, int, int, int]]]:
    """The seccomp programs attached to `pid` (oldest first), read as `sandbox verify` reads them (root)."""
    from sandbox.core import seccomp_bpf
    from sandbox.errors import InspectError
    from sandbox.host.ptrace import read_filters_of

    try:
        return [list(seccomp_bpf.decode(raw)) for raw in read_filters_of(pid)]
    except InspectError as e:
        raise BenchError(str(e)) from None


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of a live process (VmHWM), in KiB; 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _become_subreaper() -> None:
    """Orphaned container processes come to us (and are reaped), not to whatever pid 1 is."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


# --- the machine ----------------------------------------------------------------------------------------------

def sandbox_info(shim: str | None) -> dict[str, Any]:
    """Which sandbox was measured: the repository commit and how the dispatcher starts Python."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    info: dict[str, Any] = {}
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "sandbox", "bin", "profiles"],
                               capture_output=True, text=True, check=False).stdout.strip()
        info["commit"] = (head or "unknown") + (" (sandbox/, bin/ or profiles/ modified)" if dirty else "")
    except OSError:
        info["commit"] = "unknown"
    if shim:
        sp, py = dispatcher_python(shim)
        info["sandbox-runc"] = shim
        info["install"] = (f"regular: the dispatcher starts `{py} -I -S` with {sp}" if sp else
                           f"editable: the dispatcher falls back to `{py} -I` (site and .pth files on)")
    return info


def machine_info(runc: str, python: str) -> dict[str, Any]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from sandbox.host.probe import cgroup_version

        cgroup = cgroup_version()
    except Exception:  # noqa: BLE001 - informational only
        cgroup = "unknown"
    fs = "unknown"
    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", tempfile.gettempdir()], capture_output=True, text=True,
                            check=False).stdout.strip()
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "kernel": platform.release(),
        "runc": first_line([runc, "--version"]), "python": first_line([python, "-VV"]),
        "podman": first_line(["podman", "--version"]) if shutil.which("podman") else "not installed",
        "cgroup": cgroup, "tmp_fs": fs, "os": first_line(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
    }


def machine_markdown(m: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in m.items())


# --- main --------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, help="measured rounds per comparison (default 21; --quick 5)")
    p.add_argument("--warmup", type=int, help="discarded rounds before them (default 2; --quick 1)")
    p.add_argument("--quick", action="store_true", help="smoke test: 5 runs, fewer iterations")
    p.add_argument("--json", metavar="FILE", help="also write every sample and the verdicts here")
    p.add_argument("--only", metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--analyse", action="store_true",
                   help="also break `sandbox-runc create` down (phases, -X importtime, cProfile)")
    p.add_argument("--runc", metavar="PATH", help="the real runc (default: runc on PATH)")
    p.add_argument("--iterations", type=int, help="transform.apply iterations per profile (default 2000)")
    p.add_argument("--syscall-iterations", type=int, help="iterations per syscall in the container "
                   "(default 2,000,000; --quick 200,000)")
    p.add_argument("--tmpdir", metavar="DIR", help="where the temporary directory goes (parents must be 0755)")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a budget is missed")
    p.add_argument("--verify-containers", type=int,
                   help="running containers per engine layout for the verify section (default 100; --quick 20)")
    p.add_argument("--no-daemon", action="store_true",
                   help="measure sandbox-runc without the sandbox daemon (a fresh Python per create/run); by "
                        "default a private daemon is started and the Python path is measured beside it")
    a = p.parse_args(argv)
    a.runs = a.runs if a.runs is not None else (5 if a.quick else 21)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    a.iterations = a.iterations or (200 if a.quick else 2000)
    a.syscall_iterations = a.syscall_iterations or (200_000 if a.quick else 2_000_000)
    a.verify_containers = a.verify_containers or (20 if a.quick else 100)
    if a.runs < 1 or a.warmup < 0 or a.iterations < 1 or a.syscall_iterations < 1:
        p.error("--runs, --iterations and --syscall-iterations must be positive, --warmup not negative")
    a.sections = SECTIONS if not a.only else tuple(s.strip() for s in a.only.split(",") if s.strip())
    unknown = set(a.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needs_root = set(args.sections) - {"transform"} or args.analyse
    if needs_root and os.geteuid() != 0:
        print("bench.py: run as root (runc, podman and user namespaces); --only transform works unprivileged",
              file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    bench = Bench(args)
    started = time.time()
    interrupted = False
    try:
        bench.setup()
        for section in SECTIONS:
            if section not in args.sections:
                continue
            try:
                getattr(bench, section)()
            except BenchError as e:
                bench.errors += 1
                bench.add(Row(f"{section} section", "", verdict=ERROR, detail=str(e), section=section))
                print(f"\nbench.py: {section}: {e}", file=sys.stderr)
        if args.analyse:
            try:
                bench.analyse()
            except BenchError as e:
                bench.errors += 1
                bench.notes.append(f"--analyse failed: {e}")
    except KeyboardInterrupt:
        interrupted = True
        print("\nbench.py: interrupted; cleaning up", file=sys.stderr)
    except BenchError as e:
        bench.errors += 1
        print(f"bench.py: {e}", file=sys.stderr)
    finally:
        bench.cleanup()
    machine = machine_info(bench.runc if hasattr(bench, "runc") else "runc", sys.executable)
    machine.update(sandbox_info(getattr(bench, "shim", None)))
    misses = [r for r in bench.rows if r.verdict == MISS]
    if interrupted:
        print("\n**Interrupted: partial results.**")
    print(f"\n## sandbox-runc vs runc — medians of {args.runs} interleaved runs after {args.warmup} warm-up\n")
    print(render(bench.rows))
    if bench.notes:
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in bench.notes))
    print(f"\nBudgets: {sum(r.verdict == PASS for r in bench.rows)} PASS, {len(misses)} MISS, "
          f"{bench.errors} section error(s). Took {time.time() - started:.0f} s.\n")
    print("Machine:\n" + machine_markdown(machine))
    if bench.analysis:
        print("\n" + bench.analysis_markdown())
    if args.json:
        doc = {
            "schema": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
            "machine": machine,
            "budgets": {"passthrough_max_ratio": PASSTHROUGH_MAX_RATIO, "added_max_floors": ADDED_MAX_FLOORS,
                        "engine_max_ratio": ENGINE_MAX_RATIO, "transform_max_p50_ms": TRANSFORM_MAX_P50_MS,
                        "rss_max_mib": RSS_MAX_MIB, "verify_max_s_per_100": VERIFY_MAX_S_PER_100,
                        "network_max_slowdown": NETWORK_MAX_SLOWDOWN,
                        "agent_notify_max_anchors": AGENT_NOTIFY_MAX_ANCHORS,
                        "agent_busy_max_turns": AGENT_BUSY_MAX_TURNS,
                        "agent_unrouted_max_ratio": AGENT_UNROUTED_MAX_RATIO,
                        "agent_start_max_ratio": AGENT_START_MAX_RATIO, "agent_rss_max_mib": AGENT_RSS_MAX_MIB},
            "floor_ms": bench.floor_ms,
            "rows": [dict(asdict(r), ratio=r.ratio) for r in bench.rows],
            "notes": bench.notes, "samples": bench.samples, "analysis": bench.analysis,
            "misses": [r.metric for r in misses], "errors": bench.errors, "interrupted": interrupted,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if interrupted:
        return 130
    if bench.errors:
        return 1
    return 3 if misses and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
