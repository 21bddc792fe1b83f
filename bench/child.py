"""One measurement in a fresh process; started by bench/bench.py, not by hand.

Runs under the interpreter of the implementation being measured (this repo's
.venv, or the mlflow-secrets-auth 0.2.0 venv), so only the standard library is
imported at module level; requests, MLflow and the plugin are imported inside
the timed regions. Settings come from BENCH_* environment variables; the result
is one JSON object on stdout. Secrets are never printed: the header a request
received is compared with BENCH_EXPECTED_SHA256 (the SHA-256 of the expected
header value).

Modes:
  cold     import MLflow's provider base, load the plugin's entry point, get the
           first headers; report timestamps (CLOCK_MONOTONIC, shared with the
           parent) and VmRSS.
  memory   where the resident memory goes: VmRSS and threads at each stage
           (MLflow imported; plugin imported; for this package the Go
           library loaded, before any call; first headers; later: after 3
           refreshes and 20,000 cached requests, 0.2.0 the cached requests
           only), the process's resident pages by mapping (the plugin's own
           files, anonymous memory), and with
           MLFLOW_SECRETS_AUTH_TRANSPORT=helper the helper process's own
           VmRSS and mappings (after the first headers, and later).
  forked   what one forked worker costs (a DataLoader or fork-pool worker):
           this process gets the first headers, then forks; the child clears
           the plugin's header cache (as once its inherited headers expire)
           and sends one request. Reports the child's VmRSS added from the
           fork to its headers, and the processes it started with their
           VmRSS (this package: none when it asks the parent's core; with
           BENCH_CHILD_TRANSPORT=helper set in the child, its own helper).
  hot      the cost per MLflow request at a cache hit, per call, for one
           variant (BENCH_VARIANT):
             get_auth   provider.get_auth(), then auth(prepared_request)
             fetch_auth mlflow.tracking.request_auth.registry.fetch_auth(name),
                        then auth(prepared_request) - MLflow's own call path
             apply      auth(prepared_request) with the auth object kept
             native     (this package only) the Go core's GetAuthHeaders
                        reply for the host, decoded and applied
             floor      fetch_auth(name) then auth(prepared_request) for a
                        provider registered here whose auth object sets one
                        constant header: what any plugin costs at least
"""

from __future__ import annotations

import time

_T_START = time.monotonic_ns()  # before anything but the time module is imported

import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from array import array  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import entry_points  # noqa: E402
from typing import Any  # noqa: E402

ENTRY_POINT_GROUP = "mlflow.request_auth_provider"
NAME = "mlflow_secrets_auth"
FLOOR_NAME = "bench_floor"
FLOOR_HEADER = "Bearer bench-floor-constant"


# memory(): what follows the first headers, as a long run goes on.
REFRESHES = 3
CACHED_REQUESTS = 20_000


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _load_provider_class() -> Any:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == NAME:
            return ep.load()
    raise RuntimeError(f"no {ENTRY_POINT_GROUP} entry point named {NAME} in this environment")


def _header_ok(req: Any) -> bool:
    name = os.environ.get("BENCH_HEADER", "Authorization")
    value = req.headers.get(name)
    if not isinstance(value, str):
        return False
    return hashlib.sha256(value.encode()).hexdigest() == os.environ["BENCH_EXPECTED_SHA256"]


def _summary(samples: array[int]) -> dict[str, Any]:
    ordered = sorted(samples)
    n = len(ordered)

    def q(p: float) -> int:
        return int(ordered[min(n - 1, int(p * n))])

    return {
        "n": n,
        "min_ns": int(ordered[0]),
        "median_ns": q(0.5),
        "p90_ns": q(0.90),
        "p99_ns": q(0.99),
        "p999_ns": q(0.999),
        "max_ns": int(ordered[-1]),
        "mean_ns": round(sum(ordered) / n, 1),
    }


def cold() -> dict[str, Any]:
    import requests
    from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider  # noqa: F401

    req = requests.Request("GET", os.environ["BENCH_URL"]).prepare()
    rss_before_plugin = _status_kb("VmRSS")
    t_mlflow = time.monotonic_ns()
    cls = _load_provider_class()
    t_plugin = time.monotonic_ns()
    auth = cls().get_auth()
    if auth is not None:
        req = auth(req)
    t_headers = time.monotonic_ns()
    return {
        "t_start_ns": _T_START,
        "t_mlflow_imported_ns": t_mlflow,
        "t_plugin_imported_ns": t_plugin,
        "t_first_headers_ns": t_headers,
        "headers_ok": _header_ok(req),
        "rss_before_plugin_kb": rss_before_plugin,
        "rss_kb": _status_kb("VmRSS"),
        "hwm_kb": _status_kb("VmHWM"),
    }


