"""Fleet-scale check (issue 16): many processes on one node, half forked and
half spawned, each sending requests through the plugin for a while, all
reading the secret through one `bao agent` (tokenless, AppRole auto-auth). A
LoopbackProxy in front of OpenBao counts the reads that reach the server.

As in a training job, a driver process uses the plugin (its core loads
in-process), then forks half of the workers (DataLoader, fork-context pools)
and spawns the other half. The forked ones ask the driver's core (MsaShare):
one cache and one refresh schedule for the driver and all of them. Each
spawned one has a core of its own.

The size is a parameter: the default is small enough for every test run
(MSA_FLEET_PROCESSES=16, MSA_FLEET_SECONDS=10); the full check of the issue is
MSA_FLEET_PROCESSES=32 MSA_FLEET_SECONDS=30. The figures are printed (run with
-s) and appended to $MSA_FLEET_REPORT when set.

The bound is the issue's: reads <= processes x (duration / TTL + 1). Each
core reads at most once per refresh interval plus its first read; refresh
comes at a random point in [TTL/2, 3/4 TTL] (issue 14), so one core reads
about 1.6 times per TTL. The 1 + processes/2 cores stay within the bound; a
core per process (forked workers with helpers of their own) would not:
about 1.6 x processes x duration / TTL."""

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

PROCESSES = int(os.environ.get("MSA_FLEET_PROCESSES", "16"))
SECONDS = float(os.environ.get("MSA_FLEET_SECONDS", "10"))
TTL = 2
PAUSE = 0.02  # between two requests of one process


def _worker(env: dict[str, str], seconds: float, queue: Any) -> None:
    """Send requests through the plugin's auth for ``seconds``; report counts."""
    ok = failed = 0
    first_error = ""
    notes: list[str] = []
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
        from mlflow_secrets_auth import _native

        notes = _native.transport_notes()
    finally:
        queue.put((os.getpid(), ok, failed, first_error, notes))


def _driver(env: dict[str, str], processes: int, seconds: float, queue: Any) -> None:
    """The job's main process: use the plugin, then fork half the workers and
    spawn the others; report their results and exit codes."""
    os.environ.update(env)
    import requests
    from mlflow.tracking.request_auth.registry import fetch_auth

    req = requests.Request("GET", env["MLFLOW_TRACKING_URI"]).prepare()
    req.prepare_auth(fetch_auth("mlflow_secrets_auth"))  # the driver's core loads in-process
    results: Any = multiprocessing.get_context("spawn").Queue()
    fork, spawn = multiprocessing.get_context("fork"), multiprocessing.get_context("spawn")
    forked = processes // 2
    procs = [fork.Process(target=_worker, args=(env, seconds, results)) for _ in range(forked)]
    procs += [spawn.Process(target=_worker, args=(env, seconds, results)) for _ in range(processes - forked)]
    for p in procs:
        p.start()
    got = [results.get(timeout=seconds + 180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    queue.put({"results": got, "exitcodes": [p.exitcode for p in procs],
               "driver": req.headers.get("Authorization") == env["_FLEET_EXPECT"]})


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
    driver = multiprocessing.get_context("spawn").Process(target=_driver, args=(env, PROCESSES, SECONDS, queue))
    started = time.monotonic()
    driver.start()
    report = queue.get(timeout=SECONDS + 300)
    driver.join(timeout=30)
    results = report["results"]
    wall = time.monotonic() - started
    reads = sum(1 for line in proxy.request_lines if line.split("?")[0] == read) - before
    requests_ok = sum(r[1] for r in results)
    failures = [r for r in results if r[2]]
    bound = PROCESSES * (SECONDS / TTL + 1)
    shared = sum(1 for r in results if r[4] == ["transport: the parent process's core (forked)"])
    summary = (
        f"fleet: {PROCESSES} processes ({forked} forked, {PROCESSES - forked} spawned), {SECONDS:.0f} s each, "
        f"TTL {TTL} s, through one bao agent: {requests_ok} requests, {sum(r[2] for r in results)} failed, "
        f"{reads} reads at the server (bound: processes x (duration/TTL + 1) = {bound:.0f}), "
        f"{shared} workers served by the driver's core, {wall:.1f} s wall"
    )
    print(summary)
    if report_file := os.environ.get("MSA_FLEET_REPORT"):
        with Path(report_file).open("a") as fh:
            fh.write(summary + "\n")
    assert driver.exitcode == 0 and report["driver"], report
    assert report["exitcodes"] == [0] * PROCESSES, report["exitcodes"]
    assert shared == forked, [r[4] for r in results]  # every forked worker, and no spawned one
    assert not failures, failures[:3]
    assert requests_ok > PROCESSES * 10, summary  # the processes really sent requests
    assert 0 < reads <= bound, summary
