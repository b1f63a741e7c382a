"""Where the sandbox agent listens, and whether it answers: what `create` asks before routing to it.

Light on purpose: `sandbox-runc create` imports this only for profiles that need the agent
(complain mode, `monitor.*`).  The agent itself is `sandbox.runtime.agent`.
"""

from __future__ import annotations

import os

DEFAULT_SOCKET = "/run/sandbox/agent.sock"
START_HINT = "start it with `sandbox agent start`"


def socket_path() -> str | None:
    """$SANDBOX_AGENT_SOCKET, else the default; None when set to `off`."""
    path = os.environ.get("SANDBOX_AGENT_SOCKET") or DEFAULT_SOCKET
    return None if path == "off" else os.path.abspath(path)


def reachable() -> dict[str, str | None]:
    """HostFacts' agent fields: the socket, the same when a trusted agent answers there, why not."""
    from .unixsock import ping, trusted_socket_problem

    path = socket_path()
    if path is None:
        return {"agent_socket": None, "agent": None,
                "agent_problem": "the sandbox agent is turned off (SANDBOX_AGENT_SOCKET=off)"}
    problem = trusted_socket_problem(path)
    if problem:
        return {"agent_socket": path, "agent": None,
                "agent_problem": f"the sandbox agent cannot be used: {problem}; {START_HINT}"}
    info = ping(path)
    if info is None or info.get("service") != "agent":
        return {"agent_socket": path, "agent": None,
                "agent_problem": f"no sandbox agent answers at {path}; {START_HINT}"}
    return {"agent_socket": path, "agent": path, "agent_problem": ""}
