"""Benchmark: what mlflow-secrets-auth costs per MLflow request, and at start-up.

Run by ``make bench`` (not part of ``make test``)::

    .venv/bin/python bench/bench.py

What it does:

* starts a real Vault (tests/harness.py) on 127.0.0.1 and stores
  ``{"token": <random>}`` at KV v1 ``secret/mlflow/auth``;
* makes sure mlflow-secrets-auth 0.2.0 (the pure-Python release on PyPI, with
  its ``vault`` extra) is installed in ``bench/.venv-0.2.0``, and this package
  (the wheel ``make install`` built in dist/) in ``bench/.venv-ours``, creating
  each venv on first use with mlflow-skinny and requests pinned to the
  versions of this repo's venv: both run the same MLflow and requests code in
  environments of the same make (a user's after ``pip install``), not this
  repo's venv with its test and server packages, which MLflow's entry-point
  scan and ``import mlflow`` would also pay for;
* measures, each in a fresh process (bench/child.py) and with the same
  configuration (Vault token auth, MLFLOW_TRACKING_URI as the only allowed host):

  - the hot path at a cache hit, per call with ``time.perf_counter_ns``:
    ``provider.get_auth()`` then ``auth(prepared_request)``, as MLflow does
    (headline); MLflow's own ``fetch_auth(name)(request)``; the auth object's
    ``__call__`` alone; and for this package the native ``GetAuthHeaders`` round
    trip that a plugin-level cache miss costs. Each call gets a fresh
    PreparedRequest (a copy of one prepared template with fresh hooks), made
    outside the timed region;
  - the cold start: process start to first headers, split into interpreter
    start, importing MLflow's provider base, loading the plugin's entry point
    and the first ``get_auth()`` + apply (which reads Vault);
  - memory: VmRSS after the first headers, and the plugin's share of it;

* resilience (bench/resilience_child.py, each implementation in a fresh
  process, requests every 10 ms for 12 s after the first one, Vault behind the
  fault-injecting proxy of tests/faultproxy.py): worst per-request auth latency
  with 300 ms added to every Vault request and a 2 s TTL; the same with Vault
  hung (accepts, never answers) after the first fetch and a 3 s timeout, and
  the time requests were blocked (sum of requests slower than 5 ms); "401
  during an outage": real HTTP requests to an MLflow-like server on 127.0.0.1
  (``MlflowLike``) through a requests.Session with the plugin's auth, Vault
  hung after the first one and the server answering 401 to the next one, then
  200 to the held credential, requests for 12 s after that 401'd one; Vault hung from the start with a healthy AWS
  fallback (moto); open TCP connections to Vault after 1,000 configuration
  changes (two secret paths alternating). Targets: under 5 ms worst latency
  after the first fetch (first failure window for the fallback case) with zero
  failed requests; zero failed requests after the 401 (the held credential is
  still served: a 401 rejects that one credential, whose refresh fails while
  Vault is down, and forgets nothing else); at most 10 open sockets.
  ``--resilience-only`` runs just this section, ``--no-resilience`` skips it;
* with ``--go``, also runs the Go benchmarks (``go test -bench . -benchmem
  -run '^$' ./go/...``) and includes them in the table and the JSON;
* prints a table, writes ``bench/results/latest.json`` and exits 1 if a target
  is missed: median hot path at most 2000 ns, and at least 10x cheaper than 0.2.0
  (median against median). Exit 2 means the benchmark could not run.

This package is measured as installed in this repo's venv (``--ours-python``),
or from the working tree with ``--ours-from-source`` (python/ first on
PYTHONPATH; needs the library built by build.sh). A warning is printed when the
installed copy differs from python/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CHILD = BENCH_DIR / "child.py"
SOURCE_DIR = REPO_ROOT / "python"
PACKAGE_DIR = SOURCE_DIR / "mlflow_secrets_auth"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
DEFAULT_BASELINE_VENV = BENCH_DIR / ".venv-0.2.0"
DEFAULT_OURS_VENV = BENCH_DIR / ".venv-ours"
REPO_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
PINNED = ("mlflow-skinny", "requests")  # the same versions in both venvs

if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))

import harness  # noqa: E402  (tests/harness.py, found through the sys.path entry above)

DIST = "mlflow-secrets-auth"
BASELINE_VERSION = "0.2.0"
TARGET_MEDIAN_NS = 2000
TARGET_RATIO = 10.0

KV_MOUNT = "secret"
KV_PATH = "mlflow/auth"
# Nothing listens here: requests are only prepared, never sent.
TRACKING_URI = "http://127.0.0.1:5000"
REQUEST_URL = TRACKING_URI + "/api/2.0/mlflow/runs/log-metric"

HOT_VARIANTS = ("get_auth", "fetch_auth", "apply")
HOT_LABELS = {
    "get_auth": "provider.get_auth() + apply",
    "fetch_auth": "fetch_auth(name) + apply",
    "apply": "apply only (auth kept)",
    "native": "native GetAuthHeaders + apply",
    "floor": "floor (fetch_auth + constant)",
}
# A cached request through MLflow (fetch_auth + apply) costs at most this
# many times the floor (the same path for a provider that sets one constant header).
TARGET_FLOOR_RATIO = 2.0
# The cold start (import mlflow -> first headers) against 0.2.0's in the same run: issue 17 measured
# 13 ms against 55 ms and asked to keep it there; a ratio, as both move with the machine.
TARGET_COLD_RATIO = 13 / 55

# Variables of either implementation (and of the cloud SDKs) that must not leak
# in from the calling shell.
_SCRUB_PREFIXES = ("MLFLOW_", "VAULT_", "AWS_", "AZURE_", "BENCH_")
_SCRUB_NAMES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONBREAKPOINT")


class BenchError(RuntimeError):
    """The benchmark could not run (as opposed to: a target was missed)."""


@dataclass
class Impl:
    key: str  # "ours" or "0.2.0"
    python: Path
    env: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        version = self.info.get("plugin_version", "?")
        return f"ours {version}" if self.key == "ours" else f"{BASELINE_VERSION} (PyPI)"


# --------------------------------------------------------------------------- #
# Environments
# --------------------------------------------------------------------------- #

_PROBE = """
import importlib.metadata as m, json, os, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable}
for dist in ("mlflow-secrets-auth", "mlflow", "mlflow-skinny", "requests", "hvac", "cffi"):
    try:
        out[dist] = m.version(dist)
    except m.PackageNotFoundError:
        out[dist] = None
try:
    import mlflow_secrets_auth
    out["plugin_dir"] = os.path.dirname(mlflow_secrets_auth.__file__)
    out["plugin_version"] = getattr(mlflow_secrets_auth, "__version__", None) or out["mlflow-secrets-auth"]
