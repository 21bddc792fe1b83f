"""`mlflow-secrets-auth info` and `doctor` against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import harness
import pytest
from conftest import plugin_env, search_url
from mlflow_secrets_auth import _native
from mlflow_secrets_auth import cli as cli_module

CLI = str(Path(sys.executable).with_name("mlflow-secrets-auth"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
    base.update(env)
    return subprocess.run([CLI, *args], env=base, capture_output=True, text=True, timeout=120, check=False)


def test_info(vault_ready: harness.VaultAPIServer, reader_token: str) -> None:
    env = plugin_env(
        vault_ready,
        "https://mlflow.test:5000",  # info contacts no server
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH="secret/mlflow/info",
        MLFLOW_SECRETS_ALLOWED_HOSTS="*.corp.com",
    )
    out = cli(env, "info")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "enabled providers: vault" in out.stdout
    assert "*.corp.com" in out.stdout
    assert "header: Authorization" in out.stdout
    assert reader_token not in out.stdout + out.stderr
    bad = cli({**env, "MLFLOW_VAULT_TTL_SEC": "soon"}, "info")
    assert bad.returncode == 1
    assert "MLFLOW_VAULT_TTL_SEC" in bad.stdout


def test_doctor_dry_run(mlflow_server: harness.MlflowServer, basic_env: dict[str, str]) -> None:
    env = basic_env
    password = mlflow_server.admin_password
    url = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    ok = cli(env, "doctor", "--dry-run", url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sends Authorization: Basic <redacted" in ok.stdout
    assert "HTTP 200" in ok.stdout
    assert password not in ok.stdout + ok.stderr
    # Each failure names its exact cause.
    cases = {
        "MLFLOW_VAULT_SECRET_PATH": ({"MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/nothing-here"}, "no secret at"),
        "VAULT_TOKEN": ({"VAULT_TOKEN": "wrong-token-value"}, "rejected the token in VAULT_TOKEN"),
        "VAULT_ADDR": ({"VAULT_ADDR": f"http://127.0.0.1:{harness.free_port()}"}, "connection refused"),
        "MLFLOW_VAULT_AUTH_MODE": ({"MLFLOW_VAULT_AUTH_MODE": "bearer"}, "MLFLOW_VAULT_AUTH_MODE=basic"),
    }
    for name, (change, cause) in cases.items():
        out = cli({**env, **change}, "doctor")
        assert out.returncode == 1, name
        assert cause in out.stdout, f"{name}: {out.stdout}"
        assert "wrong-token-value" not in out.stdout + out.stderr
    # The host check: a URL that is not the tracking server.
    other = url.replace("127.0.0.1", "localhost")
    out = cli(env, "doctor", "--dry-run", other)
    assert out.returncode == 1
    assert "MLFLOW_SECRETS_ALLOWED_HOSTS" in out.stdout


def test_doctor_dry_run_uses_mlflows_tls_settings(
    mlflow_server: harness.MlflowServer, basic_env: dict[str, str], tmp_path: Path
) -> None:
    """The MLflow server behind TLS with a private CA: the dry run trusts what
    MLflow trusts (MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS),
    and nothing else."""
    ca, cert, key = harness.make_tls_files(tmp_path / "tls")
    with harness.LoopbackProxy(f"127.0.0.1:{mlflow_server.port}", tls=(cert, key)) as proxy:
        env = {**basic_env, "MLFLOW_TRACKING_URI": proxy.url}
        url = search_url(proxy.url)
        trusted = cli({**env, "MLFLOW_TRACKING_SERVER_CERT_PATH": str(ca)}, "doctor", "--dry-run", url)
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert f"dry run: GET {url} sent with credentials: HTTP 200" in trusted.stdout
        # Userinfo in the URL (which never goes on the wire) is in no line either.
        with_userinfo = url.replace("https://", "https://someone:pw-in-url@")
        untrusted = cli(env, "doctor", "--dry-run", with_userinfo)
        assert untrusted.returncode == 1, untrusted.stdout
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout
        assert "pw-in-url" not in untrusted.stdout + untrusted.stderr
        insecure = cli({**env, "MLFLOW_TRACKING_INSECURE_TLS": "true"}, "doctor", "--dry-run", url)
        assert insecure.returncode == 0, insecure.stdout + insecure.stderr
        for out in (trusted, untrusted, insecure):
            assert mlflow_server.admin_password not in out.stdout + out.stderr


class WarningTransport:
    """A core that reports two configuration warnings, as PROTOCOL.md shapes them."""

    WARNINGS: ClassVar[list[str]] = [
        "VAULT_ADDR sends the token in cleartext",
        "MLFLOW_SECRETS_LOG_LEVEL='loud' is not a level",
    ]

    def headers(self, target: str, proxy: str = "", reject: str = "") -> dict[str, Any]:
        raise AssertionError("info and doctor fetch no headers")

    def set_env(self, env: dict[str, str]) -> dict[str, Any]:
        return {"ok": True, "timeout_ms": 10_000, "log_level": "INFO", "warnings": self.WARNINGS}

    def info(self) -> dict[str, Any]:
        return {
            "ok": True, "version": "test", "abi": _native.ABI_VERSION, "header_name": "Authorization",
            "providers": [{"name": "vault", "mode": "bearer", "ttl_seconds": 300}],
            "allowed_hosts": ["mlflow.test"], "allowed_from": "MLFLOW_TRACKING_URI", "warnings": self.WARNINGS,
        }  # fmt: skip

    def doctor(self, url: str) -> dict[str, Any]:
        checks = [{"name": "configuration", "ok": True, "detail": "ok"}]
        return {"ok": True, "checks": checks, "warnings": self.WARNINGS}

    def invalidate(self) -> None:
        pass


def test_info_and_doctor_print_every_warning_of_the_core(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_native, "transport", WarningTransport)
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "mlflow_secrets_auth")  # else doctor fails on purpose
    # As the start-up file sets it when MLFLOW_TRACKING_AUTH is set at start (here it is set later).
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", "mlflow_secrets_auth")
    assert cli_module.main(["info"]) == 0
    info = capsys.readouterr().out.splitlines()
    expected = [f"warning: {w}" for w in WarningTransport.WARNINGS]
    assert [line for line in info if line.startswith("warning: ")] == expected
    assert cli_module.main(["doctor"]) == 0
    doctor = capsys.readouterr().out.splitlines()
    assert [line for line in doctor if line.startswith("[warn] ")] == [f"[warn] {w}" for w in WarningTransport.WARNINGS]


def test_info_and_doctor_show_configuration_warnings_from_the_core(
    vault_ready: harness.VaultAPIServer, reader_token: str
) -> None:
    """Real core: a cleartext Vault address on another host (allowed by the opt-in) and a
    bad log level are named by info and by doctor (not only as a one-shot event of a
    headers call). Nothing leaves the machine: the address is reached only through a
    loopback proxy port that is closed."""
    env = plugin_env(
        vault_ready,
        "https://mlflow.test:5000",
        VAULT_ADDR="http://vault.corp.example:8200",
        MLFLOW_SECRETS_ALLOW_HTTP="true",
        HTTP_PROXY=f"http://127.0.0.1:{harness.free_port()}",
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH="secret/mlflow/info",
        MLFLOW_SECRETS_LOG_LEVEL="loud",
        MLFLOW_SECRETS_TIMEOUT_SEC="1",
    )
    info = cli(env, "info")
    warned = [line for line in info.stdout.splitlines() if line.startswith("warning: ")]
    assert any("VAULT_ADDR" in line for line in warned), info.stdout + info.stderr
    assert any("MLFLOW_SECRETS_LOG_LEVEL" in line for line in warned), info.stdout
    doctor = cli(env, "doctor")
    warned = [line for line in doctor.stdout.splitlines() if line.startswith("[warn] ")]
    assert any("VAULT_ADDR" in line for line in warned), doctor.stdout + doctor.stderr
    assert any("MLFLOW_SECRETS_LOG_LEVEL" in line for line in warned), doctor.stdout
    assert reader_token not in info.stdout + info.stderr + doctor.stdout + doctor.stderr


def test_info_and_doctor_show_the_credential_of_each_path(
    vault_ready: harness.VaultAPIServer, reader_token: str
) -> None:
    """REST: the plugin; OTLP: the plugin when its provider is named, else the static one; gateway
    judges: the static username and password. Names only, never a value."""
    env = plugin_env(
        vault_ready,
        "https://mlflow.test:5000",
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH="secret/mlflow/info",
        MLFLOW_SECRETS_ALLOWED_HOSTS="mlflow.test",
        MLFLOW_AUTH_HEADER_NAME="X-Api-Key",
        MLFLOW_TRACKING_USERNAME="someone",
        MLFLOW_TRACKING_PASSWORD="static-Secr3t-value",
        OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER="",  # the user turned the OTLP provider off
    )
    out = cli(env, "info")
    assert "credential per path:" in out.stdout, out.stdout + out.stderr
    assert ("REST (MLflow's tracking, registry and artifact calls): this plugin's X-Api-Key header to the hosts "
            "the policy allows (replacing the static MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
            in out.stdout)
    assert "OTLP/HTTP traces: the static MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in out.stdout
    assert "gateway:/ judges and score_model_on_payload: the static MLFLOW_TRACKING_USERNAME" in out.stdout
    doctor = cli(env, "doctor")
    paths = [line for line in doctor.stdout.splitlines() if line.startswith("[path] ")]
    assert len(paths) == 3 and "this plugin's X-Api-Key" in paths[0], doctor.stdout
    as_json = json.loads(cli(env, "info", "--json").stdout)
    assert len(as_json["credential_paths"]) == 3
    for text in (out.stdout + out.stderr, doctor.stdout + doctor.stderr):
        assert "static-Secr3t-value" not in text and "someone" not in text
