"""The network-wide sentinel sweep: every credential is a unique random value, every
byte that the plugin, the SDKs and the helper send is recorded by whichever listener
receives it, and each credential's recipients must lie within its allowed set from
SECURITY.md. See tests/netsweep.py for the recording network.

A scenario is a few lines: the listeners it adds, the environment, the actions
(MLflow calls in a fresh driver process), and per credential its allowed
recipients and the recipients it must reach (so that a run in which nothing
was sent at all cannot pass for a safe one). The report (each scenario, each
credential, its recipients) goes to ``$MSA_SWEEP_REPORT`` or
``.venv/test-logs/egress-sweep.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cloud_harness
import gcp_harness
import harness
import netsweep
import pytest
from conftest import clean_env
from netsweep import WIRE, Net, json_answer, redirect, sink

pytestmark = pytest.mark.xdist_group("egress-sweep")

SEARCH = "/api/2.0/mlflow/experiments/search"
NAMES = (
    "mlflow.example", "mlflow2.example", "evil.example", "vault.example", "vault-redirect.example",
    "vault-other.example", "vault-plain.example", "moto.example", "aws-redirect.example", "kv.example",
    "kv-hostile.example", "proxy.corp.example", "secretmanager.example", "oauth.example", "gcp-redirect.example",
    "localhost", "127.0.0.1",
)
REPORT = Path(os.environ.get("MSA_SWEEP_REPORT") or harness.REPO_ROOT / ".venv" / "test-logs" / "egress-sweep.txt")

DRIVER = r"""
import json, os, socket, sys, time
cfg = json.loads(sys.stdin.read())
names = set(cfg["names"])
_gai = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    return _gai("127.0.0.1" if host in names else host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo  # names -> loopback in this process only; Go goes through the router
import mlflow, requests
from mlflow.tracking.request_auth.registry import fetch_auth

def search():
    mlflow.search_experiments(max_results=1)

def post_generator(url):
    def body():
        yield b"part-one;"
        yield b"part-two"
    r = requests.post(url, data=body(), auth=fetch_auth("mlflow_secrets_auth"), timeout=30)
    print("status", r.status_code, flush=True)

def get(url):
    r = requests.get(url, auth=fetch_auth("mlflow_secrets_auth"), timeout=30)
    print("status", r.status_code, flush=True)

def fork_search(own_env=""):
    search()  # the parent loads the core first
    pid = os.fork()
    if pid == 0:
        try:
            if own_env:  # another environment: the parent's core refuses, the child starts a helper
                os.environ["MSA_SWEEP_CHILD"] = own_env
            search()
            os._exit(0)
        except BaseException as exc:
            print("child error", type(exc).__name__, str(exc)[:300], flush=True)
            os._exit(3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("child exit", os.waitstatus_to_exitcode(status), flush=True)
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    print("child hung", flush=True)

for action in cfg["actions"]:
    kind, args = action[0], action[1:]
    try:
        {"search": search, "post_generator": post_generator, "fork_search": fork_search, "get": get}[kind](*args)
        print("ok", kind, flush=True)
    except BaseException as exc:
        print("error", kind, type(exc).__name__, str(exc)[:400], flush=True)
"""


@dataclass
class Cred:
    """One credential: its byte forms on the wire, where it may go, where it must go."""

    what: str
    forms: list[bytes]
    allowed: set[str]
    must_reach: set[str] = field(default_factory=set)


@dataclass
class Run:
    env: dict[str, str]
    actions: list[list[str]]
    creds: list[Cred]
    # Values servers hand out during the run (login tokens, access tokens):
    # (what, regex with one group over the answers, allowed recipients).
    minted: list[tuple[str, bytes, set[str]]] = field(default_factory=list)
    after: Callable[[Net], None] | None = None  # extra checks on the run


def token() -> str:
    return "SWP" + secrets.token_hex(12)


class World:
    """The real servers every scenario may use, and shared TLS material."""

    def __init__(self, vault: harness.VaultAPIServer, moto: cloud_harness.MotoServer,
                 keyvault: cloud_harness.FakeKeyVault, hostile_kv: cloud_harness.FakeKeyVault, tmp: Path,
                 google: gcp_harness.FakeGoogle, review: Callable[[], harness.TokenReviewServer]) -> None:
        self.vault, self.moto, self.keyvault, self.hostile_kv = vault, moto, keyvault, hostile_kv
        self.google, self.token_review, self.tmp = google, review, tmp
        self.google_oauth = google.oauth_url  # the stand-in's own; each scenario points the key's token_uri elsewhere
        self.tls = harness.make_tls_files(tmp / "tls", names=NAMES)

    def mlflow_cred(self) -> tuple[str, str]:
        """A bearer token for MLflow, stored in OpenBao at a fresh path; (token, path)."""
        value = token()
        path = f"mlflow/sweep-{secrets.token_hex(4)}"
        self.vault.kv_put("secret", path, {"token": value}, version=1)
        return value, f"secret/{path}"

    def vault_token(self) -> str:
        value = token()
        self.vault.api("POST", "auth/token/create", {"id": value, "policies": ["mlflow-reader"], "ttl": "1h"})
        return value

    def approle(self) -> tuple[str, str]:
        role = f"sweep-{secrets.token_hex(4)}"
        self.vault.create_approle(role, ["mlflow-reader"])
        role_id, secret_id = token(), token()
        self.vault.api("POST", f"auth/approle/role/{role}/role-id", {"role_id": role_id})
        self.vault.api("POST", f"auth/approle/role/{role}/custom-secret-id", {"secret_id": secret_id})
        return role_id, secret_id

    def base_env(self, net: Net, mlflow_url: str) -> dict[str, str]:
        env = {k: v for k, v in clean_env().items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
        return dict(
            env,
            MLFLOW_TRACKING_URI=mlflow_url,
            MLFLOW_TRACKING_AUTH="mlflow_secrets_auth",
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            MLFLOW_HTTP_REQUEST_TIMEOUT="30",
            MLFLOW_SECRETS_TIMEOUT_SEC="20",  # TLS handshakes in Python threads are slow on a loaded machine
            MLFLOW_SECRETS_MAX_RETRIES="0",
            REQUESTS_CA_BUNDLE=str(net.ca),
            HTTPS_PROXY=net.router.url,
            NO_PROXY="127.0.0.1",
        )

    def vault_env(self, net: Net, addr: str, **extra: str) -> dict[str, str]:
        return {"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "VAULT_ADDR": addr, "VAULT_CACERT": str(net.ca), **extra}


def fake_mlflow(status: int = 200) -> netsweep.Behaviour:
    return lambda method, path, headers, body, lst: json_answer({"experiments": []}, status)


Scenario = Callable[[World, Net], Run]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


def vault_token_run(w: World, net: Net, addr: str, mlflow_url: str, **extra: str) -> tuple[Run, str, str]:
    mtoken, path = w.mlflow_cred()
    vtoken = w.vault_token()
    env = {**w.base_env(net, mlflow_url),
           **w.vault_env(net, addr, VAULT_TOKEN=vtoken, MLFLOW_VAULT_SECRET_PATH=path), **extra}
    return Run(env, [["search"]], []), mtoken, vtoken


@scenario
def vault_token(w: World, net: Net) -> Run:
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    mlflow = net.add("mlflow.example", fake_mlflow())
    run, m, v = vault_token_run(w, net, vault.url(), mlflow.url())
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], {"vault.example"}, {"vault.example"})]
    return run


@scenario
def vault_approle(w: World, net: Net) -> Run:
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    mlflow = net.add("mlflow.example", fake_mlflow())
    m, path = w.mlflow_cred()
    role_id, secret_id = w.approle()
    env = {**w.base_env(net, mlflow.url()), **w.vault_env(net, vault.url(), VAULT_ROLE_ID=role_id,
                                                           VAULT_SECRET_ID=secret_id, MLFLOW_VAULT_SECRET_PATH=path)}
    return Run(env, [["search"]], [
        Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
        Cred("AppRole role_id", [role_id.encode()], {"vault.example"}, {"vault.example"}),
        Cred("AppRole secret_id", [secret_id.encode()], {"vault.example"}, {"vault.example"}),
    ], minted=[("Vault login token", rb'"client_token":"([^"]+)"', {"vault.example"})])


def _redirect_to_evil(net: Net) -> netsweep.Listener:
    evil = net.add("evil.example", sink(200))
    return net.add("vault-redirect.example", redirect(lambda path: evil.url() + path))


@scenario
def vault_redirect_token(w: World, net: Net) -> Run:
    """VAULT_ADDR answers 307 to another host: the token must not follow it."""
    redir = _redirect_to_evil(net)
    mlflow = net.add("mlflow.example", fake_mlflow())
    run, m, v = vault_token_run(w, net, redir.url(), mlflow.url())
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], {"vault-redirect.example"}, {"vault-redirect.example"})]
    return run


@scenario
def vault_redirect_approle(w: World, net: Net) -> Run:
    """The AppRole login body must not follow a 307 either."""
    redir = _redirect_to_evil(net)
    mlflow = net.add("mlflow.example", fake_mlflow())
    _, path = w.mlflow_cred()
    role_id, secret_id = w.approle()
    env = {**w.base_env(net, mlflow.url()), **w.vault_env(net, redir.url(), VAULT_ROLE_ID=role_id,
                                                           VAULT_SECRET_ID=secret_id, MLFLOW_VAULT_SECRET_PATH=path)}
    return Run(env, [["search"]], [
        Cred("AppRole role_id", [role_id.encode()], {"vault-redirect.example"}, {"vault-redirect.example"}),
        Cred("AppRole secret_id", [secret_id.encode()], {"vault-redirect.example"}, {"vault-redirect.example"}),
    ])


@scenario
def vault_mixed_family(w: World, net: Net) -> Run:
    """A BAO_TOKEN never goes to a leftover VAULT_ADDR."""
    net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    other = net.add("vault-other.example", sink(200))
    mlflow = net.add("mlflow.example", fake_mlflow())
    m, path = w.mlflow_cred()
    v = w.vault_token()
    env = {**w.base_env(net, mlflow.url()), "MLFLOW_SECRETS_AUTH_ENABLE": "vault", "VAULT_ADDR": other.url(),
           "BAO_ADDR": net.listeners[0].url(), "BAO_TOKEN": v, "VAULT_CACERT": str(net.ca),
           "MLFLOW_VAULT_SECRET_PATH": path}
    return Run(env, [["search"]], [Cred("MLflow credential", [m.encode()], {"mlflow.example"}),
                                  Cred("BAO_TOKEN", [v.encode()], {"vault.example"})])


@scenario
def vault_cleartext(w: World, net: Net) -> Run:
    """An http VAULT_ADDR to a host that is not loopback (reached through the
    router, a non-loopback hop): refused without the opt-in, so no token on the wire."""
    plain = net.add("vault-plain.example", upstream=w.vault.addr.removeprefix("http://"), tls=False)
    mlflow = net.add("mlflow.example", fake_mlflow())
    run, m, v = vault_token_run(w, net, plain.url(), mlflow.url(), HTTP_PROXY=net.router.url)
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], set())]
    return run


@scenario
def vault_cleartext_opt_in(w: World, net: Net) -> Run:
    """The same with MLFLOW_SECRETS_ALLOW_HTTP=true: the user chose cleartext, and it works."""
    plain = net.add("vault-plain.example", upstream=w.vault.addr.removeprefix("http://"), tls=False)
    mlflow = net.add("mlflow.example", fake_mlflow())
    run, m, v = vault_token_run(w, net, plain.url(), mlflow.url(), HTTP_PROXY=net.router.url,
                                MLFLOW_SECRETS_ALLOW_HTTP="true")
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], {"vault-plain.example", WIRE}, {"vault-plain.example"})]
    return run


@scenario
def mlflow_redirect_offsite(w: World, net: Net) -> Run:
    """The MLflow server redirects to a host outside the policy."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    evil = net.add("evil.example", fake_mlflow())
    mlflow = net.add("mlflow.example", redirect(lambda path: evil.url() + path))
    run, m, v = vault_token_run(w, net, vault.url(), mlflow.url())
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], {"vault.example"}, {"vault.example"})]
    return run


