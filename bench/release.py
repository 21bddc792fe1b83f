"""Resident memory of a Python process using the plugin, for given builds of the library, as a run
goes on: at the first headers, then after requests for a while (with refreshes when the TTL is
short, or idle when it is long). Compares builds side by side (for example before and after the
release of the library's pages after each fetch: README "Memory and start-up").

    .venv/bin/python bench/release.py --seconds 8 --ttl 1 LIB.so [LIB.so ...]
    .venv/bin/python bench/release.py --seconds 150 --ttl 300 LIB.so [LIB.so ...]

Each line is a fresh process (bench/child.py's environment: HashiCorp Vault on loopback, token
auth), MLFLOW_SECRETS_AUTH_LIBRARY naming the build; kB are VmRSS added from the plugin's import.
How the library file was written decides its page-cache folios (pip writes it in one piece: 1 MB
folios here; `cp` makes small ones), so copy the builds the same way before comparing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import subprocess
import sys
from pathlib import Path

import bench

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["BENCH_DIR"])
import child
import requests
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider  # noqa: F401

template = requests.Request("GET", os.environ["BENCH_URL"]).prepare()
cls = child._load_provider_class()
before = child._status_kb("VmRSS")
provider = cls()
req = provider.get_auth()(template.copy())
ok = child._header_ok(req)
first = child._status_kb("VmRSS") - before
end = time.monotonic() + float(os.environ["RELEASE_SECONDS"])
while time.monotonic() < end:
    req = provider.get_auth()(template.copy())
    time.sleep(0.001)
ok = ok and child._header_ok(req)
later = child._status_kb("VmRSS") - before
lib = child._smaps("self").get("file " + os.path.basename(os.environ["MLFLOW_SECRETS_AUTH_LIBRARY"]), 0)
print(json.dumps({"ok": ok, "first_kb": first, "later_kb": later, "library_kb_later": lib}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("libraries", nargs="+", type=Path)
    ap.add_argument("--seconds", type=float, default=8.0, help="requests after the first headers (s)")
    ap.add_argument("--ttl", type=int, default=1, help="MLFLOW_VAULT_TTL_SEC (s)")
    ap.add_argument("--runs", type=int, default=2, help="processes per library, alternating")
    args = ap.parse_args()
    ours = bench.Impl("ours", Path(sys.executable))
    token = secrets.token_urlsafe(32)
    expected = hashlib.sha256(f"Bearer {token}".encode()).hexdigest()
    with bench.harness.VaultServer(binary=bench.harness.ensure_vault_server_binary()) as vault:
        vault.enable_kv(bench.KV_MOUNT, 1)
        vault.kv_put(bench.KV_MOUNT, bench.KV_PATH, {"token": token}, version=1)
        env = bench.child_env(ours, vault, expected)
        env.update(BENCH_DIR=str(bench.BENCH_DIR), RELEASE_SECONDS=str(args.seconds))
        env["MLFLOW_VAULT_TTL_SEC"] = str(args.ttl)
        for _ in range(args.runs):
            for lib in args.libraries:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD],
                    env=dict(env, MLFLOW_SECRETS_AUTH_LIBRARY=str(lib.resolve())),
                    capture_output=True,
                    text=True,
                    timeout=args.seconds + 300,
                    check=False,
                )
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"{lib}: first headers {r['first_kb']:,} kB; after {args.seconds:g} s (TTL {args.ttl} s) "
                    f"{r['later_kb']:,} kB, of it the library {r['library_kb_later']:,} kB; headers ok: {r['ok']}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
