"""Credentials only where they belong: the strict host grammar, the cleartext
rule and its opt-in, pinned schemes, header names and secret values that
cannot become a header. Through the C API (ctypes in a child process, as any
C or other-language caller) and through the plugin as MLflow uses it, with a
real backend (moto's Secrets Manager server)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloud_harness
import mlflow_secrets_auth
import pytest
from conftest import apply, clean_env

LIB = Path(mlflow_secrets_auth.__file__).parent / "libmlflow_secrets_auth.so"

# A child process that loads the library with ctypes, hands it an environment
# with MsaSetEnv and prints one JSON reply per host given on stdin.
CAPI = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.GetAuthHeaders.restype = ctypes.c_void_p
lib.GetAuthHeaders.argtypes = [ctypes.c_char_p]
lib.MsaSetEnv.restype = ctypes.c_void_p
lib.MsaSetEnv.argtypes = [ctypes.c_char_p]
lib.MsaFree.argtypes = [ctypes.c_void_p]
def take(p):
    s = ctypes.string_at(p).decode()
    lib.MsaFree(p)
    return json.loads(s)
req = json.load(sys.stdin)
out = [take(lib.MsaSetEnv(json.dumps(req["env"]).encode()))]
for host in req["hosts"]:
    out.append(take(lib.GetAuthHeaders(host.encode("utf-8", "surrogateescape"))))
print(json.dumps(out))
"""


