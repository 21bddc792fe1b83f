"""Backend faults through the plugin, against a real Vault API server (OpenBao)
and moto, with a fault-injecting proxy (tests/faultproxy.py) between the
plugin and Vault.

What each test catches:

* a request that waits on a hung Vault although a good credential is held
  (refresh ahead / stale-while-revalidate broken), or a warning per retry;
* a hanging primary that starves a healthy AWS fallback, or a primary that
  never takes over again once it answers.

The checks are on observed events: requests counted at the proxy (the hung
refreshes did reach it), the credential each request carried, the log
records. The only time bound is generous: a request during a 3 s hang must
take under 1 s (the bug made it take the whole timeout). The loops send
requests at a steady pace until an observed event (a count at the proxy, a
rotated credential) happens, with an overall deadline.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import cloud_harness
import harness
import pytest
from conftest import apply
from faultproxy import FaultProxy

TRACKING_URI = "http://127.0.0.1:5000"  # requests are only prepared, never sent
URL = TRACKING_URI + "/api/2.0/mlflow/runs/log-metric"
BOUND = 1.0  # seconds: far below the backend's hang, far above a cache hit
PACE = 0.05  # seconds between requests


def bearer() -> tuple[str, float]:
    """One request as MLflow makes it: the token it carried and how long auth took."""
    start = time.monotonic()
    req = apply(URL)
    took = time.monotonic() - start
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    assert scheme == "Bearer", "the request carried no bearer credential"
    return token, took


def plugin_warnings(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "mlflow_secrets_auth" and r.levelno == level and text in r.getMessage()
    ]


def test_hung_vault_serves_the_held_credential_at_once(
    use_env,  # type: ignore[no-untyped-def]
    vault_server: harness.VaultAPIServer,
    secret_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mlflow_secrets_auth")
    first, rotated = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    vault_server.kv_put("secret", secret_path, {"token": first}, version=1)
    with FaultProxy(vault_server.addr) as proxy:
        use_env(
            {
                "MLFLOW_TRACKING_URI": TRACKING_URI,
                "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
                "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
                "VAULT_ADDR": proxy.url,
                "VAULT_TOKEN": vault_server.root_token,
                "MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}",
                "MLFLOW_VAULT_TTL_SEC": "2",
                "MLFLOW_SECRETS_TIMEOUT_SEC": "3",
            }
        )
        token, _ = bearer()  # the first fetch may wait
        assert token == first
        proxy.hang = True
        hung_from = proxy.count()
        # Refresh ahead (at 1.5 s) reaches the hung Vault and times out after
        # 3 s; a retry follows after the back-off. Until both have reached the
        # proxy, every request carries the held credential without waiting.
        deadline = time.monotonic() + 20
        served = 0
        while proxy.count() < hung_from + 2:
            token, took = bearer()
            assert token == first
            assert took < BOUND, f"a request waited {took:.2f}s on the hung Vault"
            served += 1
            assert time.monotonic() < deadline, "the hung Vault was never retried in the background"
            time.sleep(PACE)
        assert served >= 20  # requests were served across the outage, not just at its edges
        warnings = plugin_warnings(caplog, logging.WARNING, "vault")
        assert len(warnings) == 1, warnings  # one warning for the whole outage, not one per retry
        assert "retrying in the background" in warnings[0]

        # Vault answers again with a rotated secret: a background retry picks
        # it up; no request waits meanwhile.
        vault_server.kv_put("secret", secret_path, {"token": rotated}, version=1)
        proxy.hang = False
        deadline = time.monotonic() + 30
        while token != rotated:
            token, took = bearer()
            assert token in (first, rotated)
            assert took < BOUND, f"a request waited {took:.2f}s during recovery"
            assert time.monotonic() < deadline, "the rotated secret was never picked up after Vault recovered"
            time.sleep(PACE)
        assert len(plugin_warnings(caplog, logging.WARNING, "vault")) == 1
        assert plugin_warnings(caplog, logging.INFO, "vault: answering again")


def test_hanging_primary_does_not_starve_the_aws_fallback(
    use_env,  # type: ignore[no-untyped-def]
    vault_server: harness.VaultAPIServer,
    moto: cloud_harness.MotoServer,
    secret_path: str,
) -> None:
    from_vault, from_aws = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    vault_server.kv_put("secret", secret_path, {"token": from_vault}, version=1)
    aws_secret = f"mlflow/resilience-{secrets.token_hex(4)}"
    moto.create_secret(aws_secret, string=json.dumps({"token": from_aws}))
    with FaultProxy(vault_server.addr) as proxy:
        proxy.hang = True  # Vault hangs from the start: it never succeeded
        use_env(
            {
                "MLFLOW_TRACKING_URI": TRACKING_URI,
                "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
                "MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager",
                "VAULT_ADDR": proxy.url,
                "VAULT_TOKEN": vault_server.root_token,
                "MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}",
                "MLFLOW_SECRETS_TIMEOUT_SEC": "2",
                "MLFLOW_AWS_SECRET_ID": aws_secret,
                "MLFLOW_AWS_TTL_SEC": "1",  # AWS's value is refreshed (and the chain re-decided) during the loops
                **moto.env(),
            }
        )
        token, _ = bearer()  # the first failure window: Vault is waited on once, within one budget
        assert token == from_aws
        assert proxy.count() >= 1, "Vault was never asked"
        # After that AWS serves at once, and keeps serving (the provider that
        # served is kept until it fails), also once Vault answers again: the
        # identity never switches back and forth without a reason.
        for hang in (True, False):
            proxy.hang = hang
            for _ in range(50):  # 2.5 s: more than two of AWS's TTLs
                token, took = bearer()
                assert token == from_aws, "the serving provider changed although it never failed"
                assert took < BOUND, f"a request waited {took:.2f}s on the primary (hang={hang})"
                time.sleep(PACE)
