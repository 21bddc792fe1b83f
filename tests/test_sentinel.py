"""A sentinel sweep: a random marker is put inside every kind of secret (token,
username, password, plain text, field names and values), in the URL userinfo
of the tracking URI and VAULT_ADDR, for each backend (OpenBao, moto's Secrets
Manager, the Key Vault stand-in). Then every output is driven - logs at DEBUG,
errors raised to MLflow, `mlflow-secrets-auth info`, `info --json`, `doctor`,
`doctor --dry-run URL`, in-process and through the helper transport, and the
msa-helper's own stdout/stderr - and the marker must appear in none of them."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloud_harness
import harness
import mlflow_secrets_auth
import pytest
from conftest import PLUGIN_PREFIXES, clean_env

S = "SNTL" + secrets.token_hex(6)  # the sentinel; compared case-insensitively
CLI = str(Path(sys.executable).with_name("mlflow-secrets-auth"))
HELPER = Path(mlflow_secrets_auth.__file__).parent / "msa-helper"

# Every kind of secret, as (stored value, auth mode). A dict is stored as JSON
# (as KV data in Vault); a string as plain text (in Vault as {"token": text}).
KINDS: list[tuple[dict[str, str] | str, str]] = [
    ({"token": f"tok{S}", f"f{S}": f"v{S}"}, "bearer"),  # works
    ({"username": f"u{S}", "password": f"p{S}", S: "x"}, "basic"),  # works
    ({f"n{S}": f"v{S}"}, "bearer"),  # only a field named like the sentinel
    (f"plain{S}", "bearer"),  # works
    (f"u{S}:p{S}", "basic"),  # works
    ({"token": f"t{S}\u20ac"}, "bearer"),  # non-ASCII
    (f"u{S}:", "basic"),  # empty password
    ({"token": f"a{S}\r\nX-Evil: {S}"}, "bearer"),  # a line break
    ({"username": f"a:{S}", "password": f"p{S}"}, "basic"),  # ':' in the username
]

# The driver: for each configuration, a request as MLflow makes it (headers
# applied by the plugin, then sent to a closed port), and the CLI's four
# commands in this process. Logging at DEBUG for every logger, to stderr.
DRIVER = r"""
import json, logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
import requests
from mlflow.tracking.request_auth.registry import fetch_auth
from mlflow_secrets_auth import cli
prefixes, url, configs = json.load(sys.stdin)
for i, env in enumerate(configs):
    for k in [k for k in os.environ if k.startswith(tuple(prefixes))]:
        del os.environ[k]
    os.environ.update(env)
    print(f"== configuration {i}", flush=True)
    try:
        req = requests.Request("GET", url).prepare()
        req.prepare_auth(fetch_auth("mlflow_secrets_auth"))
        print("header names:", sorted(req.headers))
    except Exception as exc:
        print("error:", type(exc).__name__, str(exc), repr(exc), getattr(exc, "__dict__", ""))
    try:
        requests.get(url, auth=fetch_auth("mlflow_secrets_auth"), timeout=5)
    except Exception as exc:
        print("request error:", type(exc).__name__, str(exc))
    for argv in (["info"], ["info", "--json"], ["doctor"], ["doctor", "--dry-run", url]):
        print("rc", argv[:2], cli.main(argv), flush=True)
