"""The library never writes the process environment (issue 14, item 6).

A ``setenv`` from a Go thread races every C ``getenv`` in the host's other
threads. But the AWS and Azure SDKs read their settings (``AWS_*``,
``AZURE_*``, ``IDENTITY_*``, ...) from the process environment as it was when
the library loaded, and os.environ changes made later in Python do not reach
them. So the core compares what it is handed with what its SDKs would read,
refuses a provider that would read another value (naming the variables, in
``process_env`` of the set_env reply), and the plugin then runs the core in a
helper process started with the current environment. Each scenario runs in a
fresh process against moto's server, with the real AWS SDK in the core.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cloud_harness
from conftest import clean_env

TRACKING = "https://mlflow.test:5000"


def run(code: str, env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    value: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def test_the_library_never_writes_the_process_environment() -> None:
    """Handed AWS settings are not copied into the C environment; the provider
    refuses them by name instead of reading the process's own."""
    out = run(
        """
        import ctypes, json
        from mlflow_secrets_auth import _native
        t = _native.InProcess.load(_native.library_path())
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_char_p
        reply = t.set_env({"MLFLOW_TRACKING_URI": "https://mlflow.test:5000",
                           "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager", "MLFLOW_AWS_SECRET_ID": "mlflow/x",
                           "AWS_PROFILE": "handed-profile", "AWS_REGION": "eu-west-1"})
        headers = t.headers("https://mlflow.test:5000")
        print(json.dumps({"getenv": [(libc.getenv(n) or b"").decode() for n in (b"AWS_PROFILE", b"AWS_REGION")],
                          "process_env": reply.get("process_env"), "code": headers.get("code"),
                          "variable": headers.get("variable"), "message": headers.get("message")}))
        """,
        {},
    )
    assert out["getenv"] == ["", ""]  # neither the profile nor the region reached the C environment
    assert out["process_env"] == ["AWS_PROFILE"]  # the region is passed to the SDK explicitly
    assert (out["code"], out["variable"]) == ("not_configured", "AWS_PROFILE")
    assert "before the process starts" in str(out["message"])


def test_sdk_settings_set_after_the_library_loaded_reach_the_sdk(moto: cloud_harness.MotoServer) -> None:
    """AWS settings put in os.environ after the library loaded: the core moves to a
    helper started with them, and the credential comes from moto."""
    secret = f"mlflow/{cloud_harness.__name__}-late"
    moto.create_secret(secret, string=json.dumps({"token": "late-token"}))
    out = run(
        f"""
        import json, os
        from mlflow_secrets_auth import _native
        from mlflow_secrets_auth.provider import SecretsAuthProvider
        import requests
        assert isinstance(_native.transport(), _native.InProcess)  # the library is loaded first
        os.environ.update({json.dumps(moto.env())})
        os.environ.update({{"MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager", "MLFLOW_AWS_SECRET_ID": {secret!r}}})
        r = SecretsAuthProvider().get_auth()(requests.Request("GET", "{TRACKING}/api/2.0/x").prepare())
        t = _native.transport()
        print(json.dumps({{"header": r.headers.get("Authorization"), "helper": isinstance(t, _native.Helper),
                          "starts": t.starts, "notes": _native.transport_notes()}}))
        """,
        {"MLFLOW_TRACKING_URI": TRACKING},
    )
    assert out["header"] == "Bearer late-token"
    assert out["helper"] is True and out["starts"] == 1
    assert any("AWS_ACCESS_KEY_ID" in n and "changed after the library loaded" in n for n in out["notes"])  # type: ignore[union-attr]


def test_a_helper_is_replaced_when_the_sdk_settings_change(moto: cloud_harness.MotoServer) -> None:
    """On the helper transport: the AWS keys appear after the helper started, so
    its SDK cannot see them; it is replaced by one started with them."""
    secret = f"mlflow/{cloud_harness.__name__}-helper"
    moto.create_secret(secret, string=json.dumps({"token": "helper-token"}))
    env = moto.env()
    keys = {k: env.pop(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    out = run(
        f"""
        import json, os
        from mlflow_secrets_auth import _native
        from mlflow_secrets_auth.provider import MlflowSecretsAuthError, SecretsAuthProvider
        import requests
        def header():
            return SecretsAuthProvider().get_auth()(requests.Request("GET", "{TRACKING}/x").prepare()).headers.get(
                "Authorization")
        try:
            header()
            before = "served"
        except MlflowSecretsAuthError as exc:
            before = exc.variable or "no variable"
        os.environ.update({json.dumps(keys)})
        after = header()
        print(json.dumps({{"before": before, "after": after, "starts": _native.transport().starts}}))
        """,
        {
            **env,
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
            "AWS_CONFIG_FILE": "/nonexistent/config",
            "MLFLOW_TRACKING_URI": TRACKING,
            "MLFLOW_SECRETS_AUTH_TRANSPORT": "helper",
            "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
            "MLFLOW_AWS_SECRET_ID": secret,
        },
    )
    assert out["before"] == "AWS_PROFILE"  # no credentials at all: the chain's error names the profile
    assert out["after"] == "Bearer helper-token"
    assert out["starts"] == 2