except Exception as exc:
    out["plugin_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def probe(python: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Versions of the relevant distributions in the environment of ``python``."""
    env = _scrubbed_env()
    env.update(extra_env or {})
    proc = subprocess.run(
        [str(python), "-c", _PROBE], capture_output=True, text=True, env=env, cwd=BENCH_DIR, timeout=120
    )
    if proc.returncode != 0:
        raise BenchError(f"cannot run {python}: {proc.stderr.strip()[-2000:]}")
    info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


def _has_pins(info: dict[str, Any], pins: dict[str, str]) -> bool:
    """Whether a probed environment has every pinned distribution at its version."""
    return all(info.get(name) == version for name, version in pins.items())


def _venv_pip(venv_dir: Path, log: IO[str]) -> list[str]:
    """The pip install command of venv_dir, which is created first if missing."""
    python = venv_dir / "bin" / "python"
    if not python.exists():
        # The base interpreter of this venv (a venv made from a venv uses the base).
        proc = subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise BenchError(f"could not create the venv {venv_dir} (exit {proc.returncode}); see {log.name}")
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check"]


def ensure_baseline(venv_dir: Path, pins: dict[str, str], log_path: Path) -> Path:
    """Return the Python of a venv with mlflow-secrets-auth 0.2.0 (and hvac), creating it if needed."""
    python = venv_dir / "bin" / "python"
    if python.exists():
        info = probe(python)
        if info.get(DIST) == BASELINE_VERSION and info.get("hvac") and _has_pins(info, pins):
            return python
    print(f"Installing {DIST}[vault]=={BASELINE_VERSION} from PyPI into {_rel(venv_dir)} (log: {_rel(log_path)}) ...")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        pip = _venv_pip(venv_dir, log)
        wanted = f"{DIST}[vault]=={BASELINE_VERSION}"
        pinned = [f"{name}=={version}" for name, version in sorted(pins.items())]
        proc = subprocess.run([*pip, wanted, *pinned], stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0 and pinned:
            log.write("\n--- retrying without pins ---\n")
            log.flush()
            proc = subprocess.run([*pip, wanted], stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise BenchError(
            f"pip could not install {wanted} into {venv_dir} (exit {proc.returncode}); "
            f"the 0.2.0 comparison cannot run (--no-baseline measures this package alone). "
            f"Last lines of {log_path}:\n{tail}"
        )
    info = probe(python)
    if info.get(DIST) != BASELINE_VERSION or not info.get("hvac"):
        raise BenchError(f"{venv_dir} has {DIST}={info.get(DIST)} and hvac={info.get('hvac')} after installing")
    return python


def built_wheel(dist: Path) -> Path:
    """The newest wheel in dist/ that this interpreter can install (``make install`` builds it)."""
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    supported = set(sys_tags())
    found = [w for w in dist.glob("*.whl") if supported & set(parse_wheel_filename(w.name)[3])]
    if not found:
        raise BenchError(f"no wheel of {DIST} for this platform in {_rel(dist)}: run `make install` first")
    return max(found, key=lambda w: w.stat().st_mtime)


def ensure_ours(venv_dir: Path, wheel: Path, pins: dict[str, str], log_path: Path) -> Path:
    """Return the Python of a venv with ``wheel`` installed and ``pins`` (made
    like the 0.2.0 venv), creating it if needed and reinstalling the wheel
    when it is not the one installed there."""
    python = venv_dir / "bin" / "python"
    stamp = venv_dir / ".bench-wheel"
    wanted = f"{wheel.name} {_sha256_file(wheel)}"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        info = probe(python)
        if info.get(DIST) and _has_pins(info, pins):
            return python
    print(f"Installing {wheel.name} into {_rel(venv_dir)} (log: {_rel(log_path)}) ...")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        fresh = not python.exists()
        pip = _venv_pip(venv_dir, log)
        pinned = [f"{name}=={version}" for name, version in sorted(pins.items())]
        proc = subprocess.run([*pip, str(wheel), *pinned], stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode == 0 and not fresh:
            # pip keeps an installed build of the same version: this one replaces it.
            again = [*pip, "--no-deps", "--force-reinstall", str(wheel)]
            proc = subprocess.run(again, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise BenchError(f"pip could not install {wheel.name} into {venv_dir} (exit {proc.returncode}); see {log_path}")
    stamp.write_text(wanted)
    return python


def stale_files(installed_dir: str | None) -> list[str]:
    """Files of python/mlflow_secrets_auth that differ from the installed package's copy."""
    if not installed_dir or not PACKAGE_DIR.is_dir():
        return []
    installed = Path(installed_dir).resolve()
    if installed == PACKAGE_DIR.resolve():
        return []
    differ = []
    for src in sorted(PACKAGE_DIR.iterdir()):
        if src.suffix not in (".py", ".so") or not src.is_file():
            continue
        dst = installed / src.name
        if not dst.is_file() or _sha256_file(src) != _sha256_file(dst):
            differ.append(src.name)
    return differ


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- #
# Children
# --------------------------------------------------------------------------- #


@contextlib.contextmanager
def vault_with_secret() -> Iterator[tuple[harness.VaultServer, str]]:
    """HashiCorp Vault on loopback holding the bench's secret (KV v1, a new token); yields the
    server and the SHA-256 of the header the secret makes (``BENCH_EXPECTED_SHA256``)."""
    token = secrets.token_urlsafe(32)
    with harness.VaultServer(binary=harness.ensure_vault_server_binary()) as vault:
        vault.enable_kv(KV_MOUNT, 1)
        vault.kv_put(KV_MOUNT, KV_PATH, {"token": token}, version=1)
        yield vault, hashlib.sha256(f"Bearer {token}".encode()).hexdigest()


def child_env(impl: Impl, vault: harness.VaultServer, expected_sha256: str) -> dict[str, str]:
    env = _scrubbed_env()
    env.update(
        MLFLOW_TRACKING_URI=TRACKING_URI,
        MLFLOW_TRACKING_AUTH="mlflow_secrets_auth",
        MLFLOW_SECRETS_AUTH_ENABLE="vault",
        VAULT_ADDR=vault.addr,
        VAULT_TOKEN=vault.root_token,
        MLFLOW_VAULT_SECRET_PATH=f"{KV_MOUNT}/{KV_PATH}",
        BENCH_URL=REQUEST_URL,
        BENCH_EXPECTED_SHA256=expected_sha256,
    )
    env.update(impl.env)
    return env


def run_child(impl: Impl, mode: str, env: dict[str, str], timeout: float = 3600.0) -> dict[str, Any]:
    """Run bench/child.py under ``impl``'s Python; return its JSON result plus spawn/exit times."""
    t_spawn = time.monotonic_ns()
    proc = subprocess.run(
        [str(impl.python), str(CHILD), mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=BENCH_DIR,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    t_exit = time.monotonic_ns()
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if proc.returncode != 0 or "error" in result or not result:
        detail = result.get("error") or f"exit {proc.returncode}"
        raise BenchError(f"{impl.label} {mode} run failed: {detail}\nstderr tail:\n{proc.stderr.strip()[-3000:]}")
    result["t_spawn_ns"] = t_spawn
    result["t_exit_ns"] = t_exit
    return result


def cold_runs(impls: list[Impl], envs: dict[str, dict[str, str]], runs: int) -> dict[str, Any]:
    """One discarded warm-up run per implementation (page cache), then ``runs`` runs, alternating."""
    raw: dict[str, list[dict[str, Any]]] = {impl.key: [] for impl in impls}
    for impl in impls:
        run_child(impl, "cold", envs[impl.key])
    for _ in range(runs):
        for impl in impls:
            r = run_child(impl, "cold", envs[impl.key])
            if not r.get("headers_ok"):
                raise BenchError(f"{impl.label}: the first request did not receive the expected header")
            raw[impl.key].append(
                {
                    "start_to_first_headers_ms": (r["t_first_headers_ns"] - r["t_spawn_ns"]) / 1e6,
                    "interpreter_start_ms": (r["t_start_ns"] - r["t_spawn_ns"]) / 1e6,
                    "import_mlflow_ms": (r["t_mlflow_imported_ns"] - r["t_start_ns"]) / 1e6,
                    "load_plugin_ms": (r["t_plugin_imported_ns"] - r["t_mlflow_imported_ns"]) / 1e6,
                    "first_headers_ms": (r["t_first_headers_ns"] - r["t_plugin_imported_ns"]) / 1e6,
                    "plugin_total_ms": (r["t_first_headers_ns"] - r["t_mlflow_imported_ns"]) / 1e6,
                    "process_wall_ms": (r["t_exit_ns"] - r["t_spawn_ns"]) / 1e6,
                    "rss_kb": r["rss_kb"],
                    "rss_before_plugin_kb": r["rss_before_plugin_kb"],
                    "plugin_rss_kb": r["rss_kb"] - r["rss_before_plugin_kb"],
                    "hwm_kb": r["hwm_kb"],
                }
            )
    out: dict[str, Any] = {}
    for key, rows in raw.items():
        out[key] = {
            "median": {name: statistics.median(row[name] for row in rows) for name in rows[0]},
            "runs": rows,
        }
    return out


def memory_runs(impls: list[Impl], envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """bench/child.py memory: where the resident memory goes, per stage and per mapping.
    Ours twice: in-process (the library loaded) and with the helper process."""
    out: dict[str, Any] = {}
    for impl in impls:
        modes = [("inprocess", "inprocess"), ("helper", "helper")] if impl.key == "ours" else [("inprocess", None)]
        for name, transport in modes:
            env = dict(envs[impl.key])
            if transport:
                env["MLFLOW_SECRETS_AUTH_TRANSPORT"] = transport
            r = run_child(impl, "memory", env)
            if not r.get("headers_ok"):
                raise BenchError(f"{impl.label} ({name}): the first request did not receive the expected header")
            stages = {st["stage"]: st for st in r["stages"]}
            added = stages["first headers"]["rss_kb"] - stages["plugin imported"]["rss_kb"]
            row: dict[str, Any] = {
                "added_rss_kb": added,
                "later_added_rss_kb": stages["later"]["rss_kb"] - stages["plugin imported"]["rss_kb"],
                "later": {"refreshes": r["refreshes"], "cached_requests": r["cached_requests"]},
                "stages": r["stages"],
                "mappings_kb": r["mappings_kb"],
            }
            if "library loaded" in stages:
                row["library_load_kb"] = stages["library loaded"]["rss_kb"] - stages["plugin imported"]["rss_kb"]
            plugin_files = {k: v for k, v in r["mappings_kb"].items() if k.startswith("file ")}
            row["plugin_files_kb"] = sum(plugin_files.values())
            if r["helpers"]:
                h = r["helpers"][0]
                row["helper_rss_kb"] = h["rss_kb"]
                row["helper_threads"] = h["threads"]
                row["helper_mappings_kb"] = h["mappings_kb"]
                row["helper_later_rss_kb"] = r["helpers_later"][0]["rss_kb"] if r["helpers_later"] else None
            out[f"{impl.key}/{name}"] = row
    return out


def forked_runs(impls: list[Impl], envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """bench/child.py forked: what one forked worker adds. Ours twice: asking
    its parent's core (the default), and with a helper of its own (what every
    forked worker started before MsaShare)."""
    out: dict[str, Any] = {}
    for impl in impls:
        modes = [("parent-core", None), ("own-helper", "helper")] if impl.key == "ours" else [("forked", None)]
        for name, transport in modes:
            env = dict(envs[impl.key])
            if transport:
                env["BENCH_CHILD_TRANSPORT"] = transport
            r = run_child(impl, "forked", env)
            if not r.get("headers_ok"):
                raise BenchError(f"{impl.label} ({name}): the forked worker's request lacked the expected header")
            out[f"{impl.key}/{name}"] = {
                "added_rss_kb": r["added_rss_kb"],
                "processes": len(r["started"]),
                "processes_rss_kb": sum(p["rss_kb"] for p in r["started"]),
            }
    return out


def package_sizes(impls: list[Impl]) -> dict[str, Any]:
    """Bytes of each implementation's installed package directory (0.2.0: its
    own package; hvac and its other dependencies not counted), and of the
    wheels in dist/ when `make wheels` left them there."""
    out: dict[str, Any] = {"installed": {}, "wheels": {}}
    for impl in impls:
        d = impl.info.get("plugin_dir")
        if d and Path(d).is_dir():
            out["installed"][impl.key] = sum(
                f.stat().st_size for f in Path(d).rglob("*") if f.is_file() and "__pycache__" not in f.parts
            )
    for whl in sorted((REPO_ROOT / "dist").glob("*.whl")):
        import zipfile

        with zipfile.ZipFile(whl) as zf:
            out["wheels"][whl.name] = {
                "download": whl.stat().st_size,
                "installed": sum(i.file_size for i in zf.infolist()),
            }
    return out


def print_memory(mem: dict[str, Any], sizes: dict[str, Any], forks: dict[str, Any] | None = None) -> None:
    mb = 1024.0
    print()
    print("Memory: resident memory added from the plugin's import to the first headers (Vault backend),")
    print("one new process each, and later (ours: after 3 refreshes and 20,000 cached requests; 0.2.0: the")
    print("cached requests). 'library file' pages are the library's code and data mapped from the page")
    print("cache (shared by every process that maps it, mapped in whole page-cache folios, 64 kB to 1 MB")
    print("here); 'anonymous' is private memory (Go heap, stacks, runtime). After each fetch the library")
    print("releases its read-only pages from the resident set (go/internal/trim).")
    for key, row in mem.items():
        line = f"  {key:<20} added {row['added_rss_kb'] / mb:6.1f} MB, later {row['later_added_rss_kb'] / mb:5.1f} MB"
        if "library_load_kb" in row:
            line += f"  (library load alone {row['library_load_kb'] / mb:.1f} MB)"
        if "helper_rss_kb" in row:
            hm = row["helper_mappings_kb"]
            lib = sum(v for k, v in hm.items() if k.startswith("file "))
            line += (
                f"  helper process {row['helper_rss_kb'] / mb:.1f} MB: library file {lib / mb:.1f},"
                f" anonymous {hm.get('anonymous', 0) / mb:.1f}, other files {hm.get('other files', 0) / mb:.1f};"
                f" {row['helper_threads']} threads"
            )
            if row.get("helper_later_rss_kb"):
                line += f"; later {row['helper_later_rss_kb'] / mb:.1f} MB"
        print(line)
        if key.endswith("/inprocess") and "library_load_kb" in row:
            print(f"  {'':<20} of which plugin files mapped {row['plugin_files_kb'] / mb:.1f} MB")
    if forks:
        print()
        print("One forked worker (a DataLoader or fork-pool worker; its header cache cleared): resident memory")
        print("the worker adds from the fork to its headers, and the processes it starts for them.")
        for key, row in forks.items():
            print(
                f"  {key:<20} worker +{row['added_rss_kb'] / mb:5.1f} MB, {row['processes']} process(es) started"
                f" ({row['processes_rss_kb'] / mb:.1f} MB)"
            )
    print()
    print("Size (bytes):")
    for key, n in sizes["installed"].items():
        print(f"  installed package {key:<14} {n:>12,} ({n / 2**20:.1f} MiB)")
    for name, w in sizes["wheels"].items():
        print(f"  {name:<80} download {w['download'] / 2**20:5.1f} MiB  installed {w['installed'] / 2**20:5.1f} MiB")


def hot_runs(
    impls: list[Impl], envs: dict[str, dict[str, str]], iterations: int, warmup: int, processes: int = 3
) -> dict[str, dict[str, Any]]:
    """Each line in ``processes`` fresh processes, in rounds (every line once
    per round, so a slow spell of the machine hits all lines alike). One
    process's median moves by up to 1.8x from one process to the next on this
    2-core VM (the floor: 781 to 1,382 ns in one run), in two modes, and that
    noise only adds time; so each line reports its fastest process (all
    medians under "medians_ns"), for ours, the floor and 0.2.0 alike."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_no in range(processes):
        for variant in (*HOT_VARIANTS, "native", "floor"):
            for impl in impls:
                if variant in ("native", "floor") and impl.key != "ours":
                    continue  # the floor is MLflow's own path: measured once, in our interpreter
                env = dict(envs[impl.key], BENCH_VARIANT=variant)
                env.update(BENCH_ITERATIONS=str(iterations), BENCH_WARMUP=str(warmup))
                print(
                    f"  hot path: {impl.label:<22} {HOT_LABELS[variant]} ({round_no + 1}/{processes}) ...", flush=True
                )
                runs.setdefault((impl.key, variant), []).append(run_child(impl, "hot", env))
    out: dict[str, dict[str, Any]] = {impl.key: {} for impl in impls}
    for (key, variant), results in runs.items():
        chosen = dict(min(results, key=lambda r: r["calls"]["median_ns"]))
        chosen["medians_ns"] = [r["calls"]["median_ns"] for r in results]
        out[key][variant] = chosen
    return out


# --------------------------------------------------------------------------- #
# Go benchmarks
# --------------------------------------------------------------------------- #

_GO_LINE = re.compile(
    r"^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op)?(?:\s+([\d.]+) allocs/op)?"
)


def go_benchmarks() -> dict[str, Any]:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        return {"skipped": "the go toolchain was not found"}
    cmd = [go, "test", "-bench", ".", "-benchmem", "-run", "^$", "./go/..."]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1800)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    results = []
    pkg = ""
    for line in proc.stdout.splitlines():
        if line.startswith("pkg: "):
            pkg = line[5:].strip().rsplit("/go/", 1)[-1]
        elif m := _GO_LINE.match(line):
            results.append(
                {
                    "package": pkg,
                    "name": m.group(1),
                    "iterations": int(m.group(2)),
                    "ns_per_op": float(m.group(3)),
                    "bytes_per_op": float(m.group(4)) if m.group(4) else None,
                    "allocs_per_op": float(m.group(5)) if m.group(5) else None,
                }
            )
    return {"command": " ".join(["go", *cmd[1:]]), "results": results}


# --------------------------------------------------------------------------- #
# Resilience: backend latency, hang, hanging primary, configuration changes
# --------------------------------------------------------------------------- #

RESILIENCE_CHILD = BENCH_DIR / "resilience_child.py"
RESILIENCE_TARGET_MS = 5.0
RESILIENCE_TARGET_SOCKETS = 10
SLOW_MS_LABEL = "5 ms"
RESILIENCE_LABELS = {
    "latency": "Vault +300 ms per request, TTL 2 s",
    "hang": "Vault hung after the first fetch, timeout 3 s",
    "reject401": "401 during an outage (Vault hung, then one 401)",
    "fallback": "Vault hung from the start, AWS healthy, timeout 3 s",
    "changes": "1,000 configuration changes (2 paths alternating)",
}


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class MlflowLike:
    """A stand-in for an MLflow server on 127.0.0.1 (plain HTTP/1.1, keep-alive)
    for the "401 during an outage" scenario. A POST carrying the expected
    credential (the SHA-256 of its Authorization header is one of ``expected``)
    gets 200, any other gets 401, as an MLflow server with basic auth answers.
    After ``arm()`` the next POST gets 401 whatever it carries (a server that
    turned the credential down once); ``rejected_seqs`` holds the X-Bench-Seq
    header of each request so answered, ``refused`` counts the 401s for a
    missing or wrong credential."""

    def __init__(self, expected: set[str]) -> None:
        import http.server

        self._expected = expected
        self._lock = threading.Lock()
        self._armed = 0
        self.rejected_seqs: list[int] = []
        self.refused = 0
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # keep the bench output clean
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = outer._answer(self.headers.get("Authorization"), self.headers.get("X-Bench-Seq"))
                body = b"{}"
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer((harness.LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{harness.LOCALHOST}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="mlflow-like", daemon=True).start()

    def _answer(self, authorization: str | None, seq: str | None) -> int:
        with self._lock:
            self.requests += 1
            if self._armed:
                self._armed -= 1
                self.rejected_seqs.append(int(seq or -1))
                return 401
            if authorization is None or _sha(authorization) not in self._expected:
                self.refused += 1
                return 401
            return 200

    def arm(self, count: int = 1) -> None:
        with self._lock:
            self._armed = count

    def __enter__(self) -> MlflowLike:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _after_the_401(impl: Impl, raw: dict[str, Any], server: MlflowLike, vault_requests: int) -> dict[str, Any]:
    """The "401 during an outage" numbers: the child's per-request record cut at
    the request the server answered 401 to."""
    if len(server.rejected_seqs) != 1 or server.rejected_seqs[0] < 1:
        raise BenchError(f"{impl.label} 401 run: the server answered {server.rejected_seqs} to the armed 401")
    at = server.rejected_seqs[0]
    ms: list[float] = raw.pop("ms")
    failed: list[int] = raw.pop("failed_seqs")
    after = sorted(ms[at:])  # ms[i] is the request with X-Bench-Seq i + 1
    raw.update(
        rejected_seq=at,
        requests=len(after),
        failed=sum(1 for seq in failed if seq > at),
        failed_before=sum(1 for seq in failed if seq < at),
        worst_ms=after[-1] if after else None,
        p99_ms=after[min(len(after) - 1, int(0.99 * len(after)))] if after else None,
        median_ms=after[len(after) // 2] if after else None,
        server_requests=server.requests,
        server_refused=server.refused,
        vault_requests=vault_requests,
    )
    return raw


def _resilience_child(
    impl: Impl,
    env: dict[str, str],
    proxy: Any = None,
    hang_after_ready: bool = False,
    timeout: float = 600.0,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run bench/resilience_child.py; for the outage scenarios, make the proxy
    hang once the child reports its first fetch done (then call ``on_ready``,
    before the child goes on)."""
    proc = subprocess.Popen(
        [str(impl.python), str(RESILIENCE_CHILD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=BENCH_DIR,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if hang_after_ready:
            line = proc.stdout.readline()
            if line.strip() != "READY":
                out, err = proc.communicate(timeout=60)
                raise BenchError(f"{impl.label} outage run did not get ready: {line}{out}\n{err[-3000:]}")
            proxy.hang = True
            if on_ready is not None:
                on_ready()
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"{impl.label} resilience run did not finish within {timeout:.0f}s") from None
    lines = out.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if proc.returncode != 0 or "error" in result or not result:
        detail = result.get("error") or f"exit {proc.returncode}"
        raise BenchError(f"{impl.label} resilience run failed: {detail}\nstderr tail:\n{err.strip()[-3000:]}")
    return result


def resilience_runs(impls: list[Impl], vault: harness.VaultServer, seconds: float) -> dict[str, Any]:
    """The five resilience scenarios, each implementation in a fresh process
    with its own fault proxy in front of the same Vault."""
    import cloud_harness  # tests/cloud_harness.py
    from faultproxy import FaultProxy  # tests/faultproxy.py

    token = secrets.token_urlsafe(32)
    vault.kv_put(KV_MOUNT, "mlflow/resilience", {"token": token}, version=1)
    paths = []
    change_hashes = []
    for name in ("a", "b"):
        t = secrets.token_urlsafe(32)
        vault.kv_put(KV_MOUNT, f"mlflow/changes-{name}", {"token": t}, version=1)
        paths.append(f"{KV_MOUNT}/mlflow/changes-{name}")
        change_hashes.append(_sha(f"Bearer {t}"))
    aws_token = secrets.token_urlsafe(32)
    out: dict[str, Any] = {impl.key: {} for impl in impls}
    out["config"] = {"seconds": seconds, "pace_ms": 10, "slow_ms": 5.0}

    def env_for(impl: Impl, proxy: FaultProxy, expected: list[str], **extra: str) -> dict[str, str]:
        env = child_env(impl, vault, "")
        env.update(
            VAULT_ADDR=proxy.url,
            MLFLOW_VAULT_SECRET_PATH=f"{KV_MOUNT}/mlflow/resilience",
            BENCH_EXPECTED_SHA256=",".join(expected),
            BENCH_SECONDS=str(seconds),
            BENCH_PACE="0.01",
        )
        env.update(extra)
        return env

    with cloud_harness.MotoServer() as moto:
        moto.create_secret("mlflow/resilience", string=json.dumps({"token": aws_token}))
        for impl in impls:
            print(f"  resilience: {impl.label:<22} {RESILIENCE_LABELS['latency']} ...", flush=True)
            with FaultProxy(vault.addr) as proxy:
                proxy.latency = 0.3
                env = env_for(impl, proxy, [_sha(f"Bearer {token}")], BENCH_SCENARIO="steady", MLFLOW_VAULT_TTL_SEC="2")
                out[impl.key]["latency"] = _resilience_child(impl, env)
                out[impl.key]["latency"]["vault_requests"] = proxy.count()

            print(f"  resilience: {impl.label:<22} {RESILIENCE_LABELS['hang']} ...", flush=True)
            with FaultProxy(vault.addr) as proxy:
                env = env_for(
                    impl,
                    proxy,
                    [_sha(f"Bearer {token}")],
                    BENCH_SCENARIO="outage",
                    MLFLOW_VAULT_TTL_SEC="2",
                    MLFLOW_SECRETS_TIMEOUT_SEC="3",
                )
                out[impl.key]["hang"] = _resilience_child(impl, env, proxy, hang_after_ready=True)
                out[impl.key]["hang"]["vault_requests"] = proxy.count()

            print(f"  resilience: {impl.label:<22} {RESILIENCE_LABELS['reject401']} ...", flush=True)
            held = _sha(f"Bearer {token}")
            with FaultProxy(vault.addr) as proxy, MlflowLike({held}) as server:
                env = env_for(
                    impl,
                    proxy,
                    [held],
                    BENCH_SCENARIO="outage401",
                    BENCH_URL=server.url + "/api/2.0/mlflow/runs/log-metric",
                    MLFLOW_TRACKING_URI=server.url,
                    NO_PROXY=harness.LOCALHOST,
                    MLFLOW_VAULT_TTL_SEC="2",
                    MLFLOW_SECRETS_TIMEOUT_SEC="3",
                )
                raw = _resilience_child(impl, env, proxy, hang_after_ready=True, on_ready=server.arm)
                out[impl.key]["reject401"] = _after_the_401(impl, raw, server, proxy.count())

            print(f"  resilience: {impl.label:<22} {RESILIENCE_LABELS['fallback']} ...", flush=True)
            with FaultProxy(vault.addr) as proxy:
                proxy.hang = True
                env = env_for(
                    impl,
                    proxy,
                    [_sha(f"Bearer {aws_token}")],
                    BENCH_SCENARIO="steady",
                    MLFLOW_SECRETS_AUTH_ENABLE="vault,aws-secrets-manager",
                    MLFLOW_SECRETS_TIMEOUT_SEC="3",
                    MLFLOW_AWS_SECRET_ID="mlflow/resilience",
                    **moto.env(),
                )
                out[impl.key]["fallback"] = _resilience_child(impl, env)
                out[impl.key]["fallback"]["vault_requests"] = proxy.count()

            print(f"  resilience: {impl.label:<22} {RESILIENCE_LABELS['changes']} ...", flush=True)
            with FaultProxy(vault.addr) as proxy:
                env = env_for(
                    impl,
                    proxy,
                    change_hashes,
                    BENCH_SCENARIO="changes",
                    BENCH_PATHS=",".join(paths),
                    BENCH_CHANGES="1000",
                    BENCH_VAULT_PORT=str(proxy.port),
                )
                out[impl.key]["changes"] = _resilience_child(impl, env)
                out[impl.key]["changes"]["vault_requests"] = proxy.count()
                out[impl.key]["changes"]["proxy_open_connections"] = proxy.open_connections
    return out


def print_resilience(res: dict[str, Any], impls: list[Impl]) -> None:
    keys = [impl.key for impl in impls]
    labels = {impl.key: impl.label for impl in impls}
    w = 52
    print()
    print(
        f"Resilience: requests every {res['config']['pace_ms']} ms for {res['config']['seconds']:g} s after the first "
        "one, each in a fresh process; auth time per request (get_auth + apply)."
    )
    header = f"{'':<{w}}{'':<22}" + "".join(f"{labels[k]:>26}" for k in keys)
    print(header)
    print("-" * len(header))

    def fmt_ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.2f} ms"

    for scenario in ("latency", "hang", "fallback"):
        rows = [
            ("first request", lambda r: fmt_ms(r.get("first_ms"))),
            ("worst after the first", lambda r: fmt_ms(r.get("worst_ms"))),
            ("p99 / median", lambda r: f"{r.get('p99_ms', 0):.2f} / {r.get('median_ms', 0):.3f} ms"),
            ("failed / requests", lambda r: f"{r.get('failed')} / {r.get('requests')}"),
            (
                f"blocked (requests > {SLOW_MS_LABEL})",
                lambda r: f"{r.get('blocked_ms', 0):,.0f} ms ({r.get('slow_requests')})",
            ),
            ("Vault requests seen by the proxy", lambda r: str(r.get("vault_requests"))),
        ]
        for i, (name, get) in enumerate(rows):
            title = RESILIENCE_LABELS[scenario] if i == 0 else ""
            print(f"{title:<{w}}{name:<22}" + "".join(f"{get(res[k][scenario]):>26}" for k in keys))

    def fmt_401(r: dict[str, Any]) -> str:
        f = r.get("first_401")
        if not f:
            return f"not seen (seq {r.get('rejected_seq')})"
        outcome = f"raised {f['error']}" if f.get("error") else f"{f.get('status')}"
        return f"{outcome}{' resent' if f.get('resent') else ''}, {f['ms']:,.0f} ms"

    rows_401: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("first request", lambda r: fmt_ms(r.get("first_ms"))),
        ("the 401'd request", fmt_401),
        ("its response hooks", lambda r: ",".join((r.get("first_401") or {}).get("hooks") or ()) or "none"),
        ("failed / requests after", lambda r: f"{r.get('failed')} / {r.get('requests')}"),
        ("worst after the 401", lambda r: fmt_ms(r.get("worst_ms"))),
        (
            "p99 / median",
            lambda r: "-" if r.get("median_ms") is None else f"{r['p99_ms']:.2f} / {r['median_ms']:.3f} ms",
        ),
        ("Vault requests seen by the proxy", lambda r: str(r.get("vault_requests"))),
    ]
    for i, (name, get_401) in enumerate(rows_401):
        title = RESILIENCE_LABELS["reject401"] if i == 0 else ""
        print(f"{title:<{w}}{name:<22}" + "".join(f"{get_401(res[k]['reject401']):>26}" for k in keys))
    print("  (real HTTP requests through a requests.Session: times are whole requests; the server answers 401 once)")
    rows = [
        ("open sockets to Vault", lambda r: str(r.get("open_sockets"))),
        ("failed requests", lambda r: str(r.get("failed"))),
        ("wall time", lambda r: f"{r.get('seconds')} s"),
    ]
    for i, (name, get) in enumerate(rows):
        title = RESILIENCE_LABELS["changes"] if i == 0 else ""
        print(f"{title:<{w}}{name:<22}" + "".join(f"{get(res[k]['changes']):>26}" for k in keys))


def resilience_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    ours = res["ours"]
    targets = []
    for scenario, what in (
        ("latency", "worst auth latency after the first fetch, 300 ms backend, TTL 2 s"),
        ("hang", "worst auth latency after the first fetch, backend hung, timeout 3 s"),
        ("fallback", "worst auth latency after the first failure window, primary hung, fallback healthy"),
    ):
        r = ours[scenario]
        targets.append(
            {
                "name": f"ours {what} < {RESILIENCE_TARGET_MS:g} ms",
                "value": r["worst_ms"],
                "ok": r["worst_ms"] is not None and r["worst_ms"] < RESILIENCE_TARGET_MS,
            }
        )
        targets.append({"name": f"ours {scenario}: zero failed requests", "value": r["failed"], "ok": r["failed"] == 0})
    r = ours["reject401"]
    # The scenario counts only if a credential was held before the outage and
    # the 401 reached the plugin's response hook (requests' own hook list is
    # empty; ours leaves its _Guard there).
    hooked = "_Guard" in ((r.get("first_401") or {}).get("hooks") or ())
    targets.append(
        {
            "name": "ours 401 during an outage: zero failed requests after the 401 (its response hook ran)",
            "value": r["failed"],
            "ok": r["first_ok"] and hooked and r["requests"] > 0 and r["failed"] == 0,
        }
    )
    sockets = ours["changes"]["open_sockets"]
    targets.append(
        {
            "name": f"ours open sockets after 1,000 configuration changes <= {RESILIENCE_TARGET_SOCKETS}",
            "value": sockets,
            "ok": sockets <= RESILIENCE_TARGET_SOCKETS,
        }
    )
    return targets


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def _ns(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 10_000:
        return f"{v:,.0f} ns"
    return f"{v / 1000:,.1f} us" if v < 1_000_000 else f"{v / 1e6:,.1f} ms"


def _ratio(base: float | None, ours: float | None) -> str:
    if not base or not ours:
        return "-"
    return f"{base / ours:,.1f}x"


def print_report(results: dict[str, Any], impls: list[Impl]) -> None:
    keys = [impl.key for impl in impls]
    labels = {impl.key: impl.label for impl in impls}
    has_base = BASELINE_VERSION in keys
    cfg = results["config"]
    w = 32
    print()
    print(
        f"Hot path at a cache hit: {cfg['iterations']:,} calls per line after {cfg['warmup']:,} warm-up calls, "
        "each in a fresh process."
    )
    print("Each call gets a fresh PreparedRequest (copy of a prepared template + fresh hooks), made outside the timed")
    print("region; times are raw perf_counter_ns differences (timer overhead not subtracted).")
    header = f"{'':<{w}}{'':<8}" + "".join(f"{labels[k]:>18}" for k in keys) + (f"{'ratio':>10}" if has_base else "")
    print(header)
    print("-" * len(header))
    hot = results["hot"]
    for variant in (*HOT_VARIANTS, "native", "floor"):
        for stat in ("median_ns", "p99_ns"):
            name = HOT_LABELS[variant] if stat == "median_ns" else ""
            vals = {k: hot[k][variant]["calls"][stat] if variant in hot[k] else None for k in keys}
            row = f"{name:<{w}}{stat[:-3]:<8}" + "".join(f"{_ns(vals[k]):>18}" for k in keys)
            if has_base:
                row += f"{_ratio(vals.get(BASELINE_VERSION), vals.get('ours')):>10}"
            print(row)
    timer = {k: hot[k]["get_auth"]["timer"]["median_ns"] for k in keys}
    print(f"{'timer overhead (empty region)':<{w}}{'median':<8}" + "".join(f"{_ns(timer[k]):>18}" for k in keys))
    first = {k: hot[k]["get_auth"]["first_call_ns"] for k in keys}
    print(f"{'first call (cache miss, Vault)':<{w}}{'':<8}" + "".join(f"{_ns(first[k]):>18}" for k in keys))

    cold = results["cold"]
    print()
    print(f"Cold start: median of {cfg['cold_runs']} new processes (one warm-up run each discarded first).")
    header = f"{'':<{w + 8}}" + "".join(f"{labels[k]:>18}" for k in keys)
    print(header)
    print("-" * len(header))
    rows = [
        ("import mlflow -> first headers", "plugin_total_ms"),
        ("  load plugin (entry point)", "load_plugin_ms"),
        ("  first get_auth() + apply (Vault)", "first_headers_ms"),
        ("process start -> first headers *", "start_to_first_headers_ms"),
        ("  interpreter start", "interpreter_start_ms"),
        ("  import MLflow provider base *", "import_mlflow_ms"),
        ("whole process incl. exit *", "process_wall_ms"),
    ]
    for name, key in rows:
        print(f"{name:<{w + 8}}" + "".join(f"{cold[k]['median'][key]:>15,.1f} ms" for k in keys))
    print()
    print("Memory after the first headers (VmRSS, median):")
    for name, key in (
        ("added by plugin + first headers", "plugin_rss_kb"),
        ("process RSS *", "rss_kb"),
        ("  before loading the plugin *", "rss_before_plugin_kb"),
        ("peak RSS (VmHWM) *", "hwm_kb"),
    ):
        print(f"{name:<{w + 8}}" + "".join(f"{cold[k]['median'][key] / 1024:>15,.1f} MB" for k in keys))
    envs_line = "; ".join(
        f"{labels[impl.key]}: mlflow {impl.info.get('mlflow') or '-'} / mlflow-skinny {impl.info.get('mlflow-skinny')}"
        for impl in impls
    )
    print(f"* includes importing MLflow, which depends on the environment ({envs_line})")

    go = results.get("go")
    if go:
        print()
        if "skipped" in go:
            print(f"Go benchmarks skipped: {go['skipped']}")
        else:
            print(f"Go benchmarks ({go['command']}):")
            for r in go["results"]:
                extra = ""
                if r["bytes_per_op"] is not None:
                    extra = f"{r['bytes_per_op']:>8,.0f} B/op {r['allocs_per_op']:>4,.0f} allocs/op"
                print(f"  {r['package'] + ' ' + r['name']:<62}{r['ns_per_op']:>10,.1f} ns/op {extra}")


def memory_targets(mem: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's memory targets: RSS added from the plugin's import to the first headers, and
    one helper process."""
    out = []
    row = mem.get("ours/inprocess")
    if row:
        mb = row["added_rss_kb"] / 1024
        out.append(
            {
                "name": "ours: RSS added, plugin import -> first headers <= 7.5 MB",
                "value": round(mb, 1),
                "ok": mb <= 7.5,
            }
        )
    row = mem.get("ours/helper")
    if row and row.get("helper_rss_kb"):
        mb = row["helper_rss_kb"] / 1024
        out.append({"name": "ours: one helper process <= 10 MB", "value": round(mb, 1), "ok": mb <= 10})
    return out


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    hot = results["hot"]
    ours = hot["ours"]["get_auth"]["calls"]["median_ns"]
    targets = [
        {
            "name": f"ours median (get_auth + apply) <= {TARGET_MEDIAN_NS} ns",
            "value": ours,
            "ok": ours <= TARGET_MEDIAN_NS,
        }
    ]
    if "floor" in hot["ours"]:
        floor = hot["ours"]["floor"]["calls"]["median_ns"]
        through_mlflow = hot["ours"]["fetch_auth"]["calls"]["median_ns"]
        ratio = through_mlflow / floor if floor else float("inf")
        targets.append(
            {
                "name": f"ours fetch_auth + apply / floor (median) <= {TARGET_FLOOR_RATIO:g}x",
                "value": round(ratio, 2),
                "ok": ratio <= TARGET_FLOOR_RATIO,
            }
        )
    if BASELINE_VERSION in hot:
        base = hot[BASELINE_VERSION]["get_auth"]["calls"]["median_ns"]
        ratio = base / ours if ours else float("inf")
        targets.append(
            {
                "name": f"{BASELINE_VERSION} median / ours median >= {TARGET_RATIO:g}x",
                "value": round(ratio, 2),
                "ok": ratio >= TARGET_RATIO,
            }
        )
    else:
        targets.append(
            {"name": f"ratio vs {BASELINE_VERSION} >= {TARGET_RATIO:g}x", "value": None, "ok": None, "note": "skipped"}
        )
    cold = results.get("cold", {})
    if BASELINE_VERSION in cold and "ours" in cold:
        ratio = cold["ours"]["median"]["plugin_total_ms"] / cold[BASELINE_VERSION]["median"]["plugin_total_ms"]
        targets.append(
            {
                "name": f"ours cold start (import mlflow -> first headers) / {BASELINE_VERSION}'s <= 13/55",
                "value": round(ratio, 3),
                "ok": ratio <= TARGET_COLD_RATIO,
            }
        )
    return targets


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=200_000, help="timed calls per hot-path line (default 200000)")
    p.add_argument("--warmup", type=int, default=20_000, help="untimed calls before them (default 20000)")
    p.add_argument("--cold-runs", type=int, default=5, help="cold-start runs per implementation (default 5)")
    p.add_argument(
        "--hot-processes", type=int, default=3, help="fresh processes per hot-path line; the fastest is reported"
    )
    p.add_argument(
        "--ours-python",
        type=Path,
        help="Python with this package installed (default: bench/.venv-ours, made from the wheel in dist/)",
    )
    p.add_argument("--ours-venv", type=Path, default=DEFAULT_OURS_VENV, help="venv for this package's wheel")
    p.add_argument(
        "--ours-from-source",
        action="store_true",
        help="measure python/mlflow_secrets_auth from the working tree (PYTHONPATH=python)",
    )
    p.add_argument("--baseline-venv", type=Path, default=DEFAULT_BASELINE_VENV, help="venv for 0.2.0")
    p.add_argument("--no-baseline", action="store_true", help="skip 0.2.0 (the ratio target is then not checked)")
    p.add_argument(
        "--go", action="store_true", help="also run the Go benchmarks and include them in the report and JSON"
    )
    p.add_argument(
        "--resilience-seconds",
        type=float,
        default=12.0,
        help="length of each resilience scenario after its first request (default 12)",
    )
    p.add_argument("--no-resilience", action="store_true", help="skip the resilience section")
    p.add_argument(
        "--resilience-only", action="store_true", help="run only the resilience section (no hot path, cold start)"
    )
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON (default %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings: list[str] = []

    repo = probe(REPO_PYTHON if REPO_PYTHON.exists() else Path(sys.executable))
    pins = {name: repo[name] for name in PINNED if repo.get(name)}
    ours_python = args.ours_python.absolute() if args.ours_python else ensure_ours(
        args.ours_venv, built_wheel(REPO_ROOT / "dist"), pins, args.output.parent / "pip-ours.log"
    )
    ours = Impl("ours", ours_python)
    if args.ours_from_source:
        if not (PACKAGE_DIR / "libmlflow_secrets_auth.so").exists() or not (PACKAGE_DIR / "_ffi.py").exists():
            raise BenchError("--ours-from-source needs the library built into python/mlflow_secrets_auth (./build.sh)")
        ours.env["PYTHONPATH"] = str(SOURCE_DIR)
    ours.info = probe(ours.python, ours.env)
    if "plugin_error" in ours.info or not ours.info.get(DIST):
        raise BenchError(
            f"{DIST} is not usable with {ours.python}: {ours.info.get('plugin_error', 'not installed')} "
            "(build and install it: .venv/bin/pip wheel . -w dist --no-deps && "
            ".venv/bin/pip install --no-deps --force-reinstall dist/*.whl)"
        )
    stale = stale_files(ours.info.get("plugin_dir"))
    ours.info["differs_from_working_tree"] = stale
    if stale:
        warnings.append(
            f"the {DIST} measured ({ours.info.get('plugin_dir')}) differs from python/mlflow_secrets_auth in: "
            f"{', '.join(stale)}; rebuild and reinstall it, or pass --ours-from-source"
        )
    impls = [ours]

    if not args.no_baseline:
        base_python = ensure_baseline(args.baseline_venv, pins, args.output.parent / "pip-0.2.0.log")
        base = Impl(BASELINE_VERSION, base_python)
        base.info = probe(base.python)
        impls.append(base)

    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)

    results: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "config": {
            "iterations": args.iterations,
            "warmup": args.warmup,
            "cold_runs": args.cold_runs,
            "tracking_uri": TRACKING_URI,
            "request_url": REQUEST_URL,
            "secret": f'Vault KV v1 {KV_MOUNT}/{KV_PATH} ({{"token": ...}}), token auth',
            "request_preparation": "fresh PreparedRequest per call (template.copy() + fresh hooks), untimed",
            "ours_from_source": args.ours_from_source,
        },
        "implementations": {impl.key: {"python": str(impl.python), **impl.info} for impl in impls},
        "warnings": warnings,
    }

    print("Starting Vault (tests/harness.py) ...", flush=True)
    with vault_with_secret() as (vault, expected):
        envs = {impl.key: child_env(impl, vault, expected) for impl in impls}
        if not args.resilience_only:
            print(f"Cold start: {args.cold_runs} runs per implementation ...", flush=True)
            results["cold"] = cold_runs(impls, envs, args.cold_runs)
            print("Hot path ...", flush=True)
            results["hot"] = hot_runs(impls, envs, args.iterations, args.warmup, args.hot_processes)
            print("Memory ...", flush=True)
            results["memory"] = memory_runs(impls, envs)
            results["forked"] = forked_runs(impls, envs)
            results["sizes"] = package_sizes(impls)
        if not args.no_resilience:
            print("Resilience ...", flush=True)
            results["resilience"] = resilience_runs(impls, vault, args.resilience_seconds)

    if args.go:
        print("Go benchmarks ...", flush=True)
        results["go"] = go_benchmarks()

    results["targets"] = check_targets(results) if "hot" in results else []
    if "ours/parent-core" in results.get("forked", {}):
        started = results["forked"]["ours/parent-core"]["processes"]
        results["targets"].append(
            {
                "name": "ours: a forked worker starts no process (it asks its parent's core)",
                "value": started,
                "ok": started == 0,
            }
        )
    if "memory" in results:
        results["targets"] += memory_targets(results["memory"])
    if "resilience" in results:
        results["targets"] += resilience_targets(results["resilience"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")

    if "hot" in results:
        print_report(results, impls)
        print_memory(results["memory"], results["sizes"], results.get("forked"))
    if "resilience" in results:
        print_resilience(results["resilience"], impls)
    print()
    failed = False
    for t in results["targets"]:
        if t["ok"] is None:
            status = "SKIP"
        elif t["ok"]:
            status = "PASS"
        else:
            status, failed = "FAIL", True
        value = "-" if t["value"] is None else f"{t['value']:,}"
        print(f"{status}  {t['name']}  (measured: {value})")
    for w in warnings:
        print(f"WARNING: {w}")
    print(f"Results written to {_rel(args.output)}")
    if failed:
        print("Target missed: see the FAIL line(s) above.")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, harness.HarnessError) as exc:
        print(f"bench: cannot run the benchmark: {exc}", file=sys.stderr)
        sys.exit(2)
