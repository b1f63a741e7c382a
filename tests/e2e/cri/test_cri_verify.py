"""`sandbox verify --all` on Kubernetes' path: pods run through the CRI, under two runtime handlers.

The pod under the `sandbox` handler (sandbox-runc) is hardened, its pause container included;
the pod under the plain `runc` handler is a bypass: another runtime handler.  The roots are
found from the private containerd's configuration (its state directory, each bundle's
options.json naming the handler's runc root), nothing is given on the command line.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.cri.harness import K8S_NAMESPACE

pytestmark = pytest.mark.e2e


def test_pods_of_both_runtime_handlers_are_found_and_told_apart(cri):
    with cri.pod() as good, cri.pod(handler="runc") as plain:
        app = good.container("app", ["sleep", "600"], run_as_user=1000)
        other = plain.container("app", ["sleep", "600"])
        env = {**os.environ, "SANDBOX_CONFIG": cri.config, "SANDBOX_DAEMON_SOCKET": "off"}
        res = subprocess.run([sys.executable, "-m", "sandbox", "verify", "--all", "--format", "json"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode in (0, 1), res.stderr
        doc = json.loads(res.stdout)
        rows = {c["id"]: c for c in doc["containers"]}
        for cid in (good.id, app):
            assert rows[cid]["engine"] == "containerd" and rows[cid]["namespace"] == K8S_NAMESPACE
            assert rows[cid]["state"] == "hardened" and rows[cid]["profile"] == "baseline", rows[cid]
        for cid in (plain.id, other):
            assert rows[cid]["state"] == "bypass" and "no sandbox annotation" in rows[cid]["reason"], rows[cid]
        assert cri.daemon.runc_root_of("sandbox") in doc["roots"]
        assert cri.daemon.runc_root_of("runc") in doc["roots"]
