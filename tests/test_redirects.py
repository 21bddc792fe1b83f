"""Every hop is decided: redirects never carry our credential to an origin the
policy does not allow, a proxy that would see it in cleartext never gets it,
and a body that cannot be replayed is never sent again.

Real ``mlflow`` client calls (``mlflow.search_experiments``) go to a loopback
server that answers with a redirect (302, 303, 307, 308) to another port,
another loopback address or ``localhost``, or through a proxy named by
``HTTP_PROXY``/``HTTPS_PROXY`` with a non-loopback name that this process (only)
resolves to a loopback listener. Every server and proxy records the headers
it received. The credential comes from a real Vault API server (OpenBao).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import random
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import mlflow
import pytest
import requests
from conftest import plugin_env
from mlflow.exceptions import MlflowException
from mlflow.tracking.request_auth.registry import fetch_auth

SEARCH_PATH = "/api/2.0/mlflow/experiments/search"


class Recorder:
    """A loopback HTTP(S) server that records each request's headers, and
    either redirects (``redirect_to`` set) or answers an empty experiment list."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: tuple[Path, Path] | None = None) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.bodies: list[bytes] = []  # the body of each request in seen
        self.redirect_to: str | None = None
        self.status = 302
        self.require: str | None = None  # answer 401 to requests without this header
        self.accept: str | None = None  # answer 401 unless Authorization is exactly this
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                recorder.bodies.append(self._body())
                recorder.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                refused = recorder.accept is not None and self.headers.get("Authorization") != recorder.accept
                if refused or (recorder.require is not None and recorder.require not in self.headers):
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if recorder.redirect_to is not None and self.path.startswith(SEARCH_PATH):
                    self.send_response(recorder.status)
                    self.send_header("Location", recorder.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"experiments": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.host, self.port = host, self.server.server_address[1]
        self.url = f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def values(self, header: str) -> list[str]:
        return [h[header.lower()] for _, _, h in self.seen if header.lower() in h]


@contextlib.contextmanager
def recorders(*specs: tuple[str, int]) -> Iterator[list[Recorder]]:
    started: list[Recorder] = []
    try:
        for host, port in specs:
            started.append(Recorder(host, port))
        yield started
    finally:
        for r in started:
            r.close()


def loopback_alias() -> str:
    """127.0.0.2 answers on Linux without any setup (all of 127/8 is loopback)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("127.0.0.2 is not a usable loopback address here")
    return "127.0.0.2"


@pytest.fixture()
def token_env(vault_ready, reader_token: str, secret_path: str):  # type: ignore[no-untyped-def]
    """A random token in Vault, and the environment that reads it."""
    token = "tok-" + secrets.token_urlsafe(24)
    vault_ready.kv_put("secret", secret_path, {"token": token}, version=1)

    def env(tracking_uri: str, **extra: str) -> dict[str, str]:
        return plugin_env(
            vault_ready,
            tracking_uri,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            **extra,
        )

    return token, env


HEADERS = [("Authorization", "Bearer {}"), ("X-Api-Key", "{}")]


@pytest.mark.parametrize("status", [302, 303, 307, 308])
@pytest.mark.parametrize(("header", "form"), HEADERS, ids=["Authorization", "X-Api-Key"])
def test_redirect_to_another_origin_does_not_carry_the_credential(
    use_env, token_env, status: int, header: str, form: str
) -> None:  # type: ignore[no-untyped-def]
    token, env = token_env
    alias = loopback_alias()
    with recorders(("127.0.0.1", 0), ("127.0.0.1", 0), (alias, 0)) as (origin, other_port, other_addr):
        localhost = f"http://localhost:{other_port.port}"
        targets = {
            "other port": (other_port, other_port.url),
            "other loopback address": (other_addr, other_addr.url),
            "localhost": (other_port, localhost),
        }
        extra = {} if header == "Authorization" else {"MLFLOW_AUTH_HEADER_NAME": header}
        use_env(env(origin.url, **extra))
        for what, (target, url) in targets.items():
            origin.redirect_to, origin.status = url + SEARCH_PATH, status
            before = len(target.seen)
            mlflow.search_experiments()
            assert len(target.seen) > before, f"{what}: the redirect was not followed"
            got = [h.get(header.lower()) for _, _, h in target.seen[before:]]
            assert got == [None] * len(got), f"{status} to {what}: {header} reached {url}"
        # The origin itself did get the credential, every time: the plugin was active.
        sent = origin.values(header)
        assert len(sent) == len(targets)
        assert set(sent) == {form.format(token)}


def test_custom_header_follows_a_redirect_to_another_allowed_origin(use_env, token_env) -> None:  # type: ignore[no-untyped-def]
    token, env = token_env
    alias = loopback_alias()
    with recorders(("127.0.0.1", 0), ("127.0.0.1", 0), (alias, 0)) as (origin, allowed, other):
        use_env(
            env(
                origin.url,
                MLFLOW_AUTH_HEADER_NAME="X-Api-Key",
                MLFLOW_SECRETS_ALLOWED_HOSTS=f"{origin.url},{allowed.url}",
            )
        )
        origin.status, origin.redirect_to = 307, allowed.url + SEARCH_PATH
        mlflow.search_experiments()
        assert allowed.values("X-Api-Key") == [token]
        # Same policy, a target outside it: nothing.
        origin.redirect_to = other.url + SEARCH_PATH
        mlflow.search_experiments()
        assert len(other.seen) == 1
        assert other.values("X-Api-Key") == []
        # A chain: allowed -> not allowed -> allowed. Only the allowed hops carry it.
        allowed.status, allowed.redirect_to = 302, other.url + SEARCH_PATH
        other.status, other.redirect_to = 302, origin.url + "/back" + SEARCH_PATH
        origin.redirect_to = allowed.url + SEARCH_PATH
        n_origin, n_allowed, n_other = len(origin.seen), len(allowed.seen), len(other.seen)
        mlflow.search_experiments()
        hops = [origin.seen[n_origin:], allowed.seen[n_allowed:], other.seen[n_other:]]
        assert [len(h) for h in hops] == [2, 1, 1]  # origin, allowed, other, origin/back
        assert [h.get("x-api-key") for _, _, h in hops[0] + hops[1]] == [token] * 3
        assert other.values("X-Api-Key") == []


def test_authorization_reaches_another_allowed_origin_that_asks_for_it(use_env, token_env) -> None:  # type: ignore[no-untyped-def]
    """requests drops Authorization on any redirect to another host or port;
    where the core allows that origin and it answers 401, the plugin sends the
    request there once more, with the credential."""
    token, env = token_env
    with recorders(("127.0.0.1", 0), ("127.0.0.1", 0)) as (origin, allowed):
        use_env(env(origin.url, MLFLOW_SECRETS_ALLOWED_HOSTS=f"{origin.url},{allowed.url}"))
        origin.status, origin.redirect_to = 307, allowed.url + SEARCH_PATH
        allowed.require = "Authorization"
        mlflow.search_experiments()
        assert [h.get("authorization") for _, _, h in allowed.seen] == [None, f"Bearer {token}"]


def test_a_401_from_an_origin_that_is_not_allowed_gets_nothing(use_env, token_env) -> None:  # type: ignore[no-untyped-def]
    _, env = token_env
    with recorders(("127.0.0.1", 0), ("127.0.0.1", 0)) as (origin, other):
        use_env(env(origin.url))
        origin.status, origin.redirect_to = 307, other.url + SEARCH_PATH
        other.require = "Authorization"
        with pytest.raises(MlflowException):
            mlflow.search_experiments()
        assert [h.get("authorization") for _, _, h in other.seen] == [None]


def test_authorization_is_kept_on_a_redirect_within_the_same_origin(use_env, token_env) -> None:  # type: ignore[no-untyped-def]
    token, env = token_env
    with recorders(("127.0.0.1", 0)) as (origin,):
        use_env(env(origin.url))
        origin.status, origin.redirect_to = 308, origin.url + "/moved" + SEARCH_PATH
        # The redirect target path does not start with SEARCH_PATH: it is answered.
        mlflow.search_experiments()
        paths = [(p, h.get("authorization")) for _, p, h in origin.seen]
        assert [p.split("?")[0] for p, _ in paths] == [SEARCH_PATH, "/moved" + SEARCH_PATH]
        assert [a for _, a in paths] == [f"Bearer {token}"] * 2


def test_http_to_https_upgrade_on_an_allowed_host_keeps_the_credential(
    use_env, token_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """http://host (port 80) -> https://host (port 443): the one cross-origin
    redirect requests itself keeps Authorization on; the core allows both."""
    token, env = token_env
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    ca, cert, key = harness.make_tls_files(tmp_path / "tls", names=(host,))
    try:
        plain, tls = Recorder(host, 80), Recorder(host, 443, tls=(cert, key))
    except OSError as exc:  # not root, or the ports are taken
        pytest.skip(f"cannot listen on {host}:80 and :443: {exc}")
    try:
        use_env(
            env(
                f"http://{host}",
                MLFLOW_SECRETS_ALLOWED_HOSTS=host,
                MLFLOW_TRACKING_SERVER_CERT_PATH=str(ca),
            )
        )
        plain.status, plain.redirect_to = 308, f"https://{host}{SEARCH_PATH}"
        mlflow.search_experiments()
        assert plain.values("Authorization") == [f"Bearer {token}"]
        assert tls.values("Authorization") == [f"Bearer {token}"]
    finally:
        plain.close()
        tls.close()


# --------------------------------------------------------------------------- #
# Proxies: the hop is the origin and the proxy requests goes through
# --------------------------------------------------------------------------- #

PROXY_NAME = "proxy.corp.example"  # never resolved by the machine's resolver: see resolve_here


@pytest.fixture()
def resolve_here(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """PROXY_NAME resolves to 127.0.0.1 in this process, and nothing else changes."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == PROXY_NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def error_chain(exc: BaseException | None) -> str:
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


def test_cleartext_through_a_proxy_never_carries_the_credential(
    use_env, token_env, resolve_here
) -> None:  # type: ignore[no-untyped-def]
    """http://localhost (a port-forward) through HTTP_PROXY=http://proxy.corp...:
    the proxy would read the credential, so the call fails naming the opt-in and
    the proxy gets nothing; NO_PROXY=localhost goes direct; the opt-in sends it."""
    token, env = token_env
    with recorders(("127.0.0.1", 0), ("127.0.0.1", 0)) as (server, proxy):
        tracking = f"http://localhost:{server.port}"
        use_env(env(tracking, HTTP_PROXY=f"http://{PROXY_NAME}:{proxy.port}"))
        with pytest.raises(Exception) as err:  # MLflow wraps ours
            mlflow.search_experiments()
        assert "MLFLOW_SECRETS_ALLOW_HTTP" in error_chain(err.value)
        assert token not in error_chain(err.value)
        assert proxy.seen == []  # nothing went out at all
        assert server.seen == []
        # NO_PROXY for the tracking host: a direct loopback connection, allowed.
        use_env({"NO_PROXY": "localhost"})
        mlflow.search_experiments()
        assert proxy.seen == []
        assert server.values("Authorization") == [f"Bearer {token}"]
        # The opt-in: the credential goes through the cleartext proxy, as asked.
        use_env({"NO_PROXY": "", "MLFLOW_SECRETS_ALLOW_HTTP": "true"})
        mlflow.search_experiments()
        assert [p.split("?")[0] for _, p, _ in proxy.seen] == [tracking + SEARCH_PATH]  # absolute form: a proxy
        assert proxy.values("Authorization") == [f"Bearer {token}"]


class ConnectProxy:
    """A recording CONNECT proxy on 127.0.0.1: it records each request head
    it reads in cleartext and tunnels to the named loopback port."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            text = head.decode("latin-1")
            self.heads.append(text)
            method, target = text.split(" ", 2)[:2]
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = stack.enter_context(socket.create_connection(("127.0.0.1", int(target.rsplit(":", 1)[1]))))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            other.start()
            pump(client, upstream)
            other.join(30)


def test_https_through_a_proxy_is_a_tunnel_and_carries_the_credential(
    use_env, token_env, resolve_here, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """https through HTTPS_PROXY (a CONNECT tunnel): the proxy sees only the
    CONNECT line, never the credential; the server behind it gets it."""
    token, env = token_env
    ca, cert, key = harness.make_tls_files(tmp_path / "tls")
    server = Recorder("127.0.0.1", 0, tls=(cert, key))
    proxy = ConnectProxy()
    try:
        tracking = f"https://localhost:{server.port}"
        use_env(env(tracking, HTTPS_PROXY=f"http://{PROXY_NAME}:{proxy.port}",
                    MLFLOW_TRACKING_SERVER_CERT_PATH=str(ca)))
        mlflow.search_experiments()
        assert server.values("Authorization") == [f"Bearer {token}"]
        assert [h.split(" ")[:2] for h in proxy.heads] == [["CONNECT", f"localhost:{server.port}"]]
        assert token not in "".join(proxy.heads)
    finally:
        server.close()
        proxy.close()


def test_a_redirect_through_a_cleartext_proxy_is_refused(use_env, token_env, resolve_here) -> None:  # type: ignore[no-untyped-def]
    """The redirect's next hop is decided with the proxy requests uses for it:
    from a direct loopback origin (NO_PROXY) to another allowed origin that
    HTTP_PROXY covers. Nothing reaches the proxy, the call fails naming the opt-in."""
    token, env = token_env
    with recorders(("127.0.0.1", 0), ("127.0.0.1", 0), ("127.0.0.1", 0)) as (origin, other, proxy):
        target = f"http://localhost:{other.port}"
        use_env(
            env(
                origin.url,
                HTTP_PROXY=f"http://{PROXY_NAME}:{proxy.port}",
                NO_PROXY="127.0.0.1",
                MLFLOW_AUTH_HEADER_NAME="X-Api-Key",
                MLFLOW_SECRETS_ALLOWED_HOSTS=f"{origin.url},{target}",
            )
        )
        origin.status, origin.redirect_to = 307, target + SEARCH_PATH
        with pytest.raises(Exception) as err:
            mlflow.search_experiments()
        assert "MLFLOW_SECRETS_ALLOW_HTTP" in error_chain(err.value)
        assert origin.values("X-Api-Key") == [token]  # the first hop, direct, carried it
        assert proxy.seen == []
        assert other.seen == []


# --------------------------------------------------------------------------- #
# A 401 re-send only for a body that can be replayed exactly
# --------------------------------------------------------------------------- #


@pytest.fixture()
def rotating(use_env, vault_ready, reader_token: str, secret_path: str):  # type: ignore[no-untyped-def]
    """A server that accepts only the rotated token, and the plugin holding the old one."""
    old, new = "old-" + secrets.token_urlsafe(16), "new-" + secrets.token_urlsafe(16)
    vault_ready.kv_put("secret", secret_path, {"token": old}, version=1)
    with recorders(("127.0.0.1", 0)) as (server,):
        use_env(
            plugin_env(
                vault_ready,
                server.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_VAULT_TTL_SEC="3600",  # only the 401 can refresh it
            )
        )
        auth = fetch_auth("mlflow_secrets_auth")
        assert requests.get(server.url + "/warm", auth=auth, timeout=30).status_code == 200
        vault_ready.kv_put("secret", secret_path, {"token": new}, version=1)
        server.accept = f"Bearer {new}"
        yield server, auth, new


def test_a_streamed_body_gets_the_401_and_is_never_sent_again(rotating, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    server, auth, new = rotating

    def body() -> Iterator[bytes]:
        yield b"part-1,"
        yield b"part-2"

    before = len(server.seen)
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        resp = requests.post(server.url + "/upload", data=body(), auth=auth, timeout=30)
    assert resp.status_code == 401
    assert resp.history == []
    assert server.bodies[before:] == [b"part-1,part-2"]  # once, whole; no empty re-send
    assert any("cannot be replayed" in r.getMessage() for r in caplog.records), caplog.text
    # The 401 still replaced the credential: the caller's next attempt carries the new one.
    again = requests.post(server.url + "/upload", data=b"part-1,part-2", auth=auth, timeout=30)
    assert again.status_code == 200
    assert server.values("Authorization")[-1] == f"Bearer {new}"


@pytest.mark.parametrize("kind", ["bytes", "file"])
def test_a_replayable_body_is_sent_again_whole(rotating, kind: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, auth, new = rotating
    payload = b"x" * 10000
    before = len(server.seen)
    if kind == "file":
        (tmp_path / "body").write_bytes(payload)
        with open(tmp_path / "body", "rb") as f:
            resp = requests.post(server.url + "/upload", data=f, auth=auth, timeout=30)
    else:
        resp = requests.post(server.url + "/upload", data=payload, auth=auth, timeout=30)
    assert resp.status_code == 200
    assert [r.status_code for r in resp.history] == [401]
    assert server.bodies[before:] == [payload, payload]
    assert server.values("Authorization")[-1] == f"Bearer {new}"
