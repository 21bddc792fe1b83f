"""Every wheel `make wheels` builds (packaging/build_wheels.py), checked file by
file: tags and auditwheel for manylinux, stripped binaries, the Go core
answering through each transport that can run here (natively, under Debian's
qemu-user for aarch64, under wine for Windows), Mach-O structure for macOS,
reproducible archives, `twine check`.

The wheels come from MSA_WHEELS_DIR when `make test` has just built them
(`make wheels`), otherwise this module builds them once into a temporary
directory (the Go build cache is shared, so only links are repeated).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import build_wheels  # noqa: E402

PKG = "mlflow_secrets_auth"
API = [
    "GetAuthHeaders",
    "MsaHeaders",
    "MsaSetEnv",
    "MsaInfo",
    "MsaDoctor",
    "MsaInvalidate",
    "MsaAbiVersion",
    "MsaFree",
    "MsaServe",
    "MsaShare",
]
ABI = int(
    re.search(r"#define MSA_ABI_VERSION (\d+)", (ROOT / "include" / "mlflow_secrets_auth.h").read_text()).group(1)
)
# A Go binary carries its build information behind this marker (debug/buildinfo).
GO_BUILDINFO = b"\xff Go buildinf:"
BUDGET = ROOT / "packaging" / "size-budget.json"
# The launcher's exit statuses (packaging/launcher/launcher.c).
EXIT_LOAD, EXIT_SYMBOL, EXIT_ABI, EXIT_SERVE = 3, 4, 5, 6
TARGETS = {t.key: t for t in build_wheels.TARGETS}
SYSTEM_HINT = "install the test system packages with `make system-deps`"
# What the helper must answer, with no server: an ABI check, "not enabled"
# from an empty environment, then a host the configuration does not allow.
ROUND_TRIP = [
    {"op": "abi"},
    {"op": "headers", "arg": "https://mlflow.example.com"},
    {
        "op": "set_env",
        "env": {
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
            "VAULT_ADDR": "http://127.0.0.1:9",
            "VAULT_TOKEN": "not-a-real-token",
            "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow",
        },
    },
    {"op": "headers", "arg": "https://elsewhere.example.com"},
]


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("MSA_WHEELS_DIR")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, str(ROOT / "packaging" / "build_wheels.py"), "--out", str(out)], check=True)
    return out


def wheel_for(wheel_dir: Path, key: str) -> Path:
    found = sorted(wheel_dir.glob(f"{PKG}-*-py3-none-{TARGETS[key].plat}.whl"))
    assert len(found) == 1, f"expected one {TARGETS[key].plat} wheel in {wheel_dir}, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def unpacked(wheel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each wheel extracted, with the exec bits the archive records."""
    dirs: dict[str, Path] = {}
    for key in TARGETS:
        dest = tmp_path_factory.mktemp(key)
        with zipfile.ZipFile(wheel_for(wheel_dir, key)) as zf:
            for info in zf.infolist():
                path = Path(zf.extract(info, dest))
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    path.chmod(mode)
        dirs[key] = dest / PKG
    return dirs


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: {SYSTEM_HINT}"
    return path


def output(cmd: list[str], **kwargs: object) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return str(proc.stdout)