@scenario
def mlflow_redirect_allowed(w: World, net: Net) -> Run:
    """A redirect to another allowed host keeps working; nothing goes elsewhere."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    other = net.add("mlflow2.example", fake_mlflow())
    mlflow = net.add("mlflow.example", redirect(lambda path: other.url() + path, 302))
    run, m, _ = vault_token_run(w, net, vault.url(), mlflow.url(),
                                MLFLOW_SECRETS_ALLOWED_HOSTS="mlflow.example,mlflow2.example")
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example", "mlflow2.example"}, {"mlflow.example"})]
    return run


@scenario
def mlflow_401_generator_body(w: World, net: Net) -> Run:
    """A 401 to a request with a streamed body: nothing is re-sent anywhere else."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    mlflow = net.add("mlflow.example", fake_mlflow(401))
    run, m, _ = vault_token_run(w, net, vault.url(), mlflow.url())
    run.actions = [["post_generator", mlflow.url() + "/api/2.0/mlflow/runs/log-batch"]]
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"})]
    return run


@scenario
def mlflow_http_via_proxy(w: World, net: Net) -> Run:
    """http://localhost (a port-forward) with HTTP_PROXY on another host: the
    credential would cross the network to the proxy in cleartext, so it is not sent."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    proxy = net.add("proxy.corp.example", sink(502), tls=False)
    local = net.add("localhost", fake_mlflow(), tls=False)
    run, m, _ = vault_token_run(w, net, vault.url(), local.url(), HTTP_PROXY=proxy.url())
    del run.env["NO_PROXY"]
    run.creds = [Cred("MLflow credential", [m.encode()], {"localhost"})]
    return run


@scenario
def mlflow_http_loopback_direct(w: World, net: Net) -> Run:
    """The control for the previous one: NO_PROXY=localhost goes direct, and works."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    proxy = net.add("proxy.corp.example", sink(502), tls=False)
    local = net.add("localhost", fake_mlflow(), tls=False)
    run, m, _ = vault_token_run(w, net, vault.url(), local.url(), HTTP_PROXY=proxy.url())
    run.env["NO_PROXY"] = "localhost,127.0.0.1"
    run.creds = [Cred("MLflow credential", [m.encode()], {"localhost"}, {"localhost"})]
    return run


