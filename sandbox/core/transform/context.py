"""Shared state of one `apply` run: the config being hardened and the decisions so far."""

from __future__ import annotations

from ..decisions import Decision

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ..decisions import Action, RuntimePrep
    from ..hostfacts import HostFacts
    from ..profile import Profile



class Context:
    __slots__ = ("profile", "config", "host", "decisions", "userns_added", "prep")

    def __init__(self, profile: Profile, config: dict[str, Any], host: HostFacts) -> None:
        self.profile = profile
        self.config = config
        self.host = host
        self.decisions: list[Decision] = []
        self.userns_added = False  # the bundle had no user namespace and the transform gave it one
        self.prep: RuntimePrep | None = None  # what the runtime must prepare before runc (user namespaces)

    def decide(self, control: str, ptr: str, action: Action, before: Any, after: Any, reason: str,
               key: str = "") -> None:
        rule = self.profile.rule + (f": {key}" if key else "")
        self.decisions.append(Decision(control, ptr, action, before, after, reason, rule))

    def section(self, *path: str) -> dict[str, Any]:
        """The mapping at `path`, created (as empty mappings) where missing."""
        node = self.config
        for p in path:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                node[p] = nxt
            node = nxt
        return node

    def get(self, *path: str | int) -> Any:
        node: Any = self.config
        for p in path:
            if isinstance(node, dict) and isinstance(p, str):
                node = node.get(p)
            elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
                node = node[p]
            else:
                return None
        return node

    def fold(self, path: str) -> str:
        """A normalised absolute path with the well-known aliases folded (/var/run is /run on every
        current distribution), so that an unresolved alias is never a way around a forbidden path."""
        for alias, target in (("/var/run", "/run"), ("/var/lock", "/run/lock")):
            if path == alias or path.startswith(alias + "/"):
                return target + path[len(alias):]
        return path

    def unknown(self, control: str, ptr: str, before: Any, reason: str) -> None:
        """A field sandbox has no rule for, or one that reaches beyond the container: refused or
        warned about, as the profile's unknown_config_fields says."""
        action: Action = "refuse" if self.profile.unknown_config_fields == "refuse" else "warn"
        self.decide(control, ptr, action, before, None if action == "refuse" else before, reason,
                    "unknown_config_fields")


def walk(path: str) -> Iterator[list[str]]:
    """The components of `path` after each step the kernel takes (`..` pops), without importing anything."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
        yield parts


def _normpath(path: str) -> str:
    """posixpath.normpath for absolute paths."""
    steps = list(walk(path))  # every step yields the one list, as it is at the end
    return "/" + "/".join(steps[-1]) if steps else "/"
