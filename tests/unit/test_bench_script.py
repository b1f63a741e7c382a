"""The pure helpers of scripts/bench.py: statistics, ratios, verdicts, table formatting.

No timing is asserted here; the script itself is exercised by running it (see docs/performance.md).
"""

import importlib.util
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    spec = importlib.util.spec_from_file_location("sandbox_bench_script", os.path.join(ROOT, "scripts", "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_importing_the_script_runs_nothing():
    # no sandbox import, no subprocess, no temp dir at import time: only definitions
    assert callable(bench.main)
    assert bench.SECTIONS == ("lifecycle", "passthrough", "engine", "userns", "transform", "syscall", "memory",
                              "verify", "network", "agent")


def test_median_odd_even_unsorted():
    assert bench.median([3, 1, 2]) == 2
    assert bench.median([4, 1, 3, 2]) == 2.5
    assert bench.median([7]) == 7
    assert bench.median(x for x in (5, 5, 1)) == 5  # any iterable
    with pytest.raises(ValueError):
        bench.median([])


def test_percentile_interpolates_like_numpy():
    xs = list(range(1, 101))  # 1..100
    assert bench.percentile(xs, 0) == 1
    assert bench.percentile(xs, 100) == 100
    assert bench.percentile(xs, 50) == pytest.approx(50.5)
    assert bench.percentile(xs, 99) == pytest.approx(99.01)
    assert bench.percentile([10, 20], 25) == pytest.approx(12.5)
    assert bench.percentile([42], 99) == 42
    assert bench.percentile([3, 1, 2], 50) == bench.median([3, 1, 2])
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    with pytest.raises(ValueError):
        bench.percentile([1, 2], 101)


def test_ratio_guards_missing_and_zero():
    assert bench.ratio(12, 10) == pytest.approx(1.2)
    assert bench.ratio(None, 10) is None
    assert bench.ratio(5, None) is None
    assert bench.ratio(5, 0) is None


def test_rotated_gives_every_position_equally():
    assert bench.rotated(["a", "b"], 0) == ["a", "b"]
    assert bench.rotated(["a", "b"], 1) == ["b", "a"]
    assert bench.rotated(["a", "b"], 2) == ["a", "b"]
    items = ["a", "b", "c"]
    firsts = [bench.rotated(items, r)[0] for r in range(6)]
    assert sorted(firsts) == ["a", "a", "b", "b", "c", "c"]
    assert bench.rotated([], 3) == []


def test_fmt_num_and_ratio():
    assert bench.fmt_num(None) == "—"
    assert bench.fmt_num(float("nan")) == "—"
    assert bench.fmt_num(1.234) == "1.23"
    assert bench.fmt_num(12.34) == "12.3"
    assert bench.fmt_num(1234.4) == "1,234"
    assert bench.fmt_ratio(1.234) == "1.23×"
    assert bench.fmt_ratio(None) == "—"


def test_verdict_ratio_pass_miss_and_missing():
    assert bench.verdict_ratio(10.0, 12.0, 1.20)[0] == bench.PASS  # exactly at the limit
    v, text = bench.verdict_ratio(10.0, 13.0, 1.20)
    assert v == bench.MISS and "1.30×" in text and "over by 10 points" in text
    assert bench.verdict_ratio(None, 1.0, 1.2)[0] == bench.ERROR
    assert bench.verdict_ratio(100.0, 99.0, 1.0)[0] == bench.PASS


def test_verdict_added_counts_floors():
    v, text = bench.verdict_added(50.0, 70.0, 10.0, 2.5)  # +20 ms = 2 floors
    assert v == bench.PASS and "2.00 floors" in text
    v, text = bench.verdict_added(50.0, 80.0, 10.0, 2.5)  # +30 ms = 3 floors, 5 ms over
    assert v == bench.MISS and "3.00 floors" in text and "over by 5.00 ms" in text
    assert bench.verdict_added(50.0, 80.0, 0.0)[0] == bench.ERROR
    assert bench.verdict_added(None, 80.0, 10.0)[0] == bench.ERROR


def test_verdict_max():
    assert bench.verdict_max(39.9, 40, "MiB")[0] == bench.PASS
    v, text = bench.verdict_max(41.5, 40, "MiB")
    assert v == bench.MISS and "over by 1.50 MiB" in text
    assert bench.verdict_max(None, 40, "MiB")[0] == bench.ERROR


def test_format_table_is_aligned_markdown():
    out = bench.format_table(("metric", "value"), [["a", "1.00"], ["longer|name", "10.0"]], align=("l", "r"))
    lines = out.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # padded to equal widths
    assert lines[0].startswith("| metric")
    assert lines[1].rstrip(" |").endswith(":")  # right-aligned column rule
    assert "longer\\|name" in lines[3]  # a pipe in a cell is escaped
    assert lines[2].endswith(" 1.00 |")  # right-aligned


def test_format_table_rejects_ragged_rows():
    with pytest.raises(ValueError):
        bench.format_table(("a", "b"), [["only one"]])
    with pytest.raises(ValueError):
        bench.format_table(("a", "b"), [["1", "2"]], align=("l",))


def test_render_rows_with_units_ratio_and_verdict():
    rows = [
        bench.Row("`state`", "ms", 5.0, 6.5, "≤ 1.20×", *bench.verdict_ratio(5.0, 6.5, 1.2)),
        bench.Row("floor", "ms", sandbox=10.0),
    ]
    out = bench.render(rows)
    header, rule, state, floor = out.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == list(bench.TABLE_HEADERS)
    assert "5.00 ms" in state and "6.50 ms" in state and "1.30×" in state and "MISS: 1.30×" in state
    assert "10.0 ms" in floor and floor.count("—") >= 3 and "info" in floor
    assert rows[0].ratio == pytest.approx(1.3)


def test_parse_importtime_totals_and_top_level():
    text = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |   _io",
        "import time:       200 |        300 | io",
        "import time:        50 |         50 |     sandbox._deep",
        "import time:       400 |        450 | sandbox.runtime.shim",
        "import time:        10 |         10 | io",  # a second top-level entry of the same name adds up
        "unrelated line",
    ])
    parsed = bench.parse_importtime(text)
    assert parsed["total_us"] == 760
    assert parsed["top_level_us"] == {"io": 310, "sandbox.runtime.shim": 450}


