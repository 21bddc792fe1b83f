"""Fleet-scale check (issue 16): many processes on one node, half forked and
half spawned, each sending requests through the plugin for a while, all
reading the secret through one `bao agent` (tokenless, AppRole auto-auth). A
LoopbackProxy in front of OpenBao counts the reads that reach the server.

The size is a parameter: the default is small enough for every test run
(MSA_FLEET_PROCESSES=8, MSA_FLEET_SECONDS=10); the full check of the issue is
MSA_FLEET_PROCESSES=32 MSA_FLEET_SECONDS=30. The figures are printed (run with
-s) and appended to $MSA_FLEET_REPORT when set.

The bound: each process reads at most once per refresh interval plus its first
read. The core refreshes ahead of the TTL (cache.RefreshAfter: at 3/4 of it;
jittered refresh may move that to [TTL/2, 3/4 TTL]), so the interval is at
least TTL/2 and reads <= processes x (duration / (TTL/2) + 1). Without the
cache every request would be a read: hundreds per process."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest

PROCESSES = int(os.environ.get("MSA_FLEET_PROCESSES", "8"))
SECONDS = float(os.environ.get("MSA_FLEET_SECONDS", "10"))
TTL = 2
PAUSE = 0.02  # between two requests of one process


def _worker(env: dict[str, str], seconds: float, queue: Any) -> None:
    """Send requests through the plugin's auth for ``seconds``; report counts."""
    ok = failed = 0
    first_error = ""
    try:
        os.environ.update(env)
        import requests
        from mlflow.tracking.request_auth.registry import fetch_auth

        auth = fetch_auth("mlflow_secrets_auth")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                req = requests.Request("GET", env["MLFLOW_TRACKING_URI"]).prepare()
                req.prepare_auth(auth)
                if req.headers.get("Authorization") == env["_FLEET_EXPECT"]:
                    ok += 1
                else:
                    failed += 1
                    first_error = first_error or f"header {req.headers.get('Authorization')!r}"
            except Exception as exc:
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            time.sleep(PAUSE)
    finally:
        queue.put((os.getpid(), ok, failed, first_error))


@pytest.fixture()
def counted_agent(vault_ready: harness.VaultAPIServer) -> Iterator[tuple[harness.BaoAgent, harness.LoopbackProxy]]:
    role_id, secret_id = vault_ready.create_approle(f"fleet-{secrets.token_hex(3)}", ["mlflow-reader"])
    with harness.LoopbackProxy(vault_ready.addr.removeprefix("http://")) as proxy:
        with harness.BaoAgent(proxy.url, role_id, secret_id) as agent:
            yield agent, proxy


def test_fleet_reads_through_one_agent(
    vault_ready: harness.VaultAPIServer,
    counted_agent: tuple[harness.BaoAgent, harness.LoopbackProxy],
    secret_path: str,
) -> None:
    agent, proxy = counted_agent
    value = "fleet-" + secrets.token_hex(8)
    vault_ready.kv_put("secret", secret_path, {"token": value}, version=1)
    env = {
        "MLFLOW_TRACKING_URI": "https://mlflow.test",
        "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "VAULT_AGENT_ADDR": agent.addr,
        "MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}",
        "MLFLOW_VAULT_TTL_SEC": str(TTL),
        "_FLEET_EXPECT": f"Bearer {value}",
    }
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "VAULT_", "BAO_")):
            env.setdefault(key, "")  # the machine's own settings never leak in
    read = f"GET /v1/secret/{secret_path}"
    before = sum(1 for line in proxy.request_lines if line.split("?")[0] == read)
    forked = PROCESSES // 2
    queue: Any = multiprocessing.get_context("spawn").Queue()
    fork, spawn = multiprocessing.get_context("fork"), multiprocessing.get_context("spawn")
    procs = [fork.Process(target=_worker, args=(env, SECONDS, queue)) for _ in range(forked)]
    procs += [spawn.Process(target=_worker, args=(env, SECONDS, queue)) for _ in range(PROCESSES - forked)]
    started = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get(timeout=SECONDS + 180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    wall = time.monotonic() - started
    reads = sum(1 for line in proxy.request_lines if line.split("?")[0] == read) - before
    requests_ok = sum(r[1] for r in results)
    failures = [r for r in results if r[2]]
    bound = PROCESSES * (SECONDS / (TTL / 2) + 1)
    issue_bound = PROCESSES * (SECONDS / TTL + 1)
    summary = (
        f"fleet: {PROCESSES} processes ({forked} forked, {PROCESSES - forked} spawned), {SECONDS:.0f} s each, "
        f"TTL {TTL} s, through one bao agent: {requests_ok} requests, {sum(r[2] for r in results)} failed, "
        f"{reads} reads at the server (bound {bound:.0f}; processes x (duration/TTL + 1) = {issue_bound:.0f}), "
        f"{wall:.1f} s wall"
    )
    print(summary)
    if report := os.environ.get("MSA_FLEET_REPORT"):
        with Path(report).open("a") as fh:
            fh.write(summary + "\n")
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    assert not failures, failures[:3]
    assert requests_ok > PROCESSES * 10, summary  # the processes really sent requests
    assert 0 < reads <= bound, summary
