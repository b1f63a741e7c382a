import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
# A sandbox daemon an operator runs on this machine must not serve the tests' sandbox-runc calls
# unasked: tests that use one start their own and name its socket.
os.environ.setdefault("SANDBOX_DAEMON_SOCKET", "off")
# Nor a sandbox agent: complain-mode containers of the tests would be recorded in the operator's log.
os.environ.setdefault("SANDBOX_AGENT_SOCKET", "off")
# The CRI suite loads gRPC into this process; by default gRPC's fork handlers start its threads
# again in every child forked from here.  A forked child whose seccomp filter then denies
# exit_group leaves those threads alive (glibc's _exit falls back to exit(2), one thread), and the
# half-dead child holds the test's pipes open for ever.  Children forked by tests need no gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# Nor may the tests use the host's /run/sandbox (id ranges in use, engine directories found):
# sandbox and sandbox-runc started by the tests get a directory of this session's own.  (Engines
# do not pass SANDBOX_* on: the operator configs the engine tests write name it as runtime_dir.)
if "SANDBOX_RUNTIME_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["SANDBOX_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="sandbox-tests-runtime-")
    atexit.register(shutil.rmtree, os.environ["SANDBOX_RUNTIME_DIR"], True)
RUNTIME_DIR = os.environ["SANDBOX_RUNTIME_DIR"]
OCI = os.path.join(ROOT, "oci")
# the config.json files engines really wrote (oci/<engine>-config.json, scripts/capture-engine-config.py)
ENGINE_CONFIGS = sorted(f[:-len("-config.json")] for f in os.listdir(OCI) if f.endswith("-config.json"))


import pytest  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

# CI gets the same examples on every run, so a green run is reproducible and a red one is a change's
# doing; locally (or with SANDBOX_HYPOTHESIS_RANDOM=1) every run explores new ones.
_hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if (os.environ.get("CI") or os.environ.get("SANDBOX_E2E") == "require") and \
        not os.environ.get("SANDBOX_HYPOTHESIS_RANDOM"):
    _hypothesis_settings.load_profile("ci")

# sandbox's own network hook program as the probe reports it when installed and trusted
# (HostFacts.own_hooks, with the hook's path probed as a root-owned chain)
NETHOOK = "/usr/lib/sandbox/bin/sandbox-nethook"


def nethook_facts():
    """HostFacts keyword arguments of a host where sandbox's network hook program is installed and trusted."""
    from sandbox.core.hostfacts import Executable

    return {"own_hooks": frozenset({NETHOOK}), "realpaths": {NETHOOK: NETHOOK},
            "executables": {NETHOOK: Executable(real=NETHOOK, trusted_chain=True)}}


C_DISPATCHER_SRC = os.path.join(ROOT, "csrc", "sandbox-runc.c")
SH_DISPATCHER = os.path.join(ROOT, "bin", "sandbox-runc")


def c_compiler(what):
    """The C compiler's path; without one the test skips (fails under SANDBOX_E2E=require)."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if os.environ.get("SANDBOX_E2E") == "require":
            pytest.fail(f"no C compiler to build {what} (SANDBOX_E2E=require)")
        pytest.skip(f"no C compiler to build {what}")
    return cc


@pytest.fixture(scope="session")
def c_dispatcher(tmp_path_factory):
    """csrc/sandbox-runc.c compiled as setup.py compiles it (its Python path: set SANDBOX_PYTHON)."""
    import subprocess

    cc = c_compiler("the sandbox-runc dispatcher")
    d = tmp_path_factory.mktemp("cbin")
    os.chmod(d, 0o755)
    out = d / "sandbox-runc"
    for flags in (["-static"], []):  # as setup.py: static where libc.a is installed
        if subprocess.run([cc, "-O2", "-Wall", "-Werror", *flags, "-o", str(out), C_DISPATCHER_SRC]).returncode == 0:
            break
    else:
        pytest.fail(f"{C_DISPATCHER_SRC} does not compile")
    return str(out)


def script(name: str):
    """scripts/<name>.py loaded as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"sandbox_script_{name}", os.path.join(ROOT, "scripts",
                                                                                          f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
