"""Profile lint rules: each has a stable id (never reused) and its docstring is its documentation.

Lint findings do not make a profile invalid (that is `validate`); they say where
a profile is weaker than it could be.  `docs/lint-rules.md` is generated from
these docstrings by `sandbox profile lint --list-rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import tables
from .profile import Limit, Profile

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str
    field: str  # dotted key path in the profile


Rule = Callable[[Profile], Iterator[Finding]]
RULES: list[tuple[str, str, Rule]] = []
RULE_FIELDS: dict[str, str] = {}  # rule id -> the field (or section) it is about, as sandbox.core.fields names it


def rule(rule_id: str, severity: str, field: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES.append((rule_id, severity, fn))
        RULE_FIELDS[rule_id] = field
        return fn
    return register


def _f(rule_id: str, message: str) -> Finding:
    sev = next(s for i, s, _ in RULES if i == rule_id)
    return Finding(rule_id, sev, message, RULE_FIELDS[rule_id])


@rule("SBX001", "high", "capabilities")
def dangerous_capability(p: Profile) -> Iterator[Finding]:
    """SBX001 dangerous capability allowed.

    CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_NET_ADMIN
    and the like amount to root on the host or open well-known escapes (e.g. the
    "shocker" open_by_handle_at escape needs CAP_DAC_READ_SEARCH).
    Example: `capabilities: [SYS_ADMIN]`.  Fix: drop it, or grant a narrower one.
    """
    for c in p.capabilities:
        if c in tables.DANGEROUS_CAPABILITIES:
            yield _f("SBX001", f"{c} is allowed; it amounts to host root or an easy escape")


@rule("SBX002", "high", "seccomp.base")
def seccomp_none(p: Profile) -> Iterator[Finding]:
    """SBX002 no seccomp filter.

    `seccomp.base: none` without deny rules leaves every syscall reachable: the
    kernel's whole attack surface.  Fix: `base: runtime-default`.
    """
    if p.seccomp.base == "none" and not p.seccomp.deny and not p.seccomp.rules:
        yield _f("SBX002", "seccomp base is 'none': every syscall is reachable")


@rule("SBX003", "medium", "filesystem.readonly_rootfs")
def writable_root(p: Profile) -> Iterator[Finding]:
    """SBX003 writable root filesystem.

    A writable root lets a compromised workload persist tools and change its own
    binaries.  Fix: `filesystem.readonly_rootfs: true` and tmpfs for scratch space.
    """
    if not p.filesystem.readonly_rootfs:
        yield _f("SBX003", "the root filesystem stays writable")


@rule("SBX004", "medium", "resources.memory")
def no_memory_limit(p: Profile) -> Iterator[Finding]:
    """SBX004 no memory limit.

    Without `resources.memory.max` one container can exhaust the host's memory.
    """
    if p.resources.memory == Limit():
        yield _f("SBX004", "no memory limit: a container may use all host memory")


@rule("SBX005", "medium", "resources.pids")
def no_pids_limit(p: Profile) -> Iterator[Finding]:
    """SBX005 no pids limit.

    Without `resources.pids.max` a fork bomb in one container takes the host down.
    """
    if p.resources.pids == Limit():
        yield _f("SBX005", "no pids limit: a fork bomb can exhaust the host's process table")


@rule("SBX006", "medium", "seccomp.base")
def deny_list_seccomp(p: Profile) -> Iterator[Finding]:
    """SBX006 deny-list seccomp.

    `base: none` with a `deny` list allows every syscall not named, including the
    ones new kernels add.  An allow-list (`base: runtime-default`) fails closed.
    """
    if p.seccomp.base == "none" and (p.seccomp.deny or p.seccomp.rules):
        yield _f("SBX006", "seccomp is a deny-list: every syscall not named is allowed")


@rule("SBX007", "high", "no_new_privileges")
def privilege_escalation(p: Profile) -> Iterator[Finding]:
    """SBX007 privilege escalation allowed.

    `no_new_privileges: false` lets setuid binaries and file capabilities raise
    privileges inside the container.
    """
    if not p.no_new_privileges:
        yield _f("SBX007", "no_new_privileges is off: setuid binaries can raise privileges")


@rule("SBX008", "low", "user")
def root_without_userns(p: Profile) -> Iterator[Finding]:
    """SBX008 root without a user namespace.

    Root in the container is root on the host unless a user namespace maps it
    elsewhere.  Fix: `user.run_as_non_root: true` or `user.user_namespace: required`.
    """
    if not p.user.run_as_non_root and p.user.user_namespace != "required":
        yield _f("SBX008", "containers may run as host root (no user namespace required)")


@rule("SBX009", "low", "mode")
def complain_mode(p: Profile) -> Iterator[Finding]:
    """SBX009 complain mode.

    In complain mode nothing is enforced, only recorded.  Use it to roll out, not
    to run.
    """
    if p.mode == "complain":
        yield _f("SBX009", "mode is complain: decisions are recorded, nothing is enforced")


@rule("SBX010", "medium", "hooks.allow")
def host_hooks(p: Profile) -> Iterator[Finding]:
    """SBX010 host hooks allowed.

    OCI hooks run on the host as root; every allow-listed hook binary is part of
    the trusted base.
    """
    for h in p.hooks.allow:
        yield _f("SBX010", f"hook {h} may run on the host as root")


@rule("SBX011", "medium", "devices.allow")
def host_devices(p: Profile) -> Iterator[Finding]:
    """SBX011 host devices allowed.

    A host device node in a container is direct access to host hardware or kernel
    interfaces.
    """
    for d in p.devices.allow:
        yield _f("SBX011", f"host device {d} may be added")


@rule("SBX012", "high", "namespaces.required")
def host_namespaces(p: Profile) -> Iterator[Finding]:
    """SBX012 host namespace allowed.

    A container without its own pid, network, mount, ipc or uts namespace shares
    the host's.
    """
    for ns in ("pid", "network", "mount", "ipc", "uts"):
        if ns not in p.namespaces.required:
            yield _f("SBX012", f"a container may share the host's {ns} namespace")


@rule("SBX013", "low", "filesystem.bind_mounts.readonly")
def writable_binds(p: Profile) -> Iterator[Finding]:
    """SBX013 writable bind mounts.

    Host directories bound read-write let a container change host files.
    Fix: `filesystem.bind_mounts.readonly: true`.
    """
    if not p.filesystem.bind_readonly:
        yield _f("SBX013", "host bind mounts may be writable")


@rule("SBX014", "high", "seccomp.allow")
def dangerous_syscall_allowed(p: Profile) -> Iterator[Finding]:
    """SBX014 dangerous syscall explicitly allowed.

    `seccomp.allow` naming mount, ptrace, bpf, kexec, module or keyring syscalls
    re-opens what runtime-default keeps behind capabilities.
    """
    dangerous = {"mount", "umount2", "ptrace", "bpf", "kexec_load", "kexec_file_load", "init_module",
                 "finit_module", "delete_module", "open_by_handle_at", "keyctl", "add_key", "request_key",
                 "userfaultfd", "perf_event_open", "unshare", "setns", "pivot_root", "swapon", "reboot"}
    for n in p.seccomp.allow:
        if n in dangerous:
            yield _f("SBX014", f"seccomp.allow re-opens {n}")


@rule("SBX015", "low", "resources.cpu")
def no_cpu_limit(p: Profile) -> Iterator[Finding]:
    """SBX015 no CPU limit.

    Without `resources.cpu.max` one container can starve the others.
    """
    if p.resources.cpu == Limit():
        yield _f("SBX015", "no CPU limit")


@rule("SBX016", "high", "seccomp.deny")
def incomplete_deny_list(p: Profile) -> Iterator[Finding]:
    """SBX016 deny list misses another entry point to the same operation.

    Denying `mkdir` while `mkdirat` stays allowed blocks nothing; `chmod` vs
    `fchmodat`, `open` vs `openat`/`openat2`, `mount` vs the new mount API are the
    same trap.  Name every member of the family (the message lists them).
    """
    for name, rest in tables.missing_family_members(p.seccomp.deny):
        yield _f("SBX016", f"{name} is denied but {', '.join(rest)} still reach that operation")


@rule("SBX017", "high", "runc_mitigations")
def runc_mitigations_off(p: Profile) -> Iterator[Finding]:
    """SBX017 runc CVE mitigations off.

    `runc_mitigations: false` leaves shapes that known runc vulnerabilities need (a /dev that
    is not a fresh tmpfs, a cwd through /proc/self/fd, mounts nested in shared volumes) to a runc
    that may not carry the fixes (see docs/security.md).  Fix: `runc_mitigations: true`.
    """
    if not p.runc_mitigations:
        yield _f("SBX017", "config-level mitigations of known runc vulnerabilities are off")


@rule("SBX018", "medium", "unknown_config_fields")
def unknown_fields_warned(p: Profile) -> Iterator[Finding]:
    """SBX018 config fields sandbox has no rule for are only warned about.

    With `unknown_config_fields: warn`, a config.json field outside sandbox's table of what runc
    acts on (or one that reaches the host, such as net_cls class ids) is kept, with a warning.
    A newer runc could act on it unchecked.  Fix: `unknown_config_fields: refuse`.
    """
    if p.unknown_config_fields != "refuse":
        yield _f("SBX018", "config.json fields outside sandbox's table are kept with a warning")


@rule("SBX019", "medium", "filesystem.mount_types")
def extra_mount_types(p: Profile) -> Iterator[Finding]:
    """SBX019 mount types beyond what a container needs.

    `filesystem.mount_types` lets a bundle mount more filesystem types; block-device and network
    filesystems reach host storage, kernel filesystems (debugfs, bpf, securityfs) the kernel.
    Their sources still go through the host-path rules.  Fix: remove what no workload needs.
    """
    for t in p.filesystem.mount_types:
        yield _f("SBX019", f"mounts of type {t} are allowed")


METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")  # AWS, GCP, Azure, OpenStack; AWS over IPv6


def _egress_reaches(p: Profile, address: str) -> bool:
    """Whether a new connection to `address` could pass the profile's network rules."""
    from .netrules import contains

    net = p.network
    if any(d != "node" and contains(d, address) for d in net.deny_always):
        return False
    return net.egress is None or any(not r.cidr or contains(r.cidr, address) for r in net.egress)


