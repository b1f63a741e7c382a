"""Shared state of one `apply` run: the config being hardened and the decisions so far."""

from __future__ import annotations

from ..decisions import Decision

TYPE_CHECKING = False
if TYPE_CHECKING:
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

    def realpath(self, path: str) -> str:
        """The host's resolution of `path` when the edge gave one, else a lexical one.

        Lexically, the well-known aliases are folded (/var/run is /run on every
        current distribution) so that an unresolved alias is never a way around
        a forbidden path.
        """
        if path in self.host.realpaths:
            return self.host.realpaths[path]
        p = _normpath("/" + path.lstrip("/"))
        for alias, target in (("/var/run", "/run"), ("/var/lock", "/run/lock")):
            if p == alias or p.startswith(alias + "/"):
                p = target + p[len(alias):]
        return p


def _normpath(path: str) -> str:
    """posixpath.normpath for absolute paths, without importing anything."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)
