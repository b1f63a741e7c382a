#!/usr/bin/env python3
"""Capture the config.json real engines hand their runtime, for oci/ and the workload suite.

Run as root after scripts/setup.sh, under the shared lock (it starts private daemons):

    flock /tmp/sandbox-heavy.lock .venv/bin/python scripts/capture-engine-config.py [--out oci] [ENGINE ...]

ENGINE is one or more of (default: all):

    docker-20.10                        `docker run --network none IMAGE true` (Docker's default
                                        seccomp profile, capabilities, masked paths, ...)
    containerd-1.6-ctr                  `ctr run --seccomp IMAGE ID true` (containerd's default spec
                                        and its default seccomp profile)
    containerd-1.6-cri-runtime-default  a pod's container through the CRI plugin with
                                        `seccompProfile: RuntimeDefault` (what the kubelet sends)

Each engine is the private instance the e2e tests use (tests/e2e/daemons.py, tests/e2e/cri/harness.py:
its own root, state, sockets, cgroup parent, removed afterwards; nothing of the host's engines is
used), with one extra runtime, a capturing runtime: a shell script that copies the bundle's
config.json on `create` and execs the real runc, so the config is exactly the one runc ran.

The private daemons' paths are then made neutral: the temporary base directories become the engines'
default locations (/var/lib/docker, /run/docker, /var/lib/containerd, /run/containerd, the kubelet's
cgroup parent ...) and random container, pod and network ids become fixed placeholders, so a re-capture
differs from the committed file only where the engine changed.  Nothing else is edited: host paths
that exist only on the engine's machine stay in the file (the workload suite leaves them out, as it does
for podman's), as do /proc/<pid>/ns paths of the pod's namespaces.

Exit status: 0 captured, 1 an engine failed (its log tail is printed), 2 usage (not root, unknown engine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENGINES = ("docker-20.10", "containerd-1.6-ctr", "containerd-1.6-cri-runtime-default")
CONTAINER_ID = "c0ffee" * 10 + "c0ff"  # 64 hex digits, as the engines' ids
POD_ID = "5a11d" * 12 + "5a11"
POD_UID = "0123456789abcdef" * 2  # the kubelet's pod uid, as the CRI plugin names it in cgroupsPath
LAYER_ID = "1a7e4" * 12 + "1a7e"
NETWORK_ID = "0e7000000000"
CAPTURE_SH = r"""#!/bin/sh
# A capturing runtime: on `create`, copy the bundle's config.json to {out}/<bundle name>.json, then run runc.
bundle=""; create=""; prev=""
for a in "$@"; do
    case "$prev" in --bundle|-b) bundle="$a";; esac
    case "$a" in --bundle=*|-b=*) bundle="${{a#*=}}";; create) create=1;; esac
    prev="$a"
done
if [ -n "$create" ]; then
    [ -n "$bundle" ] || bundle="$PWD"
    cp "$bundle/config.json" "{out}/$(basename "$bundle").json" || exit 1
fi
exec {runc} "$@"
"""


def capture_runtime(directory: str, out: str, runc: str) -> str:
    path = os.path.join(directory, "capture-runc")
    with open(path, "w") as f:
        f.write(CAPTURE_SH.format(out=out, runc=runc))
    os.chmod(path, 0o755)
    return path


def captured(out: str, cid: str) -> dict:
    with open(os.path.join(out, f"{cid}.json")) as f:
        return json.load(f)


def neutral(cfg: dict, replace: list[tuple[str, str]]) -> dict:
    """`cfg` with every string's private paths and random ids replaced (longest first)."""
    pairs = sorted(replace, key=lambda p: -len(p[0]))

    def fix(v):
        if isinstance(v, str):
            for old, new in pairs:
                v = v.replace(old, new)
            return v
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {fix(k): fix(x) for k, x in v.items()}
        return v

    return fix(cfg)


def capture_docker(work: str, rootfs: str, runc: str, out: str) -> dict:
    from tests.e2e.daemons import Dockerd, rootfs_tar_bytes

    runtime = capture_runtime(work, out, runc)
    d = Dockerd({"capture": runtime})
    try:
        d.start()
        res = d.docker("import", "-", "sandbox-demo:capture", input=rootfs_tar_bytes(rootfs))
        if res.returncode != 0:
            raise RuntimeError(f"docker import: {res.stderr}")
        res = d.docker("run", "--runtime", "capture", "--network", "none", "sandbox-demo:capture", "true")
        if res.returncode != 0:
            raise RuntimeError(f"docker run: {res.stderr}\n{d.log_tail()}")
        cid = d.docker("ps", "-aq", "--no-trunc").stdout.split()[0]
        cfg = captured(out, cid)
        replace = [
            (d.data_root, "/var/lib/docker"), (d.exec_root, "/run/docker"),
            (d.containerd.state, "/run/containerd"), (d.containerd.root, "/var/lib/containerd"),
            (d.cgroup_parent + "/", "/docker/"),
            # dockerd's libnetwork hook names dockerd by /proc/<its pid>/exe
            (f"/proc/{d.proc.pid}/exe", "/proc/1/exe"),
            (cid, CONTAINER_ID), (cid[:12], CONTAINER_ID[:12]),
            (os.path.basename(cfg["root"]["path"]), LAYER_ID),
        ]
        for hook in cfg.get("hooks", {}).get("prestart", []):
            if "libnetwork-setkey" in hook.get("args", []):
                replace.append((hook["args"][-1], NETWORK_ID))  # the short id of the network
        return neutral(cfg, replace)
    finally:
        d.stop()


