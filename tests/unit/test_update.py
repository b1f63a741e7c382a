"""`runc update` under a profile: runc's resources rebuilt (flags or --resources), then clamped."""

import pytest

from sandbox._record import replace
from sandbox.core import gojson, loader
from sandbox.core.runc_cli import parse
from sandbox.core.update import (
    clamp_resources,
    ignored_with_resources,
    parse_docker_size,
    ram_in_bytes,
    resources_from_flags,
    resources_from_json,
)
from sandbox.errors import UsageError

STRICT = loader.load_profile("strict")  # memory 512Mi, pids 256, cpu 2
BASELINE = loader.load_profile("baseline")


def from_flags(*flags):
    return resources_from_flags(parse(["update", *flags, "c1"]))


def from_json(text):
    return resources_from_json(gojson.decode(gojson.loads(text), gojson.RESOURCES))


def test_docker_sizes_as_go_units_reads_them():
    assert [ram_in_bytes(s) for s in ("512m", "1G", "100", "1.5g", "1 kb", "2KiB", "3i", "1p")] == \
        [512 << 20, 1 << 30, 100, 3 << 29, 1024, 2048, 3, 1 << 50]
    assert [ram_in_bytes(s) for s in ("-1", "lots", "1.2.3", " 1", "1  k", "", "99999999999p", "1e3")] == [None] * 8
    assert parse_docker_size("-1") == -1 and parse_docker_size("-2") is None


def test_flags_become_runcs_structure():
    r = from_flags("--memory", "1.5g", "--memory-swap=-1", "--pids-limit", "0x40", "--cpu-quota", "-1",
                   "--cpu-period", "50000", "--cpuset-cpus", "0-1", "--blkio-weight", "500")
    assert r["memory"]["limit"] == 3 << 29 and r["memory"]["swap"] == -1
    assert r["pids"]["limit"] == 64 and r["cpu"]["quota"] == -1 and r["cpu"]["period"] == 50000
    assert r["cpu"]["cpus"] == "0-1" and r["blockIO"]["weight"] == 500
    assert from_flags("--memory", "1g", "--memory=-1")["memory"]["limit"] == -1  # the last one wins


@pytest.mark.parametrize("flags", [["--memory", "lots"], ["--cpu-quota", "0x10"], ["--cpu-period", "-5"],
                                   ["--blkio-weight", "70000"], ["--blkio-weight", "-1"], ["--cpu-share", "1_0"],
                                   ["--memory", "99999999999p"]])
def test_values_runc_refuses_or_wraps_are_refused(flags):
    with pytest.raises(UsageError):
        from_flags(*flags)


def test_resources_json_read_as_go_reads_it():
    r = from_json('{"MEMORY": {"Limit": -1, "\u212aernel": 5}, "pids": {"LIMIT": 7}, "devices": [], "x": 1}')
    assert r["memory"]["limit"] == -1 and r["memory"]["kernel"] == 5 and r["pids"]["limit"] == 7
    assert r["cpu"] == {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "",
                        "mems": ""}


@pytest.mark.parametrize("text", ['{"memory": {"limit": 1}, "Memory": {"limit": -1}}', '{"memory": null}',
                                  '{"memory": {"limit": null}}', '{"memory": {"limit": 1.0}}',
                                  '{"pids": {"limit": "5"}}', '{"cpu": {"period": -1}}',
                                  '{"blockIO": {"weight": 70000}}', '{"memory": {"limit": 9223372036854775808}}'])
def test_resources_json_runc_would_read_differently_or_refuse(text):
    with pytest.raises((gojson.GoJSONError, UsageError)):
        from_json(text)


def test_memory_and_swap_clamped_and_swap_follows_the_limit():
    new, d = clamp_resources(STRICT, from_flags("--memory", "8g", "--memory-swap=-1"))
    assert new["memory"]["limit"] == new["memory"]["swap"] == 512 << 20
    assert [x.action for x in d] == ["tighten", "tighten"]
    new, d = clamp_resources(STRICT, from_flags("--memory=-1"))
    assert new["memory"]["limit"] == new["memory"]["swap"] == 512 << 20
    new, _ = clamp_resources(STRICT, from_flags("--memory", "64m"))
    assert new["memory"]["swap"] == 64 << 20
    new, _ = clamp_resources(STRICT, from_flags("--memory", "64m"), swap_accounting=False)
    assert new["memory"]["swap"] == 0


def test_pids_zero_is_unchanged_and_negative_is_unlimited():
    assert clamp_resources(STRICT, from_flags("--pids-limit", "0")) == (from_flags("--pids-limit", "0"), [])
    for v in ("-1", "-7", "100000"):
        new, d = clamp_resources(STRICT, from_flags("--pids-limit", v))
        assert new["pids"]["limit"] == 256 and d[0].action == "tighten"


def test_cpu_quota_and_period_are_written_together():
    new, _ = clamp_resources(STRICT, from_flags("--cpu-period", "10000"), {"cpu": {"quota": 50000, "period": 100000}})
    assert (new["cpu"]["quota"], new["cpu"]["period"]) == (20000, 10000)  # 2 CPUs at the new period
    new, _ = clamp_resources(STRICT, from_flags("--cpu-period", "100000"), {"cpu": {"quota": 50000}})
    assert (new["cpu"]["quota"], new["cpu"]["period"]) == (50000, 100000)  # the old quota kept, within the max
    new, _ = clamp_resources(STRICT, from_flags("--cpu-quota", "-1"), {"cpu": {"period": 10000}})
    assert (new["cpu"]["quota"], new["cpu"]["period"]) == (20000, 10000)
    assert clamp_resources(STRICT, from_flags())[1] == []


def test_realtime_and_unified_refused_under_limits_only():
    _, d = clamp_resources(STRICT, from_flags("--cpu-rt-runtime", "1000"))
    assert [x.action for x in d] == ["refuse"]
    _, d = clamp_resources(STRICT, from_json('{"unified": {"pids.max": "max"}}'))
    assert [x.action for x in d] == ["refuse"]
    assert clamp_resources(BASELINE, from_json('{"unified": {"pids.max": "max"}}'))[1] == []


def test_complain_mode_records_without_applying():
    _, d = clamp_resources(replace(STRICT, mode="complain"), from_flags("--memory", "8g"))
    assert d and not any(x.applied for x in d)


def test_flags_given_with_resources_are_dropped():
    inv = parse(["update", "-r", "-", "--memory", "8g", "--pids-limit", "5", "c1"])
    assert [d.pointer for d in ignored_with_resources(STRICT, inv)] == ["/update/--memory", "/update/--pids-limit"]