@scenario
def forked_worker_helper(w: World, net: Net) -> Run:
    """A worker forked after the core was loaded asks its parent's core (MsaShare): same rules."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    evil = net.add("evil.example", fake_mlflow())
    mlflow = net.add("mlflow.example", redirect(lambda path: evil.url() + path))
    run, m, v = vault_token_run(w, net, vault.url(), mlflow.url(), MLFLOW_VAULT_TTL_SEC="1")
    run.actions = [["fork_search"]]
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], {"vault.example"}, {"vault.example"})]
    return run


@scenario
def forked_worker_own_helper(w: World, net: Net) -> Run:
    """A forked worker whose environment differs from its parent's is refused by
    the parent's core and asks a helper process of its own: same rules."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    evil = net.add("evil.example", fake_mlflow())
    mlflow = net.add("mlflow.example", redirect(lambda path: evil.url() + path))
    run, m, v = vault_token_run(w, net, vault.url(), mlflow.url(), MLFLOW_VAULT_TTL_SEC="1")
    run.actions = [["fork_search", "changed"]]
    run.creds = [Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
                 Cred("Vault token", [v.encode()], {"vault.example"}, {"vault.example"})]
    return run


def aws_env(w: World, net: Net, endpoint: str, mlflow_url: str) -> tuple[dict[str, str], str, str, str]:
    m = token()
    name = f"sweep/{secrets.token_hex(4)}"
    w.moto.create_secret(name, json.dumps({"token": m}))
    key_id, key_secret = "AKIA" + secrets.token_hex(8).upper(), token()
    env = {**w.base_env(net, mlflow_url), "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
           "MLFLOW_AWS_SECRET_ID": name, "AWS_REGION": w.moto.region, "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
           "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": key_secret, "AWS_CA_BUNDLE": str(net.ca),
           "AWS_EC2_METADATA_DISABLED": "true"}
    return env, m, key_id, key_secret