def capi(env: dict[str, str], hosts: list[str]) -> list[dict[str, Any]]:
    """The library's reply to GetAuthHeaders for each host, after MsaSetEnv(env)."""
    proc = subprocess.run(
        [sys.executable, "-c", CAPI, str(LIB)],
        input=json.dumps({"env": env, "hosts": hosts}),
        env=clean_env(**{k: v for k, v in env.items() if k.startswith("AWS_")}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "the library wrote to stderr"
    replies: list[dict[str, Any]] = json.loads(proc.stdout)
    assert replies[0]["ok"] is True and replies[0]["timeout_ms"] > 0, replies[0]
    return replies[1:]


TOKEN = "sec-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def aws(moto: cloud_harness.MotoServer) -> dict[str, str]:
    """An environment whose only provider (AWS, on moto) holds {"token": TOKEN}."""
    name = f"mlflow/security-{secrets.token_hex(4)}"
    moto.create_secret(name, string=json.dumps({"token": TOKEN}))
    return {"MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager", "MLFLOW_AWS_SECRET_ID": name, **moto.env()}


def assert_refused(reply: dict[str, Any], code: str, variable: str | None) -> None:
    assert reply["ok"] is False, reply
    assert reply["code"] == code, reply
    assert reply.get("variable") == variable, reply
    assert "headers" not in reply
    assert TOKEN not in json.dumps(reply)
    assert len(reply["message"]) < 600, len(reply["message"])


def bearer(reply: dict[str, Any]) -> str:
    assert reply["ok"] is True, reply
    header: str = reply["headers"]["Authorization"]
    return header


# --------------------------------------------------------------------------- #
# Host grammar
# --------------------------------------------------------------------------- #

# Each names a server other than the allowed one (the C API list first).
HOSTILE_LOOPBACK = [
    "127.0.0.1:5000@evil.test",
    "127.0.0.1:@evil.test",
    "127.0.0.1:x",
    "127.0.0.1:99999",
    "127.0.0.1:0",
    "127.1",
    "2130706433",
    "127.0.0.1 ",
    "127.0.0.1\r\nX: y",
    "127.0.0.1%2f@evil.test",
]
HOSTILE_CORP = [
    "evil.test/.corp.test",
    "evil.test#.corp.test",
    "evil.test?.corp.test",
    "evil.test\\.corp.test",
    "http://evil.test\\@a.corp.test/",
    "https://evil.test\\.a.corp.test",
    "ftp://a.corp.test",
    "a.corp.test:",
    "[a.corp.test]:80",
    "a..corp.test",
    "a%2ecorp.test",
]


def test_hostile_host_strings_are_refused(aws: dict[str, str]) -> None:
    loop = capi({**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1"}, ["http://127.0.0.1:5000/api", *HOSTILE_LOOPBACK])
    assert bearer(loop[0]) == f"Bearer {TOKEN}"  # the backend works: the refusals below are the grammar's
    for host, reply in zip(HOSTILE_LOOPBACK, loop[1:]):
        assert reply.get("code") == "host_not_allowed", (host, reply)
        assert_refused(reply, "host_not_allowed", None)
    corp_env = {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "*.corp.test", "MLFLOW_SECRETS_ALLOW_HTTP": "true"}
    corp = capi(corp_env, ["a.corp.test:443", *HOSTILE_CORP])
    assert bearer(corp[0]) == f"Bearer {TOKEN}"
    for host, reply in zip(HOSTILE_CORP, corp[1:]):
        assert reply.get("code") == "host_not_allowed", (host, reply)
        assert_refused(reply, "host_not_allowed", None)


def test_grammar_errors_are_short_and_hide_userinfo(aws: dict[str, str]) -> None:
    env = {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1"}
    huge = "127.0.0.1:5000@" + "e" * (1 << 20)
    r = capi(env, [huge, "ftp://admin:hunter2@127.0.0.1/", "127.0.0.1\x1b[2J"])
    assert_refused(r[0], "host_not_allowed", None)
    assert "bytes)" in r[0]["message"]  # the echo says it was cut
    assert_refused(r[1], "host_not_allowed", None)
    assert "hunter2" not in r[1]["message"] and "***@" in r[1]["message"]
    assert "only http and https" in r[1]["message"]
    assert "\x1b" not in r[2]["message"]


def test_unicode_hosts_compare_in_idna_form(aws: dict[str, str]) -> None:
    env = {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "https://bücher.example", "MLFLOW_SECRETS_ALLOW_HTTP": "true"}
    r = capi(env, ["https://xn--bcher-kva.example/", "https://BÜCHER.example", "https://bucher.example"])
    assert bearer(r[0]) == bearer(r[1]) == f"Bearer {TOKEN}"
    assert_refused(r[2], "host_not_allowed", "MLFLOW_SECRETS_ALLOWED_HOSTS")


# --------------------------------------------------------------------------- #
# Cleartext and schemes
# --------------------------------------------------------------------------- #


def test_cleartext_to_a_remote_host_needs_the_opt_in(aws: dict[str, str]) -> None:
    env = {**aws, "MLFLOW_TRACKING_URI": "http://mlflow.example.test:5000"}
    hosts = ["http://mlflow.example.test:5000/api/2.0/x", "mlflow.example.test:5000"]
    for reply in capi(env, hosts):
        assert_refused(reply, "host_not_allowed", "MLFLOW_SECRETS_ALLOW_HTTP")
        assert "MLFLOW_SECRETS_ALLOW_HTTP=true" in reply["message"]
    for value in ("true", "1", "yes", "on"):
        ok = capi({**env, "MLFLOW_SECRETS_ALLOW_HTTP": value}, hosts)
        assert [bearer(r) for r in ok] == [f"Bearer {TOKEN}"] * 2
    bad = capi({**env, "MLFLOW_SECRETS_ALLOW_HTTP": "perhaps"}, hosts[:1])
    assert_refused(bad[0], "not_configured", "MLFLOW_SECRETS_ALLOW_HTTP")


def test_loopback_needs_no_opt_in(aws: dict[str, str]) -> None:
    env = {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "localhost,127.0.0.1,::1"}
    r = capi(env, ["http://localhost:5000/x", "http://127.0.0.1:5000", "http://[::1]:5000", "127.0.0.1:5000"])
    assert [bearer(x) for x in r] == [f"Bearer {TOKEN}"] * 4


def test_allowed_hosts_without_port_or_scheme_is_not_cleartext(aws: dict[str, str]) -> None:
    env = {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.test"}
    r = capi(env, ["https://mlflow.example.test", "https://mlflow.example.test:8443", "http://mlflow.example.test"])
    assert bearer(r[0]) == bearer(r[1]) == f"Bearer {TOKEN}"
    assert_refused(r[2], "host_not_allowed", "MLFLOW_SECRETS_ALLOW_HTTP")


def test_https_tracking_uri_allows_https_on_its_port_only(aws: dict[str, str]) -> None:
    env = {**aws, "MLFLOW_TRACKING_URI": "https://mlflow.example.test", "MLFLOW_SECRETS_ALLOW_HTTP": "true"}
    r = capi(
        env,
        [
            "https://mlflow.example.test/api",
            "http://mlflow.example.test:443/api",
            "http://mlflow.example.test/api",
            "https://mlflow.example.test:8443/api",
        ],
    )
    assert bearer(r[0]) == f"Bearer {TOKEN}"
    for reply in r[1:]:
        assert_refused(reply, "host_not_allowed", "MLFLOW_SECRETS_ALLOWED_HOSTS")
        assert "https://mlflow.example.test:443" in reply["message"]


def test_pinned_schemes(aws: dict[str, str]) -> None:
    env = {
        **aws,
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "https://*.corp.test:8443,https://mlflow.corp.test",
        "MLFLOW_SECRETS_ALLOW_HTTP": "true",
    }
    r = capi(
        env,
        [
            "https://a.b.corp.test:8443/x",
            "https://mlflow.corp.test:9000",
            "http://a.corp.test:8443",
            "https://a.corp.test",
            "http://mlflow.corp.test",
            "a.corp.test:8443",
        ],
    )
    assert bearer(r[0]) == bearer(r[1]) == f"Bearer {TOKEN}"
    for reply in r[2:]:
        assert_refused(reply, "host_not_allowed", "MLFLOW_SECRETS_ALLOWED_HOSTS")


@pytest.mark.parametrize("entry", ["127.0.0.1:99999", "*.", "a..b", "ftp://h", "h:x", "a b", "x/y", "[::1"])
def test_invalid_policy_entries(aws: dict[str, str], entry: str) -> None:
    r = capi({**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": f"ok.test,{entry}"}, ["https://ok.test"])
    assert_refused(r[0], "not_configured", "MLFLOW_SECRETS_ALLOWED_HOSTS")
    assert "MLFLOW_SECRETS_ALLOWED_HOSTS" in r[0]["message"]


def test_plugin_refuses_cleartext_and_says_why(
    use_env,  # type: ignore[no-untyped-def]
    aws: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As MLflow calls it: an error naming the opt-in (the request is not sent)."""
    from mlflow_secrets_auth.provider import MlflowSecretsAuthError

    use_env({**aws, "MLFLOW_TRACKING_URI": "http://mlflow.example.test:5000"})
    with pytest.raises(MlflowSecretsAuthError, match="MLFLOW_SECRETS_ALLOW_HTTP"):
        apply("http://mlflow.example.test:5000/api/2.0/mlflow/experiments/search")
    use_env({"MLFLOW_SECRETS_ALLOW_HTTP": "true"})
    assert apply("http://mlflow.example.test:5000/api").headers["Authorization"] == f"Bearer {TOKEN}"


# --------------------------------------------------------------------------- #
# Header names and secret values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "Content-Length",
        "content-type",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Cookie",
        "Set-Cookie",
        "Proxy-Authorization",
        "Expect",
        "X Api Key",
        "X-Api-Key:",
        "X-Tökén",
    ],
)
def test_bad_header_names(aws: dict[str, str], name: str) -> None:
    env = {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1", "MLFLOW_AUTH_HEADER_NAME": name}
    r = capi(env, ["http://127.0.0.1:5000"])
    assert_refused(r[0], "not_configured", "MLFLOW_AUTH_HEADER_NAME")
    assert "MLFLOW_AUTH_HEADER_NAME" in r[0]["message"]


def test_custom_header_name_works(aws: dict[str, str]) -> None:
    r = capi(
        {**aws, "MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1", "MLFLOW_AUTH_HEADER_NAME": "X-Api-Key"},
        ["http://127.0.0.1:5000"],
    )
    assert r[0]["headers"] == {"X-Api-Key": TOKEN}


ID = "MLFLOW_AWS_SECRET_ID"
UNUSABLE = [
    # (stored string or bytes, auth mode, words the message must hold, the variable named:
    # the secret's own variable when its content cannot be read, none when the
    # value read cannot become a header)
    ("tok€n-SECRETVALUE", "bearer", "non-ASCII", None),
    ("tokén-SECRETVALUE", "bearer", "non-ASCII", None),
    (b"\xff\xfeSECRETVALUE", "bearer", "UTF-8", ID),
    (json.dumps({"token": "SECRETVALUE\r\nX-Evil: 1"}), "bearer", "control character", None),
    (json.dumps({"token": "  "}), "bearer", '"token" field is empty', ID),
    ("user-SECRETVALUE:", "basic", "password is empty", None),
    (json.dumps({"username": "a:SECRETVALUE", "password": "p"}), "basic", "username contains ':'", None),
    (json.dumps({"username": "SECRET\r\nVALUE", "password": "p"}), "basic", "control character", None),
    (json.dumps({"username": "u", "password": ""}), "basic", '"password" field is empty', ID),
    (
        json.dumps({"SECRETVALUE-field": "SECRETVALUE"}),
        "bearer",
        'needs a "token" field or "username" and "password" fields',
        ID,
    ),
]


@pytest.mark.parametrize("stored,mode,words,variable", UNUSABLE, ids=[str(i) for i in range(len(UNUSABLE))])
def test_secret_values_that_cannot_be_a_header(
    moto: cloud_harness.MotoServer,
    aws: dict[str, str],
    stored: str | bytes,
    mode: str,
    words: str,
    variable: str | None,
) -> None:
    name = f"mlflow/unusable-{secrets.token_hex(4)}"
    if isinstance(stored, bytes):
        moto.create_secret(name, binary=stored)
    else:
        moto.create_secret(name, string=stored)
    env = {
        **aws,
        "MLFLOW_AWS_SECRET_ID": name,
        "MLFLOW_AWS_AUTH_MODE": mode,
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1",
    }
    r = capi(env, ["http://127.0.0.1:5000"])[0]
    assert r["ok"] is False, r
    assert r["code"] == "secret_unusable", r
    assert r.get("variable") == variable, r
    assert words in r["message"], r["message"]
    assert "aws-secrets-manager" in r["message"], r["message"]  # names the provider
    assert "SECRETVALUE" not in json.dumps(r)
