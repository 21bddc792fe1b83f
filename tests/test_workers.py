"""Forked workers, spawn/forkserver pools, 64 threads, environment changes,
Ctrl-C during a slow fetch, closed stdout/stderr, a library that cannot load,
and the helper transport on its own: each against real servers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
import pytest
import requests
from conftest import apply, clean_env, plugin_env, search_url, send

SCRIPTS = Path(__file__).resolve().parent / "scripts"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train.py"


def runs_in(server: harness.MlflowServer, experiment: str) -> set[str]:
    exp = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": experiment},
        auth=server.basic_auth,
        timeout=30,
    )
    exp.raise_for_status()
    body = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [exp.json()["experiment"]["experiment_id"]], "max_results": 100},
        auth=server.basic_auth,
        timeout=30,
    ).json()
    return {r["info"]["run_id"] for r in body.get("runs", [])}


@pytest.mark.parametrize(
    ("method", "transport"), [("fork", "Helper"), ("spawn", "InProcess"), ("forkserver", "InProcess")]
)
def test_pool_workers_log_runs(
    basic_env: dict[str, str], mlflow_server: harness.MlflowServer, method: str, transport: str
) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "pool_runs.py"), method],
        env=clean_env(**basic_env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    worker_runs = {run_id for run_id, _ in result["workers"]}
    assert len(worker_runs) == 8
    assert {t for _, t in result["workers"]} == {transport}
    assert runs_in(mlflow_server, f"pool-{method}") >= worker_runs | {result["parent"]}


def test_64_threads_one_fetch(
    use_env,
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    reader_token: str,
    secret_path: str,
) -> None:
    """64 threads miss the cold cache together while Vault is slow to answer
    (each connection held 0.5 s): one Vault read serves all 640 requests."""
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": password}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        proxy.delay = 0.5
        use_env(
            plugin_env(
                vault_ready,
                mlflow_server.url,
                VAULT_ADDR=proxy.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_VAULT_AUTH_MODE="basic",
                MLFLOW_VAULT_TTL_SEC="3600",
            )
        )
        statuses: list[int] = []
        barrier = threading.Barrier(64)

        def worker() -> None:
            barrier.wait()  # all 64 hit the cold cache together
            for _ in range(10):
                statuses.append(send(search_url(mlflow_server.url)).status_code)

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        reads = proxy.count("GET", f"/v1/secret/{secret_path}")
    assert statuses.count(200) == 640, {s: statuses.count(s) for s in set(statuses)}
    assert reads == 1, proxy.request_lines


def test_environment_changes_take_effect(
    use_env,
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    reader_token: str,
    secret_path: str,
    moto,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    vault_ready.kv_put("secret", secret_path, {"token": "vault-token"}, version=1)
    moto.create_secret(f"{secret_path}-aws", string="aws-token")
    use_env(
        plugin_env(
            vault_ready,
            "https://mlflow.test",
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_VAULT_TTL_SEC="3600",
        )
    )
    assert apply("https://mlflow.test").headers["Authorization"] == "Bearer vault-token"
    # TTL: shortened mid-session, so a rotation shows within it.
    vault_ready.kv_put("secret", secret_path, {"token": "rotated"}, version=1)
    assert apply("https://mlflow.test").headers["Authorization"] == "Bearer vault-token"  # cached for an hour
    os.environ["MLFLOW_VAULT_TTL_SEC"] = "1"
    deadline = time.monotonic() + 15
    while apply("https://mlflow.test").headers["Authorization"] != "Bearer rotated":
        assert time.monotonic() < deadline, "the rotated token was not picked up after the TTL was shortened"
        time.sleep(0.05)
    # Provider list: switch to AWS mid-session.
    os.environ.update(
        {
            "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
            "MLFLOW_AWS_SECRET_ID": f"{secret_path}-aws",
            **moto.env(),
        }
    )
    assert apply("https://mlflow.test").headers["Authorization"] == "Bearer aws-token"
    # Allowed hosts: the tracking host stops being enough.
    os.environ["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "*.corp.example"
    assert "Authorization" not in apply("https://mlflow.test").headers
    assert apply("https://a.corp.example").headers["Authorization"] == "Bearer aws-token"
    # os.environ replaced by another object (a notebook, a test's monkeypatch): seen at
    # the next request, although the header above is cached for minutes.
    moto.create_secret(f"{secret_path}-aws2", string="other-token")
    monkeypatch.setattr(os, "environ", {**os.environ, "MLFLOW_AWS_SECRET_ID": f"{secret_path}-aws2"})
    assert apply("https://a.corp.example").headers["Authorization"] == "Bearer other-token"


SLOW_FETCH = """
import signal, sys, time, requests
# Ctrl-C raises KeyboardInterrupt, as in a terminal, even when this test runs
# from a background job (whose children inherit SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
from mlflow.tracking.request_auth.registry import fetch_auth
req = requests.Request("GET", sys.argv[1]).prepare()
print("ready", flush=True)
t0 = time.monotonic()
try:
    req.prepare_auth(fetch_auth("mlflow_secrets_auth"))
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - t0:.2f}", flush=True)
    raise
