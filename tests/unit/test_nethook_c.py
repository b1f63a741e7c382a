"""The compiled hook's own pieces (csrc/sandbox-nethook.c): its SHA-256 and its reading of runc's state.

The fast path may only ever load what the Python hook would: the annotation's exact bytes,
checked against the hash.  Compiled here with a test `main` that prints what it computed.
"""

import hashlib
import json
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, c_compiler

SRC = os.path.join(ROOT, "csrc", "sandbox-nethook.c")
HARNESS = f"""
#define main hook_main
#include "{SRC}"
#undef main
int main(void) {{
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    buf[n] = 0;
    char out[65];
    sha256_hex((unsigned char *)buf, n, out);
    long pid = 0; char *rules = NULL; size_t len = 0;
    int rc = parse_state(buf, n, &pid, &rules, &len);
    printf("%s\\n%d\\n%ld\\n", out, rc, pid);
    if (rules) fwrite(rules, 1, len, stdout);
    return 0;
}}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    cc = c_compiler("the network hook")
    d = tmp_path_factory.mktemp("nethook")
    src, out = d / "harness.c", d / "harness"
    src.write_text(HARNESS)
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(src)], check=True)
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(d / "hook"), SRC], check=True)

    def run(data: bytes):
        res = subprocess.run([str(out)], input=data, capture_output=True, timeout=10)
        assert res.returncode == 0
        sha, rc, pid, rules = res.stdout.split(b"\n", 3)
        return sha.decode(), int(rc), int(pid), rules

    run.hook = str(d / "hook")
    return run


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_sha256_is_sha256(harness, data):
    assert harness(data)[0] == hashlib.sha256(data).hexdigest()


def go_json(value):
    """JSON as Go's encoding/json (and so runc) writes it: <, > and & escaped, UTF-8 kept."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


@settings(max_examples=60, deadline=None)
@given(rules=st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=1), max_size=80),
       other=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3), pid=st.integers(1, 2**31))
def test_the_annotation_and_pid_are_read_as_json_means_them(harness, rules, other, pid):
    state = {"ociVersion": "1.0.2", "id": "c", "status": "creating", "pid": pid, "bundle": "/b",
             "annotations": {**other, "org.sandbox-runtime.network": rules, "pid": "7"}}
    _, rc, got_pid, got = harness(go_json(state))
    assert (rc, got_pid, got) == (0, pid, rules.encode())


@pytest.mark.parametrize("text", [b"", b"[]", b'{"pid": ', b'{"annotations": {"org.sandbox-runtime.network": 5}}',
                                  b'{"a": "\\ud800"}', b'{"a": [' * 100 + b"]" * 100 + b"}", b'{"a": "x}',
                                  b'{"pid": 5, "annotations": {"org.sandbox-runtime.network": "\\q"}}'])
def test_malformed_state_is_refused_not_misread(harness, text):
    _, rc, _, rules = harness(text)
    assert rc == -1 or rules == b""


def test_the_hook_refuses_bad_arguments(harness):
    res = subprocess.run([harness.hook, "--sha256", "x"], input=b"{}", capture_output=True, timeout=10)
    assert res.returncode == 1 and b"usage" in res.stderr