@scenario
def aws(w: World, net: Net) -> Run:
    moto = net.add("moto.example", upstream=w.moto.url.removeprefix("http://"))
    mlflow = net.add("mlflow.example", fake_mlflow())
    env, m, key_id, key_secret = aws_env(w, net, moto.url(), mlflow.url())
    return Run(env, [["search"]], [
        Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
        Cred("AWS access key id", [key_id.encode()], {"moto.example"}, {"moto.example"}),
        Cred("AWS secret access key", [key_secret.encode()], set()),
    ])


@scenario
def aws_redirect(w: World, net: Net) -> Run:
    """The Secrets Manager endpoint answers 307: the signed request must not follow."""
    evil = net.add("evil.example", sink(200))
    redir = net.add("aws-redirect.example", redirect(lambda path: evil.url() + path))
    mlflow = net.add("mlflow.example", fake_mlflow())
    env, m, key_id, key_secret = aws_env(w, net, redir.url(), mlflow.url())
    return Run(env, [["search"]], [
        Cred("MLflow credential", [m.encode()], {"mlflow.example"}),
        Cred("AWS access key id", [key_id.encode()], {"aws-redirect.example"}, {"aws-redirect.example"}),
        Cred("AWS secret access key", [key_secret.encode()], set()),
    ])


def azure_run(w: World, net: Net, kv: cloud_harness.FakeKeyVault, name: str) -> tuple[Run, str]:
    vault = net.add(name, upstream=f"127.0.0.1:{kv.port}", upstream_tls=True)
    ident = net.add("127.0.0.1", upstream=f"127.0.0.1:{kv.identity_port}", tls=False)
    mlflow = net.add("mlflow.example", fake_mlflow())
    m = token()
    secret = f"sweep-{secrets.token_hex(4)}"
    kv.set_secret(secret, json.dumps({"token": m}))
    env = {**w.base_env(net, mlflow.url()), "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
           "AZURE_KEY_VAULT_URL": vault.url(), "MLFLOW_AZURE_SECRET_NAME": secret,
           "MLFLOW_AZURE_CA_BUNDLE": str(net.ca),
           "IDENTITY_ENDPOINT": f"http://127.0.0.1:{ident.port}/metadata/identity/oauth2/token",
           "IDENTITY_HEADER": kv.identity_header}
    run = Run(env, [["search"]], [
        Cred("Azure identity header", [kv.identity_header.encode()], {"127.0.0.1"}),
    ], minted=[("Azure access token", rb'"access_token": ?"([^"]+)"', {name})])
    return run, m


