"""Published runc vulnerabilities since 2019, which runc versions they affect, and what sandbox does.

Pure data and a lookup: `status(runc_version, package_version)` answers, for every entry, whether
that runc is affected ("affected"), carries the fix ("fixed") or is outside the affected range
("not affected"), and what sandbox applies against it.  `runc_version` is what `runc --version`
prints on its first line ("1.1.5+ds1"); `package_version` is the distribution package's version
when known ("1.1.5+ds1-1+deb12u1"), which decides for fixes a distribution backported.

Sources: the runc security advisories (GHSA), runc's CHANGELOG, Debian's changelog of the runc
package (/usr/share/doc/runc/changelog.Debian.gz).
"""

from __future__ import annotations

from .._record import record


@record
class RuncCve:
    id: str
    summary: str
    introduced: str  # first affected upstream version ("" = all known)
    fixed: tuple[str, ...]  # upstream releases carrying the fix, one per maintained branch
    debian: tuple[str, ...] = ()  # Debian package versions that backport the fix
    rootless_only: bool = False
    mitigation: str = ""  # what sandbox does about it (profile key runc_mitigations unless said)
    tests: tuple[str, ...] = ()  # where that is tested


CVES: tuple[RuncCve, ...] = (
    RuncCve("CVE-2019-5736", "a container process overwrites the host runc binary through /proc/self/exe",
            "", ("1.0.0-rc7",),
            mitigation="none needed beyond the fix (runc re-executes itself from a sealed memfd copy)"),
    RuncCve("CVE-2019-16884", "AppArmor bypass: a rootfs whose /proc is a symlink makes runc mount procfs elsewhere",
            "", ("1.0.0-rc9",),
            mitigation="a proc, sysfs, cgroup, devpts or mqueue mount (or /dev) whose destination is a symlink in "
                       "the rootfs is refused",
            tests=("tests/e2e/oracle/test_attacks.py::cve_2019_16884_proc_symlink",
                   "tests/unit/test_hostpath.py::test_cve_class_system_mount_on_symlink_is_refused")),
    RuncCve("CVE-2019-19921", "volume mounts racing with a symlinked /proc (mount-destination race)",
            "", ("1.0.0-rc10",),
            mitigation="as CVE-2019-16884; nested mounts inside a writable bind mount are refused",
            tests=("tests/unit/test_hostpath.py::test_cve_class_nested_in_writable_bind_is_refused",)),
    RuncCve("CVE-2021-30465", "symlink-exchange race in mount destinations lets a bind mount land on the host",
            "", ("1.0.0-rc95",),
            mitigation="nested mounts inside a writable bind mount are refused (the race needs a shared volume)",
            tests=("tests/unit/test_hostpath.py::test_cve_class_nested_in_writable_bind_is_refused",)),
    RuncCve("CVE-2021-43784", "integer overflow in runc's netlink encoding of config data (bind-mount sources)",
            "", ("1.0.3",), mitigation="none needed beyond the fix"),
    RuncCve("CVE-2022-29162", "`runc exec --cap` left inheritable capabilities set, so an exec'd binary with file "
            "capabilities could gain them", "", ("1.1.2",),
            mitigation="the inheritable capability set is emptied",
            tests=("tests/e2e/oracle (CapInh=0 checked on every run)",
                   "tests/unit/test_hostpath.py::test_inheritable_capabilities_emptied")),
    RuncCve("CVE-2023-25809", "rootless runc: /sys/fs/cgroup writable when the cgroup namespace is not unshared",
            "", ("1.1.5",), rootless_only=True,
            mitigation="cgroup and sysfs mounts are made read-only (filesystem.readonly_system_mounts)"),
    RuncCve("CVE-2023-27561", "CVE-2019-19921 again: a symlinked /proc mount destination (regression in 1.0.0-rc95)",
            "1.0.0-rc95", ("1.1.5",),
            mitigation="as CVE-2019-16884",
            tests=("tests/e2e/oracle/test_attacks.py::cve_2019_16884_proc_symlink",)),
    RuncCve("CVE-2023-28642", "AppArmor/SELinux bypass with a symlinked /proc (regression)", "1.0.0-rc95", ("1.1.5",),
            mitigation="as CVE-2019-16884",
            tests=("tests/e2e/oracle/test_attacks.py::cve_2019_16884_proc_symlink",)),
    RuncCve("CVE-2024-21626", "file descriptors leaked into runc init: process.cwd or the executable under "
            "/proc/self/fd/N reaches the host's filesystem", "1.0.0-rc93", ("1.1.12",),
            debian=("1.1.5+ds1-1+deb12u1",),
            mitigation="process.cwd and process.args[0] through /proc/*/fd, /proc/*/cwd, /proc/*/root or /dev/fd "
                       "are refused, in config.json and in the process `runc exec` is given (--cwd, --process)",
            tests=("tests/e2e/oracle/test_attacks.py::cve_2024_21626_cwd",
                   "tests/e2e/oracle/test_attacks.py::test_cve_2024_21626_is_fixed_in_this_runc",
                   "tests/e2e/test_runc_argv_bypasses.py::test_bypass_cwd_in_proc_cve_2024_21626_is_refused")),
    RuncCve("CVE-2024-45310", "racing a shared volume makes runc create empty files or directories on the host",
            "", ("1.1.14", "1.2.0-rc.3"),
            mitigation="a mount whose destination lies inside a writable bind mount is refused",
            tests=("tests/e2e/oracle/test_attacks.py::cve_2024_45310_nested_in_shared_volume",)),
    RuncCve("CVE-2025-31133", "maskedPaths are masked with the container's /dev/null: an image (or a racing "
            "container) that makes it a symlink gets the target bind-mounted read-write instead",
            "", ("1.2.8", "1.3.3", "1.4.0-rc.3"),
            mitigation="/dev is always a fresh tmpfs (added when the bundle has none; anything else at /dev is "
                       "refused), so runc makes /dev/null itself",
            tests=("tests/e2e/oracle/test_attacks.py::test_cve_2025_31133_masked_path_redirect",
                   "tests/e2e/oracle/test_attacks.py::dev_not_a_tmpfs")),
    RuncCve("CVE-2025-52565", "the /dev/console bind mount follows a symlink an attacker puts at /dev/pts/N",
            "1.0.0-rc3", ("1.2.8", "1.3.3", "1.4.0-rc.3"),
            mitigation="/dev is a fresh tmpfs and /dev/pts a fresh devpts instance (binds there refused), no "
                       "joining another process's mount namespace: no other process can reach them while runc "
                       "sets the console up",
            tests=("tests/unit/test_hostpath.py::test_cve_class_dev_is_always_a_fresh_tmpfs",)),
    RuncCve("CVE-2025-52881", "writes runc makes to /proc (LSM labels, sysctls) redirected through racing shared "
            "mounts", "", ("1.2.8", "1.3.3", "1.4.0-rc.3"),
            mitigation="partial: bind mounts onto /proc are refused, mounts nested in a writable bind mount are "
                       "refused, shared propagation becomes slave; a racing container on a shared volume elsewhere "
                       "remains possible until runc is upgraded",
            tests=("tests/e2e/oracle/test_attacks.py::cve_2025_52881_bind_onto_proc",)),
)