print("not interrupted", flush=True)
"""


def test_ctrl_c_interrupts_a_slow_fetch(
    vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str
) -> None:
    vault_ready.kv_put("secret", secret_path, {"token": "slow"}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        proxy.delay = 120  # the backend would answer after two minutes
        env = clean_env(
            **plugin_env(
                vault_ready,
                "https://mlflow.test",
                VAULT_ADDR=proxy.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_SECRETS_TIMEOUT_SEC="60",
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", SLOW_FETCH, "https://mlflow.test/x"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # The fetch is waiting once its connection reached the (held) backend.
        proxy.wait_for(lambda: proxy.accepted >= 1, "the fetch to reach the backend", timeout=60)
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)  # far less than the backend's 120 s
        finally:
            proc.kill()
        forwarded = proxy.connections
    assert "KeyboardInterrupt" in stderr, stderr[-2000:]
    assert "interrupted after" in stdout
    assert forwarded == 0, "the backend answered: the fetch was not interrupted while waiting"


CLOSED_STDIO = """
import os, sys, requests
from mlflow.tracking.request_auth.registry import fetch_auth
marker = sys.argv[2]
os.close(1); os.close(2)
auth = fetch_auth("mlflow_secrets_auth")
ok = requests.Request("GET", sys.argv[1]).prepare(); ok.prepare_auth(auth)
denied = requests.Request("GET", "http://elsewhere.example/x").prepare(); denied.prepare_auth(auth)
os.environ["MLFLOW_VAULT_SECRET_PATH"] = ""
try:
    bad = requests.Request("GET", sys.argv[1]).prepare(); bad.prepare_auth(auth)
except Exception as exc:
    error = type(exc).__name__
with open(marker, "w") as f:
    f.write(ok.headers.get("Authorization", "") + "|" + str(denied.headers.get("Authorization")) + "|" + error)
"""


def test_closed_stdout_and_stderr_do_not_kill(
    vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str, tmp_path: Path
) -> None:
    vault_ready.kv_put("secret", secret_path, {"token": "quiet"}, version=1)
    marker = tmp_path / "done"
    env = clean_env(
        **plugin_env(
            vault_ready,
            "https://mlflow.test",
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        )
    )
    # A hang fails this test; 120 s only bounds it (the child takes 2-20 s, and once more than 60 s
    # while a CI run starved the VM's disk).
    out = subprocess.run(
        [sys.executable, "-c", CLOSED_STDIO, "https://mlflow.test/x", str(marker)], env=env, timeout=120, check=False
    )
    assert out.returncode == 0
    assert marker.read_text() == "Bearer quiet|None|MlflowSecretsAuthError"


IMPORT_ONLY = """
import os, threading
import mlflow.tracking.request_auth.abstract_request_auth_provider  # MLflow's own import (it starts threads itself)
before = len(os.listdir("/proc/self/task"))
python_before = threading.active_count()
import mlflow_secrets_auth.provider as p
auth = p.SecretsAuthProvider().get_auth()
after = len(os.listdir("/proc/self/task"))
maps = open("/proc/self/maps").read()
print(before, after, threading.active_count() - python_before, "libmlflow_secrets_auth" in maps)
"""


def test_import_starts_no_thread() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY], env=clean_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    # Python 3.12+ warns on fork() when the process has more than one OS thread:
    # importing the plugin and getting its auth object must add none.
    before, after, python_threads_added, loaded = out.stdout.split()
    assert after == before, f"importing the plugin started {int(after) - int(before)} OS thread(s)"
    assert python_threads_added == "0"
    assert loaded == "False"


HELPER_RUN = """
import runpy, sys
runpy.run_path(sys.argv[1], run_name="__main__")
from mlflow_secrets_auth import _native
print("transport", type(_native._transport).__name__)
"""


def run_example_reporting_transport(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """examples/train.py, unmodified, then a line naming the transport it used."""
    out = subprocess.run(
        [sys.executable, "-c", HELPER_RUN, str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_helper_transport_end_to_end(basic_env: dict[str, str], mlflow_server: harness.MlflowServer) -> None:
    out = run_example_reporting_transport(clean_env(**basic_env, MLFLOW_SECRETS_AUTH_TRANSPORT="helper"))
    assert "transport Helper" in out.stdout
    run_id = out.stdout.split("logged run ")[1].split(";")[0]
    assert run_id in runs_in(mlflow_server, "secrets-auth-demo")


def test_library_that_cannot_load_falls_back_to_the_helper(
    basic_env: dict[str, str], mlflow_server: harness.MlflowServer, tmp_path: Path
) -> None:
    broken = tmp_path / "libmlflow_secrets_auth.so"
    broken.write_text("not an ELF file")
    out = run_example_reporting_transport(clean_env(**basic_env, MLFLOW_SECRETS_AUTH_LIBRARY=str(broken)))
    assert "transport Helper" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if "using the helper process" in line]
    assert len(warnings) == 1, out.stderr[-3000:]
    assert "cannot load" in warnings[0]


FORK_AFTER_IMPORT = """
import os, sys
import mlflow_secrets_auth.provider as p
auth = p.SecretsAuthProvider().get_auth()
def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
fork()  # merely importing: no warning expected
print("--- library loaded from here on ---", file=sys.stderr, flush=True)
import requests
r = requests.Request("GET", "http://h.example/x").prepare()
try:
    auth(r)  # loads the library (an error reply is fine here)