@scenario
def azure(w: World, net: Net) -> Run:
    run, m = azure_run(w, net, w.keyvault, "kv.example")
    run.creds.append(Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}))
    run.creds[0].must_reach = {"127.0.0.1"}
    return run


@scenario
def azure_hostile_challenge(w: World, net: Net) -> Run:
    """A vault outside Azure's domains whose challenge names Azure Resource
    Manager: no token for it is requested, so none can be sent anywhere."""
    run, m = azure_run(w, net, w.hostile_kv, "kv-hostile.example")
    before = len(w.hostile_kv.token_requests)  # after set_secret: the harness asks for its own token
    run.creds.append(Cred("MLflow credential", [m.encode()], {"mlflow.example"}))

    def no_management_token(net: Net) -> None:
        asked = w.hostile_kv.token_requests[before:]
        assert not any("management" in r for r in asked), f"a token was requested for {asked}"

    run.after = no_management_token
    return run


def _jwt_login(w: World) -> tuple[str, str, str]:
    """A JWT auth mount on the world's Vault trusting a fresh issuer, role
    ``ci`` reading the MLflow secrets; (mount, a JWT it accepts, the file holding it)."""
    import tempfile

    issuer = harness.JWTIssuer("https://ci.sweep.example")
    mount = f"jwt-{secrets.token_hex(3)}"
    w.vault.api("POST", f"sys/auth/{mount}", {"type": "jwt"})
    w.vault.api("POST", f"auth/{mount}/config",
                {"jwt_validation_pubkeys": [issuer.public_pem], "bound_issuer": issuer.issuer})
    role = {"role_type": "jwt", "bound_audiences": ["mlflow"], "user_claim": "sub", "token_policies": ["mlflow-reader"]}
    w.vault.api("POST", f"auth/{mount}/role/ci", role)
    jwt = issuer.sign({"sub": "sweep", "aud": "mlflow", "nonce": token()})
    file = Path(tempfile.mkdtemp(prefix="msa-sweep-jwt-")) / "token"
    file.write_text(jwt)
    return mount, jwt, str(file)


