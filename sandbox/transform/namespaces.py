"""Namespaces: required new namespaces are added; joining a host namespace is refused."""

from __future__ import annotations

from ..decisions import pointer
from .context import Context


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
        is_host = ctx.host.host_namespaces.get(path)
        ptr = pointer("linux", "namespaces", i, "path")
        if is_host is False:
            ctx.decide("namespaces", ptr, "keep", path, path,
                       f"joins an existing {kind} namespace that is not the host's (a shared pod namespace)",
                       "namespaces.required")
        else:
            why = "is the host's own" if is_host else "cannot be checked to be other than the host's"
            ctx.decide("namespaces", ptr, "refuse", path, None,
                       f"joining the {kind} namespace at {path}, which {why}", "namespaces.required")
    for kind in _required(ctx):
        if kind not in present:
            nss.append({"type": kind})
            ctx.decide("namespaces", pointer("linux", "namespaces", len(nss) - 1), "tighten", None, {"type": kind},
                       f"a new {kind} namespace is required", "namespaces.required")
    linux["namespaces"] = nss
