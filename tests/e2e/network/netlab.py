"""A private network for the network-policy tests: namespaces, veths and servers made here, torn down after.

Traffic only ever goes between network namespaces this module creates, to addresses it
assigns there: a random IPv6 ULA /64 (never the host's own prefixes), server `::1` (and
`::3`, a second resolver the container may not use) in the "server" namespace, client `::2`
on the other end of a veth.  Nothing is created in the host's network namespace: the veth is
made inside the server namespace with its peer directly in the client's.  Every probe is one
attempt with a short timeout (netprobe.c).

`python -m tests.e2e.network.netlab serve --tcp P --udp P --dns ADDR ...` is the server side (run
inside the server namespace by `NetLab.start_servers`): TCP listeners that accept and
close, and on each ADDR a UDP echo on every --udp port and a tiny DNS responder on port 53
that answers every query.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
TCP_OK, TCP_NO, UDP_OK, UDP_NO = 17080, 17081, 17090, 17091
NSENTER = "/usr/bin/nsenter"
NFT = "/usr/sbin/nft"


def ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")


def random_prefix() -> str:
    """A random ULA /64 (fdXX:XXXX:XXXX:1::/64; never fd00::/8's all-zero ids the host may use), written
    canonically, as nft lists it."""
    while True:
        g = os.urandom(5)
        if g[0] != 0:
            return f"fd{g[0]:02x}:{(g[1] << 8) | g[2]:x}:{(g[3] << 8) | g[4]:x}:1"


class NetLab:
    def __init__(self, tcp: tuple[int, ...] = (), udp: tuple[int, ...] = ()) -> None:
        """`tcp`, `udp`: the server ports, listened on once the first veth gives the server its addresses."""
        self.ports = (tcp, udp)
        tag = uuid.uuid4().hex[:8]
        self.server_ns = f"sbxnet-s-{tag}"
        self.tag = tag
        self.prefix = random_prefix()
        self.server = f"{self.prefix}::1"
        self.other = f"{self.prefix}::3"  # a second resolver, not allowed
        self.client = f"{self.prefix}::2"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self._veths = 0

    # -- topology ------------------------------------------------------------------------------
    def netns(self, name: str | None = None) -> str:
        """A new named network namespace with lo up; returns its path (/run/netns/NAME)."""
        name = name or f"sbxnet-c-{self.tag}-{len(self.namespaces)}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return f"/run/netns/{name}"

    def up(self) -> NetLab:
        self.netns(self.server_ns)
        return self

    def connect(self, target: str, client: str | None = None) -> str:
        """A veth from the server namespace into `target` (a /run/netns path or a pid), addressed; the
        client address assigned (default self.client)."""
        self._veths += 1
        a, b = f"sbxs{self._veths}{self.tag[:4]}", f"sbxc{self._veths}{self.tag[:4]}"
        peer_ns = target.rsplit("/", 1)[1] if target.startswith("/run/netns/") else target
        ip("-n", self.server_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", peer_ns)
        if self._veths == 1:
            ip("-n", self.server_ns, "addr", "add", f"{self.server}/64", "dev", a, "nodad")
            ip("-n", self.server_ns, "addr", "add", f"{self.other}/64", "dev", a, "nodad")
        ip("-n", self.server_ns, "link", "set", a, "up")
        if self._veths == 1 and any(self.ports):
            self.start_servers(*self.ports, dns=(self.server, self.other))
        inside = ["nsenter", f"--net={target if target.startswith('/') else f'/proc/{target}/ns/net'}", "--"]
        # Docker turns IPv6 off in the namespaces it makes for containers without an IPv6 network
        for args in (["sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=0"],
                     ["ip", "addr", "add", f"{client or self.client}/64", "dev", b, "nodad"],
                     ["ip", "link", "set", b, "up"]):
            res = subprocess.run([*inside, *args], capture_output=True, text=True, timeout=30)
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(inside + args)}: {res.stderr.strip()}")
        return b

    def start_servers(self, tcp: tuple[int, ...], udp: tuple[int, ...], dns: tuple[str, ...]) -> None:
        """TCP listeners on `tcp`, and on each of `dns` a UDP echo on `udp` and a DNS responder."""
        args = [NSENTER, f"--net=/run/netns/{self.server_ns}", "--", sys.executable, "-m", "tests.e2e.network.netlab",
                "serve"]
        for p in tcp:
            args += ["--tcp", str(p)]
        for p in udp:
            args += ["--udp", str(p)]
        for a in dns:
            args += ["--dns", a]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"the test servers did not start: {line} {proc.stderr.read() if proc.stderr else ''}")

    def down(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)

    # -- looking at the rules ----------------------------------------------------------------------
    @staticmethod
    def ruleset(target: str) -> dict:
        """`nft -j list ruleset` in `target` (a /run/netns path or a pid)."""
        path = target if target.startswith("/") else f"/proc/{target}/ns/net"
        res = subprocess.run([NSENTER, f"--net={path}", "--", NFT, "-j", "list", "ruleset"], capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    @staticmethod
    def counters(listing: dict, chain: str = "output") -> list[tuple[str, int]]:
        """(verdict and first match, packets) of each counted rule of table inet sandbox's `chain`."""
        out = []
        for item in listing.get("nftables", []):
            rule = item.get("rule")
            if not rule or rule.get("table") != "sandbox" or rule.get("chain") != chain:
                continue
            counter = next((e["counter"] for e in rule["expr"] if "counter" in e), None)
            if counter is None:
                continue
            verdict = next(k for e in rule["expr"] for k in e if k in ("accept", "drop"))
            match = json.dumps(rule["expr"][0].get("match", {}).get("right", "")) if rule["expr"] else ""
            out.append((f"{verdict} {match}", counter["packets"]))
        return out


# -- what the tests run and check ---------------------------------------------------------------------

def lab_profile(lab, path, name="net-lab", extends="restricted", extra=""):
    path.write_text(f"""apiVersion: sandbox/v1
kind: Profile
name: {name}
extends: {extends}
network:
  egress:
    - {{cidr: "{lab.server}", ports: [{TCP_OK}]}}
    - {{cidr: "{lab.server}", protocol: udp, ports: [{UDP_OK}]}}
  dns: ["{lab.server}"]
{extra}""")
    os.chmod(path, 0o644)
    return str(path)


def probe_script(lab):
    s, o = lab.server, lab.other
    steps = [f"tcp {s} {TCP_OK}", f"tcp {s} {TCP_NO}", f"udp {s} {UDP_OK}", f"udp {s} {UDP_NO}", f"dns {s} 53",
             f"dns {o} 53"]
    return "; ".join(f"/netprobe {step} 1000" for step in steps) + "; echo probes-done"


def results(out):
    """{(kind, port or resolver): ok | refused | timeout | eperm | error:...} from netprobe's lines."""
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("tcp", "udp", "dns"):
            got[(parts[0], parts[2] if parts[0] != "dns" else parts[1])] = parts[3]
    return got


def expect_only_allowed(lab, got):
    """What the lab profile allows answers; the rest does not."""
    assert got[("tcp", str(TCP_OK))] == "ok", got
    assert got[("udp", str(UDP_OK))] == "ok", got
    assert got[("dns", lab.server)] == "ok", got
    for key in (("tcp", str(TCP_NO)), ("udp", str(UDP_NO)), ("dns", lab.other)):
        assert got[key] != "ok", (key, got)
    assert len(got) == 6, got


def expect_kernel_drops(lab, target, at_least=3):
    """The final `counter drop` of the output chain counted the denied attempts; the accepts counted theirs."""
    counters = NetLab.counters(NetLab.ruleset(target))
    final_drop = [n for what, n in counters if what == 'drop ""']
    accepted = [n for what, n in counters if what.startswith("accept") and lab.server in what]
    assert final_drop and final_drop[-1] >= at_least, counters
    assert accepted and sum(accepted) >= 3, counters  # tcp, udp and dns to the allowed server
    return counters


def expect_filtered(lab, out, target, recorded=None):
    """The probes ran to the end, only the allowed traffic answered, the kernel counted the drops, and
    (with `recorded`, the ruleset text the decisions hold) the rules in force are those."""
    assert "probes-done" in out, out
    expect_only_allowed(lab, results(out))
    counters = expect_kernel_drops(lab, target)
    if recorded is not None:
        from sandbox.core import netrules

        assert netrules.to_text(NetLab.ruleset(target)) == recorded, counters
    return counters


# -- the server side -----------------------------------------------------------------------------

def _dns_answer(query: bytes) -> bytes:
    """NOERROR, the question echoed, no answers: enough for a client to see a reply."""
    if len(query) < 12:
        return b""
    qdcount = int.from_bytes(query[4:6], "big")
    return query[:2] + b"\x81\x80" + qdcount.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00" + query[12:]


def serve(tcp: list[int], udp: list[int], dns: list[str]) -> None:
    import selectors
    import socket

    sel = selectors.DefaultSelector()
    for port in tcp:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ, "tcp")
    # UDP sockets bound to each address: a reply must come from the address the query went to
    for addr in dns:
        for port, kind in [(p, "udp") for p in udp] + [(53, "dns")]:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            for attempt in range(50):  # the address may still be settling
                try:
                    s.bind((addr, port))
                    break
                except OSError:
                    if attempt == 49:
                        raise
                    time.sleep(0.05)
            sel.register(s, selectors.EVENT_READ, kind)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if key.data == "tcp":
                conn, _ = sock.accept()  # type: ignore[union-attr]
                conn.close()
            else:
                data, peer = sock.recvfrom(512)  # type: ignore[union-attr]
                sock.sendto(data if key.data == "udp" else _dns_answer(data), peer)  # type: ignore[union-attr]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["serve"])
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--udp", type=int, action="append", default=[])
    ap.add_argument("--dns", action="append", default=[])
    a = ap.parse_args()
    serve(a.tcp, a.udp, a.dns)
