"""A pod sandbox refused by sandbox-runc, as the kubelet sees it through the CRI (issue 12).

containerd's shim starts the runtime of the pod's pause container with no stdio: stdout and
stderr on /dev/null opened read-only.  The reason must still reach the kubelet (containerd reads
runc's --log file) and the audit log must still say `refused`.
"""

import pytest

from tests.e2e.cri.client import error_text
from tests.e2e.engines import ANNOTATION

pytestmark = pytest.mark.e2e


def test_a_pod_refused_by_annotation_shows_the_reason_and_leaves_a_refused_record(cri):
    grpc = cri.client.grpc
    before = {r["seq"] for r in cri.records()}
    with pytest.raises(grpc.RpcError) as info:
        cri.run_pod("refused-pod", profile="/tmp/evil.yaml")
    text = error_text(info.value)
    reason = (f"refused by sandbox: annotation {ANNOTATION}=/tmp/evil.yaml asks for a profile the operator "
              "does not allow (allowed: baseline, restricted, strict)")
    assert reason in text, text
    assert "exit status" not in text and "log.json: no such file" not in text
    refused = [r for r in cri.records() if r["seq"] not in before and r["event"] == "refused"]
    assert len(refused) == 1 and refused[0]["data"]["reason"] == reason
    pod_id = refused[0]["container_id"]
    assert len(pod_id) == 64 and pod_id not in {p.id for p in cri.client.list_pods()}
    assert cri.records(pod_id)[-1]["event"] == "refused"  # runc never created it: nothing after the refusal
