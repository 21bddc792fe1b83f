"""A small recording network for the egress sweep (tests/test_egress_sweep.py).

Every listener records every byte it receives (and what it answers), so a test
can ask, for each credential, which listeners ever saw it. All listeners run on
127.0.0.1. Non-loopback names (``mlflow.example``, ``vault.example``, ...) reach
them two ways, never through the machine's resolver:

* Python (the plugin, requests, MLflow) in the driver process: ``socket.getaddrinfo``
  is patched there to answer 127.0.0.1 for the names in ``Net.names``;
* Go (the backend SDKs): ``HTTPS_PROXY``/``HTTP_PROXY`` point at ``Net.router``, a
  forward proxy on 127.0.0.1 that knows the same names. A CONNECT tunnel is raw
  bytes (TLS, decrypted by the named listener itself); a plain-http request
  through it is cleartext on the wire and recorded as received by ``WIRE``.

Each named listener terminates TLS with one certificate (all names, one test CA)
and then either forwards to a real server (OpenBao, moto, the Key Vault stand-in),
or answers itself (a sink, a redirect, a fake MLflow endpoint).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import harness

LOCALHOST = harness.LOCALHOST
WIRE = "cleartext-wire"  # plain http carried through the router (a non-loopback hop)

# An answer: (status, headers, body).
Answer = tuple[int, dict[str, str], bytes]
# A behaviour: given (method, path, headers, body, listener), the answer.
Behaviour = Callable[[str, str, dict[str, str], bytes, "Listener"], Answer]


def json_answer(payload: object, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def sink(status: int = 404) -> Behaviour:
    """Answers every request with ``status`` and a small JSON body."""
    return lambda method, path, headers, body, lst: json_answer({"error": "sink"}, status)


def redirect(location: str | Callable[[str], str], status: int = 307) -> Behaviour:
    """Answers every request with a redirect to location (a URL, or a function of the path)."""

    def answer(method: str, path: str, headers: dict[str, str], body: bytes, lst: Listener) -> Answer:
        where = location(path) if callable(location) else location
        return status, {"Location": where}, b""

    return answer


@dataclass
class Listener:
    """One address on the network: records what it receives, then answers or forwards."""

    name: str
    tls: ssl.SSLContext | None
    behaviour: Behaviour | None = None
    upstream: tuple[str, int] | None = None
    upstream_tls: bool = False
    received: bytearray = field(default_factory=bytearray)
    answered: bytearray = field(default_factory=bytearray)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOCALHOST, 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def url(self, scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.tls else "http")
        return f"{scheme}://{self.name}:{self.port}"

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()

    def record(self, data: bytes, answer: bool = False) -> None:
        with self._lock:
            (self.answered if answer else self.received).extend(data)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        conn: socket.socket = client
        try:
            conn.settimeout(30)
            if self.tls is not None:
                conn = self.tls.wrap_socket(client, server_side=True)
            if self.upstream is not None:
                self._forward(conn)
            else:
                self._answer_loop(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _forward(self, conn: socket.socket) -> None:
        assert self.upstream is not None
        up = socket.create_connection(self.upstream, timeout=30)
        if self.upstream_tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no default CA loading: nothing from the environment
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            up = ctx.wrap_socket(up, server_hostname=self.upstream[0])
        # One thread moves both directions: an SSL socket must not be read and
        # written by two threads at once (OpenSSL's objects are not thread-safe;
        # doing so cut replies short now and then as an EOF at the client).
        ends = {conn: up, up: conn}
        reading = [conn, up]
        try:
            while True:
                ready = [s for s in reading if isinstance(s, ssl.SSLSocket) and s.pending()]
                if not ready:
                    ready, _, _ = select.select(reading, [], [], 30)
                    if not ready:
                        return  # idle for 30 s
                for src in ready:
                    try:
                        data = src.recv(65536)
                    except ssl.SSLWantReadError:
                        continue  # a partial TLS record: wait for the rest
                    if data:
                        self.record(data, answer=src is up)
                        ends[src].sendall(data)
                    elif src is up or self.upstream_tls:
                        return  # the answer is complete (a TCP half-close would cut a TLS stream short)
                    else:
                        up.shutdown(socket.SHUT_WR)  # the client is done sending: wait for the answer
                        reading = [up]
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                up.close()

    def _answer_loop(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        while True:
            head = bytearray()
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline(65537)
                if not line:
                    return
                head += line
                if len(head) > 1 << 20:
                    return
            self.record(bytes(head))
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
            headers = {}
            for raw in lines[1:]:
                if ":" in raw:
                    k, _, v = raw.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = self._read_body(reader, headers)
            self.record(body)
            path = urlsplit(target).path if target.startswith(("http://", "https://")) else target
            with self._lock:
                self.requests.append((method, path, headers))
            assert self.behaviour is not None
            status, extra, payload = self.behaviour(method, path, headers, body, self)
            out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}"]
            out += [f"{k}: {v}" for k, v in extra.items()]
            data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload
            self.record(data, answer=True)
            conn.sendall(data)

    def _read_body(self, reader: object, headers: dict[str, str]) -> bytes:
        read = reader.read  # type: ignore[attr-defined]
        readline = reader.readline  # type: ignore[attr-defined]
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line = readline(1024)
                if not size_line:
                    return bytes(body)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += read(size)
                readline(1024)
        length = int(headers.get("content-length", "0") or 0)
        return bytes(read(length)) if length else b""


class Router:
    """A forward proxy on 127.0.0.1 that reaches named listeners: CONNECT
    name:port tunnels raw bytes; an absolute-form http request is cleartext on
    the wire (recorded under WIRE) and forwarded as is. Unknown names get 502,
    and what they were sent is recorded under their name."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.listener = Listener(WIRE, None, behaviour=None)
        self.listener.close()  # only used as a recording bucket
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOCALHOST, 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(30)
            head = bytearray()
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            first = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = ([*first.split(" ", 2), "", ""])[:3]
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                dest = self.net.listener_at(host, int(port or 0))
                if dest is None:
                    self.net.stray(host).record(bytes(head))
                    client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                up = socket.create_connection((LOCALHOST, dest.port), timeout=30)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = bytes(head[head.index(b"\r\n\r\n") + 4 :])
                if rest:
                    up.sendall(rest)
                _pump(client, up, None)
                return
            # Absolute-form plain http: cleartext on the wire.
            self.listener.record(bytes(head))
            u = urlsplit(target)
            dest = self.net.listener_at(u.hostname or "", u.port or 80)
            if dest is None:
                self.net.stray(u.hostname or "?").record(bytes(head))
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            up = socket.create_connection((LOCALHOST, dest.port), timeout=30)
            up.sendall(bytes(head))
            _pump(client, up, self.listener)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()