def capture_ctr(work: str, rootfs: str, runc: str, out: str) -> dict:
    from tests.e2e.daemons import Containerd, oci_image_tar

    runtime = capture_runtime(work, out, runc)
    d = Containerd(namespace="default")  # ctr's own default namespace
    cid = "capture"
    try:
        d.start()
        image = "docker.io/library/sandbox-demo:capture"
        res = d.ctr("images", "import", oci_image_tar(rootfs, os.path.join(work, "image.tar"), {image: {}}))
        if res.returncode != 0:
            raise RuntimeError(f"ctr images import: {res.stderr}")
        res = d.ctr("run", "--rm", "--seccomp", "--runc-binary", runtime, "--runc-root", d.runc_root,
                    "--fifo-dir", d.fifo_dir, "--cgroup", f"{d.cgroup_parent}/{cid}", image, cid, "true")
        if res.returncode != 0:
            raise RuntimeError(f"ctr run: {res.stderr}\n{d.log_tail()}")
        # ctr's default cgroupsPath is /<namespace>/<id>
        return neutral(captured(out, cid), [
            (d.state, "/run/containerd"), (d.root, "/var/lib/containerd"),
            (f"{d.cgroup_parent}/{cid}", f"/default/{cid}"),
        ])
    finally:
        d.stop()


def capture_cri(work: str, rootfs: str, runc: str, out: str) -> dict:
    from tests.e2e.cri.harness import IMAGE, CriEngine

    runtime = capture_runtime(work, out, runc)
    engine = CriEngine(work, rootfs)
    engine.daemon.runtimes["capture"] = runtime
    try:
        engine.start()
        with engine.pod("capture", handler="capture") as pod:
            cid = pod.container("app", ["true"], image=IMAGE)
            cfg = captured(out, cid)
            pod_cfg = captured(out, pod.id)
        d = engine.daemon
        parent = d.cgroup_parent + "/pod"
        netns = next((n.get("path", "") for n in pod_cfg.get("linux", {}).get("namespaces", [])
                      if n.get("type") == "network"), "")
        replace = [
            (os.path.join(d.cri_state(), "netns") + "/", "/var/run/netns/"),
            (d.state, "/run/containerd"), (d.root, "/var/lib/containerd"),
            # the kubelet's cgroupfs parent of a BestEffort pod
            (parent, "/kubepods/besteffort/pod"),
            (cid, CONTAINER_ID), (pod.id, POD_ID), (pod.config.metadata.uid, POD_UID),
        ]
        m = re.search(r"cni-([0-9a-f-]{36})$", netns)
        if m:
            replace.append((m.group(1), "00000000-0000-4000-8000-000000000000"))
        return neutral(cfg, replace)
    finally:
        engine.stop()


CAPTURE = {"docker-20.10": capture_docker, "containerd-1.6-ctr": capture_ctr,
           "containerd-1.6-cri-runtime-default": capture_cri}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "oci"), help="directory for <engine>-config.json")
    ap.add_argument("engines", nargs="*", metavar="ENGINE", help=f"one of {', '.join(ENGINES)} (default: all)")
    args = ap.parse_args(argv)
    unknown = [e for e in args.engines if e not in CAPTURE]
    if unknown:
        print(f"capture-engine-config: unknown engine {unknown[0]!r} (one of {', '.join(ENGINES)})", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("capture-engine-config: must run as root (it starts private engines)", file=sys.stderr)
        return 2
    from sandbox.host.demo import build_rootfs
    from sandbox.host.runc import find_runc

    runc = find_runc()
    status = 0
    os.makedirs(args.out, exist_ok=True)
    top = tempfile.mkdtemp(prefix="sandbox-capture-")
    try:
        os.chmod(top, 0o755)
        rootfs = build_rootfs(os.path.join(top, "rootfs"))
        for name in args.engines or ENGINES:
            work = os.path.join(top, name)
            got = os.path.join(work, "captured")
            os.makedirs(got)
            try:
                cfg = CAPTURE[name](work, rootfs, runc, got)
            except Exception as e:  # noqa: BLE001 - one engine failing (grpc, daemon, I/O) does not stop the others
                print(f"capture-engine-config: {name}: {e}", file=sys.stderr)
                status = 1
                continue
            path = os.path.join(args.out, f"{name}-config.json")
            with open(path, "w") as f:
                json.dump(cfg, f, indent=2)
                f.write("\n")
            print(f"{name}: {path}")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
