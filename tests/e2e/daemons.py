"""Private container daemons for the end-to-end tests: containerd and dockerd, started by pid.

Each daemon gets its own root, state, socket, runc root and TMPDIR under one
short temporary directory (unix socket paths are limited to 108 bytes), so
nothing of a system containerd or dockerd (/var/lib/docker, /run/containerd/runc,
...) is used.  `stop()` removes what the engine still holds, kills the daemon by
its pid, force-deletes any container left in its runc roots, unmounts whatever
is still mounted under its directories, removes them, and removes the empty
directories the engines create at fixed host paths (/run/containerd/s,
/run/docker/plugins, ...) when they did not exist before.

The engines hand their environment down to the runtime (dockerd -> containerd ->
containerd-shim-runc-v2 -> runc), so TMPDIR set here decides where the runc shim
writes its `runc exec --process` files; tests use that to see what is left behind.

`oci_image_tar` writes an OCI image layout tarball of a rootfs in pure Python (one
uncompressed layer, one manifest per tag), for `ctr images import`: no registry.
"""

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time

# Directories the engines create at fixed host paths whatever their configuration.
HOST_DIRS = ("/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc", "/run/containerd",
             "/run/docker/plugins", "/run/docker",
             # the CNI library's result cache (containerd's CRI plugin, with no setting to move it)
             "/var/lib/cni/results", "/var/lib/cni")

# -- an OCI image of a rootfs, with no registry ------------------------------------------------


def _blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return f"sha256:{digest}", len(data)


def _arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def rootfs_tar_bytes(rootfs):
    """The rootfs as an uncompressed tar (entries relative to its top, owners and modes kept)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, name), arcname=name, recursive=True)
    return buf.getvalue()


def oci_image_tar(rootfs, out_path, images):
    """Write an OCI image layout tarball: `images` maps a full reference to extra image-config fields.

    Every image shares the one layer (the rootfs); each gets its own config and manifest,
    named in index.json by `io.containerd.image.name` (the full reference ctr imports it as)
    and `org.opencontainers.image.ref.name` (the tag).
    """
    work = tempfile.mkdtemp(prefix="sandbox-oci-")
    try:
        blobs = os.path.join(work, "blobs", "sha256")
        os.makedirs(blobs)
        layer_digest, layer_size = _blob(blobs, rootfs_tar_bytes(rootfs))
        manifests = []
        for ref, extra in images.items():
            config = {
                "architecture": _arch(),
                "os": "linux",
                "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/", **extra},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},  # uncompressed: diff id == digest
                "history": [{"created_by": "sandbox e2e tests: the busybox demo rootfs"}],
            }
            config_digest, config_size = _blob(blobs, json.dumps(config, sort_keys=True).encode())
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                            "size": layer_size}],
            }
            digest, size = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
            manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                              "size": size, "platform": {"architecture": _arch(), "os": "linux"},
                              "annotations": {"io.containerd.image.name": ref,
                                              "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]}})
        with open(os.path.join(work, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": manifests}, f)
        with open(os.path.join(work, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with tarfile.open(out_path, "w") as t:
            for name in ("oci-layout", "index.json", "blobs"):
                t.add(os.path.join(work, name), arcname=name)
        return out_path
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- runtime wrappers -----------------------------------------------------------------------------


def logging_runtime(directory, config_path, shim, argv_log, name="runc", stderr=None):
    """An executable `name` in `directory` that appends its argv (one line, tab-separated) to
    `argv_log`, then runs `shim` with SANDBOX_CONFIG set.  `stderr="/dev/null"` discards the
    runtime's stderr (to show where an engine takes the error message from)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    redirect = f" 2>{stderr}" if stderr else ""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"(IFS=\"$(printf '\\t')\"; printf '%s\\n' \"$*\") >> {argv_log}\n"
                f"SANDBOX_CONFIG={config_path} exec {shim} \"$@\"{redirect}\n")
    os.chmod(path, 0o755)
    return path