def test_parse_syscall_output():
    out = bench.parse_syscall_output("getppid 120.5\nread_dev_zero 150\nclock_gettime 180.25\ngarbage line here\n")
    assert out == {"getppid": 120.5, "read_dev_zero": 150.0, "clock_gettime": 180.25}
    assert bench.parse_syscall_output("getppid x\n") == {}


def test_parse_args_defaults_quick_and_sections():
    a = bench.parse_args([])
    assert a.runs >= 20 and a.warmup >= 1 and a.sections == bench.SECTIONS
    q = bench.parse_args(["--quick"])
    assert q.runs == 5 and q.syscall_iterations < a.syscall_iterations
    assert bench.parse_args(["--quick", "--runs", "7"]).runs == 7
    assert bench.parse_args(["--only", "transform, memory"]).sections == ("transform", "memory")
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "nope"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--runs", "0"])


def test_rows_serialise_to_json():
    from dataclasses import asdict

    row = bench.Row("x", "ms", 1.0, 2.0, extra={"p99_us": 3.0})
    doc = json.loads(json.dumps(dict(asdict(row), ratio=row.ratio)))
    assert doc["ratio"] == 2.0 and doc["extra"] == {"p99_us": 3.0}
    assert not math.isnan(doc["runc"])


def test_fmt_num_keeps_integers_whole():
    assert bench.fmt_num(12) == "12"
    assert bench.fmt_num(1003) == "1,003"


def test_verdict_not_above_allows_the_noise_only():
    assert bench.verdict_not_above(100.0, 99.0)[0] == bench.PASS
    assert bench.verdict_not_above(100.0, 100.0)[0] == bench.PASS
    v, text = bench.verdict_not_above(100.0, 103.0, noise=4.0, unit="ns")
    assert v == bench.PASS and "within the noise" in text
    v, text = bench.verdict_not_above(100.0, 110.0, noise=4.0, unit="ns")
    assert v == bench.MISS and "+10.0 ns" in text and "beyond the noise" in text
    assert bench.verdict_not_above(None, 1.0)[0] == bench.ERROR


