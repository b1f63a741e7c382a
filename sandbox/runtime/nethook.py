"""sandbox's own createRuntime hook: load a container's nftables rules inside its network namespace.

When a profile has a network section, the transform (`sandbox.core.transform.network`) adds to
config.json a `createRuntime` hook whose path is the installed `sandbox-nethook` program and
puts the ruleset in the annotation
`org.sandbox-runtime.network`, its SHA-256 in the hook's arguments.  runc runs createRuntime
hooks on the host, as root, after it has made the container's namespaces and before
`pivot_root`, so before the workload's first instruction; a hook that fails stops the create.

Why an annotation: runc hands the hook its state on stdin, annotations included, taken from
the very config.json it is creating the container from.  Nothing else is read: no file a
container (or anyone racing the create) could write, and the hash in the hook's arguments,
which sandbox wrote into the same config.json, must match.

The hook: reads the state, checks the hash, opens /proc/<pid>/ns/net of the container's
init process, refuses the host's own namespace, enters the container's, and runs the
ruleset through libnftables (nftables' JSON API) as one transaction: the whole ruleset
applies or nothing does.  The ruleset creates table `inet sandbox`; when the namespace
already has one (a namespace the container joins, e.g. Docker's `--network container:` or
podman's `--network ns:`), the transaction fails and the existing table is accepted only if
it holds exactly these rules.

`sandbox-nethook` is csrc/sandbox-nethook.c, compiled at install (≈ 3 ms per container
start): it does the plain case itself -- hash, namespace checks, one libnftables
transaction -- and hands anything else, unchanged, to `main` below, which decides and says
why.  Where no C compiler was found, bin/sandbox-nethook (a sh launcher of `main`) is
installed instead (≈ 15 ms).

Whether a hook naming this program is sandbox's own is decided where every hook is judged: the
probe lists sandbox's own hook programs (`host.OWN_HOOK_PROGRAMS`, trust-checked: root-owned, with
what they run, and unwritable by others) in `HostFacts.own_hooks`, and the host-path gate
(`transform/hostpath.py`) keeps a hook only through that list.

Only `os` and `sys` at the top: the hook's own start is on every container create.
"""

from __future__ import annotations

import os
import sys

from ..core.hostfacts import NETWORK_HOOK as HOOK_NAME
from ..errors import InspectError, SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

CLONE_NEWNET = 0x40000000
NFT_CTX_OUTPUT_JSON = 1 << 4
MAX_STATE_BYTES = 4 << 20
LIST_TABLE = '{"nftables": [{"list": {"table": {"family": "inet", "name": "sandbox"}}}]}'
# where sandbox-nethook and verify look for nft / nsenter (the hook's environment is ours: no PATH games)
SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


class HookError(SandboxError):
    """The hook cannot load the rules: the container must not start."""


# --- the hook ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        sha256, runtime_netns = _arguments(args)
        load(sha256, _read_state(sys.stdin.buffer), runtime_netns)
    except HookError as e:
        sys.stderr.write(f"{HOOK_NAME}: {e}\n")
        return 1
    except Exception as e:  # noqa: BLE001 - whatever it is, the container must not start
        sys.stderr.write(f"{HOOK_NAME}: internal error ({e.__class__.__name__}): {e}\n")
        return 1
    return 0


def _arguments(args: list[str]) -> tuple[str, tuple[int, int] | None]:
    """`--sha256 HEX [--runtime-netns DEV:INO]` -> (HEX, (dev, ino) or None)."""
    usage = f"usage: {HOOK_NAME} --sha256 HEX [--runtime-netns DEV:INO] (state on stdin); got {' '.join(args)!r}"
    if len(args) not in (2, 4) or args[0] != "--sha256" or len(args[1]) != 64:
        raise HookError(usage)
    if len(args) == 2:
        return args[1], None
    dev, colon, ino = args[3].partition(":")
    if args[2] != "--runtime-netns" or not colon or not dev.isdigit() or not ino.isdigit():
        raise HookError(usage)
    return args[1], (int(dev), int(ino))


def _read_state(stream: BinaryIO) -> dict[str, Any]:
    from .. import _fastjson

    data = stream.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise HookError("the container state on stdin is too large")
    try:
        state = _fastjson.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HookError(f"cannot read the container state on stdin: {e}") from None
    if not isinstance(state, dict):
        raise HookError("the container state on stdin is not a JSON object")
    return state