except Exception:
    pass
fork()  # Go's threads now exist: Python warns, which shows the check is live
"""


def _newer_python() -> str | None:
    """A working Python 3.12+ interpreter, if this machine has one."""
    candidates = sorted(str(p) for p in Path("/root/.pyenv/versions").glob("3.1[2-9]*/bin/python"))
    candidates += [c for c in (shutil.which(f"python3.{minor}") for minor in range(12, 16)) if c]
    for c in candidates:
        probe = subprocess.run(
            [c, "-c", "import sys, venv; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return c
    return None


def test_python_312_no_fork_warning_from_import(tmp_path: Path) -> None:
    """On Python 3.12+, os.fork() warns when the process has other threads:
    importing the plugin must not cause that; loading the library does."""
    python = _newer_python()
    if python is None:
        pytest.fail("no Python 3.12+ interpreter found (this machine kind ships one under pyenv)")
    # uv, which `make` installs into .venv beside this Python, makes and fills the venv (pip took
    # 60-100 s here on a busy disk).
    uv = [str(Path(sys.executable).with_name("uv")), "--quiet"]
    venv = harness.cache_dir() / "py312-uv-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([*uv, "venv", "--python", python, str(venv)], check=True)
        subprocess.run(
            [*uv, "pip", "install", "--python", str(venv / "bin" / "python"), "mlflow-skinny", "cffi"], check=True
        )
    wheel = max((Path(__file__).resolve().parent.parent / "dist").glob("*.whl"), key=lambda p: p.stat().st_mtime)
    subprocess.run(
        [*uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--no-deps", "--reinstall", str(wheel)],
        check=True,
    )
    env = clean_env(MLFLOW_SECRETS_AUTH_ENABLE="vault", MLFLOW_SECRETS_ALLOWED_HOSTS="h.example")
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-W", "always::DeprecationWarning", "-c", FORK_AFTER_IMPORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    before, _, after = out.stderr.partition("--- library loaded from here on ---")
    assert "multi-threaded" not in before, before
    assert "multi-threaded" in after, after


FORK_CHILDREN = """
import json, multiprocessing as mp, os, sys, threading, time
import requests
from mlflow.tracking.request_auth.registry import fetch_auth
from mlflow_secrets_auth import _native

URL = sys.argv[1]
BOUND = 30.0  # every wait below ends by then: a hang is a failure, not a stuck run


def fetch(tag):
    # A changed environment makes the plugin hand it to the core and ask again
    # (no header cached by the parent is reused).
    os.environ["MSA_FORK_TEST_TAG"] = f"{tag}-{os.getpid()}"
    resp = requests.get(URL, auth=fetch_auth("mlflow_secrets_auth"), timeout=30)
    t = _native._transport
    return {"who": tag, "status": resp.status_code, "sent": resp.request.headers.get("Authorization", ""),
            "transport": type(t).__name__ if t is not None else "none"}


def in_child(tag, write_fd, again=False):
    # In a forked child: report, through a pipe, what fetch() gave (or the error).
    try:
        result = fetch(tag)
        if again:
            result["grandchild"] = fork_and_collect(tag + "/child")
        out = json.dumps(result)
    except BaseException as exc:
        out = json.dumps({"who": tag, "error": f"{type(exc).__name__}: {exc}"})
    os.write(write_fd, out.encode())
    os._exit(0)


def fork_and_collect(tag, again=False):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        in_child(tag, write_fd, again)
    os.close(write_fd)
    deadline = time.monotonic() + BOUND
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return {"who": tag, "error": "the forked child hung"}
        time.sleep(0.05)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    return json.loads(data) if data else {"who": tag, "error": f"no report, wait status {status}"}


def pool_work(i):
    return fetch(f"pool-{i}")