@scenario
def vault_jwt(w: World, net: Net) -> Run:
    """The JWT from MLFLOW_VAULT_JWT_PATH goes to Vault's login only; so does the token it mints."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    mlflow = net.add("mlflow.example", fake_mlflow())
    m, path = w.mlflow_cred()
    mount, jwt, file = _jwt_login(w)
    env = {**w.base_env(net, mlflow.url()), **w.vault_env(net, vault.url(), MLFLOW_VAULT_JWT_ROLE="ci",
                                                           MLFLOW_VAULT_JWT_MOUNT=mount, MLFLOW_VAULT_JWT_PATH=file,
                                                           MLFLOW_VAULT_SECRET_PATH=path)}
    return Run(env, [["search"]], [
        Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
        Cred("JWT", [jwt.encode()], {"vault.example"}, {"vault.example"}),
    ], minted=[("Vault login token", rb'"client_token":"([^"]+)"', {"vault.example"})])


@scenario
def vault_redirect_jwt(w: World, net: Net) -> Run:
    """The JWT login body must not follow a 307."""
    redir = _redirect_to_evil(net)
    mlflow = net.add("mlflow.example", fake_mlflow())
    _, path = w.mlflow_cred()
    mount, jwt, file = _jwt_login(w)
    env = {**w.base_env(net, mlflow.url()), **w.vault_env(net, redir.url(), MLFLOW_VAULT_JWT_ROLE="ci",
                                                           MLFLOW_VAULT_JWT_MOUNT=mount, MLFLOW_VAULT_JWT_PATH=file,
                                                           MLFLOW_VAULT_SECRET_PATH=path)}
    return Run(env, [["search"]], [
        Cred("JWT", [jwt.encode()], {"vault-redirect.example"}, {"vault-redirect.example"}),
    ])


@scenario
def vault_agent(w: World, net: Net) -> Run:
    """Tokenless through a node-local agent on 127.0.0.1 (outside the recording
    network: the agent and its AppRole login are loopback-only): the MLflow
    credential read through it reaches MLflow only, and the client never sends
    the agent's AppRole secret anywhere."""
    role_id, secret_id = w.approle()
    agent = harness.BaoAgent(w.vault.addr, role_id, secret_id)
    agent.start()
    mlflow = net.add("mlflow.example", fake_mlflow())
    m, path = w.mlflow_cred()
    env = {**w.base_env(net, mlflow.url()), "MLFLOW_SECRETS_AUTH_ENABLE": "vault", "VAULT_AGENT_ADDR": agent.addr,
           "MLFLOW_VAULT_SECRET_PATH": path}

    def stop(_: Net) -> None:
        agent.close()

    return Run(env, [["search"]], [
        Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
        Cred("AppRole secret_id", [secret_id.encode()], set()),  # the agent's, never the client's to send
    ], after=stop)