def load(expected_sha256: str, state: dict[str, Any], runtime_netns: tuple[int, int] | None = None) -> None:
    """Load the ruleset the state's annotation carries into the namespace of the state's pid."""
    from .. import _fastjson
    from ..core.netrules import ANNOTATION
    from ..digest import sha256_hex

    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise HookError(f"the container state names no process (pid {pid!r})")
    text = (state.get("annotations") or {}).get(ANNOTATION)
    if not isinstance(text, str):
        raise HookError(f"the container has no {ANNOTATION} annotation to load")
    if sha256_hex(text.encode("utf-8")) != expected_sha256:
        raise HookError(f"the {ANNOTATION} annotation is not the ruleset sandbox wrote (SHA-256 differs)")
    document = _fastjson.loads(text)
    enter_network_namespace(pid, runtime_netns)
    nft = Nft()
    ok, _, error = nft.run(text)
    if ok:
        return
    # the namespace may be one the container joins, holding a table already: fine if it is this one
    listed, listing, _ = nft.run(LIST_TABLE)
    if listed:
        from ..core.netrules import normalize

        if normalize(_fastjson.loads(listing)) == normalize(document):
            return
        raise HookError("the network namespace already holds other sandbox rules (another container's); "
                        "refusing to replace or add to them")
    raise HookError(f"cannot load the network rules: {error.strip() or 'nftables refused them'}")


def enter_network_namespace(pid: int, runtime_netns: tuple[int, int] | None = None) -> None:
    """setns(2) into /proc/<pid>/ns/net, refusing the host's network namespace (init's) and the one
    sandbox-runc was started in (`runtime_netns`, probed before it entered a pod's on purpose; without it,
    the hook's own)."""
    import ctypes

    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise HookError(f"cannot open the network namespace of process {pid}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        target = (st.st_dev, st.st_ino)
        # sandbox-runc runs runc inside a strict pod's network namespace on purpose (entered before runc,
        # where the pod's rules belong), so "the hook's own namespace" is the host's only when sandbox did
        # not say which namespace it was started in
        forbidden = [(runtime_netns or _ns_identity("/proc/self/ns/net"), "the runtime's own")]
        try:  # init's is out of reach in another pid namespace, or without ptrace rights over it
            forbidden.insert(0, (_ns_identity("/proc/1/ns/net"), "the host's"))
        except OSError:
            pass
        for ident, whose in forbidden:
            if target == ident:
                raise HookError(f"process {pid} is in {whose} network namespace; no rules are loaded there")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise HookError(f"cannot enter the network namespace of process {pid}: {os.strerror(err)}")
    finally:
        os.close(fd)
    if _ns_identity("/proc/self/ns/net") != target:
        raise HookError("entering the container's network namespace did not take effect")


def _ns_identity(path: str) -> tuple[int, int]:
    """(device, inode): what tells namespaces apart."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Nft:
    """libnftables (nftables' own library) with JSON input and output, in this process's namespace.

    Made after `enter_network_namespace`: its netlink socket belongs to the namespace it is
    opened in.
    """

    def __init__(self) -> None:
        import ctypes

        try:
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError as e:
            raise HookError(f"cannot load libnftables (install nftables): {e}") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise HookError("cannot make an nftables context")
        lib.nft_ctx_output_set_flags(self.ctx, NFT_CTX_OUTPUT_JSON)  # JSON in and out
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, command: str) -> tuple[bool, str, str]:
        """(succeeded, output, error) of one batch: a JSON document is one transaction."""
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, command.encode("utf-8"))
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode("utf-8", "replace")
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode("utf-8", "replace")
        return rc == 0, out, err


# --- reading the live rules (sandbox verify) ------------------------------------------------------

def system_tool(name: str) -> str | None:
    for d in SYSTEM_DIRS:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def live_ruleset(pid: int) -> dict[str, Any]:
    """`nft -j list ruleset` run inside the network namespace of `pid` (via nsenter), as data."""
    import json
    import subprocess

    nsenter, nft = system_tool("nsenter"), system_tool("nft")
    if not nsenter or not nft:
        raise InspectError("nsenter and nft are needed to read a container's rules (util-linux, nftables)")
    res = subprocess.run([nsenter, f"--net=/proc/{pid}/ns/net", "--", nft, "-j", "list", "ruleset"],
                         capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise InspectError(f"cannot read the rules of process {pid}: {res.stderr.strip() or res.returncode}")
    try:
        listing: dict[str, Any] = json.loads(res.stdout or '{"nftables": []}')
    except ValueError as e:
        raise InspectError(f"nft gave unreadable JSON: {e}") from None
    return listing


if __name__ == "__main__":
    sys.exit(main())
