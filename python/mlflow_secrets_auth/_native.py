"""Access to the Go core through a transport.

Today there is one transport, the shared library loaded in-process with cffi
(ABI mode, loaded on first use, never at import). The Transport protocol is
what the plugin uses, so another transport (for example a helper process for
children forked after the library was loaded, where the inherited Go runtime
must not be called) can be chosen per process without touching the plugin.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

ABI_VERSION = 1
LIBRARY_NAME = "libmlflow_secrets_auth.so"
LIBRARY_ENV = "MLFLOW_SECRETS_AUTH_LIBRARY"

Reply = dict[str, Any]


class NativeError(RuntimeError):
    """The native core could not be loaded or answered nonsense."""


class Transport(Protocol):
    def headers(self, host: str) -> Reply: ...
    def set_env(self, env: dict[str, str]) -> Reply: ...
    def info(self) -> Reply: ...
    def doctor(self, url: str) -> Reply: ...
    def invalidate(self) -> None: ...


def library_path() -> Path:
    override = os.environ.get(LIBRARY_ENV)
    return Path(override) if override else Path(__file__).with_name(LIBRARY_NAME)


class InProcess:
    """The Go core loaded into this process."""

    def __init__(self, path: Path) -> None:
        from mlflow_secrets_auth._ffi import ffi  # generated at build time

        try:
            self._lib: Any = ffi.dlopen(str(path))
        except OSError as exc:
            raise NativeError(f"cannot load {path}: {exc}") from exc
        abi = self._lib.MsaAbiVersion()
        if abi != ABI_VERSION:
            raise NativeError(f"{path} has ABI version {abi}, this package needs {ABI_VERSION}")
        self._ffi = ffi

    def _reply(self, ptr: Any) -> Reply:
        if ptr == self._ffi.NULL:
            raise NativeError("the native library returned no reply")
        try:
            raw: bytes = self._ffi.string(ptr)
        finally:
            self._lib.MsaFree(ptr)
        reply: Reply = json.loads(raw)
        return reply

    def headers(self, host: str) -> Reply:
        return self._reply(self._lib.GetAuthHeaders(host.encode()))

    def set_env(self, env: dict[str, str]) -> Reply:
        return self._reply(self._lib.MsaSetEnv(json.dumps(env).encode()))

    def info(self) -> Reply:
        return self._reply(self._lib.MsaInfo())

    def doctor(self, url: str) -> Reply:
        return self._reply(self._lib.MsaDoctor(url.encode()))

    def invalidate(self) -> None:
        self._lib.MsaInvalidate()


_lock = threading.Lock()
_transport: Transport | None = None
_pid = -1


def transport() -> Transport:
    """Return the transport for this process, loading it on first use."""
    global _transport, _pid
    t = _transport
    if t is not None and _pid == os.getpid():
        return t
    with _lock:
        pid = os.getpid()
        if _transport is None:
            _transport = InProcess(library_path())
            _pid = pid
        elif _pid != pid:
            # A forked child: the inherited Go runtime must not be called.
            raise NativeError(
                "this process was forked after the native library was loaded; "
                "the library cannot be used in a forked child"
            )
        return _transport
