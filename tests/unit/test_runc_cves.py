"""The runc CVE table: statuses by runc version and Debian package version."""

import pytest

from sandbox.core.runc_cves import CVES, _dpkg_cmp, affected, status, upstream_at_least

HERE = ("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")  # Debian bookworm's runc, the one the tests run with


def test_this_machines_runc():
    got = {c.id: s for c, s in status(*HERE)}
    assert got["CVE-2024-21626"] == "fixed"  # Debian's backport
    assert got["CVE-2023-27561"] == got["CVE-2023-28642"] == got["CVE-2022-29162"] == "fixed"
    assert {k for k, v in got.items() if v == "affected"} == {
        "CVE-2024-45310", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"}
    assert status("1.1.5+ds1")[9][1] == "affected"  # without the package version the backport is unknown


@pytest.mark.parametrize("version,cve,expected", [
    ("1.0.0-rc6", "CVE-2019-5736", "affected"), ("1.0.0-rc7", "CVE-2019-5736", "fixed"),
    ("1.1.13", "CVE-2024-45310", "affected"), ("1.1.14", "CVE-2024-45310", "fixed"),
    ("1.2.0", "CVE-2024-45310", "fixed"), ("1.2.7", "CVE-2025-31133", "affected"),
    ("1.2.8", "CVE-2025-31133", "fixed"), ("1.3.2", "CVE-2025-31133", "affected"),
    ("1.4.0", "CVE-2025-31133", "fixed"), ("1.0.0-rc2", "CVE-2025-52565", "not affected"),
    ("1.0.0-rc92", "CVE-2024-21626", "not affected"),
])
def test_status_by_branch(version, cve, expected):
    entry = next(c for c in CVES if c.id == cve)
    assert affected(entry, version) == expected


def test_version_orders():
    assert upstream_at_least("1.1.5", "1.1.5") and upstream_at_least("1.0.0", "1.0.0-rc95")
    assert not upstream_at_least("1.0.0-rc95", "1.0.0")
    assert _dpkg_cmp("1.1.5+ds1-1+deb12u1", "1.1.5+ds1-1") > 0
    assert _dpkg_cmp("1.1.5+ds1-1+deb12u2", "1.1.5+ds1-1+deb12u1") > 0
    assert _dpkg_cmp("1.0~rc1-1", "1.0-1") < 0


def test_every_entry_says_what_sandbox_does():
    assert len({c.id for c in CVES}) == len(CVES) >= 14
    assert all(c.mitigation for c in CVES)
