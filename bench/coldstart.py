"""The first headers taken apart, for builds of the library (and of the plugin) side by side:
how long the plugin's import, the preload, the library's load (``dlopen`` and the wait for the Go
runtime's start), the hand-over of the settings and the first ``GetAuthHeaders`` take, in fresh
processes that have imported MLflow, the builds alternating (README "Memory and start-up").

    .venv/bin/python bench/coldstart.py --runs 15 BEFORE.so NOW.so
    .venv/bin/python bench/coldstart.py --runs 12 --mlflow NOW.so@/tmp/old/python NOW.so@python
    .venv/bin/python bench/coldstart.py --python bench/.venv-ours/bin/python --runs 20 OLD.so@OLD/python NOW.so

A variant is ``LIB.so`` or ``LIB.so@DIR``: DIR (a checkout's ``python/`` with its ``_ffi.py``) goes
first on PYTHONPATH, to compare versions of the plugin. By default each process does what
bench/child.py's cold start does (the provider, ``get_auth()``, apply at once); ``--mlflow`` makes
MLflow's own first request instead (``mlflow.utils.rest_utils.http_request`` with the plugin's
auth) to a local HTTP server, where MLflow prepares the session and the request in between.
``--python`` runs them under another interpreter (``bench/.venv-ours``, the venv ``make bench``
makes from the wheel, as a user's environment). ``total``: the entry point and the first headers.
Medians in ms; HashiCorp Vault on loopback, token auth (bench/child.py's environment).
"""

from __future__ import annotations

import argparse
import collections
import http.server
import json
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import bench

CHILD = r"""
import json, os, sys, time
T = {}
def timed(owner, name, key=None):
    f = getattr(owner, name)
    def g(*a, **k):
        s = time.perf_counter_ns()
        try:
            return f(*a, **k)
        finally:
            T[key or name] = T.get(key or name, 0) + (time.perf_counter_ns() - s) / 1e6
    setattr(owner, name, g)
import requests
import mlflow  # noqa: F401  (the user's script)
from mlflow_secrets_auth import _native
for name in ("load", "set_env", "headers"):  # load: dlopen (unless preloaded) and the wait for the runtime
    if hasattr(getattr(_native, "InProcess", None), name):  # an older plugin may have none of them
        timed(_native.InProcess, name)
if hasattr(_native, "preload"):
    timed(_native, "preload")
if os.environ["COLD_MODE"] != "mlflow":
    sys.path.insert(0, os.environ["BENCH_DIR"])
    import child  # the bench's own child: its entry-point lookup, and its check of the header
t0 = time.perf_counter_ns()
if os.environ["COLD_MODE"] == "mlflow":
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request
    creds = MlflowHostCreds(os.environ["MLFLOW_TRACKING_URI"], auth="mlflow_secrets_auth")
    ok = http_request(creds, "/api/2.0/mlflow/experiments/get", "GET").status_code == 200
    T["first request"] = (time.perf_counter_ns() - t0) / 1e6
else:
    cls = child._load_provider_class()
    t1 = time.perf_counter_ns()
    req = cls().get_auth()(requests.Request("GET", os.environ["BENCH_URL"]).prepare())
    T["entry point"] = (t1 - t0) / 1e6
    T["provider + get_auth + apply"] = (time.perf_counter_ns() - t1) / 1e6
    T["total"] = T["entry point"] + T["provider + get_auth + apply"]
    ok = child._header_ok(req)
print(json.dumps({"ok": ok, "plugin": _native.__file__, **T}))
"""


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="LIB.so or LIB.so@PYTHON_SOURCE_DIR")
    ap.add_argument("--runs", type=int, default=12, help="processes per variant, alternating")
    ap.add_argument("--mlflow", action="store_true", help="MLflow's own first request (http_request)")
    ap.add_argument(
        "--python",
        type=Path,
        default=Path(sys.executable),
        help="the interpreter (a venv with this package installed; default: this one)",
    )
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    results: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    try:
        with bench.vault_with_secret() as (vault, expected):
            env = bench.child_env(bench.Impl("ours", args.python), vault, expected)
            env.update(BENCH_DIR=str(bench.BENCH_DIR), COLD_MODE="mlflow" if args.mlflow else "bench")
            if args.mlflow:
                env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{server.server_address[1]}"
            for _ in range(args.runs):
                for variant in args.variants:
                    lib, _, source = variant.partition("@")
                    run_env = dict(env, MLFLOW_SECRETS_AUTH_LIBRARY=str(Path(lib).resolve()))
                    if source:
                        run_env["PYTHONPATH"] = str(Path(source).resolve())
                    out = subprocess.run(
                        [str(args.python), "-c", CHILD], env=run_env, capture_output=True, text=True, timeout=300
                    )
                    if out.returncode != 0:
                        print(out.stderr[-3000:], file=sys.stderr)
                        return 1
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    if not r.pop("ok") or (source and not r["plugin"].startswith(str(Path(source).resolve()))):
                        print(f"{variant}: wrong headers or plugin ({r['plugin']})", file=sys.stderr)
                        return 1
                    del r["plugin"]
                    results[variant].append(r)
    finally:
        server.shutdown()
    for variant, rows in results.items():
        keys = sorted({k for r in rows for k in r})
        medians = ", ".join(f"{k} {statistics.median(r.get(k, 0.0) for r in rows):.2f}" for k in keys)
        print(f"{variant}: {medians} (ms, median of {len(rows)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
