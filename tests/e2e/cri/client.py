"""A small CRI v1 client over containerd's gRPC socket, the calls the kubelet makes.

`load_api(out_dir)` compiles cri_api.proto (beside this file) with grpcio-tools into
`out_dir` and returns the generated message module.  `CriClient(socket)` wraps the
RuntimeService and ImageService stubs with one method per call; messages are built by
the caller from `client.api` (the generated module), or with the helpers here for the
shapes the kubelet sends (`pod_config`, `container_config`).

A failed call raises `grpc.RpcError`; `error_text(e)` is the status details, which is
where containerd puts the runtime's error (and so sandbox's reason for a refusal).
"""

import importlib
import os
import sys
import threading

# The CRI client lives in the pytest process for the whole session, and other tests fork (os.fork,
# multiprocessing): with gRPC's fork support on, every forked child starts gRPC's threads again, and
# a child whose main thread ends can linger with them (holding whatever fds it inherited, such as
# the heavy lock).  No test uses gRPC in a forked child, so it is turned off before gRPC is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "cri_api.proto"
_lock = threading.Lock()
_loaded = {}


def load_api(out_dir):
    """Compile the proto into `out_dir` (once per process) and return (messages, services) modules."""
    with _lock:
        if "api" in _loaded:
            return _loaded["api"]
        from grpc_tools import protoc

        os.makedirs(out_dir, exist_ok=True)
        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        code = protoc.main(["grpc_tools.protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out_dir}",
                            f"--grpc_python_out={out_dir}", os.path.join(HERE, PROTO)])
        if code != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {PROTO} (exit {code})")
        sys.path.insert(0, out_dir)  # the generated *_pb2_grpc module imports *_pb2 by its plain name
        try:
            pb2 = importlib.import_module("cri_api_pb2")
            grpc_mod = importlib.import_module("cri_api_pb2_grpc")
        finally:
            sys.path.remove(out_dir)
        _loaded["api"] = (pb2, grpc_mod)
        return _loaded["api"]


def error_text(err):
    """The message of a failed call (containerd's error, which carries the runtime's)."""
    details = getattr(err, "details", None)
    return (details() if callable(details) else None) or str(err)


