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
  outage401 as outage, but every request is a real HTTP POST to BENCH_URL (an
            MLflow-like server the parent runs) through one requests.Session
            with the plugin's auth, so the plugin's response hook runs; the
            parent makes Vault hang and the server answer 401 to the next
            request before it says "GO". Requests go on for BENCH_SECONDS
            after the first one after GO (the 401'd one) has finished. Each
            carries X-Bench-Seq (0 for the first, then 1, 2, ...) so that the
            parent, which knows the sequence number it answered 401 to,
            counts the failures after it

A request fails when it raises or does not carry the expected header (the
SHA-256 of the header value is one of BENCH_EXPECTED_SHA256, a comma list; no
secret is printed); in outage401 also when its final answer is not 200. The
result is one JSON object on stdout.
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


def _send(session: Any, provider: Any, url: str, seq: int, expected: set[str]) -> dict[str, Any]:
    """One real request through ``session`` with the plugin's auth, timed whole
    (auth, HTTP round trip, response hooks and any re-send)."""
    out: dict[str, Any] = {"ok": False, "saw_401": False}
    t0 = time.perf_counter()
    try:
        resp = session.post(
            url,
            json={"run_id": "bench", "key": "m", "value": float(seq), "timestamp": 0, "step": seq},
            headers={"X-Bench-Seq": str(seq)},
            auth=provider.get_auth(),
            timeout=60,
        )
        for r in (*resp.history, resp):
            if r.status_code == 401 and not out["saw_401"]:
                out["saw_401"] = True
                # The response hooks on the request that got the 401 (requests'
                # own list is empty): the plugin's, as its hook left them.
                out["hooks"] = [getattr(h, "__name__", type(h).__name__) for h in r.request.hooks.get("response") or ()]
        out["status"] = resp.status_code
        out["resent"] = len(resp.history)
        value = resp.request.headers.get("Authorization")
        out["ok"] = (
            resp.status_code == 200
            and isinstance(value, str)
            and hashlib.sha256(value.encode()).hexdigest() in expected
        )
    except Exception as exc:
        out["error"] = type(exc).__name__
    out["ms"] = (time.perf_counter() - t0) * 1000.0
    return out


def _outage401(url: str, expected: set[str], seconds: float, pace: float) -> dict[str, Any]:
    import requests

    provider = _provider()
    session = requests.Session()
    first = _send(session, provider, url, 0, expected)
    result: dict[str, Any] = {"first_ms": round(first["ms"], 1), "first_ok": first["ok"]}
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise RuntimeError("the parent did not say GO")
    ms: list[float] = []  # index i: the request with X-Bench-Seq i + 1
    failed: list[int] = []
    errors: dict[str, int] = {}
    first_401: dict[str, Any] | None = None
    end: float | None = None  # set once the first request after GO has finished
    seq = 0
    while end is None or time.monotonic() < end:
        seq += 1
        r = _send(session, provider, url, seq, expected)
        ms.append(round(r["ms"], 3))
        if not r["ok"]:
            failed.append(seq)
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
        if r["saw_401"] and first_401 is None:
            first_401 = {"seq": seq, "ms": round(r["ms"], 1)}
            first_401.update((k, r[k]) for k in ("status", "resent", "hooks", "error") if k in r)
        if end is None:
            end = time.monotonic() + seconds
        time.sleep(pace)
    result.update(ms=ms, failed_seqs=failed, errors=errors, first_401=first_401)
    return result


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
    result: dict[str, Any] = {"scenario": scenario}
    if scenario == "outage401":
        result.update(_outage401(os.environ["BENCH_URL"], expected, seconds, pace))
        print(json.dumps(result))
        return 0
    template = requests.Request("GET", os.environ["BENCH_URL"]).prepare()
    provider = _provider()

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