def round_trip(cmd: list[str], env: dict[str, str] | None = None) -> list[dict[str, object]]:
    """The helper's protocol, one request at a time (it serves requests
    concurrently, and set_env must land before the next headers)."""
    # A minimal environment: the helper reads MLFLOW_*/VAULT_* from it.
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base
    )
    assert proc.stdin and proc.stdout and proc.stderr
    watchdog = threading.Timer(600, proc.kill)  # a helper that never answers fails the test
    watchdog.start()
    replies: list[dict[str, object]] = []
    try:
        for number, request in enumerate(ROUND_TRIP, 1):
            proc.stdin.write(json.dumps({"id": number, **request}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                proc.kill()
                raise AssertionError(f"{cmd}: no reply to {request['op']}: {proc.stderr.read()[-3000:]}")
            envelope = json.loads(line)
            assert envelope["id"] == number, envelope
            replies.append(envelope["reply"])
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return replies


def assert_round_trip(replies: list[dict[str, object]]) -> None:
    assert len(replies) == len(ROUND_TRIP), replies
    assert replies[0] == {"ok": True, "abi": ABI}
    assert replies[1]["ok"] is False and replies[1]["code"] == "not_enabled", replies[1]
    assert replies[1]["variable"] == "MLFLOW_SECRETS_AUTH_ENABLE"
    assert replies[2]["ok"] is True and replies[2]["timeout_ms"] == 10_000, replies[2]  # set_env's reply
    assert replies[3]["ok"] is False and replies[3]["code"] == "host_not_allowed", replies[3]
    assert "elsewhere.example.com" in str(replies[3]["message"])


# ---------------------------------------------------------------- every wheel


def test_one_wheel_per_platform_and_nothing_else(wheel_dir: Path) -> None:
    names = sorted(p.name for p in wheel_dir.glob("*.whl"))
    version = build_wheels.version()
    assert names == sorted(f"{PKG}-{version}-py3-none-{t.plat}.whl" for t in build_wheels.TARGETS)


@pytest.mark.parametrize("key", list(TARGETS))
def test_wheel_layout(wheel_dir: Path, key: str) -> None:
    t = TARGETS[key]
    wheel = wheel_for(wheel_dir, key)
    with zipfile.ZipFile(wheel) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        dist_info = next(n.split("/")[0] for n in infos if n.endswith(".dist-info/WHEEL"))
        wheel_meta = zf.read(f"{dist_info}/WHEEL").decode()
        license_text = zf.read(f"{dist_info}/licenses/LICENSE").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    # At the root (platlib): auditwheel and installers treat it as a platform wheel.
    assert "Root-Is-Purelib: false" in wheel_meta
    assert f"Tag: py3-none-{t.plat.split('.')[0]}" in wheel_meta
    assert not any(".data/" in n for n in infos), "files outside the package root"
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "License-Expression: Apache-2.0" in metadata

    binaries = {n.rsplit("/", 1)[1] for n in infos if n.startswith(f"{PKG}/") and not n.endswith((".py", ".typed"))}
    expected = {t.helper} | ({t.library} if t.library else set())
    assert binaries == expected, f"{wheel.name}: {binaries}"
    for name in expected:
        mode = (infos[f"{PKG}/{name}"].external_attr >> 16) & 0o111
        assert mode, f"{name} is not executable in {wheel.name}"
        # One Go binary per wheel: the library where there is one (the helper is
        # then the small C launcher over it), else the static Go helper.
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(f"{PKG}/{name}")
        is_go = GO_BUILDINFO in data
        assert is_go == (name == (t.library or t.helper)), f"{wheel.name}: {name} is_go={is_go}"
        if name == t.helper and t.library:
            assert len(data) < 128 * 1024, f"{wheel.name}: the launcher is {len(data)} bytes"
    assert f"{PKG}/_ffi.py" in infos and f"{PKG}/provider.py" in infos


def test_size_budget(wheel_dir: Path) -> None:
    """packaging/size-budget.json: every target has a budget, and no binary nor
    a wheel's installed size (the sum of its files) exceeds it by more than the
    tolerance (3%). A new backend fits inside, or raises the budget on purpose."""
    budget = json.loads(BUDGET.read_text())
    tolerance = float(budget["tolerance"])
    over: list[str] = []
    measured: dict[str, dict[str, int]] = {}
    for key, t in TARGETS.items():
        with zipfile.ZipFile(wheel_for(wheel_dir, key)) as zf:
            sizes = {i.filename.rsplit("/", 1)[-1]: i.file_size for i in zf.infolist()}
            installed = sum(i.file_size for i in zf.infolist())
        measured[key] = {name: sizes[name] for name in filter(None, [t.library, t.helper])}
        measured[key]["installed"] = installed
        entry = budget["targets"].get(key)
        if entry is None:
            over.append(f"{key}: no budget in {BUDGET.name}")
            continue
        assert set(entry["files"]) == set(filter(None, [t.library, t.helper])), (key, entry["files"])
        for name, limit in [*entry["files"].items(), ("installed", entry["installed"])]:
            if measured[key][name] > limit * (1 + tolerance):
                over.append(f"{key} {name}: {measured[key][name]:,} bytes > {limit:,} + {tolerance:.0%}")
    assert not over, f"over the size budget: {over}; measured: {json.dumps(measured)}"


def test_manylinux_x86_64_installs_in_14_mib(wheel_dir: Path) -> None:
    with zipfile.ZipFile(wheel_for(wheel_dir, "manylinux_x86_64")) as zf:
        installed = sum(i.file_size for i in zf.infolist())
    assert installed <= 14 * 2**20, f"{installed / 2**20:.2f} MiB"


def test_archives_are_reproducible(wheel_dir: Path, tmp_path: Path) -> None:
    """Fixed zip dates (SOURCE_DATE_EPOCH) in every wheel, and three wheels built
    again byte for byte: Go alone (musllinux), Go + zig's ELF linker (manylinux)
    and Go + zig's PE linker with the stamps fixed (Windows). Not macOS: zig's
    Mach-O linker leaves uninitialised padding in __LINKEDIT (see README)."""
    epoch = int(build_wheels.source_date_epoch())
    # Zip stores seconds in steps of 2 (rounded down): a commit at an odd second reads back one less.
    expected = datetime.fromtimestamp(max(epoch, 315532800) // 2 * 2, tz=timezone.utc).timetuple()[:6]
    for wheel in wheel_dir.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            dates = {i.date_time for i in zf.infolist()}
        assert dates == {expected}, f"{wheel.name}: {dates}"
    again = tmp_path / "again"
    keys = ["musllinux_x86_64", "manylinux_x86_64", "win_amd64"]
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    script = str(ROOT / "packaging" / "build_wheels.py")
    subprocess.run([sys.executable, script, "--only", ",".join(keys), "--out", str(again)], check=True, env=env)
    for key in keys:
        first, second = wheel_for(wheel_dir, key), wheel_for(again, key)
        assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest(), key


def test_twine_check(wheel_dir: Path) -> None:
    out = output([sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(wheel_dir.glob("*.whl")))])
    assert out.count("PASSED") == len(TARGETS), out


# ---------------------------------------------------------------- Linux


@pytest.mark.parametrize("key", ["manylinux_x86_64", "manylinux_aarch64"])
def test_auditwheel_accepts_manylinux_2_17(wheel_dir: Path, key: str) -> None:
    arch = key.split("_", 1)[1]
    out = " ".join(output([sys.executable, "-m", "auditwheel", "show", str(wheel_for(wheel_dir, key))]).split())
    tag = re.search(r'is consistent with the following platform tag: "manylinux_2_(\d+)_' + arch + '"', out)
    assert tag, out
    assert int(tag.group(1)) <= 17, f"needs a newer glibc than 2.17: {out}"
    assert "The wheel requires no external shared libraries!" in out, out
    # Only glibc's own libraries, at glibc 2.17 symbol versions or older.
    system = re.search(r"system-provided shared libraries: (.*?) The wheel requires", out)
    assert system, out
    libs = dict(re.findall(r"(lib[\w.+-]+\.so\.\d+) with versions \{([^}]*)\}", system.group(1)))
    assert set(libs) == {"libc.so.6", "libpthread.so.0", "libresolv.so.2", "libdl.so.2"}, libs
    for versions in libs.values():
        for minor in re.findall(r"GLIBC_2\.(\d+)", versions):
            assert int(minor) <= 17, libs


@pytest.mark.parametrize(
    ("key", "machine"),
    [
        ("manylinux_x86_64", "X86-64"),
        ("manylinux_aarch64", "AArch64"),
        ("musllinux_x86_64", "X86-64"),
        ("musllinux_aarch64", "AArch64"),
    ],
)
def test_elf_binaries_stripped(unpacked: dict[str, Path], key: str, machine: str) -> None:
    t = TARGETS[key]
    for name in filter(None, [t.library, t.helper]):
        path = unpacked[key] / name
        header = output([tool("readelf"), "-h", str(path)])
        assert re.search(rf"Machine:\s+.*{machine}", header), header
        sections = output([tool("readelf"), "-S", "-W", str(path)])
        assert ".debug_" not in sections and ".zdebug_" not in sections, f"{name}: debug sections left"
        assert ".symtab" not in sections, f"{name}: symbol table not stripped"
        if name == t.helper and not t.library:  # the static Go helper: runs on glibc and musl alike
            assert "INTERP" not in output([tool("readelf"), "-l", "-W", str(path)]), f"{name} is not static"
        elif name == t.helper:  # the launcher: glibc's libc and libdl only
            needed = set(re.findall(r"Shared library: \[(\S+)\]", output([tool("readelf"), "-d", "-W", str(path)])))
            assert needed <= {"libc.so.6", "libdl.so.2"}, needed
        else:
            dynsyms = output([tool("readelf"), "--dyn-syms", "-W", str(path)])
            for fn in API:
                assert re.search(rf"FUNC\s+GLOBAL\s+DEFAULT\s+\d+\s+{fn}$", dynsyms, re.M), fn


def compile_loader(tmp_path: Path, zig_target: str, suffix: str = "") -> Path:
    loader = tmp_path / f"loader-{zig_target}{suffix}"
    source = ROOT / "packaging" / "loader" / "loader.c"
    zig = [*build_wheels.zig_cc(zig_target), "-O2", f"-I{ROOT / 'include'}"]
    libs = [] if "windows" in zig_target else ["-ldl"]
    subprocess.run([*zig, "-o", str(loader), str(source), *libs], check=True, capture_output=True, timeout=600)
    return loader


def assert_loader_output(out: str) -> None:
    lines = out.splitlines()
    assert lines[0] == f"abi {ABI}", out
    replies = [json.loads(line.split(" ", 1)[1]) for line in lines[1:]]
    assert [r["code"] for r in replies] == ["not_enabled", "host_not_allowed"], replies
    assert "elsewhere.example.com" in replies[1]["message"]


LOADER_ENV = {
    "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
    "VAULT_ADDR": "http://127.0.0.1:9",
    "VAULT_TOKEN": "not-a-real-token",
    "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow",
}


def run_loader(prefix: list[str], loader: Path, library: Path, extra_env: dict[str, str] | None = None) -> None:
    # First not enabled (no MLFLOW_SECRETS_AUTH_ENABLE), then enabled for another host.
    env1 = dict(LOADER_ENV, **(extra_env or {}))
    out1 = output([*prefix, str(loader), str(library), "https://mlflow.example.com"], env=env1)
    env2 = dict(env1, MLFLOW_SECRETS_AUTH_ENABLE="vault")
    out2 = output([*prefix, str(loader), str(library), "https://elsewhere.example.com"], env=env2)
    assert_loader_output(out1 + out2.split("\n", 1)[1])


def test_manylinux_x86_64_runs_here(unpacked: dict[str, Path], tmp_path: Path) -> None:
    pkg = unpacked["manylinux_x86_64"]
    assert_round_trip(round_trip([str(pkg / "msa-helper")]))
    run_loader([], compile_loader(tmp_path, "x86_64-linux-gnu.2.17"), pkg / "libmlflow_secrets_auth.so")


def launcher_fails(cmd: list[str], code: int, text: str, env: dict[str, str] | None = None) -> str:
    """The launcher exits with `code` and one stderr line containing `text`,
    with stdin left open: a launcher that waited for input would time out."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base)
    try:
        out, err = _wait_open_stdin(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode(errors="replace").splitlines()
    assert proc.returncode == code, (cmd, proc.returncode, lines)
    assert out == b"", f"{cmd}: the launcher wrote to stdout: {out[:200]!r}"
    assert len(lines) == 1 and lines[0].startswith("msa-helper: ") and text in lines[0], lines
    return lines[0]


def _wait_open_stdin(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    assert proc.stdout and proc.stderr
    try:
        proc.wait(timeout=120)  # stdin stays open: no EOF to end a launcher that reads it
    except subprocess.TimeoutExpired:
        raise AssertionError("the launcher hung instead of failing") from None
    return proc.stdout.read(), proc.stderr.read()


def compile_so(tmp_path: Path, zig_target: str, name: str, source: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"{name}.so"
    zig = [*build_wheels.zig_cc(zig_target), "-shared", "-fPIC", "-o", str(out), str(src)]
    subprocess.run(zig, check=True, capture_output=True, timeout=600)
    return out


def test_launcher_fails_clearly(unpacked: dict[str, Path], tmp_path: Path) -> None:
    """Each way the launcher cannot serve gives its own exit status and one
    line on stderr, at once (stdin stays open), and nothing on stdout."""
    pkg = unpacked["manylinux_x86_64"]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(pkg / "msa-helper", alone / "msa-helper")
    # Nothing next to it: the library it looks for by default is missing.
    launcher_fails([str(alone / "msa-helper")], EXIT_LOAD, f"cannot load the library {alone}/libmlflow_secrets_auth.so")
    # A path given that does not exist.
    missing = "/nonexistent/libmlflow_secrets_auth.so"
    launcher_fails([str(pkg / "msa-helper"), "--library", missing], EXIT_LOAD, f"{missing}: cannot open")
    # Not a library at all.
    launcher_fails(
        [str(pkg / "msa-helper"), "--library", str(pkg / "msa-helper")], EXIT_LOAD, "cannot load the library"
    )
    # A library, but not ours; and ours from another ABI.
    other = compile_so(tmp_path, "x86_64-linux-gnu.2.17", "other", "int other(void) { return 1; }\n")
    launcher_fails([str(pkg / "msa-helper"), "--library", str(other)], EXIT_SYMBOL, "has no MsaAbiVersion or MsaServe")
    old = compile_so(
        tmp_path,
        "x86_64-linux-gnu.2.17",
        "old",
        f"int MsaAbiVersion(void) {{ return {ABI + 1}; }}\nint MsaServe(int i, int o) {{ for (;;); }}\n",
    )
    launcher_fails(
        [str(pkg / "msa-helper"), "--library", str(old)],
        EXIT_ABI,
        f"is of ABI version {ABI + 1}; this msa-helper needs {ABI}",
    )
    # No stdin to serve on.
    launcher_fails(["sh", "-c", 'exec "$0" <&-', str(pkg / "msa-helper")], EXIT_SERVE, "stdin is not open")
    launcher_fails([str(pkg / "msa-helper"), "--bogus"], 2, "usage: msa-helper [--library PATH]")
    # --library names the library; MLFLOW_SECRETS_AUTH_LIBRARY (the Python layer's
    # in-process choice, which falls back to this helper when it fails) is not read.
    assert_round_trip(round_trip([str(alone / "msa-helper"), "--library", str(pkg / LIB_SO)]))
    broken = {"MLFLOW_SECRETS_AUTH_LIBRARY": "/nonexistent/libmlflow_secrets_auth.so"}
    assert_round_trip(round_trip([str(pkg / "msa-helper")], broken))


LIB_SO = "libmlflow_secrets_auth.so"


def test_python_layer_with_a_broken_library_fails_fast(unpacked: dict[str, Path], tmp_path: Path) -> None:
    """The package as installed, with a helper whose library is missing (a copy
    of the launcher alone): the launcher exits at once, and the call fails with
    the helper named (no hang, no request without credentials)."""
    site = unpacked["manylinux_x86_64"].parent
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(unpacked["manylinux_x86_64"] / "msa-helper", alone / "msa-helper")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from mlflow_secrets_auth import _native;"
        "t = _native.transport();"
        "t.headers('https://mlflow.internal:5000')"
    )
    env = dict(
        os.environ,
        MLFLOW_SECRETS_AUTH_ENABLE="vault",
        MLFLOW_SECRETS_AUTH_TRANSPORT="helper",
        MLFLOW_SECRETS_AUTH_HELPER=str(alone / "msa-helper"),
        **LOADER_ENV,
    )
    proc = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0, proc.stdout
    assert "NativeError" in proc.stderr and "msa-helper" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("key", "transport"),
    [
        ("manylinux_x86_64", "in-process library"),
        ("musllinux_x86_64", "helper process (no libmlflow_secrets_auth.so in this build)"),
    ],
)
def test_python_layer_uses_the_wheel(unpacked: dict[str, Path], tmp_path: Path, key: str, transport: str) -> None:
    """The package as installed from the wheel (its directory first on sys.path)
    reaches the Go core it carries: the library in-process, or the helper when
    the wheel has no library."""
    site = unpacked[key].parent
    code = (
        "import sys; import mlflow_secrets_auth as m;"
        "assert m.__file__.startswith(sys.argv[1]), m.__file__;"
        "from mlflow_secrets_auth.cli import main; sys.argv[1:] = ['info', '--json']; sys.exit(main())"
    )
    # On PYTHONPATH, not sys.path.insert: the installed start-up file (the OTLP
    # default) imports the package before any code of ours runs.
    env = dict(os.environ, MLFLOW_SECRETS_AUTH_ENABLE="vault", PYTHONPATH=str(site), **LOADER_ENV)
    env.pop("MLFLOW_SECRETS_AUTH_LIBRARY", None)
    env.pop("MLFLOW_SECRETS_AUTH_TRANSPORT", None)
    info = json.loads(output([sys.executable, "-c", code, str(site)], env=env, cwd=tmp_path))
    assert info["transport"] == transport, info
    assert info["abi"] == ABI and info["version"] == build_wheels.version(), info


def arm64_sysroot() -> str:
    # Debian's libc6:arm64 (multiarch) puts the arm64 loader and libc under /.
    assert Path("/lib/ld-linux-aarch64.so.1").exists(), f"no arm64 libc (libc6:arm64): {SYSTEM_HINT}"
    return "/"


def test_manylinux_aarch64_under_qemu(unpacked: dict[str, Path], tmp_path: Path) -> None:
    qemu = tool("qemu-aarch64")
    pkg = unpacked["manylinux_aarch64"]
    # The launcher is dynamic (glibc): qemu-user finds Debian's arm64 libc under -L.
    assert_round_trip(round_trip([qemu, "-L", arm64_sysroot(), str(pkg / "msa-helper")]))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(pkg / "msa-helper", alone / "msa-helper")
    launcher_fails([qemu, "-L", arm64_sysroot(), str(alone / "msa-helper")], EXIT_LOAD, "cannot load the library")
    loader = compile_loader(tmp_path, "aarch64-linux-gnu.2.17")
    run_loader([qemu, "-L", arm64_sysroot()], loader, pkg / "libmlflow_secrets_auth.so")


def test_musllinux_helpers_answer(unpacked: dict[str, Path]) -> None:
    assert_round_trip(round_trip([str(unpacked["musllinux_x86_64"] / "msa-helper")]))
    assert_round_trip(round_trip([tool("qemu-aarch64"), str(unpacked["musllinux_aarch64"] / "msa-helper")]))


# ---------------------------------------------------------------- macOS

MACOS_LIBS = {
    "/usr/lib/libSystem.B.dylib",
    "/usr/lib/libresolv.9.dylib",
    "/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation",
    "/System/Library/Frameworks/Security.framework/Versions/A/Security",
}


def stub_symbols() -> dict[str, set[str]]:
    """Symbols each .tbd stub in packaging/macos-sdk declares, by short library name."""
    found: dict[str, set[str]] = {}
    for tbd in (ROOT / "packaging" / "macos-sdk").rglob("*.tbd"):
        text = tbd.read_text()
        name = tbd.stem.removeprefix("lib")
        found[name] = set(re.findall(r"_[A-Za-z0-9_]+", text.split("symbols:", 1)[1]))
    return found


def macho(path: Path) -> tuple[str, str, list[str], str]:
    objdump = tool("llvm-objdump")
    header = output([objdump, "--macho", "--private-header", str(path)]).splitlines()[-1].split()
    cputype, filetype = header[1], header[4]
    used = output([objdump, "--macho", "--dylibs-used", str(path)]).splitlines()[1:]
    dylibs = [line.strip().split(" (compatibility")[0] for line in used]
    return cputype, filetype, dylibs, output([objdump, "--macho", "--private-headers", str(path)])


def imports_by_library(path: Path) -> dict[str, set[str]]:
    out = output([tool("llvm-objdump"), "--macho", "--bind", "--lazy-bind", str(path)])
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].startswith("_") and parts[0].startswith("__"):
            found.setdefault(parts[-2], set()).add(parts[-1])
    return found


@pytest.mark.parametrize(("key", "cputype"), [("macos_arm64", "ARM64"), ("macos_x86_64", "X86_64")])
def test_macos_mach_o(unpacked: dict[str, Path], key: str, cputype: str) -> None:
    pkg = unpacked[key]
    lib_cpu, lib_type, lib_dylibs, lib_cmds = macho(pkg / "libmlflow_secrets_auth.dylib")
    exe_cpu, exe_type, exe_dylibs, exe_cmds = macho(pkg / "msa-helper")
    assert (lib_cpu, lib_type) == (cputype, "DYLIB")
    assert (exe_cpu, exe_type) == (cputype, "EXECUTE")
    # The library's own id, then only system libraries at their real paths.
    assert lib_dylibs[0] == "libmlflow_secrets_auth.dylib" and set(lib_dylibs[1:]) == MACOS_LIBS, lib_dylibs
    # The launcher (C, zig) needs libSystem only: dlopen, dyld's _NSGetExecutablePath, stdio.
    assert set(exe_dylibs) == {"/usr/lib/libSystem.B.dylib"}, exe_dylibs
    for cmds in (lib_cmds, exe_cmds):
        assert re.search(r"cmd LC_BUILD_VERSION\n.*\n\s+platform macos\n.*\n\s+minos 12\.0", cmds), cmds[:400]
        if cputype == "ARM64":  # arm64 macOS runs signed code only (the linkers sign ad hoc)
            assert "LC_CODE_SIGNATURE" in cmds
        assert "LC_RPATH" not in cmds
        assert "__debug_" not in cmds and "__DWARF" not in cmds
    exported = output([tool("llvm-nm"), "-g", "--defined-only", str(pkg / "libmlflow_secrets_auth.dylib")])
    for fn in API:
        assert re.search(rf" T _{fn}$", exported, re.M), fn
    exe_undefined = set(output([tool("llvm-nm"), "-u", str(pkg / "msa-helper")]).split())
    assert {"_dlopen", "_dlsym", "__NSGetExecutablePath"} <= exe_undefined, exe_undefined

    # The library binds each framework symbol to the framework that declares
    # it, and only symbols the stubs declare (which list exactly what Go's
    # standard library imports by name: the next test).
    stubs = stub_symbols()
    lib_imports = imports_by_library(pkg / "libmlflow_secrets_auth.dylib")
    for short, stub in (("CoreFoundation", "CoreFoundation"), ("Security", "Security"), ("libresolv", "resolv")):
        bound = lib_imports.get(short, set())
        # With cgo, net resolves through libSystem: libresolv may bind nothing.
        assert bound or short == "libresolv", f"nothing bound to {short}"
        assert bound <= stubs[stub], (short, bound - stubs[stub])
    for other in set(lib_imports) - {"CoreFoundation", "Security", "libresolv", "libSystem"}:
        raise AssertionError(f"symbols bound to an unexpected library {other}: {lib_imports[other]}")


def test_macos_stubs_declare_only_what_go_imports() -> None:
    """packaging/macos-sdk/*.tbd list exactly the functions the installed Go's
    standard library imports by name from CoreFoundation, Security and libresolv
    (its //go:cgo_import_dynamic lines): no more, no fewer."""
    goroot = output([build_wheels.go_exe(), "env", "GOROOT"]).strip()
    wanted: dict[str, set[str]] = {"CoreFoundation": set(), "Security": set(), "resolv": set()}
    for src in (Path(goroot) / "src").glob("**/*.go"):
        if src.name.endswith("_test.go") or "/cmd/" in str(src) or "testdata" in src.parts or not src.is_file():
            continue
        text = src.read_text(errors="replace")
        if "cgo_import_dynamic" not in text:
            continue
        for symbol, lib in re.findall(r'^//go:cgo_import_dynamic \w+ (\w+) "([^"]+)"', text, re.M):
            for short in wanted:
                if f"/{short}." in lib or f"/lib{short}." in lib:
                    wanted[short].add("_" + symbol)
    assert wanted == stub_symbols()


# ---------------------------------------------------------------- Windows

WINDOWS_SYSTEM_DLLS = {
    "kernel32.dll",
    "msvcrt.dll",
    "ws2_32.dll",
    "advapi32.dll",
    "ntdll.dll",
    "winmm.dll",
    "bcrypt.dll",
    "crypt32.dll",
    "user32.dll",
    "shell32.dll",
    "ole32.dll",
    "secur32.dll",
    "iphlpapi.dll",
    "dnsapi.dll",
    "userenv.dll",
    "powrprof.dll",
    "netapi32.dll",
}


def windows_system_dll(name: str) -> bool:
    # The Universal CRT (zig's windows-gnu target) comes with Windows 10 and later.
    return name in WINDOWS_SYSTEM_DLLS or re.fullmatch(r"api-ms-win-crt-[a-z]+-l1-1-0\.dll", name) is not None


def pe(path: Path) -> tuple[str, set[str], str]:
    objdump = tool("llvm-objdump")
    fmt = output([objdump, "-f", str(path)])
    private = output([objdump, "-p", str(path)])
    dlls = {m.lower() for m in re.findall(r"DLL Name: (\S+)", private)}
    return fmt, dlls, private


def test_windows_pe(unpacked: dict[str, Path]) -> None:
    pkg = unpacked["win_amd64"]
    fmt, dlls, private = pe(pkg / "mlflow_secrets_auth.dll")
    assert "file format coff-x86-64" in fmt or "file format pe-x86-64" in fmt, fmt
    assert dlls and all(map(windows_system_dll, dlls)), dlls
    exports = re.search(r"Export Table:(.*?)(\n\n|\Z)", private, re.S)
    assert exports, private[:2000]
    for fn in API:
        assert re.search(rf"\b{fn}\b", exports.group(1)), fn
    exe_fmt, exe_dlls, _ = pe(pkg / "msa-helper.exe")
    assert "x86-64" in exe_fmt and exe_dlls and all(map(windows_system_dll, exe_dlls)), exe_dlls
    for name in ("mlflow_secrets_auth.dll", "msa-helper.exe"):
        sections = output([tool("llvm-objdump"), "-h", str(pkg / name)])
        assert ".debug_" not in sections, f"{name}: debug sections left"


def wine() -> list[str] | None:
    for candidate in ("wine64", "wine", "/usr/lib/wine/wine64"):
        found = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if found:
            return [found]
    return None


@pytest.fixture(scope="module")
def wine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A throw-away wine prefix. Debian's wine 8.0 has no bcryptprimitives.dll,
    where Go 1.24+ takes its random bytes (ProcessPrng); a stand-in built from
    packaging/wine/bcryptprimitives.c goes into this prefix's system32 only."""
    cmd = wine()
    assert cmd, f"wine (Debian wine64) not found: {SYSTEM_HINT}"
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {"WINEPREFIX": str(prefix), "WINEDEBUG": "-all", "HOME": str(prefix), "WINEARCH": "win64"}
    full = dict(os.environ, **env)
    subprocess.run([*cmd, "wineboot", "--init"], env=full, capture_output=True, timeout=300, check=True)
    system32 = prefix / "drive_c" / "windows" / "system32"
    assert system32.is_dir(), f"wineboot made no {system32}"
    zig = [*build_wheels.zig_cc("x86_64-windows-gnu"), "-O2"]
    shim = ROOT / "packaging" / "wine" / "bcryptprimitives.c"
    subprocess.run([*zig, "-shared", "-o", str(system32 / "bcryptprimitives.dll"), str(shim)], check=True, timeout=600)
    yield env
    server = shutil.which("wineserver") or "/usr/lib/wine/wineserver64"
    subprocess.run([server, "-k"], env=full, capture_output=True, timeout=60)


def test_windows_helper_under_wine(unpacked: dict[str, Path], wine_env: dict[str, str], tmp_path: Path) -> None:
    """The launcher .exe loads the DLL next to it and serves on its standard
    handles; without the DLL it fails at once with its message."""
    cmd = wine()
    assert cmd
    assert_round_trip(round_trip([*cmd, str(unpacked["win_amd64"] / "msa-helper.exe")], env=wine_env))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(unpacked["win_amd64"] / "msa-helper.exe", alone / "msa-helper.exe")
    launcher_fails([*cmd, str(alone / "msa-helper.exe")], EXIT_LOAD, "mlflow_secrets_auth.dll: error 126", wine_env)


def test_windows_library_under_wine(unpacked: dict[str, Path], wine_env: dict[str, str], tmp_path: Path) -> None:
    cmd = wine()
    assert cmd
    loader = compile_loader(tmp_path, "x86_64-windows-gnu", ".exe")
    path = os.environ.get("PATH", "/usr/bin:/bin")
    run_loader([*cmd], loader, unpacked["win_amd64"] / "mlflow_secrets_auth.dll", dict(wine_env, PATH=path))
