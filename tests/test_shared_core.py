"""Forked children ask their parent's core (MsaShare) instead of starting a
helper each: one cache, one login and one refresh schedule for a parent and
its forked workers, and no extra process. Against real OpenBao, with a
LoopbackProxy counting the reads that reach it. The child falls back to a
helper of its own whenever the parent's core cannot serve it: its
environment differs, the parent's changed, or the parent is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import harness
import pytest
from conftest import clean_env, plugin_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc (children)")

SCRIPT = Path(__file__).resolve().parent / "scripts" / "shared_core.py"
PARENT_NOTE = ["transport: the parent process's core (forked)"]


def run(mode: str, env: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    """The script's report lines (in parent-exits mode, one per child)."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "https://mlflow.test/api", mode],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, f"no report (rc {out.returncode}): {out.stderr[-3000:]}"
    return [json.loads(line) for line in lines]


@pytest.fixture()
def counted(vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str):  # type: ignore[no-untyped-def]
    """The plugin's environment, Vault behind a proxy that counts the reads."""
    vault_ready.kv_put("secret", secret_path, {"token": "tok-" + secret_path[-6:]}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.removeprefix("http://")) as proxy:
        env = plugin_env(
            vault_ready,
            "https://mlflow.test",
            VAULT_ADDR=proxy.url,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_VAULT_TTL_SEC="300",
        )
        yield env, proxy, f"GET /v1/secret/{secret_path}", "Bearer tok-" + secret_path[-6:]


def reads(proxy: harness.LoopbackProxy, line: str) -> int:
    return sum(1 for request in proxy.request_lines if request.split("?")[0] == line)


def test_forked_children_use_the_parents_core(counted) -> None:  # type: ignore[no-untyped-def]
    """Four forked children get the header from the parent's core: no helper
    started, no child process, and one read at the server for all five
    processes (each child's own header cache was cleared, so each reached a
    core). Without sharing, each child starts a helper that reads again."""
    env, proxy, read, expected = counted
    (result,) = run("shared", env)
    assert result["parent"] == expected
    assert result["parent_type"] == "InProcess"
    assert len(result["children"]) == 4
    for kid in result["children"]:
        assert kid.get("error") is None, kid
        assert kid["first"] == expected
        assert kid["after_first"] == {"notes": PARENT_NOTE, "starts": 0, "children": 0, "type": "Helper"}, kid
    assert reads(proxy, read) == 1


def test_a_child_with_another_environment_gets_its_own_helper(counted, vault_ready, secret_path) -> None:  # type: ignore[no-untyped-def]
    """A child that points the plugin at another secret is refused by the
    parent's core (which never takes a child's settings) and starts a helper
    of its own, which reads that secret."""
    env, proxy, read, expected = counted
    other = secret_path + "-other"
    vault_ready.kv_put("secret", other, {"token": "other-token"}, version=1)
    (result,) = run("child-env", {**env, "MSA_OTHER_PATH": f"secret/{other}"})
    assert result["parent"] == expected
    (kid,) = result["children"]
    assert kid.get("error") is None, kid
    assert kid["first"] == "Bearer other-token"
    after = kid["after_first"]
    assert after["starts"] == 1 and after["children"] == 1, after
    assert after["notes"][0].startswith("transport: helper process (forked; the parent process's core refused"), after
    assert reads(proxy, read) == 1  # the parent's; the child read the other secret
    assert reads(proxy, f"GET /v1/secret/{other}") == 1


def test_a_child_is_refused_once_the_parents_environment_changed(counted) -> None:  # type: ignore[no-untyped-def]
    """The child's first request is served by the parent's core; then the
    parent hands its core another environment. The child's next request is
    refused there (it would be served with settings the child never had) and
    goes to a helper of its own, started with the child's environment."""
    env, _, _, expected = counted
    (result,) = run("parent-env", env)
    assert result["parent"] == expected and result["parent_after_change"] == expected
    (kid,) = result["children"]
    assert kid.get("error") is None, kid
    assert kid["first"] == expected and kid["after_first"]["starts"] == 0, kid
    assert kid["second"] == expected
    assert kid["after_second"]["starts"] == 1 and kid["after_second"]["children"] == 1, kid
    assert "refused" in kid["after_second"]["notes"][0], kid


def test_children_outlive_their_parent(counted) -> None:  # type: ignore[no-untyped-def]
    """The parent exits after its two children's first requests (served by
    its core): each child's next request starts a helper of its own, at once
    (a sibling may hold the parent's end of a child's socket open, so the
    child checks its parent rather than wait for EOF)."""
    env, _, _, expected = counted
    kids = run("parent-exits", env)
    assert len(kids) == 2, kids
    for kid in kids:
        assert kid.get("error") is None, kid
        assert kid["first"] == expected and kid["after_first"]["starts"] == 0, kid
        assert kid["second"] == expected
        assert kid["after_second"]["starts"] == 1 and kid["after_second"]["children"] == 1, kid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_fork_leaves_no_descriptor_behind_in_the_parent(counted) -> None:  # type: ignore[no-untyped-def]
    """Each fork makes a socket pair; the parent keeps none of the child's
    ends: after 20 forked children have exited, its open descriptors are as
    many as before. The core closes its copy of a child's socket on the
    child's EOF, on a goroutine of its own: the count is awaited (up to 10 s),
    and a descriptor kept for good still fails the test."""
    env, _, _, expected = counted
    code = (
        "import os, sys\n"
        "sys.argv = ['x', 'https://mlflow.test/api', 'none']\n"
        "import requests\n"
        "from mlflow.tracking.request_auth.registry import fetch_auth\n"
        "req = requests.Request('GET', sys.argv[1]).prepare(); req.prepare_auth(fetch_auth('mlflow_secrets_auth'))\n"
        "before = len(os.listdir('/proc/self/fd'))\n"
        "for _ in range(20):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "import time\n"
        "deadline = time.monotonic() + 10\n"
        "while len(os.listdir('/proc/self/fd')) > before and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print(before, len(os.listdir('/proc/self/fd')), req.headers['Authorization'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(**env), capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    before, after, _, sent = out.stdout.split()[-4:]
    assert sent == expected.split()[1]
    assert int(after) == int(before), out.stdout
