"""Namespaces: required new namespaces are added; joining a host namespace is refused."""

from __future__ import annotations

from ..decisions import pointer
from .context import Context
from .hostpath import gate


def _required(ctx: Context) -> list[str]:
    req = list(ctx.profile.namespaces.required)
    if ctx.profile.user.user_namespace == "required" and "user" not in req:
        req.append("user")
    return req


def namespaces(ctx: Context) -> None:
    linux = ctx.section("linux")
    nss = linux.get("namespaces")
    if not isinstance(nss, list):
        nss = []
    present = set()
    for i, ns in enumerate(nss):
        if not isinstance(ns, dict):
            continue
        kind = ns.get("type")
        present.add(kind)
        path = ns.get("path")
        if not path:
            continue
        ptr = pointer("linux", "namespaces", i, "path")
        v = gate(ctx, "namespace", path if isinstance(path, str) else str(path), ns)
        ctx.decide("namespaces", ptr, "keep" if v.ok else "refuse", path, path if v.ok else None, v.reason, v.key)
    for kind in _required(ctx):
        if kind not in present:
            nss.append({"type": kind})
            ctx.decide("namespaces", pointer("linux", "namespaces", len(nss) - 1), "tighten", None, {"type": kind},
                       f"a new {kind} namespace is required", "namespaces.required")
    linux["namespaces"] = nss