@scenario
def vault_kubernetes(w: World, net: Net) -> Run:
    """The service-account token from MLFLOW_VAULT_K8S_TOKEN_PATH goes to Vault's
    login only (Vault then asks the TokenReview stand-in, on loopback)."""
    import tempfile
    import uuid

    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    mlflow = net.add("mlflow.example", fake_mlflow())
    m, path = w.mlflow_cred()
    review, issuer = w.token_review(), harness.JWTIssuer("https://kubernetes.default.svc")
    tmp = Path(tempfile.mkdtemp(prefix="msa-sweep-k8s-"))
    mount = f"k8s-{secrets.token_hex(3)}"
    w.vault.api("POST", f"sys/auth/{mount}", {"type": "kubernetes"})
    w.vault.api("POST", f"auth/{mount}/config", {"kubernetes_host": review.url, "disable_local_ca_jwt": True,
                                                  "kubernetes_ca_cert": harness.make_tls_files(tmp)[0].read_text()})
    w.vault.api("POST", f"auth/{mount}/role/trainer", {"bound_service_account_names": ["trainer"],
                                                        "bound_service_account_namespaces": ["ml"],
                                                        "token_policies": ["mlflow-reader"]})
    uid = str(uuid.uuid4())
    sa_token = issuer.sign(harness.kubernetes_claims("ml", "trainer", uid))
    review.allow(sa_token, "ml", "trainer", uid)
    (tmp / "token").write_text(sa_token)
    env = {**w.base_env(net, mlflow.url()), **w.vault_env(net, vault.url(), MLFLOW_VAULT_K8S_ROLE="trainer",
                                                           MLFLOW_VAULT_K8S_MOUNT=mount,
                                                           MLFLOW_VAULT_K8S_TOKEN_PATH=str(tmp / "token"),
                                                           MLFLOW_VAULT_SECRET_PATH=path)}
    return Run(env, [["search"]], [
        Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}),
        Cred("Kubernetes service-account token", [sa_token.encode()], {"vault.example"}, {"vault.example"}),
    ], minted=[("Vault login token", rb'"client_token":"([^"]+)"', {"vault.example"})])


def gcp_run(w: World, net: Net, endpoint: str | None) -> tuple[Run, str]:
    """Google Secret Manager with a service-account key whose token_uri is a named
    listener in front of the stand-in's OAuth endpoint."""
    google = w.google
    sm = net.add("secretmanager.example", upstream=google.sm_url.removeprefix("https://"), upstream_tls=True)
    oauth = net.add("oauth.example", upstream=w.google_oauth.split("/")[2], upstream_tls=True)
    mlflow = net.add("mlflow.example", fake_mlflow())
    google.oauth_url = oauth.url() + "/token"  # the key's token_uri and the assertion's audience
    key = google.service_account_key(w.tmp, f"sweep-{secrets.token_hex(3)}@sweep.iam.gserviceaccount.com", "sweep")
    m, secret = token(), f"sweep-{secrets.token_hex(4)}"
    google.add_version("sweep", secret, json.dumps({"token": m}))
    (w.tmp / "gcloud").mkdir(exist_ok=True)
    env = {**w.base_env(net, mlflow.url()), "MLFLOW_SECRETS_AUTH_ENABLE": "gcp-secret-manager",
           "MLFLOW_GCP_SECRET_NAME": secret, "MLFLOW_GCP_SECRETMANAGER_ENDPOINT": endpoint or sm.url(),
           "MLFLOW_GCP_CA_BUNDLE": str(net.ca), "GOOGLE_APPLICATION_CREDENTIALS": str(key),
           "CLOUDSDK_CONFIG": str(w.tmp / "gcloud")}
    private_key = json.loads(key.read_text())["private_key"].splitlines()[5]  # a line of the key's base64
    return Run(env, [["search"]], [Cred("service-account private key", [private_key.encode()], set())],
               minted=[("Google access token", rb'"access_token": ?"([^"]+)"',
                        {"gcp-redirect.example" if endpoint else "secretmanager.example"})]), m


@scenario
def gcp(w: World, net: Net) -> Run:
    run, m = gcp_run(w, net, None)
    run.creds.append(Cred("MLflow credential", [m.encode()], {"mlflow.example"}, {"mlflow.example"}))
    return run


@scenario
def gcp_redirect(w: World, net: Net) -> Run:
    """The Secret Manager endpoint answers 307: the access token must not follow."""
    evil = net.add("evil.example", sink(200))
    redir = net.add("gcp-redirect.example", redirect(lambda path: evil.url() + path))
    run, m = gcp_run(w, net, redir.url())
    run.creds.append(Cred("MLflow credential", [m.encode()], {"mlflow.example"}))

    def asked_with_a_token(net: Net) -> None:
        seen = [h.get("authorization", "") for _, _, h in redir.requests]
        assert any(v.startswith("Bearer ") for v in seen), f"the endpoint was never asked with a token: {seen}"

    run.after = asked_with_a_token
    return run


