"""A loopback HTTP/1.x proxy that injects backend faults, for the resilience
tests and the resilience benchmark.

``FaultProxy(target)`` listens on 127.0.0.1 (``url``) and forwards to
``target`` ("host:port" or "http://host:port"). Faults, switchable at any time:

* ``latency`` (seconds): each request is held that long before it is
  forwarded;
* ``hang``: requests are accepted and read (and counted) but never forwarded
  nor answered; the connection stays open until the client gives up. A
  connection that hung stays hung.

Requests are counted by parsing the client-to-server byte stream with
``harness.HTTPRequestStream`` (request lines split across reads, several
requests in one read, bodies), never by matching single reads.
``request_lines`` holds "METHOD /path?query" of every request received, in
order; ``wait_for_requests`` waits on a condition, not a sleep.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from harness import LOCALHOST, HarnessError, HTTPRequestStream


class FaultProxy:
    def __init__(self, target: str) -> None:
        target = target.split("://", 1)[-1].rstrip("/")
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self.latency = 0.0
        self.hang = False
        self._cond = threading.Condition()
        self.request_lines: list[str] = []
        self.open_connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOCALHOST, 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._closed = False
        self._clients: set[socket.socket] = set()
        threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._cond:
            clients = list(self._clients)
        for c in clients:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    # -- counting ------------------------------------------------------------ #

    def count(self, path_prefix: str = "") -> int:
        """Requests received whose path starts with ``path_prefix`` (all by default)."""
        with self._cond:
            return sum(1 for line in self.request_lines if line.split(" ", 1)[1].startswith(path_prefix))

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Wait until ``predicate`` (re-checked whenever a request arrives) holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
                self._cond.wait(min(left, 0.5))

    # -- serving ------------------------------------------------------------- #

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._cond:
            self.open_connections += 1
            self._clients.add(client)
        stream = HTTPRequestStream()
        upstream: socket.socket | None = None
        hung = False
        try:
            while data := client.recv(65536):
                lines = stream.feed(data)
                if lines:
                    with self._cond:
                        self.request_lines.extend(lines)
                        self._cond.notify_all()
                hung = hung or self.hang
                if hung:
                    continue  # read and count, never forward nor answer
                if lines and self.latency:
                    time.sleep(self.latency)
                if upstream is None:
                    upstream = socket.create_connection(self._target, timeout=10)
                    upstream.settimeout(None)
                    threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        s.close()
            with self._cond:
                self.open_connections -= 1
                self._clients.discard(client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)