def _split(v: str) -> list[object]:
    """Version parts for ordering upstream versions: 1.0.0-rc95 < 1.0.0 < 1.0.1; "+ds1" is ignored."""
    v = v.split("+", 1)[0].lstrip("v")
    main, _, pre = v.partition("-")
    parts: list[object] = [int(x) if x.isdigit() else x for x in main.split(".")]
    parts += [0] * (3 - len(parts))
    if pre:
        digits = "".join(c for c in pre if c.isdigit())
        parts += [0, int(digits or 0)]  # a pre-release sorts before the release
    else:
        parts += [1, 0]
    return parts


def upstream_at_least(version: str, other: str) -> bool:
    return _split(version) >= _split(other)  # type: ignore[operator]


def _dpkg_cmp(a: str, b: str) -> int:
    """dpkg's version order (epoch, upstream and revision compared with dpkg's rules for ~ and letters)."""
    def parse(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), up, rev

    def order(c: str) -> int:
        if c == "~":
            return -1
        if c.isdigit():
            return 0
        if c.isalpha():
            return ord(c)
        return ord(c) + 256

    def cmp_part(x: str, y: str) -> int:
        i = j = 0
        while i < len(x) or j < len(y):
            while (i < len(x) and not x[i].isdigit()) or (j < len(y) and not y[j].isdigit()):
                cx = order(x[i]) if i < len(x) and not x[i].isdigit() else 0
                cy = order(y[j]) if j < len(y) and not y[j].isdigit() else 0
                if cx != cy:
                    return cx - cy
                i += i < len(x) and not x[i].isdigit()
                j += j < len(y) and not y[j].isdigit()
            nx = ny = ""
            while i < len(x) and x[i].isdigit():
                nx += x[i]
                i += 1
            while j < len(y) and y[j].isdigit():
                ny += y[j]
                j += 1
            if int(nx or 0) != int(ny or 0):
                return int(nx or 0) - int(ny or 0)
        return 0

    ea, ua, ra = parse(a)
    eb, ub, rb = parse(b)
    return (ea - eb) or cmp_part(ua, ub) or cmp_part(ra, rb)


def affected(cve: RuncCve, runc_version: str, package_version: str | None = None) -> str:
    """"affected", "fixed" or "not affected" (older than the flaw) for one runc.

    A fix released on this runc's branch (same major.minor) counts from that release on; a branch
    newer than every fixed branch carries the fix; any other runc is affected unless its package
    backports the fix (`debian`)."""
    if cve.introduced and not upstream_at_least(runc_version, cve.introduced):
        return "not affected"
    branch = _split(runc_version)[:2]
    same = [f for f in cve.fixed if _split(f)[:2] == branch]
    if same:
        if upstream_at_least(runc_version, same[0]):
            return "fixed"
    elif all(_split(f)[:2] < branch for f in cve.fixed):  # type: ignore[operator]
        return "fixed"
    if package_version and any(_same_stream(package_version, d) and _dpkg_cmp(package_version, d) >= 0
                               for d in cve.debian):
        return "fixed"
    return "affected"


def _same_stream(package_version: str, backport: str) -> bool:
    """A Debian backport speaks for package versions of the same upstream version."""
    return package_version.split("-", 1)[0] == backport.split("-", 1)[0]


def status(runc_version: str, package_version: str | None = None) -> list[tuple[RuncCve, str]]:
    """(entry, "affected" | "fixed" | "not affected") for every known runc CVE, in table order."""
    return [(cve, affected(cve, runc_version, package_version)) for cve in CVES]