# classic BPF, as the kernel holds it: (code, jt, jf, k)
LD_NR = (0x20, 0, 0, 0)  # ld [0]: the syscall number
LD_ARCH = (0x20, 0, 0, 4)  # ld [4]: the audit arch
LD_ARG0 = (0x20, 0, 0, 16)  # ld [16]: low word of args[0]
RET_ALLOW = (0x06, 0, 0, bench.SECCOMP_RET_ALLOW)
RET_ERRNO = (0x06, 0, 0, 0x00050001)  # SECCOMP_RET_ERRNO | EPERM
RET_KILL = (0x06, 0, 0, 0)


def test_bpf_run_counts_instructions_to_the_verdict():
    prog = [
        LD_ARCH,
        (0x15, 1, 0, bench.AUDIT_ARCH_X86_64),  # jeq x86_64 ? +1 : +0
        RET_KILL,
        LD_NR,
        (0x15, 0, 1, 110),  # jeq getppid
        RET_ALLOW,
        (0x15, 0, 1, 0),  # jeq read
        RET_ALLOW,
        RET_ERRNO,
    ]
    assert bench.bpf_run(prog, 110) == (bench.SECCOMP_RET_ALLOW, 5)  # insns 0 1 3 4 5
    assert bench.bpf_run(prog, 0) == (bench.SECCOMP_RET_ALLOW, 6)  # 0 1 3 4 6 7
    assert bench.bpf_run(prog, 165) == (0x00050001, 6)  # 0 1 3 4 6 8
    assert bench.bpf_run(prog, 110, arch=0x40000003) == (0, 3)  # another arch: 0 1 2, killed


def test_bpf_run_arguments_jumps_alu_and_scratch():
    prog = [
        LD_ARG0,
        (0x54, 0, 0, 0xFF),  # and #0xff
        (0x02, 0, 0, 1),  # st M[1]
        (0x00, 0, 0, 7),  # ld #7 (overwrite A)
        (0x60, 0, 0, 1),  # ld M[1] (back)
        (0x35, 0, 1, 8),  # jge #8 ? +0 : +1
        (0x05, 0, 0, 1),  # ja +1
        RET_ALLOW,
        (0x45, 1, 0, 0x80),  # jset #0x80 ? +1 : +0
        RET_ERRNO,
        (0x16, 0, 0, 0),  # ret A
    ]
    assert bench.bpf_run(prog, 135, args=(3, 0, 0, 0, 0, 0)) == (bench.SECCOMP_RET_ALLOW, 7)  # 0-5 7
    assert bench.bpf_run(prog, 135, args=(0x108, 0, 0, 0, 0, 0)) == (0x00050001, 9)  # 0-5 6 8 9
    assert bench.bpf_run(prog, 135, args=(0x188, 0, 0, 0, 0, 0)) == (0x88, 9)  # 0-5 6 8 10: ret A


def test_bpf_run_rejects_a_program_without_an_end():
    with pytest.raises(ValueError):
        bench.bpf_run([LD_NR], 0)


def test_fmt_delta_signs():
    assert bench.fmt_delta(1.234) == "+1.23"
    assert bench.fmt_delta(-10.44) == "−10.4"
    assert bench.fmt_delta(0.0) == "+0.00"
    assert bench.fmt_delta(None) == "—"


def test_c_string_literal_is_what_a_c_compiler_reads_back(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    text = 'a/b "q" \\ é\n$x'
    src = tmp_path / "p.c"
    src.write_text(f"#include <stdio.h>\nint main(void) {{ fputs({bench.c_string(text)}, stdout); return 0; }}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "p"), str(src)], check=True)
    assert subprocess.run([str(tmp_path / "p")], capture_output=True).stdout == text.encode()


def test_parse_probe_loop():
    out = "keyctl=5 errno=0\ncalls=1000 min=1200 p50=1500 p99=9000 mean=1700\n"
    assert bench.parse_probe_loop(out) == {"calls": 1000.0, "min": 1200.0, "p50": 1500.0, "p99": 9000.0,
                                           "mean": 1700.0}
    with pytest.raises(ValueError):
        bench.parse_probe_loop("nothing")
