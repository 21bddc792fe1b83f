"""The library's start-up pages leave the resident set once the first headers are served.

Loading the Go library maps almost all of its 14 MB file (the loader's relocation pass, the Go
runtime's start and every SDK's package initialiser, faulted in 64 kB windows); once the first
headers are served, the process's mappings of the library's clean read-only pages are dropped:
by the plugin once the call has returned (the library names them, go/internal/trim and
MsaReleaseByCaller), and in the helper by the library itself before the reply leaves. These
tests read /proc/<pid>/smaps of a real process (the plugin in-process, and the helper process)
around the first headers fetched from the real Vault-API server, and fail when the release is
not made, made on the wrong file, or undone by what follows it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import harness
import pytest
from conftest import clean_env, plugin_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="smaps and the trim are Linux's")

TRACKING = "https://mlflow.example"

# Prints the library's clean read-only resident kB (read-only private mappings of the library
# holding no anonymous page) and the read-only mappings' size, per process: this one after the
# library is loaded and started, after the first headers and after three refreshes, and the
# helper process (if any) after the refreshes.
CHILD = r"""
import json, os, sys
import requests
from mlflow.tracking.request_auth.registry import fetch_auth
from mlflow_secrets_auth import _native

def clean_readonly_kb(pid):
    total = size = 0
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                mine = len(parts) > 5 and parts[5].endswith(("libmlflow_secrets_auth.so", "msa-helper"))
                cur = {} if mine and parts[1][1] == "-" and parts[1][3] == "p" else None
                if cur is not None:
                    lo, hi = (int(x, 16) for x in first.split("-"))
                    cur["size"] = (hi - lo) // 1024
            elif cur is not None and first in ("Rss:", "Anonymous:"):
                cur[first] = int(line.split()[1])
                if first == "Anonymous:" and cur["Anonymous:"] == 0:
                    total += cur["Rss:"]
                    size += cur["size"]
    return total, size

out = {}
if os.environ.get("MLFLOW_SECRETS_AUTH_TRANSPORT") != "helper":
    _native.transport()  # loads the library and waits for the Go runtime's start (MsaAbiVersion)
    out["loaded"] = clean_readonly_kb("self")
req = requests.Request("GET", os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search").prepare()
req.prepare_auth(fetch_auth("mlflow_secrets_auth"))
out["header"] = req.headers.get("Authorization", "")
out["first_headers"] = clean_readonly_kb("self")
from mlflow_secrets_auth import provider as ours
for _ in range(3):  # three refreshes: the headers cache emptied, the core told to fetch again
    ours._entries.clear()
    _native.transport().invalidate()
    again = requests.Request("GET", os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/search").prepare()
    again.prepare_auth(fetch_auth("mlflow_secrets_auth"))
    assert again.headers.get("Authorization") == out["header"]
out["refreshed"] = clean_readonly_kb("self")
kids = []
for tid in os.listdir("/proc/self/task"):  # a child belongs to the thread that started it
    with open(f"/proc/self/task/{tid}/children") as f:
        kids += f.read().split()
out["helpers"] = [clean_readonly_kb(pid) for pid in kids]  # after the refreshes
print(json.dumps(out))
"""


def run_child(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture()
def token_env(vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str) -> dict[str, str]:
    vault_ready.kv_put("secret", secret_path, {"token": "memory-test-token"}, version=1)
    return plugin_env(vault_ready, TRACKING, VAULT_TOKEN=reader_token, MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}")


def test_in_process_library_releases_its_start_up_pages(token_env: dict[str, str]) -> None:
    r = run_child(clean_env(**token_env, MLFLOW_SECRETS_AUTH_TRANSPORT="inprocess"))
    assert r["header"] == "Bearer memory-test-token"
    loaded_kb, size_kb = r["loaded"]  # type: ignore[misc]
    after_kb, _ = r["first_headers"]  # type: ignore[misc]
    refreshed_kb, _ = r["refreshed"]  # type: ignore[misc]
    # The premise: the start touched most of the read-only file (so the drop below means something).
    assert loaded_kb > size_kb // 2, r
    # Without the trim the first headers only add pages (the fetch runs code the start did not).
    # What stays is the code run between the release and the return, mapped again in the page
    # cache's folios (up to 1 MB each here: about 3.7 MB; 1 MB with 4 kB pages).
    assert after_kb < loaded_kb // 2, r
    # Each fetch's pages are released after it too, not only the start's.
    assert refreshed_kb < loaded_kb // 2, r
    assert r["helpers"] == [], r


def test_helper_process_releases_its_start_up_pages(token_env: dict[str, str]) -> None:
    r = run_child(clean_env(**token_env, MLFLOW_SECRETS_AUTH_TRANSPORT="helper"))
    assert r["header"] == "Bearer memory-test-token"
    helpers = r["helpers"]
    assert isinstance(helpers, list) and len(helpers) == 1, r
    resident_kb, size_kb = helpers[0]
    # The helper's library (or, in a helper-only wheel, its static executable) after the first
    # headers and three refreshes: without the trim 85-100% of its read-only mappings are
    # resident; with it, the code and data that the reply path and the GC use after the release
    # (in the page cache's 1 MB folios here: about 58%).
    assert size_kb > 4096, r
    assert resident_kb < size_kb * 3 // 4, r
