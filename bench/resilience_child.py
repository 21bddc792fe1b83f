"""One resilience measurement in a fresh process; started by bench/bench.py.

Runs under the interpreter of the implementation being measured. The parent
sets up Vault behind a fault-injecting proxy (tests/faultproxy.py) and the
environment; this process makes MLflow-style requests (``provider.get_auth()``
then ``auth(prepared_request)``) at a steady pace and times each one.

Scenarios (BENCH_SCENARIO):
  steady    the first request, then requests for BENCH_SECONDS (the proxy adds
            latency to every Vault request; the TTL is short)
  outage    the first request, then "READY" on stdout; after the parent answers
            "GO" on stdin (it has made Vault hang), requests for BENCH_SECONDS
  changes   BENCH_CHANGES configuration changes: MLFLOW_VAULT_SECRET_PATH
            alternates between BENCH_PATHS (comma list), one request after each;
            then the open TCP connections of this process to BENCH_VAULT_PORT

A request fails when it raises or does not carry the expected header (the
SHA-256 of the header value is one of BENCH_EXPECTED_SHA256, a comma list; no
secret is printed). The result is one JSON object on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "mlflow.request_auth_provider"
NAME = "mlflow_secrets_auth"
SLOW_MS = 5.0  # a request slower than this counts as blocked


def _provider() -> Any:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == NAME:
            return ep.load()()
    raise RuntimeError(f"no {ENTRY_POINT_GROUP} entry point named {NAME}")


def _request(provider: Any, template: Any, expected: set[str]) -> tuple[float, bool]:
    """One request's auth step: (milliseconds, carried the expected header)."""
    r = template.copy()
    from requests.hooks import default_hooks

    r.hooks = default_hooks()
    t0 = time.perf_counter()
    try:
        auth = provider.get_auth()
        if auth is not None:
            r = auth(r)
        ok = True
    except Exception:
        ok = False
    took = (time.perf_counter() - t0) * 1000.0
    value = r.headers.get("Authorization") if ok else None
    ok = isinstance(value, str) and hashlib.sha256(value.encode()).hexdigest() in expected
    return took, ok


def _run(provider: Any, template: Any, expected: set[str], seconds: float, pace: float) -> dict[str, Any]:
    samples: list[float] = []
    slow_at: list[tuple[float, float]] = []  # (seconds into the run, milliseconds) of slow requests
    failed = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        at = time.monotonic() - start
        took, ok = _request(provider, template, expected)
        samples.append(took)
        if took > SLOW_MS:
            slow_at.append((round(at, 3), round(took, 2)))
        failed += not ok
        time.sleep(pace)
    slow = [s for s in samples if s > SLOW_MS]
    ordered = sorted(samples)
    return {
        "requests": len(samples),
        "failed": failed,
        "worst_ms": round(max(samples), 3) if samples else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3) if samples else None,
        "median_ms": round(ordered[len(ordered) // 2], 4) if samples else None,
        "slow_requests": len(slow),
        "blocked_ms": round(sum(slow), 1),
        "slow_at": slow_at[:20],
    }


def _tcp_connections_to(port: int) -> int:
    """ESTABLISHED TCP connections of this process whose remote port is ``port``."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if fields[3] == "01" and remote_port == port and fields[9] in inodes:
                        count += 1
        except OSError:
            continue
    return count


def main() -> int:
    import requests

    scenario = os.environ["BENCH_SCENARIO"]
    expected = set(os.environ["BENCH_EXPECTED_SHA256"].split(","))
    seconds = float(os.environ.get("BENCH_SECONDS", "12"))
    pace = float(os.environ.get("BENCH_PACE", "0.01"))
    template = requests.Request("GET", os.environ["BENCH_URL"]).prepare()
    provider = _provider()
    result: dict[str, Any] = {"scenario": scenario}

    if scenario == "changes":
        paths = os.environ["BENCH_PATHS"].split(",")
        changes = int(os.environ["BENCH_CHANGES"])
        failed = 0
        t0 = time.perf_counter()
        for i in range(changes):
            os.environ["MLFLOW_VAULT_SECRET_PATH"] = paths[i % len(paths)]
            _, ok = _request(provider, template, expected)
            failed += not ok
        result.update(
            changes=changes,
            failed=failed,
            seconds=round(time.perf_counter() - t0, 2),
            open_sockets=_tcp_connections_to(int(os.environ["BENCH_VAULT_PORT"])),
        )
        print(json.dumps(result))
        return 0

    first_ms, first_ok = _request(provider, template, expected)
    result.update(first_ms=round(first_ms, 1), first_ok=first_ok)
    if scenario == "outage":
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "GO":
            raise RuntimeError("the parent did not say GO")
    elif scenario != "steady":
        raise RuntimeError(f"unknown BENCH_SCENARIO {scenario!r}")
    result.update(_run(provider, template, expected, seconds, pace))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # reported to the parent as JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
