"""Resident memory of a Python process using the plugin, for given builds of the library, as a run
goes on: at the first headers, then after requests for a while (with refreshes when the TTL is
short, or idle when it is long). Compares builds side by side (for example before and after the
release of the library's pages after each fetch: README "Memory and start-up").

    .venv/bin/python bench/release.py --seconds 8 --ttl 1 LIB.so [LIB.so ...]
    .venv/bin/python bench/release.py --seconds 150 --ttl 300 LIB.so [LIB.so ...]

Each line is a fresh process (bench/child.py's environment: HashiCorp Vault on loopback, token
auth), MLFLOW_SECRETS_AUTH_LIBRARY naming the build; kB are VmRSS added from the plugin's import,
or with --helper the helper process's whole VmRSS (the installed launcher over each build).
How a library file was written decides its page-cache folios, and so how much one touch maps:
pip writes it in 1 MB pieces (1 MB folios here), one write of the whole file gives 2 MB folios,
`cp` small ones. So each build is first copied into a temporary directory the way pip writes it
(--as-is: measure the files given).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow_secrets_auth

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

# With --helper: the helper process's own VmRSS (not added: all of it) at the first headers and at the end.
HELPER_CHILD = (
    CHILD.replace(
        'first = child._status_kb("VmRSS") - before',
        'first = child._proc_status_kb(child._children()[0], "VmRSS")',
    )
    .replace(
        'later = child._status_kb("VmRSS") - before',
        'later = child._proc_status_kb(child._children()[0], "VmRSS")',
    )
    .replace(
        'lib = child._smaps("self")',
        "lib = child._smaps(child._children()[0])",
    )
)


def pip_copy(src: Path, dst: Path) -> Path:
    """src written to dst in 1 MB pieces, as pip installs a wheel's files."""
    with src.open("rb") as f, dst.open("wb") as g:
        shutil.copyfileobj(f, g, 1 << 20)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("libraries", nargs="+", type=Path)
    ap.add_argument("--seconds", type=float, default=8.0, help="requests after the first headers (s)")
    ap.add_argument("--ttl", type=int, default=1, help="MLFLOW_VAULT_TTL_SEC (s)")
    ap.add_argument("--runs", type=int, default=2, help="processes per library, alternating")
    ap.add_argument("--as-is", action="store_true", help="measure the files given, not copies written as pip writes")
    ap.add_argument("--helper", action="store_true", help="measure the helper process (msa-helper) instead")
    args = ap.parse_args()
    if not args.as_is:  # each build in a directory of its own, with the installed launcher next to it
        tmp = Path(tempfile.mkdtemp(prefix="msa-release-"))
        launcher = Path(mlflow_secrets_auth.__file__).with_name("msa-helper")
        copies = []
        for i, lib in enumerate(args.libraries):
            (tmp / str(i)).mkdir()
            shutil.copy2(launcher, tmp / str(i) / launcher.name)
            copies.append(pip_copy(lib, tmp / str(i) / "libmlflow_secrets_auth.so"))
        args.libraries = copies
    ours = bench.Impl("ours", Path(sys.executable))
    with bench.vault_with_secret() as (vault, expected):
        env = bench.child_env(ours, vault, expected)
        env.update(BENCH_DIR=str(bench.BENCH_DIR), RELEASE_SECONDS=str(args.seconds))
        env["MLFLOW_VAULT_TTL_SEC"] = str(args.ttl)
        for _ in range(args.runs):
            for lib in args.libraries:
                run_env = dict(env, MLFLOW_SECRETS_AUTH_LIBRARY=str(lib.resolve()))
                if args.helper:
                    run_env.update(
                        MLFLOW_SECRETS_AUTH_TRANSPORT="helper",
                        MLFLOW_SECRETS_AUTH_HELPER=str(lib.with_name("msa-helper")),
                    )
                out = subprocess.run(
                    [sys.executable, "-c", HELPER_CHILD if args.helper else CHILD],
                    env=run_env,
                    capture_output=True,
                    text=True,
                    timeout=args.seconds + 300,
                    check=False,
                )
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                r = json.loads(out.stdout.strip().splitlines()[-1])
                who = f"{lib} (its helper process)" if args.helper else str(lib)
                print(
                    f"{who}: first headers {r['first_kb']:,} kB; after {args.seconds:g} s (TTL {args.ttl} s) "
                    f"{r['later_kb']:,} kB, of it the library {r['library_kb_later']:,} kB; headers ok: {r['ok']}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
