"""Fast in-process checks of the plugin's guards against a real OpenBao: the
host policy on every request, one backend read for concurrent misses, and a
cached value that ends with its TTL. Each runs in seconds; `make mutants` runs
this file against deliberately broken copies of the code, which it must catch."""

from __future__ import annotations

import threading
import time

import harness
from conftest import apply, plugin_env

TRACKING = "https://mlflow.test"


def test_only_allowed_hosts_get_the_header(
    use_env, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str
) -> None:  # type: ignore[no-untyped-def]
    vault_ready.kv_put("secret", secret_path, {"token": "guarded"}, version=1)
    use_env(
        plugin_env(vault_ready, TRACKING, VAULT_TOKEN=reader_token, MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}")
    )
    assert apply(f"{TRACKING}/api/2.0/mlflow/experiments/search").headers["Authorization"] == "Bearer guarded"
    for url in (
        "https://attacker.example/x",
        "https://mlflow.test.attacker.example/x",
        "https://mlflow.test:8443/x",  # another port is another server
        "http://mlflow.test/x",  # cleartext to a remote host
    ):
        assert "Authorization" not in apply(url).headers, url
    # And the tracking server still gets it after the refusals.
    assert apply(f"{TRACKING}/x").headers["Authorization"] == "Bearer guarded"


def test_concurrent_misses_share_one_read(
    use_env, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str
) -> None:  # type: ignore[no-untyped-def]
    """16 threads ask at once while the backend holds each new connection for
    0.5 s: exactly one read of the secret reaches it."""
    vault_ready.kv_put("secret", secret_path, {"token": "shared"}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        proxy.delay = 0.5
        use_env(
            plugin_env(
                vault_ready,
                TRACKING,
                VAULT_ADDR=proxy.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_VAULT_TTL_SEC="3600",
            )
        )
        barrier = threading.Barrier(16)
        headers: list[str | None] = []

        def worker() -> None:
            barrier.wait()
            headers.append(apply(f"{TRACKING}/x").headers.get("Authorization"))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert headers == ["Bearer shared"] * 16
        assert proxy.count("GET", f"/v1/secret/{secret_path}") == 1, proxy.request_lines


def test_cached_value_ends_with_its_ttl(
    use_env, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str
) -> None:  # type: ignore[no-untyped-def]
    """TTL 1 s: a changed secret is sent once the plugin has re-read it, within a
    deadline (a cache that never expires fails here)."""
    vault_ready.kv_put("secret", secret_path, {"token": "first"}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        use_env(
            plugin_env(
                vault_ready,
                TRACKING,
                VAULT_ADDR=proxy.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_VAULT_TTL_SEC="1",
            )
        )
        assert apply(f"{TRACKING}/x").headers["Authorization"] == "Bearer first"
        vault_ready.kv_put("secret", secret_path, {"token": "second"}, version=1)
        deadline = time.monotonic() + 15
        while apply(f"{TRACKING}/x").headers["Authorization"] != "Bearer second":
            assert time.monotonic() < deadline, "the changed secret was never picked up: the cache did not expire"
            time.sleep(0.02)
        assert proxy.count("GET", f"/v1/secret/{secret_path}") >= 2