@rule("SBX020", "medium", "network.deny_always")
def metadata_reachable(p: Profile) -> Iterator[Finding]:
    """SBX020 cloud metadata service reachable.

    169.254.169.254 (and fd00:ec2::254) hands out the node's cloud credentials to
    whoever asks.  Fix: `network.deny_always: [169.254.0.0/16, fe80::/10]`, as
    `restricted` does.
    """
    for addr in METADATA_ADDRESSES:
        if _egress_reaches(p, addr):
            yield _f("SBX020", f"the cloud metadata service at {addr} is reachable")


@rule("SBX021", "medium", "network.deny_always")
def node_reachable(p: Profile) -> Iterator[Finding]:
    """SBX021 the node is reachable.

    Without `node` in `network.deny_always` a container can connect to the node's
    own services (the kubelet, an engine's API, databases bound to the host).
    """
    if "node" not in p.network.deny_always and (p.network.egress is None or p.network.egress):
        yield _f("SBX021", "the node's own addresses are reachable (add node to deny_always)")


@rule("SBX022", "low", "network.egress")
def egress_unfiltered(p: Profile) -> Iterator[Finding]:
    """SBX022 egress not filtered.

    Without a `network.egress` allow-list a compromised container can connect to any
    address its network reaches: other pods, internal services, the internet.
    """
    if p.network.egress is None:
        yield _f("SBX022", "no egress allow-list: connections to any address are allowed")


@rule("SBX023", "medium", "network.egress")
def egress_everything(p: Profile) -> Iterator[Finding]:
    """SBX023 an egress entry allows everything.

    An entry without `cidr` (or with a /0) and without `ports` and `protocol` turns
    the allow-list into an allow-all.
    """
    for r in p.network.egress or ():
        if (not r.cidr or r.cidr.endswith("/0")) and not r.ports and not r.protocol:
            yield _f("SBX023", f"the entry {r.cidr or 'anywhere'} allows every protocol and port")


def lint(profile: Profile) -> list[Finding]:
    return [f for _, _, fn in RULES for f in fn(profile)]


def rules_by_field() -> dict[str, list[str]]:
    """Field (or section) name -> the ids of the rules about it, for the reference tables."""
    out: dict[str, list[str]] = {}
    for rule_id, field in RULE_FIELDS.items():
        out.setdefault(field, []).append(rule_id)
    return out


def rule_docs() -> list[tuple[str, str, str]]:
    """(id, severity, docstring) of every rule, for documentation."""
    return [(i, s, (fn.__doc__ or "").strip()) for i, s, fn in RULES]