def _pump(a: socket.socket, b: socket.socket, record: Listener | None) -> None:
    def copy(src: socket.socket, dst: socket.socket, rec: Listener | None) -> None:
        try:
            while data := src.recv(65536):
                if rec is not None:
                    rec.record(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=copy, args=(b, a, None), daemon=True)
    t.start()
    copy(a, b, record)
    t.join(30)
    with contextlib.suppress(OSError):
        b.close()


class Net:
    """The listeners of one scenario, the router, and the TLS material."""

    def __init__(self, tls_files: tuple[Path, Path, Path]) -> None:
        self.ca, cert, key = tls_files
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(str(cert), str(key))
        self._ctx.set_alpn_protocols(["http/1.1"])
        self.listeners: list[Listener] = []
        self._strays: dict[str, Listener] = {}
        self.router = Router(self)

    def add(
        self,
        name: str,
        behaviour: Behaviour | None = None,
        *,
        upstream: str | None = None,
        upstream_tls: bool = False,
        tls: bool = True,
    ) -> Listener:
        up = None
        if upstream is not None:
            host, _, port = upstream.rpartition(":")
            up = (host, int(port))
        lst = Listener(name, self._ctx if tls else None, behaviour, up, upstream_tls)
        self.listeners.append(lst)
        return lst

    def listener_at(self, host: str, port: int) -> Listener | None:
        for lst in self.listeners:
            if lst.name == host and lst.port == port:
                return lst
        return None

    def stray(self, name: str) -> Listener:
        if name not in self._strays:
            lst = Listener("stray:" + name, None, sink())
            lst.close()
            self._strays[name] = lst
        return self._strays[name]

    @property
    def names(self) -> list[str]:
        return sorted({lst.name for lst in self.listeners if not lst.name.startswith(("127.", "localhost"))})

    def all(self) -> Iterable[Listener]:
        yield from self.listeners
        yield self.router.listener
        yield from self._strays.values()

    def recipients(self, forms: Iterable[bytes]) -> set[str]:
        """The listeners that received any of these byte strings."""
        forms = [f for f in forms if f]
        return {lst.name for lst in self.all() if any(f in lst.received for f in forms)}

    def minted(self, pattern: bytes) -> set[bytes]:
        """Values servers handed out (tokens in answers), found by a regex with one group."""
        found: set[bytes] = set()
        for lst in self.all():
            found.update(m.group(1) for m in re.finditer(pattern, bytes(lst.answered)))
        return found

    def close(self) -> None:
        self.router.close()
        for lst in self.listeners:
            lst.close()


def forms(value: str, *, basic_with: str | None = None) -> list[bytes]:
    """The byte forms a credential can take on the wire: itself, and inside Basic."""
    out = [value.encode()]
    if basic_with is not None:
        out.append(base64.b64encode(basic_with.encode()))
    return out
