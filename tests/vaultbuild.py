"""Build and cache the HashiCorp Vault test server (tests/vaultserver), stdlib only.

`make test` starts this in the background before the virtual environment exists
(``python3 tests/vaultbuild.py --background``), so the minutes of compiling
Vault overlap with pip, the Go tests and the OpenBao tests; the test phase that
needs Vault then waits on the same lock file (``--wait`` or
:func:`ensure_vault_server_binary`).

The binary is cached outside the repository under ``$MSA_CACHE_DIR`` (default
``~/.cache/mlflow-secrets-auth``), named by a hash of the server's sources.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
VAULTSERVER_DIR = TESTS_DIR / "vaultserver"
VAULTSERVER_INPUTS = ("go.mod", "go.sum", "serve_test.go")


class BuildError(RuntimeError):
    """The Vault test server could not be built."""


def cache_dir() -> Path:
    """``$MSA_CACHE_DIR`` or ``~/.cache/mlflow-secrets-auth``."""
    env = os.environ.get("MSA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mlflow-secrets-auth"


def vault_server_binary_path() -> Path:
    """Cache path of the Vault test binary for the current vaultserver sources."""
    digest = hashlib.sha256()
    for name in VAULTSERVER_INPUTS:
        digest.update((VAULTSERVER_DIR / name).read_bytes())
    return cache_dir() / f"vaultserver-{digest.hexdigest()[:12]}.test"


def _go_executable() -> str:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    if fallback.exists():
        return str(fallback)
    raise BuildError("go toolchain not found (needed to build tests/vaultserver)")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<no log at {path}>"


def _ready(target: Path) -> bool:
    return target.is_file() and os.access(target, os.X_OK)


def ensure_vault_server_binary(build_timeout: float = 1800.0) -> Path:
    """Return the cached Vault test binary, building it with ``go test -c`` if missing.

    Concurrent callers (the background build, test sessions) are serialised
    with a lock file; the binary is written under a temporary name and renamed
    into place atomically. Build flags that keep it short: no ``-race``, no
    debug information (``-ldflags=-s -w``), ``-trimpath`` off so the build cache
    is shared, and ``GOFLAGS=-mod=readonly`` with the committed go.sum (no
    ``go mod tidy``, which would fetch every test dependency of Vault).
    """
    target = vault_server_binary_path()
    if _ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _ready(target):
                return target
            tmp_out = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            build_log = target.with_name(target.name + ".build.log")
            env = dict(os.environ, GOWORK="off", GOFLAGS="-mod=readonly")
            env.setdefault("CGO_ENABLED", "0")
            started = time.monotonic()
            with open(build_log, "wb") as log:
                try:
                    proc = subprocess.run(
                        [_go_executable(), "test", "-c", "-ldflags=-s -w", "-o", str(tmp_out), "."],
                        cwd=VAULTSERVER_DIR,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        timeout=build_timeout,
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    tmp_out.unlink(missing_ok=True)
                    raise BuildError(f"building the Vault test server timed out after {build_timeout:.0f}s") from exc
            if proc.returncode != 0 or not tmp_out.is_file():
                tmp_out.unlink(missing_ok=True)
                raise BuildError(
                    f"building the Vault test server failed (exit {proc.returncode}); "
                    f"log {build_log}:\n{_tail(build_log)}"
                )
            tmp_out.chmod(0o755)
            os.replace(tmp_out, target)
            with open(build_log, "a") as log:
                log.write(f"built in {time.monotonic() - started:.0f}s\n")
            return target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: list[str]) -> int:
    if "--background" in argv:
        target = vault_server_binary_path()
        if _ready(target):
            print(f"Vault test server: cached at {target}")
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        log = open(target.with_name(target.name + ".background.log"), "wb")
        subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(f"Vault test server: building in the background (log {target}.build.log)")
        return 0
    try:
        started = time.monotonic()
        path = ensure_vault_server_binary()
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    waited = time.monotonic() - started
    print(f"Vault test server: {path}" + (f" (waited {waited:.0f}s)" if waited >= 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
