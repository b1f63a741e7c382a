"""A private containerd with its CRI plugin, driven as the kubelet drives it.

`CriContainerd` is `tests.e2e.daemons.Containerd` with the CRI plugin enabled and
everything it touches kept private: root, state, sockets, the runc roots of its
runtimes, the network namespaces (under its state dir), the CNI config dir.  Runtime
handlers (the kubelet's RuntimeClass `handler`) are named in its config:

    runc      io.containerd.runc.v2, the real runc (BinaryName), for comparison
    sandbox   io.containerd.runc.v2 with BinaryName = the installed sandbox-runc; the
              operator config reaches it through containerd's environment (SANDBOX_CONFIG),
              which containerd-shim-runc-v2 hands down to the runtime

which is the snippet docs/integrations.md shows.  Pod annotations named
`org.sandbox-runtime.profile` reach the OCI config of the pod's containers (`pod_annotations`).

Images come from a tarball, never a registry: `oci_image_tar` of the busybox demo rootfs,
imported with `ctr -n k8s.io images import`.  The pause image (`PAUSE_IMAGE`, containerd's
`sandbox_image`) is the same rootfs whose command is busybox's `sleep`, run as nobody.
The network: containerd brings up each pod's `lo` with Debian's `loopback` CNI plugin
(containernetworking-plugins); the pod network proper is `cni-pod-local` (beside this file), an
`eth0` inside the pod's network namespace (a veth whose peer stays there too) with a ULA
address that routes nowhere, because containerd 1.6 insists on an `eth0` with an address.  No bridge, no veth,
no NAT, nothing in the host's network namespace.

Use (as root, under `flock /tmp/sandbox-heavy.lock`):

    engine = CriEngine(work_dir, demo_rootfs).start()     # or the `cri` fixture
    with engine.pod("web", profile="strict") as pod:
        cid = pod.container("app", ["sleep", "600"])
        code, out, err = engine.client.exec_sync(cid, ["cat", "/proc/self/status"])
    engine.stop()
"""

import contextlib
import json
import os
import shutil
import uuid

from tests.e2e.cri.client import CriClient
from tests.e2e.daemons import Containerd, oci_image_tar
from tests.e2e.engines import ANNOTATION, audit_records, shim_path

PAUSE_IMAGE = "sandbox.test/pause:1"
IMAGE = "sandbox.test/busybox:1"  # the demo rootfs, runs as root unless told otherwise
APP_IMAGE = "sandbox.test/busybox:app"  # the same rootfs, image config User 1000:1000
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
HANDLER = "sandbox"
K8S_NAMESPACE = "k8s.io"


def cni_bin_dir():
    for d in CNI_BIN_DIRS:
        if os.path.exists(os.path.join(d, "loopback")):
            return d
    return None


class CriContainerd(Containerd):
    """containerd with its CRI plugin, private everything, and the runtime handlers above."""

    name = "containerd-cri"

    def __init__(self, runtimes, env=None, cni_bin=None):
        super().__init__(namespace=K8S_NAMESPACE)
        self.runtimes = dict(runtimes)  # handler name -> runtime binary
        self.extra_env = dict(env or {})
        self.cni_conf_dir = os.path.join(self.base, "cni")
        self.cni_bin = os.path.join(self.base, "cni-bin")
        self.debian_cni_bin = cni_bin or cni_bin_dir()

    def runc_root_of(self, handler):
        """The runc --root containerd's shim uses for `handler` (containers of namespace k8s.io)."""
        return os.path.join(self.base, f"runc-{handler}", K8S_NAMESPACE)

    def cri_root(self):
        """containerd's CRI root dir: per-pod hosts, hostname, resolv.conf live under sandboxes/."""
        return os.path.join(self.root, "io.containerd.grpc.v1.cri")

    def cri_state(self):
        """The CRI state dir: per-pod /dev/shm under sandboxes/, network namespaces under netns/."""
        return os.path.join(self.state, "io.containerd.grpc.v1.cri")

    def config_text(self):
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        text = f'''version = 2
root = "{self.root}"
state = "{self.state}"
''' + self._common_config() + f'''
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE: the pause container's oom_score_adj (-998) cannot be set
  restrict_oom_score_adj = true
  # network namespaces under the state dir, not /run/netns
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.cni]
  bin_dir = "{self.cni_bin}"
  conf_dir = "{self.cni_conf_dir}"
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
'''
        for handler, binary in self.runtimes.items():
            text += f'''
[{cri}.containerd.runtimes.{handler}]
  runtime_type = "io.containerd.runc.v2"
  pod_annotations = ["{ANNOTATION}"]
  [{cri}.containerd.runtimes.{handler}.options]
    BinaryName = "{binary}"
    Root = "{os.path.dirname(self.runc_root_of(handler))}"
'''
        return text

    def start(self):
        os.makedirs(self.cni_conf_dir)
        os.makedirs(self.cni_bin)
        os.symlink(os.path.join(self.debian_cni_bin, "loopback"), os.path.join(self.cni_bin, "loopback"))
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cni-pod-local"),
                    os.path.join(self.cni_bin, "cni-pod-local"))
        with open(os.path.join(self.cni_conf_dir, "10-pod.conflist"), "w") as f:
            json.dump({"cniVersion": "0.4.0", "name": "sandbox-test-pod", "plugins": [{"type": "cni-pod-local"}]}, f)
        return super().start()

    def _env(self):
        env = super()._env()
        env.update(self.extra_env)
        return env

    def _runc_roots(self):
        return [self.runc_root_of(h) for h in self.runtimes]

    def _drain(self):
        """Stop and remove every pod through the CRI (as the kubelet would), then images."""
        try:
            client = CriClient(self.socket, os.path.join(self.base, "cri-api"), timeout=30)
            try:
                for pod in client.list_pods():
                    for call in (client.stop_pod, client.remove_pod):
                        try:
                            call(pod.id)
                        except client.grpc.RpcError:
                            pass
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - best effort before the kill; stop() removes the rest
            pass
        super()._drain()