@scenario
def per_server_credentials(w: World, net: Net) -> Run:
    """MLFLOW_SECRETS_SERVERS: each server's credential goes to that server only
    (and the base one to the tracking server only)."""
    vault = net.add("vault.example", upstream=w.vault.addr.removeprefix("http://"))
    prod = net.add("mlflow.example", fake_mlflow())
    staging = net.add("mlflow2.example", fake_mlflow())
    m1, path1 = w.mlflow_cred()
    m2, path2 = w.mlflow_cred()
    servers = json.dumps({"mlflow2.example": {"MLFLOW_VAULT_SECRET_PATH": path2}})
    run, _, v = vault_token_run(w, net, vault.url(), prod.url(), MLFLOW_VAULT_SECRET_PATH=path1,
                                MLFLOW_SECRETS_SERVERS=servers)
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    run.actions = [["get", prod.url() + search], ["get", staging.url() + search]]
    run.creds = [Cred("base MLflow credential", [m1.encode()], {"mlflow.example"}, {"mlflow.example"}),
                 Cred("staging's MLflow credential", [m2.encode()], {"mlflow2.example"}, {"mlflow2.example"}),
                 Cred("Vault token", [v.encode()], {"vault.example"}, {"vault.example"})]
    return run


# --------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def hostile_kv() -> Iterator[cloud_harness.FakeKeyVault]:
    with cloud_harness.FakeKeyVault(challenge_resource="https://management.azure.com") as kv:
        yield kv


@pytest.fixture(scope="module")
def sweep_google() -> Iterator[gcp_harness.FakeGoogle]:
    with gcp_harness.FakeGoogle() as google:  # its own: the sweep points its OAuth URL at a named listener
        yield google


@pytest.fixture(scope="module")
def world(vault_ready: harness.VaultAPIServer, moto: cloud_harness.MotoServer,
          keyvault: cloud_harness.FakeKeyVault, hostile_kv: cloud_harness.FakeKeyVault,
          sweep_google: gcp_harness.FakeGoogle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        review: list[harness.TokenReviewServer] = []

        def token_review() -> harness.TokenReviewServer:
            if not review:
                review.append(stack.enter_context(harness.TokenReviewServer()))
            return review[0]

        yield World(vault_ready, moto, keyvault, hostile_kv, tmp_path_factory.mktemp("sweep"), sweep_google,
                    token_review)


@pytest.fixture(scope="module")
def report() -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(["egress sweep: each credential and the listeners that received it", *lines, ""]))


def drive(run: Run, names: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps({"names": names, "actions": run.actions}),
        env=run.env, capture_output=True, text=True, timeout=180,
    )
    return proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sweep(name: str, world: World, report: list[str], vault_kind: str) -> None:
    net = Net(world.tls)
    try:
        run = SCENARIOS[name](world, net)
        output = drive(run, net.names)
        creds = list(run.creds)
        for what, pattern, allowed in run.minted:
            creds += [Cred(what, [v], allowed) for v in net.minted(pattern)]
        problems = []
        report.append(f"[{name}]")
        for c in creds:
            got = net.recipients(c.forms)
            report.append(f"  {c.what}: {', '.join(sorted(got)) or '(nowhere)'}")
            if not got <= c.allowed:
                problems.append(f"{c.what} reached {sorted(got - c.allowed)} (allowed: {sorted(c.allowed)})")
            if not c.must_reach <= got:
                problems.append(f"{c.what} never reached {sorted(c.must_reach - got)}: the scenario did not run")
        if run.after is not None:
            try:
                run.after(net)
            except AssertionError as exc:
                problems.append(str(exc))
        assert not problems, f"scenario {name}: " + "; ".join(problems) + f"\ndriver output:\n{output}"
    finally:
        net.close()


