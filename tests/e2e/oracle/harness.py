"""The oracle: run a config through sandbox-runc and the real runc, and decide whether anything got out.

Before the runs, `Oracle` puts a canary file with a random secret in a directory under the host's
/etc (forbidden by every profile) and picks a "command ran" marker path under the host's /run that
only a host process could create (its directory is world-writable, so a container that reached it
through any mount could create it too, and that is caught as well).

`Oracle.run(config, profile, exec_argv=None)` writes `config` as a bundle and runs it with
`sandbox-runc run` (or, with `exec_argv`, creates and starts it and runs `sandbox-runc exec
<exec_argv> <id> /probe oracle NAME` in it).  `Oracle.exec(profile, exec_argv)` runs that exec in
a container of `profile` kept running for the session (`/probe sleep`).  The outcome is one of:

- `refused`: sandbox-runc said no (non-zero exit, "refused by sandbox" and a reason on stderr; for
  an exec command line or `--process` file, a `sandbox-runc:` line saying what is refused and why);
- `ran`: the container ran /probe oracle to the end;
- `failed`: sandbox let it through but runc (or the kernel) did not start it.

Whatever the outcome, `Result.breaches` lists what got out: the canary directory seen or read from
inside, the secret anywhere in the output, the marker created, a host block device readable, or
/proc/self/status inside outside the profile (capabilities, NoNewPrivs, seccomp, root).  Tests
assert it is empty.  The probe runs as the profile's user: whatever `config` says (the generated
and hand-written configs set uid 1000 where the profile requires a non-root user).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sandbox.host.bundle import spec_for_rootfs
from sandbox.host.inspect import cap_names

PROBE_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "escape", "probe.c")


def build_probe(out_dir: str) -> tuple[str | None, str]:
    """Compile probe.c with `gcc -static -O2` into `out_dir`: (binary, "") or (None, why not)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "gcc is not installed (the probe is built with gcc -static)"
    binary = os.path.join(out_dir, "probe")
    res = subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", binary, PROBE_SOURCE], capture_output=True,
                         text=True, timeout=120)
    if res.returncode != 0:
        if "cannot find -lc" in res.stderr:
            return None, "no static C library (apt-get install libc6-dev)"
        raise RuntimeError(f"building probe.c failed:\n{res.stderr}")
    return binary, ""


FILE_SIZE_LIMIT = 256 * 1024 * 1024