def _smaps(pid: str) -> dict[str, int]:
    """Resident kB by kind of mapping: each file of the plugin (by name),
    other files, and anonymous memory (heaps, stacks, Go's arenas)."""
    out: dict[str, int] = {}
    name = ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    path = parts[5] if len(parts) > 5 else ""
                    if "mlflow_secrets_auth" in path or "msa-helper" in path:
                        name = "file " + path.rsplit("/", 1)[-1]
                    elif path.startswith("/"):
                        name = "other files"
                    else:
                        name = "anonymous" if not path or path.startswith("[heap") or path.startswith("[anon") else path
                elif first == "Rss:":
                    out[name] = out.get(name, 0) + int(line.split()[1])
    except OSError:
        return {}
    return out


def _children() -> list[str]:
    found: list[str] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                found += f.read().split()
        except OSError:
            pass
    return found


def _proc_status_kb(pid: str, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def memory() -> dict[str, Any]:
    import requests
    from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider  # noqa: F401

    req = requests.Request("GET", os.environ["BENCH_URL"]).prepare()
    stages: list[dict[str, Any]] = []

    def stage(name: str) -> None:
        stages.append({"stage": name, "rss_kb": _status_kb("VmRSS"), "threads": _status_kb("Threads")})

    stage("mlflow imported")
    cls = _load_provider_class()
    stage("plugin imported")
    provider = cls()
    if NAME in cls.__module__ and os.environ.get("MLFLOW_SECRETS_AUTH_TRANSPORT", "auto") != "helper":
        try:
            from mlflow_secrets_auth import _native

            _native.transport()  # loads the library; no call yet
            stage("library loaded")
        except ImportError:
            pass
    template = req
    auth = provider.get_auth()
    if auth is not None:
        req = auth(template.copy())
    stage("first headers")

    def helpers() -> list[dict[str, Any]]:
        return [
            {
                "pid": int(pid),
                "rss_kb": _proc_status_kb(pid, "VmRSS"),
                "threads": _proc_status_kb(pid, "Threads"),
                "mappings_kb": _smaps(pid),
            }
            for pid in _children()
        ]

    first = helpers()
    ok = _header_ok(req)
    # Then as a long run goes on: refreshes (this package's header cache emptied and its core told
    # to fetch again, as a TTL's end does) and cached requests. 0.2.0: the cached requests only.
    try:  # this package (0.2.0, of the same name, has no _native)
        from mlflow_secrets_auth import _native
        from mlflow_secrets_auth import provider as ours_provider

        ours = True
    except ImportError:
        ours = False
    if ours:
        for _ in range(REFRESHES):
            ours_provider._entries.clear()
            _native.transport().invalidate()
            ok = ok and _header_ok(provider.get_auth()(template.copy()))
    for _ in range(CACHED_REQUESTS):
        req = provider.get_auth()(template.copy())
    ok = ok and _header_ok(req)
    stage("later")
    return {
        "headers_ok": ok,
        "stages": stages,
        "refreshes": REFRESHES if ours else 0,
        "cached_requests": CACHED_REQUESTS,
        "mappings_kb": _smaps("self"),
        "helpers": first,
        "helpers_later": helpers(),
    }


def forked() -> dict[str, Any]:
    import requests

    cls = _load_provider_class()
    provider = cls()
    url = os.environ["BENCH_URL"]
    req = provider.get_auth()(requests.Request("GET", url).prepare())
    if not _header_ok(req):
        raise RuntimeError("the parent's first request did not receive the expected header")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            base = _status_kb("VmRSS")
            if os.environ.get("BENCH_CHILD_TRANSPORT"):
                os.environ["MLFLOW_SECRETS_AUTH_TRANSPORT"] = os.environ["BENCH_CHILD_TRANSPORT"]
            try:  # this package's header cache (0.2.0, of the same name, has none of that name)
                from mlflow_secrets_auth import provider as ours

                ours._entries.clear()
            except ImportError:
                pass
            child_req = provider.get_auth()(requests.Request("GET", url).prepare())
            started = [{"pid": int(p), "rss_kb": _proc_status_kb(p, "VmRSS")} for p in _children()]
            out = {"headers_ok": _header_ok(child_req), "added_rss_kb": _status_kb("VmRSS") - base, "started": started}
        except Exception as exc:  # reported to the parent
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, json.dumps(out).encode())
        os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data) if data else {"error": "the forked child reported nothing"}
    return result


