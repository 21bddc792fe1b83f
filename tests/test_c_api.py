"""The C header and the shared library agree: a C program compiled against
include/ and linked with the built library gets the documented replies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import mlflow_secrets_auth
import pytest
from conftest import plugin_env

ROOT = Path(__file__).resolve().parent.parent
LIB_DIR = Path(mlflow_secrets_auth.__file__).parent


def compile_c(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("a C compiler (cc) is needed for the C API test")
    out = tmp_path_factory.mktemp("c") / name
    subprocess.run(
        [
            cc,
            "-Wall",
            "-Werror",
            "-I",
            str(ROOT / "include"),
            str(ROOT / "tests" / "c" / f"{name}.c"),
            "-L",
            str(LIB_DIR),
            "-lmlflow_secrets_auth",
            f"-Wl,-rpath,{LIB_DIR}",
            "-o",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory, "smoke")


def run(binary: Path, env: dict[str, str], host: str) -> dict[str, dict[str, object]]:
    out = subprocess.run([str(binary), host], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr == "", "the library wrote to stderr"
    replies: dict[str, dict[str, object]] = {}
    for line in out.stdout.splitlines():
        label, _, body = line.partition(" ")
        replies[label] = json.loads(body)
    return replies


def test_c_caller(smoke: Path, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str) -> None:
    vault_ready.kv_put("secret", secret_path, {"token": "c-caller-token"}, version=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
    env.update(
        plugin_env(
            vault_ready,
            "https://mlflow.test:5000",
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        )
    )
    r = run(smoke, env, "https://mlflow.test:5000/api")
    assert r["abi"] == 2
    # The process environment is used until MsaSetEnv replaces it.
    assert r["process-env"]["ok"] is True
    assert r["process-env"]["headers"] == {"Authorization": "Bearer c-caller-token"}
    assert r["process-env"]["provider"] == "vault"
    assert 0 < int(r["process-env"]["max_age_ms"]) <= 300_000  # type: ignore[call-overload]
    fingerprint = r["process-env"]["fingerprint"]
    assert isinstance(fingerprint, str) and len(fingerprint) == 64
    # MsaHeaders with an empty proxy and reject is the same call.
    assert r["msa-headers"]["headers"] == r["process-env"]["headers"]
    assert r["msa-headers"]["fingerprint"] == fingerprint
    # An https target through an http proxy is a CONNECT tunnel: allowed.
    assert r["msa-headers-proxy"]["fingerprint"] == fingerprint
    # A proxy that cannot be read is refused (fail closed).
    assert r["msa-headers-badproxy"]["ok"] is False
    assert r["msa-headers-badproxy"]["code"] == "host_not_allowed"
    assert "c-caller-token" not in json.dumps(r["msa-headers-badproxy"])
    assert r["msa-headers-bad"]["code"] == "internal"
    assert r["msa-headers-null"]["ok"] is False
    assert r["set-bad"]["ok"] is False
    assert r["set"] == {"ok": True, "timeout_ms": 10_000, "log_level": "INFO", "warnings": [], "process_env": []}
    assert r["unconfigured"]["code"] == "not_configured"
    assert r["unconfigured"]["variable"] == "VAULT_ADDR"
    assert r["null-host"]["code"] == "host_not_allowed"
    assert r["info"]["providers"][0]["name"] == "vault"  # type: ignore[index]
    assert r["info"]["warnings"] == [] and r["info"]["timeout_ms"] == 10_000
    assert r["doctor"]["warnings"] == []
    assert r["doctor"]["ok"] is False
    assert r["reset"]["ok"] is True and r["reset"]["timeout_ms"] == 10_000
    assert r["after-reset"]["headers"] == {"Authorization": "Bearer c-caller-token"}
    # The library releases its own pages unless the caller takes that on (MsaReleaseByCaller).
    assert "release" not in r["process-env"] and "release" not in r["after-reset"]
    if sys.platform.startswith("linux"):
        assert r["caller-releases"] == 1
        ranges = r["fetched"]["release"]
        assert isinstance(ranges, list) and ranges
        page = os.sysconf("SC_PAGE_SIZE")
        assert all(start % page == 0 and length > 0 and length % page == 0 for start, length in ranges)
        assert r["released"] == len(ranges)  # madvise accepted every range
    else:
        assert r["caller-releases"] == 0 and "release" not in r["fetched"] and r["released"] == -1
    assert r["fetched"]["headers"] == {"Authorization": "Bearer c-caller-token"}
    # The released code runs again (mapped back on use); a cached answer names nothing to release.
    assert r["after-release"]["headers"] == {"Authorization": "Bearer c-caller-token"}
    assert "release" not in r["after-release"]
    assert r["library-releases"] == r["caller-releases"]
    # A host that is not the tracking server gets nothing.
    denied = run(smoke, env, "https://evil.example")
    assert denied["process-env"]["code"] == "host_not_allowed"
    assert "c-caller-token" not in json.dumps(denied)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_c_caller_shares_its_core_with_a_forked_child(
    tmp_path_factory: pytest.TempPathFactory, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str
) -> None:
    """tests/c/share.c uses MsaShare as the header documents: the forked child,
    which never calls the library, is refused until it hands the parent's
    environment, then gets the parent's headers; a bad descriptor and a pipe
    are refused with -1."""
    binary = compile_c(tmp_path_factory, "share")
    vault_ready.kv_put("secret", secret_path, {"token": "c-share-token"}, version=1)
    path = f"secret/{secret_path}"
    handed = plugin_env(vault_ready, "https://mlflow.test:5000", VAULT_TOKEN=reader_token)
    handed["MLFLOW_VAULT_SECRET_PATH"] = path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
    out = subprocess.run(
        [str(binary), json.dumps(handed), "https://mlflow.test:5000/api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and out.stderr == "", out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["share-bad -1", "share-pipe -1"], lines
    assert "share 0" in lines and lines[-1] == "child-exit 0", lines
    replies = [json.loads(line.removeprefix("reply "))["reply"] for line in lines if line.startswith("reply ")]
    assert [r.get("code") for r in replies[:2]] == ["not_shared", "not_shared"], replies  # before set_env; another env
    assert replies[2]["ok"] is True and replies[2]["timeout_ms"] == 10_000, replies
    assert replies[3]["headers"] == {"Authorization": "Bearer c-share-token"}, replies
    assert "c-share-token" not in json.dumps(replies[:3])


def test_loading_the_library_runs_no_heavy_initialiser_of_ours() -> None:
    """Every process that loads the library runs every package initialiser in it, whichever provider it
    uses: ours compile no pattern and build no table there (they did: 77 kB of heap, 0.3-0.5 ms of the
    first headers). GODEBUG=inittrace=1 makes the Go runtime print each package's initialiser."""
    code = (
        "from mlflow_secrets_auth._ffi import ffi; import sys; "
        "lib = ffi.dlopen(sys.argv[1]); assert lib.MsaAbiVersion() > 0"
    )
    lib = LIB_DIR / "libmlflow_secrets_auth.so"
    env = dict(os.environ, GODEBUG="inittrace=1")
    out = subprocess.run([sys.executable, "-c", code, str(lib)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    ours: dict[str, int] = {}
    for line in out.stderr.splitlines():
        fields = line.split()  # init PACKAGE @T ms, C ms clock, B bytes, N allocs
        if len(fields) >= 9 and fields[0] == "init" and fields[1].startswith("github.com/mlflow-secrets-auth/"):
            ours[fields[1]] = int(fields[7])
    assert len(ours) >= 5, f"no initialiser of this module in the runtime's trace: {out.stderr[-2000:]}"
    heavy = {pkg: n for pkg, n in ours.items() if n > 8192}
    assert not heavy, f"package initialisers of ours allocating more than 8 kB at load: {heavy}"
