"""Enforcement decisions: what the transform kept, changed or refused, and why."""

from __future__ import annotations

from .._record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    Action = Literal["keep", "set", "tighten", "drop", "refuse", "warn"]
ACTIONS: tuple[str, ...] = ("keep", "set", "tighten", "drop", "refuse", "warn")


@record
class Decision:
    control: str  # capabilities, seccomp, user, mounts, namespaces, resources, devices, sysctls, hooks, ...
    pointer: str  # JSON pointer into config.json (RFC 6901)
    action: Action
    before: Any
    after: Any
    reason: str
    rule: str = ""  # "<profile name> (<file>)" and the key that demanded it
    applied: bool = True  # False in complain mode: recorded, not done

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "pointer": self.pointer,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "rule": self.rule,
            "applied": self.applied,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(
            control=d["control"], pointer=d["pointer"], action=d["action"], before=d.get("before"),
            after=d.get("after"), reason=d.get("reason", ""), rule=d.get("rule", ""),
            applied=d.get("applied", True),
        )


# The rootfs path runc is given when sandbox prepares the rootfs for a user namespace it added:
# it exists only in the runtime's own mount namespace (sandbox.host.mountns).
ROOTFS_TARGET = "/run/sandbox-rootfs"


@record
class RootfsPrep:
    """A view of the engine's rootfs that the container's mapped root can reach and own."""

    kind: str  # idmapped-bind | idmapped-overlay | bind
    source: str  # the engine's rootfs (host path)
    target: str = ROOTFS_TARGET
    layers: tuple[str, ...] = ()  # idmapped-overlay: the engine's layers, topmost first
    overlay_options: tuple[str, ...] = ()


@record
class RuntimePrep:
    """What the process that runs runc must do first, because the transform added a user namespace:
    the edge (sandbox.host.mountns) does it in a mount namespace of the runtime's own."""

    uid_mappings: tuple[Any, ...] = ()  # IdMapping: the idmap of the rootfs view
    gid_mappings: tuple[Any, ...] = ()
    rootfs: RootfsPrep | None = None
    # (namespace type, path): runc starts inside these (network, ipc, uts) instead of joining them
    enter: tuple[tuple[str, str], ...] = ()


@record
class Outcome:
    """The result of applying a profile: the hardened config and the decisions in order."""

    config: dict[str, Any]
    decisions: list[Decision] = field(default_factory=list)
    prep: RuntimePrep | None = None  # None: runc needs nothing prepared

    @property
    def refusals(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "refuse"]

    @property
    def refused(self) -> bool:
        return any(d.action == "refuse" and d.applied for d in self.decisions)


def pointer(*parts: str | int) -> str:
    """Build an RFC 6901 JSON pointer from path parts."""
    out = []
    for p in parts:
        s = str(p).replace("~", "~0").replace("/", "~1")
        out.append(s)
    return "/" + "/".join(out)