"""


def store(kind: dict[str, str] | str) -> str:
    return json.dumps(kind) if isinstance(kind, dict) else kind


@pytest.fixture(scope="module")
def configs(
    vault_ready: harness.VaultAPIServer, moto: cloud_harness.MotoServer, keyvault: cloud_harness.FakeKeyVault
) -> list[dict[str, str]]:
    """Configurations with all three providers enabled; together they put
    every kind of secret in every backend once, and the last one works."""
    closed = harness.free_port()  # nothing listens there: requests fail at once
    scheme, _, rest = vault_ready.addr.partition("://")
    out = []
    rotations = [(KINDS[i], KINDS[(i + 3) % len(KINDS)], KINDS[(i + 6) % len(KINDS)]) for i in range(len(KINDS))]
    # Last: every provider works, so `doctor --dry-run` goes on to send its request.
    for v, a, z in [*rotations, (KINDS[0], KINDS[3], KINDS[1])]:
        tag = secrets.token_hex(4)
        vault_ready.kv_put("kv2", f"mlflow/s-{tag}", v[0] if isinstance(v[0], dict) else {"token": v[0]}, version=2)
        moto.create_secret(f"mlflow/s-{tag}", string=store(a[0]))
        keyvault.set_secret(f"s-{tag}", store(z[0]))
        out.append(
            {
                "MLFLOW_TRACKING_URI": f"http://u{S}:p{S}@127.0.0.1:{closed}",
                "MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager,azure-key-vault",
                "MLFLOW_SECRETS_LOG_LEVEL": "DEBUG",
                "MLFLOW_SECRETS_TIMEOUT_SEC": "10",
                "VAULT_ADDR": f"{scheme}://svc:{S}@{rest}",
                "VAULT_TOKEN": vault_ready.root_token,
                "MLFLOW_VAULT_SECRET_PATH": f"kv2/mlflow/s-{tag}",
                "MLFLOW_VAULT_AUTH_MODE": v[1],
                **moto.env(),
                "MLFLOW_AWS_SECRET_ID": f"mlflow/s-{tag}",
                "MLFLOW_AWS_AUTH_MODE": a[1],
                "AZURE_KEY_VAULT_URL": keyvault.vault_url,
                "MLFLOW_AZURE_CA_BUNDLE": str(keyvault.ca_pem),
                **keyvault.identity_env(),
                "MLFLOW_AZURE_SECRET_NAME": f"s-{tag}",
                "MLFLOW_AZURE_AUTH_MODE": z[1],
            }
        )
    return out


def url_of(env: dict[str, str]) -> str:
    return env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=1"


def drive(configs: list[dict[str, str]], **extra: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps([PLUGIN_PREFIXES, url_of(configs[0]), configs]),
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("== configuration") == len(configs), proc.stdout[-3000:]
    return proc.stdout + proc.stderr


def run_helper(configs: list[dict[str, str]]) -> str:
    """msa-helper spoken to directly, so its own stderr is seen too."""
    lines = []
    for i, env in enumerate(configs):
        lines.append({"id": f"{i}-env", "op": "set_env", "env": env})
        lines.append({"id": f"{i}-headers", "op": "headers", "arg": url_of(env)})
        lines.append({"id": f"{i}-info", "op": "info"})
        lines.append({"id": f"{i}-doctor", "op": "doctor", "arg": url_of(env)})
    # Requests are served concurrently: each waits for its reply before the
    # next is sent, so a set_env always comes before the calls that use it.
    proc = subprocess.Popen(
        [str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
    )
    assert proc.stdin is not None and proc.stdout is not None
    out = []
    for req in lines:
        proc.stdin.write((json.dumps(req) + "\n").encode())
        proc.stdin.flush()
        out.append(proc.stdout.readline().decode())
    rest, err = proc.communicate(timeout=60)
    replies: list[dict[str, Any]] = [json.loads(line) for line in out]
    assert len(replies) == len(lines) and all("reply" in r for r in replies), out[-3:]
    assert err == b"", f"the helper wrote to stderr: {err[-2000:]!r}"
    # A headers reply carries the credential by design: only its header
    # names are kept; everything else in every reply is checked.
    for r in replies:
        if isinstance(r["reply"].get("headers"), dict):
            r["reply"]["headers"] = sorted(r["reply"]["headers"])
    return json.dumps(replies) + rest.decode() + err.decode()


def run_cli(env: dict[str, str]) -> str:
    """The installed `mlflow-secrets-auth` command, all four uses at once."""
    procs = [
        subprocess.Popen([CLI, *args], env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in (["info"], ["info", "--json"], ["doctor"], ["doctor", "--dry-run", url_of(env)])
    ]
    text = ""
    for p in procs:
        out, err = p.communicate(timeout=120)
        text += out + err
    return text


def leaks(text: str) -> list[str]:
    return [line for line in text.splitlines() if S.lower() in line.lower()]


def test_no_output_shows_the_sentinel(configs: list[dict[str, str]]) -> None:
    outputs = {
        "in-process": drive(configs),
        "helper transport": drive(configs, MLFLOW_SECRETS_AUTH_TRANSPORT="helper"),
        "msa-helper": run_helper(configs),
        "cli (all work)": run_cli(configs[-1]),
        "cli (all fail)": run_cli(configs[2]),
    }
    # The sweep reached the outputs it is meant to check: successes, errors
    # from every backend, the CLI's reports.
    everything = "\n".join(outputs.values())
    for expected in (
        "header names: ['Authorization'",
        "MlflowSecretsAuthError",
        "secret_unusable",
        "non-ASCII",
        "aws-secrets-manager",
        "azure-key-vault",
        "vault",
        "<redacted",
        "allowed hosts",
        '"allowed_hosts"',
        "DEBUG",
        "dry run: ",
    ):
        assert expected in everything, f"the sweep never produced {expected!r}"
    found = {name: leaks(text)[:5] for name, text in outputs.items() if leaks(text)}
    assert not found, f"the sentinel appears in: {json.dumps(found, indent=1)}"