class Pod:
    """One pod sandbox and its containers; removed (stop, remove) when the `with` block ends."""

    def __init__(self, engine, pod_id, config):
        self.engine = engine
        self.id = pod_id
        self.config = config
        self.containers = []

    def container(self, name, command, *, image=IMAGE, start=True, **kw):
        """Create (and start) a container of this pod; its id."""
        client = self.engine.client
        config = client.container_config(name, image, command, **kw)
        cid = client.create_container(self.id, config, self.config)
        self.containers.append(cid)
        if start:
            client.start_container(cid)
        return cid

    def remove(self):
        client = self.engine.client
        for call in (client.stop_pod, client.remove_pod):
            try:
                call(self.id)
            except client.grpc.RpcError:
                pass


class CriEngine:
    """A started CriContainerd, its CRI client, the operator config and audit log sandbox-runc uses."""

    def __init__(self, work, rootfs, *, allowed_profiles=("restricted", "strict"), default_profile="baseline",
                 extra_config=None):
        from sandbox.host.runc import find_runc

        self.work = str(work)
        self.rootfs = rootfs
        self.runc = find_runc()
        self.audit = os.path.join(self.work, "audit", "audit.jsonl")
        self.config = os.path.join(self.work, "sandbox-config.yaml")
        self.write_config(allowed_profiles=list(allowed_profiles), default_profile=default_profile,
                          **(extra_config or {}))
        self.daemon = CriContainerd({"runc": self.runc, HANDLER: shim_path()},
                                    env={"SANDBOX_CONFIG": self.config, "SANDBOX_DAEMON_SOCKET": "off"})
        self.client = None

    def write_config(self, **keys):
        """(Re)write the operator config sandbox-runc reads on every call (root-owned, 0644)."""
        values = {"runc": self.runc, "audit_log": self.audit, "default_profile": "baseline",
                  "runtime_dir": os.environ.get("SANDBOX_RUNTIME_DIR") or os.path.join(self.work, "runtime"), **keys}
        lines = [f"{k}: {v}" if k == "runc" else f"{k}: {json.dumps(v)}" for k, v in values.items()
                 if v is not None]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.config, 0o644)

    def start(self):
        try:
            self.daemon.start()
            tar = oci_image_tar(self.rootfs, os.path.join(self.work, "images.tar"), {
                IMAGE: {},
                APP_IMAGE: {"User": "1000:1000"},
                PAUSE_IMAGE: {"Entrypoint": ["/bin/sleep"], "Cmd": ["2147483647"], "User": "65534:65534"},
            })
            res = self.daemon.ctr("images", "import", tar)
            if res.returncode != 0:
                raise RuntimeError(f"ctr images import: {res.stderr}")
            self.client = CriClient(self.daemon.socket, os.path.join(self.work, "cri-api"))
            self.client.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        try:
            if self.client is not None:
                self.client.close()
        finally:
            self.daemon.stop()

    def records(self, cid=None):
        return audit_records(self.audit, cid)

    def new_pod_config(self, name=None, *, profile=None, annotations=None, **kw):
        name = name or f"pod-{uuid.uuid4().hex[:8]}"
        ann = dict(annotations or {})
        if profile:
            ann[ANNOTATION] = profile
        uid = uuid.uuid4().hex
        return self.client.pod_config(name, uid, cgroup_parent=f"{self.daemon.cgroup_parent}/pod{uid}",
                                      annotations=ann, **kw)

    def run_pod(self, name=None, *, handler=HANDLER, profile=None, **kw):
        """RunPodSandbox; the Pod (its removal is the caller's, or use `pod()`)."""
        config = self.new_pod_config(name, profile=profile, **kw)
        return Pod(self, self.client.run_pod(config, handler), config)

    @contextlib.contextmanager
    def pod(self, name=None, *, handler=HANDLER, profile=None, **kw):
        pod = self.run_pod(name, handler=handler, profile=profile, **kw)
        try:
            yield pod
        finally:
            pod.remove()

    def bundle(self, cid):
        return self.daemon.bundle(cid)

    def oci_config(self, cid):
        """The config.json runc was given for `cid` (after sandbox-runc rewrote it)."""
        with open(os.path.join(self.bundle(cid), "config.json")) as f:
            return json.load(f)


def tools_missing():
    """What this harness needs that is not installed (names), for a skip or failure message."""
    missing = [t for t in ("containerd", "ctr", "containerd-shim-runc-v2", "ip", "nsenter") if shutil.which(t) is None]
    if cni_bin_dir() is None:
        missing.append("containernetworking-plugins (loopback)")
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError:
        missing.append("grpcio/grpcio-tools (pip install '.[test]')")
    return missing