class CriClient:
    """RuntimeService and ImageService of the CRI endpoint at unix socket `socket`."""

    def __init__(self, socket, out_dir, timeout=120.0):
        import grpc

        self.api, services = load_api(out_dir)
        self.grpc = grpc
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = services.RuntimeServiceStub(self.channel)
        self.images = services.ImageServiceStub(self.channel)
        self.timeout = timeout

    def close(self):
        self.channel.close()

    def wait_ready(self, timeout=30.0):
        self.grpc.channel_ready_future(self.channel).result(timeout=timeout)

    # -- RuntimeService ---------------------------------------------------------------------
    def version(self):
        return self.runtime.Version(self.api.VersionRequest(version="v1"), timeout=self.timeout)

    def run_pod(self, config, handler=""):
        req = self.api.RunPodSandboxRequest(config=config, runtime_handler=handler)
        return self.runtime.RunPodSandbox(req, timeout=self.timeout).pod_sandbox_id

    def stop_pod(self, pod_id):
        self.runtime.StopPodSandbox(self.api.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=self.timeout)

    def remove_pod(self, pod_id):
        self.runtime.RemovePodSandbox(self.api.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=self.timeout)

    def pod_status(self, pod_id, verbose=False):
        return self.runtime.PodSandboxStatus(self.api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose),
                                             timeout=self.timeout)

    def list_pods(self):
        return list(self.runtime.ListPodSandbox(self.api.ListPodSandboxRequest(), timeout=self.timeout).items)

    def create_container(self, pod_id, config, pod_config):
        req = self.api.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config)
        return self.runtime.CreateContainer(req, timeout=self.timeout).container_id

    def start_container(self, cid):
        self.runtime.StartContainer(self.api.StartContainerRequest(container_id=cid), timeout=self.timeout)

    def stop_container(self, cid, timeout=0):
        self.runtime.StopContainer(self.api.StopContainerRequest(container_id=cid, timeout=timeout),
                                   timeout=self.timeout)

    def remove_container(self, cid):
        self.runtime.RemoveContainer(self.api.RemoveContainerRequest(container_id=cid), timeout=self.timeout)

    def list_containers(self, pod_id=""):
        req = self.api.ListContainersRequest(filter=self.api.ContainerFilter(pod_sandbox_id=pod_id))
        return list(self.runtime.ListContainers(req, timeout=self.timeout).containers)

    def container_status(self, cid, verbose=False):
        return self.runtime.ContainerStatus(self.api.ContainerStatusRequest(container_id=cid, verbose=verbose),
                                            timeout=self.timeout)

    def update_resources(self, cid, **linux):
        req = self.api.UpdateContainerResourcesRequest(container_id=cid,
                                                       linux=self.api.LinuxContainerResources(**linux))
        self.runtime.UpdateContainerResources(req, timeout=self.timeout)

    def exec_sync(self, cid, cmd, timeout=30):
        """(exit code, stdout, stderr) of `cmd` run in the container, as the kubelet's probes do."""
        req = self.api.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout)
        res = self.runtime.ExecSync(req, timeout=timeout + self.timeout)
        return res.exit_code, res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")

    # -- ImageService -----------------------------------------------------------------------
    def image_status(self, ref):
        return self.images.ImageStatus(self.api.ImageStatusRequest(image=self.api.ImageSpec(image=ref)),
                                       timeout=self.timeout).image

    def list_images(self):
        return list(self.images.ListImages(self.api.ListImagesRequest(), timeout=self.timeout).images)

    # -- message shapes the kubelet sends -------------------------------------------------------
    def pod_config(self, name, uid, *, namespace="default", cgroup_parent="", annotations=None, labels=None,
                   run_as_user=None, run_as_group=None, sysctls=None):
        """A PodSandboxConfig as the kubelet builds it (pod network, PID namespace per container)."""
        a = self.api
        sc = a.LinuxSandboxSecurityContext(
            namespace_options=a.NamespaceOption(network=a.POD, pid=a.CONTAINER, ipc=a.POD),
            seccomp=a.SecurityProfile(profile_type=a.SecurityProfile.RuntimeDefault))
        if run_as_user is not None:
            sc.run_as_user.value = run_as_user
        if run_as_group is not None:
            sc.run_as_group.value = run_as_group
        return a.PodSandboxConfig(
            metadata=a.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname=name, labels=labels or {}, annotations=annotations or {},
            linux=a.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=sc, sysctls=sysctls or {}))

    def container_config(self, name, image, command, *, annotations=None, run_as_user=None, run_as_group=None,
                         privileged=False, add_caps=(), drop_caps=(), readonly_rootfs=False, resources=None,
                         mounts=(), no_new_privs=False):
        """A ContainerConfig as the kubelet builds it for one container of a pod."""
        a = self.api
        sc = a.LinuxContainerSecurityContext(
            capabilities=a.Capability(add_capabilities=list(add_caps), drop_capabilities=list(drop_caps)),
            privileged=privileged, readonly_rootfs=readonly_rootfs, no_new_privs=no_new_privs,
            namespace_options=a.NamespaceOption(network=a.POD, pid=a.CONTAINER, ipc=a.POD),
            seccomp=a.SecurityProfile(profile_type=a.SecurityProfile.RuntimeDefault))
        if run_as_user is not None:
            sc.run_as_user.value = run_as_user
        if run_as_group is not None:
            sc.run_as_group.value = run_as_group
        return a.ContainerConfig(
            metadata=a.ContainerMetadata(name=name, attempt=0), image=a.ImageSpec(image=image),
            command=list(command), annotations=annotations or {},
            mounts=[a.Mount(**m) for m in mounts],
            linux=a.LinuxContainerConfig(security_context=sc,
                                         resources=a.LinuxContainerResources(**(resources or {}))))