def hot() -> dict[str, Any]:
    import requests
    from requests.hooks import default_hooks

    variant = os.environ["BENCH_VARIANT"]
    iterations = int(os.environ["BENCH_ITERATIONS"])
    warmup = int(os.environ["BENCH_WARMUP"])
    url = os.environ["BENCH_URL"]
    template = requests.Request("GET", url).prepare()

    provider = _load_provider_class()()
    first = template.copy()
    first.hooks = default_hooks()
    t0 = time.perf_counter_ns()
    auth0 = provider.get_auth()  # cache miss: reads Vault
    if auth0 is not None:
        first = auth0(first)
    first_call_ns = time.perf_counter_ns() - t0
    if not _header_ok(first):
        raise RuntimeError("the first request did not receive the expected header")

    call: Callable[[Any], Any]
    if variant == "get_auth":

        def call(r: Any) -> Any:
            auth = provider.get_auth()
            return auth(r)

    elif variant == "fetch_auth":
        from mlflow.tracking.request_auth import registry

        fetch_auth: Callable[[str], Any] = registry.fetch_auth

        def call(r: Any) -> Any:
            auth = fetch_auth(NAME)
            return auth(r)

    elif variant == "apply":
        kept = provider.get_auth()

        def call(r: Any) -> Any:
            return kept(r)

    elif variant == "native":
        # This package only: the call into the Go core that a per-host cache
        # miss in the plugin makes (JSON reply decoded), then the headers applied.
        from mlflow_secrets_auth import _native

        transport = _native.transport()
        parts = url.split("/", 3)
        key = parts[0] + "//" + parts[2]

        def call(r: Any) -> Any:
            reply = transport.headers(key)
            for name, value in reply["headers"].items():
                r.headers[name] = value
            return r

    elif variant == "floor":
        from mlflow.tracking.request_auth import registry
        from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

        class _Constant(requests.auth.AuthBase):
            def __call__(self, r: Any) -> Any:
                r.headers["Authorization"] = FLOOR_HEADER
                return r

        constant = _Constant()

        class _FloorProvider(RequestAuthProvider):  # type: ignore[misc]
            def get_name(self) -> str:
                return FLOOR_NAME

            def get_auth(self) -> Any:
                return constant

        registry._request_auth_provider_registry.register(_FloorProvider)
        fetch_floor: Callable[[str], Any] = registry.fetch_auth

        def call(r: Any) -> Any:
            auth = fetch_floor(FLOOR_NAME)
            return auth(r)

    else:
        raise RuntimeError(f"unknown BENCH_VARIANT {variant!r}")

    perf = time.perf_counter_ns

    # The timer alone: two perf_counter_ns calls around nothing.
    timer = array("q", bytes(8 * min(iterations, 100_000)))
    for i in range(len(timer)):
        t0 = perf()
        t1 = perf()
        timer[i] = t1 - t0

    # Each call gets a fresh PreparedRequest, made outside the timed region:
    # a copy of one prepared template (headers copied) with fresh hooks (0.2.0
    # appends a response hook to the request; a shared hooks list would grow).
    samples = array("q", bytes(8 * iterations))
    last = template
    for phase, count in (("warmup", warmup), ("measure", iterations)):
        for i in range(count):
            r = template.copy()
            r.hooks = default_hooks()
            t0 = perf()
            r = call(r)
            t1 = perf()
            if phase == "measure":
                samples[i] = t1 - t0
            last = r
    if variant == "floor" and last.headers.get("Authorization") != FLOOR_HEADER:
        raise RuntimeError("the last floor request did not receive the constant header")
    if variant != "floor" and not _header_ok(last):
        raise RuntimeError("the last request did not receive the expected header")

    return {
        "variant": variant,
        "first_call_ns": first_call_ns,
        "gc_enabled": gc.isenabled(),
        "timer": _summary(timer),
        "calls": _summary(samples),
        "rss_kb": _status_kb("VmRSS"),
    }


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        if mode == "cold":
            result = cold()
        elif mode == "hot":
            result = hot()
        elif mode == "memory":
            result = memory()
        elif mode == "forked":
            result = forked()
        else:
            raise RuntimeError(f"usage: child.py cold|hot|memory|forked (got {mode!r})")
    except Exception as exc:  # reported to the parent as JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