def read_argv_log(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return []


# -- daemons ------------------------------------------------------------------------------------


class DaemonError(RuntimeError):
    pass


def _log_tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def _connect(path, request=None, timeout=2.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        if request is None:
            return b""
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def wait_until_ready(path, proc, log, timeout=60.0, http_ping=False):
    """Wait until the daemon's unix socket answers (dockerd: GET /_ping is 200), or it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonError(f"daemon exited with {proc.returncode} before {path} answered:\n{_log_tail(log)}")
        if os.path.exists(path):
            try:
                if not http_ping:
                    _connect(path)
                    return
                answer = _connect(path, b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                if answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]:
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise DaemonError(f"{path} did not answer within {timeout:.0f}s:\n{_log_tail(log)}")


def mounts_under(*dirs):
    """Mount points (deepest first) at or under any of `dirs`, from /proc/self/mountinfo."""
    out = []
    prefixes = [os.path.realpath(d).rstrip("/") + "/" for d in dirs]
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if any((mp + "/").startswith(p) for p in prefixes):
                out.append(mp)
    return sorted(set(out), key=lambda m: (-m.count("/"), m))


def unmount_under(*dirs):
    for mp in mounts_under(*dirs):
        subprocess.run(["umount", "-R", mp], capture_output=True, check=False)
    for mp in mounts_under(*dirs):  # still busy: detach it
        subprocess.run(["umount", "-R", "-l", mp], capture_output=True, check=False)


def _pids_naming(text):
    """Pids of processes whose command line contains `text` (the daemon's private directory)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(int(pid))
    return out


def stop_process(proc, timeout=20.0):
    """SIGTERM a daemon by its pid, SIGKILL it if it lingers, and reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def force_delete_runc_containers(runc, root):
    """`runc delete --force` every container still in the runc root `root` (kills its processes)."""
    if not os.path.isdir(root):
        return
    res = subprocess.run([runc, "--root", root, "list", "-q"], capture_output=True, text=True, check=False)
    for cid in res.stdout.split():
        subprocess.run([runc, "--root", root, "delete", "--force", cid], capture_output=True, check=False)


def _existing(paths):
    return {p for p in paths if os.path.lexists(p)}


def _remove_new_empty_dirs(paths, existed):
    for p in paths:  # listed deepest first
        if p not in existed:
            try:
                os.rmdir(p)
            except OSError:
                pass  # not empty (another engine uses it) or already gone


def remove_cgroup(name):
    """Remove the (empty, leaf-first) cgroup directories `/name` in every hierarchy under /sys/fs/cgroup."""
    roots = ["/sys/fs/cgroup"]
    try:
        roots += [os.path.join("/sys/fs/cgroup", d) for d in os.listdir("/sys/fs/cgroup")
                  if os.path.isdir(os.path.join("/sys/fs/cgroup", d)) and not os.path.islink(os.path.join(
                      "/sys/fs/cgroup", d))]
    except OSError:
        return
    for root in roots:
        top = os.path.join(root, name.strip("/"))
        if not os.path.isdir(top) or not os.path.exists(os.path.join(root, "cgroup.procs")):
            continue
        for d, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            for _ in range(20):  # a cgroup whose last process is exiting is busy for a moment
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


class _Daemon:
    name = "daemon"

    def __init__(self, prefix):
        self.base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.base, 0o711)
        # containers go under a cgroup of this name, removed by stop()
        self.cgroup_parent = "/" + os.path.basename(self.base)
        self.tmp = os.path.join(self.base, "tmp")  # the engines' (and so the runtime's) TMPDIR
        os.makedirs(self.tmp)
        self.log = os.path.join(self.base, f"{self.name}.log")
        self.proc = None
        self._host_dirs_before = _existing(HOST_DIRS)

    def _env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SANDBOX_", "DOCKER_", "CONTAINERD_"))}
        env["TMPDIR"] = self.tmp
        return env

    def _spawn(self, argv):
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=self._env())

    def log_tail(self):
        return _log_tail(self.log)

    def _runc_roots(self):
        return []

    def _drain(self):
        """Ask the engine to remove its containers and images (best effort)."""

    def stop(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self._drain()
        finally:
            if self.proc is not None:
                stop_process(self.proc)
            runc = shutil.which("runc") or "/usr/sbin/runc"
            for root in self._runc_roots():
                force_delete_runc_containers(runc, root)
            for pid in _pids_naming(self.base):  # shims left behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
            unmount_under(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
            remove_cgroup(self.cgroup_parent)
            _remove_new_empty_dirs(HOST_DIRS, self._host_dirs_before)


class Containerd(_Daemon):
    """A private containerd (CRI plugin disabled): config.toml, root, state, socket, opt dir and runc root."""

    name = "containerd"

    def __init__(self, namespace="sandboxtest"):
        super().__init__("sbx-ctrd-")
        self.namespace = namespace
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.socket = os.path.join(self.base, "containerd.sock")
        self.config = os.path.join(self.base, "config.toml")
        self.runc_root = os.path.join(self.base, "runc")  # for `ctr run --runc-root`
        self.fifo_dir = os.path.join(self.base, "fifo")  # for `ctr run/exec --fifo-dir`

    def config_text(self):
        """containerd's config.toml: private root, state, sockets and opt dir; no CRI plugin."""
        return f'''version = 2
root = "{self.root}"
state = "{self.state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
''' + self._common_config()

    def _common_config(self):
        return f'''
[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

# not /opt/containerd
[plugins."io.containerd.internal.v1.opt"]
  path = "{os.path.join(self.base, 'opt')}"
'''

    def start(self):
        for d in (self.root, self.state, self.runc_root, self.fifo_dir):
            os.makedirs(d, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(self.config_text())
        self._spawn(["containerd", "--config", self.config])
        wait_until_ready(self.socket, self.proc, self.log, timeout=30)
        return self

    def bundle(self, cid):
        return os.path.join(self.state, "io.containerd.runtime.v2.task", self.namespace, cid)

    def ctr(self, *args, timeout=90):
        return subprocess.run(["ctr", "-a", self.socket, "-n", self.namespace, *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=self._env())

    def remove(self, cid):
        """Kill and delete a task and its container (either may be gone already)."""
        self.ctr("task", "delete", "--force", cid, timeout=30)
        self.ctr("containers", "rm", cid, timeout=30)

    def _drain(self):
        for cid in self.ctr("task", "ls", "-q", timeout=30).stdout.split():
            self.remove(cid)
        for cid in self.ctr("containers", "ls", "-q", timeout=30).stdout.split():
            self.ctr("containers", "rm", cid, timeout=30)
        refs = self.ctr("images", "ls", "-q", timeout=30).stdout.split()
        if refs:
            self.ctr("images", "rm", *refs, timeout=30)

    def _runc_roots(self):
        return [os.path.join(self.runc_root, self.namespace)]


class Dockerd(_Daemon):
    """A private dockerd (vfs, cgroupfs, no iptables, no bridge) on a private containerd of its own.

    dockerd is given `--containerd` rather than left to start one itself: the one it
    would start cannot be told to keep out of /opt/containerd.
    """

    name = "dockerd"

    def __init__(self, runtimes, userns_remap=None):
        super().__init__("sbx-dckr-")
        # (first host id, count): dockerd --userns-remap=daemon:daemon (a system account present on
        # every Debian; dockerd will not remap to root) with these as its subordinate ids.
        # dockerd reads them from /etc/subuid and /etc/subgid, so it runs in a mount namespace of its
        # own where files of ours are bind-mounted there; the host's files are never touched.
        self.userns_remap = userns_remap
        self.data_root = os.path.join(self.base, "data")
        self.exec_root = os.path.join(self.base, "exec")
        self.socket = os.path.join(self.base, "docker.sock")
        self.pidfile = os.path.join(self.base, "docker.pid")
        self.runtimes = dict(runtimes)
        self.containerd = Containerd(namespace="moby")
        self.tmp = self.containerd.tmp  # the runtime is started by containerd's shim: its TMPDIR counts
        # the client shipped with the daemon (a newer one first on PATH works too, but this one matches)
        beside = os.path.join(os.path.dirname(os.path.realpath(shutil.which("dockerd") or "/usr/sbin/dockerd")),
                              "..", "bin", "docker")
        self.client = next((c for c in ("/usr/bin/docker", os.path.normpath(beside)) if os.path.exists(c)),
                           shutil.which("docker") or "docker")

    def start(self):
        self.containerd.start()
        for d in (self.data_root, self.exec_root):
            os.makedirs(d, exist_ok=True)
        conf = os.path.join(self.base, "daemon.json")
        with open(conf, "w") as f:
            json.dump({"runtimes": {name: {"path": path} for name, path in self.runtimes.items()},
                       # dockerd 20.10 writes its identity key here, by default /etc/docker/key.json
                       "deprecated-key-path": os.path.join(self.base, "key.json")}, f)
        prefix = []
        if self.userns_remap:
            start, count = self.userns_remap
            sub = os.path.join(self.base, "subids")
            with open(sub, "w") as f:
                f.write(f"daemon:{start}:{count}\n")
            os.chmod(sub, 0o644)
            prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f'mount --bind {sub} /etc/subuid && mount --bind {sub} /etc/subgid && exec "$@"', "dockerd-remap"]
        self._spawn([*prefix, "dockerd", *(["--userns-remap", "daemon:daemon"] if self.userns_remap else []),
                     "--config-file", conf, "--containerd", self.containerd.socket,
                     "--data-root", self.data_root, "--exec-root", self.exec_root, "--pidfile", self.pidfile,
                     "-H", f"unix://{self.socket}", "--iptables=false", "--ip6tables=false", "--bridge=none",
                     "--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs",
                     "--cgroup-parent", self.cgroup_parent, "--userland-proxy=false"])
        wait_until_ready(self.socket, self.proc, self.log, timeout=90, http_ping=True)
        return self

    def docker(self, *args, timeout=90, input=None):
        env = self._env()
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["DOCKER_CONFIG"] = os.path.join(self.base, "client-config")
        return subprocess.run([self.client, *args], capture_output=True, timeout=timeout, env=env,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              text=not isinstance(input, bytes))

    def _drain(self):
        ids = self.docker("ps", "-aq", timeout=30).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=60)
        imgs = self.docker("images", "-q", timeout=30).stdout.split()
        if imgs:
            self.docker("rmi", "-f", *sorted(set(imgs)), timeout=60)

    def _runc_roots(self):
        roots = []
        for d in os.listdir(self.exec_root) if os.path.isdir(self.exec_root) else []:
            if d.startswith("runtime-") and os.path.isdir(os.path.join(self.exec_root, d)):
                roots += [os.path.join(self.exec_root, d, ns) for ns in os.listdir(os.path.join(self.exec_root, d))]
        return roots

    def stop(self):
        try:
            super().stop()
        finally:
            self.containerd.stop()