def _bounded_files() -> None:
    """No file written by sandbox-runc, runc or the container may grow past 256 MiB (RLIMIT_FSIZE is
    inherited, and raising it needs CAP_SYS_RESOURCE): a run that goes wrong cannot fill the disk."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


_CREDS = re.compile(r"^INFO name=creds(.*)$", re.M)
_EXPOSED = re.compile(r"^ORACLE exposed=(\S+) content=(\S+)$", re.M)
# sandbox-runc refusing a command line or --process file it will not guess the meaning of
_REFUSED_INPUT = re.compile(r"^sandbox-runc: (.*\brefuse.*)$", re.M)
_BLOCKDEV = re.compile(r"^ORACLE blockdev=(\S+) major=(\d+) minor=(\d+) readable=(\d)$", re.M)


# (table row, attack, profile, outcome, reason) of every hand-written attack run, for the results table
RESULTS: list[tuple[str, str, str, str, str]] = []


@dataclass
class Result:
    outcome: str  # refused | ran | failed
    returncode: int
    stdout: str
    stderr: str
    breaches: list[str] = field(default_factory=list)
    creds: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        m = re.search(r"refused by sandbox profile \S+: (.*)", self.stderr) or _REFUSED_INPUT.search(self.stderr)
        return m.group(1).strip() if m else ""

    def describe(self) -> str:
        return (f"outcome={self.outcome} rc={self.returncode} breaches={self.breaches}\n--- stdout\n"
                f"{self.stdout[-3000:]}--- stderr\n{self.stderr[-3000:]}")


class Oracle:
    """Canary, marker, a probe rootfs and a private runc root; `run` one config at a time."""

    PROFILES = ("baseline", "restricted", "strict")

    def __init__(self, workdir: str, runc: str, probe_binary: str, demo_rootfs: str, shim: str) -> None:
        self.workdir = workdir
        self.runc = runc
        self.shim = shim
        token = uuid.uuid4().hex[:12]
        self.name = f"sandbox-oracle-{token}"
        self.secret = f"SANDBOX-CANARY-{os.urandom(16).hex()}"
        self.canary_dir = f"/etc/{self.name}"
        os.mkdir(self.canary_dir, 0o755)
        os.chmod(self.canary_dir, 0o755)  # noqa: S103 - readable by any uid, so DAC never hides an exposure
        with open(os.path.join(self.canary_dir, "canary"), "w") as f:
            f.write(self.secret + "\n")
        os.chmod(os.path.join(self.canary_dir, "canary"), 0o644)
        self.marker_dir = f"/run/{self.name}"
        os.mkdir(self.marker_dir)
        os.chmod(self.marker_dir, 0o777)  # noqa: S103 - whatever reached it could create the marker
        self.marker = os.path.join(self.marker_dir, "ran")
        # a 0755 parent: a user-namespaced root must be able to reach the rootfs
        self.base = tempfile.mkdtemp(prefix="sandbox-oracle-", dir="/tmp")  # noqa: S108
        os.chmod(self.base, 0o755)  # noqa: S103
        self.rootfs = self._rootfs("rootfs", demo_rootfs, probe_binary)
        self.runc_root = os.path.join(self.base, "runc-root")
        self.bundles = os.path.join(self.base, "bundles")
        os.mkdir(self.bundles, 0o711)
        self.cache = os.path.join(self.base, "cache")
        os.mkdir(self.cache, 0o700)
        self.audit = os.path.join(self.base, "audit", "audit.jsonl")
        self.profile_dir = os.path.join(self.base, "profiles")
        os.mkdir(self.profile_dir, 0o755)
        self.stats: Counter[str] = Counter()
        self.exec_stats: Counter[str] = Counter()  # Oracle.exec: argv tried in running containers
        self._profiles: dict[str, object] = {}
        self._running: dict[str, str] = {}  # profile -> id of its long-lived container

    # -- set-up -------------------------------------------------------------------------------------
    def _rootfs(self, name: str, demo_rootfs: str, probe_binary: str) -> str:
        path = os.path.join(self.base, name)
        shutil.copytree(demo_rootfs, path, symlinks=True)
        shutil.copyfile(probe_binary, os.path.join(path, "probe"))
        os.chmod(os.path.join(path, "probe"), 0o755)  # noqa: S103
        os.chown(os.path.join(path, "home", "app"), 1000, 1000)
        return path

    def rootfs_variant(self, name: str, change) -> str:
        """A copy of the probe rootfs changed by `change(path)` (made once per name)."""
        path = os.path.join(self.base, f"rootfs-{name}")
        if not os.path.exists(path):
            shutil.copytree(self.rootfs, path, symlinks=True)
            change(path)
        return path

    def custom_profile(self, name: str, text: str) -> str:
        """A profile file `name` in the oracle's profile directory (root-owned, 0644); its path."""
        path = os.path.join(self.profile_dir, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(f"apiVersion: sandbox/v1\nkind: Profile\nname: {name}\n{text}")
        os.chmod(path, 0o644)
        return path

    def _operator_config(self, profile: str) -> str:
        path = os.path.join(self.base, f"config-{os.path.basename(profile).removesuffix('.yaml')}.yaml")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(f"runc: {self.runc}\naudit_log: {json.dumps(self.audit)}\ndefault_profile: {json.dumps(profile)}\n"
                        f"profile_dirs: [{json.dumps(self.profile_dir)}]\n")
            os.chmod(path, 0o644)
        return path

    def profile(self, ref: str):
        if ref not in self._profiles:
            from sandbox.core.loader import load_profile

            self._profiles[ref] = load_profile(ref, search_dirs=(self.profile_dir,))
        return self._profiles[ref]

    def base_config(self, profile: str = "baseline", args: list[str] | None = None) -> dict:
        """A `runc spec`-shaped config running /probe oracle as the profile's user (uid 1000 where
        the profile wants a non-root user and no user namespace maps root)."""
        config = spec_for_rootfs(self.rootfs, args or ["/probe", "oracle", self.name])
        p = self.profile(profile)
        if p.user.run_as_non_root and p.user.user_namespace != "required":  # type: ignore[attr-defined]
            config["process"]["user"] = {"uid": 1000, "gid": 1000}
        return config

    def close(self) -> None:
        subprocess.run([self.runc, "--root", self.runc_root, "list", "-q"], capture_output=True, timeout=30)
        self._delete_all()
        shutil.rmtree(self.canary_dir, ignore_errors=True)
        shutil.rmtree(self.marker_dir, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def _delete_all(self) -> None:
        if not os.path.isdir(self.runc_root):
            return
        res = subprocess.run([self.runc, "--root", self.runc_root, "list", "-q"], capture_output=True, text=True,
                             timeout=30)
        for cid in res.stdout.split():
            subprocess.run([self.runc, "--root", self.runc_root, "delete", "-f", cid], capture_output=True,
                           timeout=30)

    # -- one run ---------------------------------------------------------------------------------------
    def _env(self, profile: str) -> dict:
        env = {**os.environ, "SANDBOX_CONFIG": self._operator_config(profile), "SANDBOX_CACHE_DIR": self.cache,
               "SANDBOX_DAEMON_SOCKET": "off"}
        env.pop("SANDBOX_RUNC", None)
        return env

    def running(self, profile: str) -> str:
        """The id of a container of `profile` running `/probe sleep`, created (through sandbox-runc)
        on first use and kept for the session."""
        if profile not in self._running:
            cid = f"oracle-exec-{profile}-{uuid.uuid4().hex[:8]}"
            bundle = tempfile.mkdtemp(prefix="run-", dir=self.bundles)
            os.chmod(bundle, 0o711)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(self.base_config(profile, ["/probe", "sleep"]), f)
            env = self._env(profile)
            for args in (["create", "--bundle", bundle, cid], ["start", cid]):
                rc, _, err = self._shim(args, env, 90)
                if rc != 0:
                    raise RuntimeError(f"sandbox-runc {args[0]} of the exec container under {profile}: {err}")
            self._running[profile] = cid
        return self._running[profile]

    def exec(self, profile: str, exec_argv: list[str], tail: list[str] | None = None, timeout: int = 60) -> Result:
        """`sandbox-runc exec <exec_argv> <id> <tail>` in the running container of `profile`, judged as
        `run` judges; `tail` defaults to `/probe oracle NAME` (None after a `--process` file: pass [])."""
        cid = self.running(profile)
        tail = ["/probe", "oracle", self.name] if tail is None else tail
        rc, out, err = self._shim(["exec", *exec_argv, cid, *tail], self._env(profile), timeout)
        return self._verdict(rc, out, err, profile, self.exec_stats)

    def _verdict(self, rc: int, out: str, err: str, profile: str, stats: Counter[str]) -> Result:
        """The outcome of one run, judged, and counted in `stats`."""
        if rc != 0 and ("refused by sandbox" in err or _REFUSED_INPUT.search(err)):
            outcome = "refused"
        elif rc == 0 and re.search(r"^DONE$", out, re.M):
            outcome = "ran"
        else:
            outcome = "failed"
        result = Result(outcome, rc, out, err)
        self._judge(result, profile)
        stats[outcome] += 1
        if result.breaches:
            stats["breached"] += 1
        return result

    def run(self, config: dict, profile: str = "baseline", *, exec_argv: list[str] | None = None,
            bundle_setup=None, cid: str | None = None, timeout: int = 90) -> Result:
        """Run `config` under `profile` (a built-in name or a custom profile's name); see the module doc."""
        cid = cid or f"oracle-{uuid.uuid4().hex[:12]}"
        bundle = tempfile.mkdtemp(prefix="b-", dir=self.bundles)
        os.chmod(bundle, 0o711)
        if bundle_setup is not None:
            bundle_setup(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        env = self._env(profile)
        try:
            if exec_argv is None:
                rc, out, err = self._shim(["run", "--bundle", bundle, cid], env, timeout)
            else:
                rc, out, err = self._exec(bundle, cid, exec_argv, env, timeout)
        finally:
            subprocess.run([self.runc, "--root", self.runc_root, "delete", "-f", cid], capture_output=True,
                           timeout=30)
            shutil.rmtree(bundle, ignore_errors=True)
        return self._verdict(rc, out, err, profile, self.stats)

    def run_plain(self, config: dict, *, capture: bool = True, timeout: int = 60) -> Result:
        """`config` under plain runc, no sandbox (the controls); judged as a run under baseline.

        `capture=False` sends the container's output to /dev/null: runc re-opens onto the container's
        /dev/null any standard stream with the same device number, and a control whose /dev/null is a
        regular file would otherwise write into it."""
        bundle = tempfile.mkdtemp(prefix="plain-", dir=self.bundles)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        cid = "oracle-plain-" + uuid.uuid4().hex[:8]
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        try:
            res = subprocess.run([self.runc, "--root", self.runc_root, "run", "--bundle", bundle, cid], stdout=out,
                                 stderr=out, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                 preexec_fn=_bounded_files)
        finally:
            subprocess.run([self.runc, "--root", self.runc_root, "delete", "-f", cid], capture_output=True,
                           timeout=30)
            shutil.rmtree(bundle, ignore_errors=True)
        result = Result("ran" if res.returncode == 0 else "failed", res.returncode, res.stdout or "",
                        res.stderr or "")
        self._judge(result, "baseline")
        return result

    def _shim(self, args: list[str], env: dict, timeout: int) -> tuple[int, str, str]:
        # Not pipes: a container's init (or an escaped hook) would hold them open.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run([self.shim, "--root", self.runc_root, *args], stdout=out, stderr=err,
                                      env=env, timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.base,
                                      preexec_fn=_bounded_files)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = -1
            out.seek(0)
            err.seek(0)
            return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")

    def _exec(self, bundle: str, cid: str, exec_argv: list[str], env: dict, timeout: int) -> tuple[int, str, str]:
        """Create and start the container (its process waits), then exec the probe in it with `exec_argv`."""
        rc, out, err = self._shim(["create", "--bundle", bundle, cid], env, timeout)
        if rc != 0:
            return rc, out, err
        rc, out2, err2 = self._shim(["start", cid], env, timeout)
        if rc != 0:
            return rc, out + out2, err + err2
        rc, out3, err3 = self._shim(["exec", *exec_argv, cid, "/probe", "oracle", self.name], env, timeout)
        return rc, out + out2 + out3, err + err2 + err3

    # -- the verdict ---------------------------------------------------------------------------------
    def _judge(self, r: Result, profile: str) -> None:
        text = r.stdout + r.stderr
        if self.secret in text or self.secret.encode().hex() in text:
            r.breaches.append("the canary's secret appears in the output")
        for path, content in _EXPOSED.findall(r.stdout):
            r.breaches.append(f"the host directory {self.canary_dir} is visible inside at {path} (content {content})")
        for path, major, minor, readable in _BLOCKDEV.findall(r.stdout):
            if readable == "1":
                r.breaches.append(f"host block device {major}:{minor} is readable inside at {path}")
        if os.path.lexists(self.marker):
            r.breaches.append(f"the marker {self.marker} was created: a command ran on the host")
            os.unlink(self.marker)
        m = _CREDS.search(r.stdout)
        if m:
            r.creds = dict(re.findall(r"(\w+)=(\S*)", m.group(1)))
            r.breaches += self.creds_breaches(r.creds, profile)
        elif r.outcome == "ran":
            r.breaches.append("the probe printed no credentials")

    def creds_breaches(self, creds: dict[str, str], profile: str) -> list[str]:
        """How /proc/self/status inside differs from what `profile` allows."""
        p = self.profile(profile)
        allowed = set(p.capabilities)  # type: ignore[attr-defined]
        out = []
        for key in ("CapBnd", "CapEff", "CapPrm", "CapAmb", "CapInh"):
            caps = set(cap_names(int(creds.get(key, "0") or "0", 16)))
            extra = caps - allowed
            if extra:
                out.append(f"{key} has {sorted(extra)}, outside the profile")
        if p.runc_mitigations and int(creds.get("CapInh", "0") or "0", 16):  # type: ignore[attr-defined]
            out.append(f"CapInh={creds['CapInh']}: inheritable capabilities are not empty")
        if p.no_new_privileges and creds.get("NoNewPrivs") != "1":  # type: ignore[attr-defined]
            out.append(f"NoNewPrivs={creds.get('NoNewPrivs')}")
        if p.seccomp.base != "none" and creds.get("Seccomp") != "2":  # type: ignore[attr-defined]
            out.append(f"Seccomp={creds.get('Seccomp')}: no seccomp filter")
        uid_map = creds.get("uid_map", "")
        host_root = creds.get("Uid") == "0" and (not uid_map or uid_map.startswith("0:0:"))
        if p.user.run_as_non_root and host_root:  # type: ignore[attr-defined]
            out.append(f"the process runs as host root (Uid=0, uid_map={uid_map or 'none'})")
        if p.user.user_namespace == "required" and (not uid_map or uid_map.startswith("0:0:")):  # type: ignore
            out.append(f"no user namespace mapping root away (uid_map={uid_map or 'none'})")
        return out