stop = threading.Event()
calls = [0]


def busy():
    # Keeps the core (and, on the helper, its reader thread) busy while the
    # main thread forks.
    t = _native.transport()
    while not stop.is_set():
        t.headers(URL)
        calls[0] += 1


results = {"parent": fetch("parent")}
threads = [threading.Thread(target=busy, daemon=True) for _ in range(4)]
for t in threads:
    t.start()
while calls[0] < 20:  # the busy threads are in full swing
    time.sleep(0.01)
results["fork"] = fork_and_collect("fork")
results["fork-again"] = fork_and_collect("fork-again", again=True)
pool = mp.get_context("fork").Pool(2)
try:
    results["pool"] = pool.map_async(pool_work, range(4)).get(BOUND)
except mp.TimeoutError:
    results["pool"] = [{"who": "pool", "error": "the fork-context pool hung"}]
finally:
    pool.terminate()
stop.set()
for t in threads:
    t.join(BOUND)
results["busy_calls"] = calls[0]
print(json.dumps(results))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
@pytest.mark.parametrize(("transport", "parent"), [("helper", "Helper"), ("auto", "InProcess")])
def test_forked_children_get_headers_while_the_core_is_busy(
    basic_env: dict[str, str], mlflow_server: harness.MlflowServer, transport: str, parent: str
) -> None:
    """os.fork, a forked child that forks again, and a fork-context pool, each
    while four threads keep the parent's core busy (on the helper transport the
    reader thread holds its pipe's lock at fork time): every child sends the
    credential. Bounded: a child that hangs fails the test."""
    out = subprocess.run(
        [sys.executable, "-c", FORK_CHILDREN, search_url(mlflow_server.url)],
        env=clean_env(**basic_env, MLFLOW_SECRETS_AUTH_TRANSPORT=transport),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["busy_calls"] > 20
    assert results["parent"]["transport"] == parent
    children = [results["fork"], results["fork-again"], results["fork-again"].get("grandchild", {}), *results["pool"]]
    assert [c.get("error") for c in children] == [None] * 7, children
    assert {c["who"] for c in children} == {"fork", "fork-again", "fork-again/child", *(f"pool-{i}" for i in range(4))}
    for result in [results["parent"], *children]:
        assert result["status"] == 200, result
        assert result["sent"] == mlflow_server.basic_auth_header
    assert {c["transport"] for c in children} == {"Helper"}  # a child never calls an inherited Go runtime


TWO_CALLS = """
import json, sys
import requests
from mlflow.tracking.request_auth.registry import fetch_auth
from mlflow_secrets_auth import _native
errors = []
for _ in range(2):
    try:
        requests.Request("GET", sys.argv[1]).prepare().prepare_auth(fetch_auth("mlflow_secrets_auth"))
        errors.append("")
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
t = _native._transport
print(json.dumps({"errors": errors, "starts": t.starts, "budget_ms": t._timeout_ms}))
"""


def test_two_unresponsive_providers_answer_within_one_budget_on_the_helper(
    vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str, moto
) -> None:  # type: ignore[no-untyped-def]
    """Vault and AWS both hold every connection for a minute, with a 3 s budget:
    the core shares that one budget across both providers and answers each call
    within it, so the helper client never abandons a call and never restarts the
    helper (a restart loses its cache, back-off and logins)."""
    moto.create_secret(f"{secret_path}-aws", string="aws-token")
    with (
        harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as slow_vault,
        harness.LoopbackProxy(moto.url.split("//")[1]) as slow_aws,
    ):
        slow_vault.delay = slow_aws.delay = 60
        env = clean_env(
            **plugin_env(
                vault_ready,
                "https://mlflow.test",
                VAULT_ADDR=slow_vault.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_SECRETS_AUTH_ENABLE="vault,aws-secrets-manager",
                MLFLOW_AWS_SECRET_ID=f"{secret_path}-aws",
                MLFLOW_SECRETS_TIMEOUT_SEC="3",
                MLFLOW_SECRETS_AUTH_TRANSPORT="helper",
                **{**moto.env(), "AWS_ENDPOINT_URL": slow_aws.url, "AWS_ENDPOINT_URL_SECRETS_MANAGER": slow_aws.url},
            )
        )
        out = subprocess.run(
            [sys.executable, "-c", TWO_CALLS, "https://mlflow.test/x"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        reached = (slow_vault.accepted, slow_aws.accepted)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [e.split(":")[0] for e in result["errors"]] == ["MlflowSecretsAuthError"] * 2, result
    assert result["budget_ms"] == 3000  # the client waits the core's budget (+ grace), told by set_env
    assert not any("abandoned" in e for e in result["errors"]), result  # the core answered, in time
    assert result["starts"] == 1
    assert reached[0] >= 1, "the calls never reached Vault"
