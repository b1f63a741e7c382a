from sandbox import loader
from sandbox.runc_cli import parse
from sandbox.update import clamp_flags, clamp_resources, parse_docker_size

STRICT = loader.load_profile("strict")


def test_resources_json_clamped():
    res = {"memory": {"limit": 8 << 30, "swap": -1}, "pids": {"limit": -1}, "cpu": {"quota": 800000, "period": 100000},
           "blockIO": {"weight": 10}}
    new, decisions = clamp_resources(STRICT, res)
    assert new["memory"] == {"limit": 512 << 20, "swap": 512 << 20}
    assert new["pids"]["limit"] == 256
    assert new["cpu"]["quota"] == 200000
    assert new["blockIO"] == {"weight": 10}
    assert len(decisions) == 3


def test_within_limits_untouched():
    res = {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}}
    new, decisions = clamp_resources(STRICT, res)
    assert new == res and decisions == []


def test_flags_clamped():
    argv = ["--root", "/r", "update", "--memory", "4g", "--pids-limit=100000", "--cpu-quota", "50000", "c1"]
    new, decisions = clamp_flags(STRICT, parse(argv), argv)
    assert new == ["--root", "/r", "update", "--memory", str(512 << 20), "--pids-limit=256", "--cpu-quota", "50000",
                   "c1"]
    assert len(decisions) == 2


def test_docker_sizes():
    assert parse_docker_size("512m") == 512 << 20
    assert parse_docker_size("1G") == 1 << 30
    assert parse_docker_size("100") == 100
    assert parse_docker_size("-1") == -1
    assert parse_docker_size("lots") is None
