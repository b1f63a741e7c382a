"""Fixtures of the CRI suite: one private containerd with its CRI plugin per session.

`cri` is a started `harness.CriEngine` (see harness.py): `cri.client` the CRI client,
`cri.pod(...)` a pod removed at the end of the `with` block, `cri.records(cid)` the audit
records sandbox-runc wrote, `cri.write_config(...)` to change the operator config.
Tests that change the operator config restore it (the `cri_config` fixture does).
"""

import pytest

from tests.e2e.conftest import e2e_unavailable
from tests.e2e.cri.harness import CriEngine, tools_missing


@pytest.fixture(scope="session")
def _cri_engine(_e2e_state, demo_rootfs, tmp_path_factory):
    _, reason = _e2e_state
    if reason:
        e2e_unavailable(reason)
    missing = tools_missing()
    if missing:
        e2e_unavailable("the CRI suite needs " + ", ".join(missing))
    engine = CriEngine(tmp_path_factory.mktemp("cri"), demo_rootfs).start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def cri(e2e, _cri_engine):
    return _cri_engine


@pytest.fixture
def cri_config(cri):
    """Change the operator config for one test: `cri_config(default_profile=...)`; restored after."""
    with open(cri.config) as f:
        saved = f.read()

    def write(**keys):
        cri.write_config(allowed_profiles=["restricted", "strict"], **keys)

    yield write
    with open(cri.config, "w") as f:
        f.write(saved)
