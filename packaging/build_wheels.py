"""Build every wheel of mlflow-secrets-auth into dist/ from this Linux machine.

    python packaging/build_wheels.py [--out dist] [--only manylinux_x86_64,win_amd64,...]

Toolchains come only from package registries: Go (go.dev / the module proxy),
zig from PyPI (``ziglang``, run from a fixed copy: see zig_home) as cgo's C
compiler and the launcher's compiler for every target, Debian's llvm for stripping.

A wheel carries one Go binary. Where a Go shared library can be loaded
(manylinux, macOS, Windows) that is the library, and ``msa-helper`` is the
small C launcher (packaging/launcher/launcher.c) that serves the helper
protocol from it through ``MsaServe``; musllinux wheels carry the static Go
``msa-helper`` alone. Each target's binaries are built once, stripped, checked
for debug sections, staged with the Python package in a temporary copy of the
project, and turned into a wheel by the project's own PEP 517 backend
(``MSA_PREBUILT=1``, ``MSA_PLAT_NAME``). ``SOURCE_DATE_EPOCH`` is honoured (set
from the last commit when unset) for the zip timestamps; Go builds use
-trimpath, -buildvcs=false and an empty build id.

Linux glibc wheels are checked with ``auditwheel show`` before they are kept;
``twine check`` runs on the lot.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "mlflow_secrets_auth"
MODULE = "github.com/mlflow-secrets-auth/mlflow-secrets-auth"
TBD_DIR = Path(__file__).resolve().parent / "macos-sdk"


@dataclass(frozen=True)
class Target:
    key: str  # --only name
    plat: str  # wheel platform tag(s)
    goos: str
    goarch: str
    zig: str | None  # zig target for the cgo library; None: helper-only wheel
    library: str | None  # library file name in the wheel
    helper: str  # helper file name in the wheel: the C launcher with a library, else the static Go helper
    auditwheel: str | None = None  # the manylinux tag auditwheel must accept


TARGETS = [
    Target(
        "manylinux_x86_64",
        "manylinux_2_17_x86_64.manylinux2014_x86_64",
        "linux",
        "amd64",
        "x86_64-linux-gnu.2.17",
        "libmlflow_secrets_auth.so",
        "msa-helper",
        "manylinux_2_17_x86_64",
    ),
    Target(
        "manylinux_aarch64",
        "manylinux_2_17_aarch64.manylinux2014_aarch64",
        "linux",
        "arm64",
        "aarch64-linux-gnu.2.17",
        "libmlflow_secrets_auth.so",
        "msa-helper",
        "manylinux_2_17_aarch64",
    ),
    # musl cannot load a Go c-shared library: these carry the static helper only.
    Target("musllinux_x86_64", "musllinux_1_2_x86_64", "linux", "amd64", None, None, "msa-helper"),
    Target("musllinux_aarch64", "musllinux_1_2_aarch64", "linux", "arm64", None, None, "msa-helper"),
    # Go 1.26 needs macOS 12 (Monterey) or later.
    Target(
        "macos_arm64",
        "macosx_12_0_arm64",
        "darwin",
        "arm64",
        "aarch64-macos.12.0",
        "libmlflow_secrets_auth.dylib",
        "msa-helper",
    ),
    Target(
        "macos_x86_64",
        "macosx_12_0_x86_64",
        "darwin",
        "amd64",
        "x86_64-macos.12.0",
        "libmlflow_secrets_auth.dylib",
        "msa-helper",
    ),
    Target(
        "win_amd64",
        "win_amd64",
        "windows",
        "amd64",
        "x86_64-windows-gnu",
        "mlflow_secrets_auth.dll",
        "msa-helper.exe",
    ),
]


def log(msg: str) -> None:
    print(f"build_wheels: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"build_wheels: failed ({proc.returncode}): {' '.join(cmd)}")
    return proc.stdout


def go_exe() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not found:
        raise SystemExit("build_wheels: the Go toolchain (go 1.26 or newer) is not on PATH")
    return found


def version() -> str:
    text = (ROOT / "python" / PKG / "__init__.py").read_text()
    match = re.search(r'^__version__ = "(.+)"$', text, re.M)
    if not match:
        raise SystemExit("build_wheels: __version__ not found in python/mlflow_secrets_auth/__init__.py")
    return match.group(1)


def source_date_epoch() -> str:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value:
        if not value.isdigit():
            raise SystemExit(f"build_wheels: SOURCE_DATE_EPOCH must be whole seconds, got {value!r}")
        return value
    out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True)
    stamp = out.stdout.strip()
    # Zip cannot store dates before 1980; a checkout without history gets a fixed date.
    return stamp if out.returncode == 0 and stamp.isdigit() else "315532800"


@functools.cache
def zig_home() -> Path:
    """PyPI's ziglang, copied once per version to a fixed path in zig's own cache directory.

    zig keys its cache of the C runtimes it builds for a target (mingw-w64 for
    Windows, compiler_rt, glibc and libSystem stubs) on the path of the zig
    installation it runs from. Run from a new clone's .venv, it rebuilds them: on
    this 2-core machine 90-120 s of CPU for each of the three Windows CRT
    variants a wheel build and its tests link against (measured: the same
    `zig cc -target x86_64-windows-gnu` of an empty main() took 107 s from a
    second installation of the same ziglang and 0.1 s from the first). From a
    fixed path every clone reuses them."""
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"build_wheels: PyPI's ziglang is not installed for {sys.executable} (pip install ziglang)")
    source = Path(next(iter(spec.submodule_search_locations)))
    cache = os.environ.get("ZIG_GLOBAL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zig"
    )
    home = Path(cache) / "msa-toolchain" / f"ziglang-{importlib.metadata.version('ziglang')}"
    if not (home / ".complete").exists():
        staging = home.with_name(f"{home.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
        (staging / ".complete").write_text(f"copied from {source}\n")
        try:
            staging.rename(home)
        except OSError:  # another build got there first, or a partial copy without the marker
            if not (home / ".complete").exists():
                shutil.rmtree(home, ignore_errors=True)
                staging.rename(home)
        shutil.rmtree(staging, ignore_errors=True)
    return home


def zig_cc(target: str) -> list[str]:
    """`zig cc -target TARGET` from the fixed copy (zig_home)."""
    return [str(zig_home() / ("zig.exe" if os.name == "nt" else "zig")), "cc", "-target", target]


def zig_wrapper(zig_target: str, extra: list[str]) -> Path:
    """cgo wants CC to be one executable: a shell script around `zig cc`. It lives
    at a fixed path beside zig, because Go's build cache keys cgo packages on CC."""
    zig, *cc = zig_cc(zig_target)
    args = " ".join([*cc, *extra])
    path = Path(zig).parent / "cc-wrappers" / f"zcc-{zig_target}-{hashlib.sha256(args.encode()).hexdigest()[:12]}"
    text = f'#!/bin/sh\nexec "{zig}" {args} "$@"\n'
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(exist_ok=True)
        staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        staging.write_text(text)
        staging.chmod(0o755)
        staging.replace(path)
    return path


def go_env(t: Target, cgo: bool, cc: Path | None) -> dict[str, str]:
    env = dict(os.environ, GOOS=t.goos, GOARCH=t.goarch, CGO_ENABLED="1" if cgo else "0", GOFLAGS="-mod=readonly")
    env.pop("GOAMD64", None)  # baseline x86-64 (v1) for wheels
    if cc is not None:
        env["CC"] = str(cc)
    return env


def strip(path: Path, macho: bool) -> None:
    """Go's -s -w does not reach all of the external linker's output (cgo builds).

    Mach-O files are left alone: they are already linked with -s -w / -Wl,-S,-x,
    carry no debug sections (checked below), and are ad-hoc code-signed by the
    linker, which stripping afterwards would invalidate (arm64 macOS refuses to
    run unsigned code). Debian's llvm-strip 14 also crashes on zig's Mach-O.
    """
    if not macho:
        run(["llvm-strip", "--strip-all", str(path)])


def pe_fix_stamps(path: Path, epoch: int) -> None:
    """The DLL (and the launcher .exe) from zig's linker carries a link-time stamp in the COFF header and
    its debug directory, and a build-id GUID that follows from it, so two links
    differ. Set the stamps to SOURCE_DATE_EPOCH and the GUID to a hash of the
    file with those fields cleared. (The DLL is not signed; its checksum is 0.)"""
    data = bytearray(path.read_bytes())
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe : pe + 4] != b"PE\0\0":
        raise SystemExit(f"build_wheels: {path} is not a PE file")
    coff = pe + 4
    n_sections, opt_size = struct.unpack_from("<H", data, coff + 2)[0], struct.unpack_from("<H", data, coff + 16)[0]
    opt = coff + 20
    if struct.unpack_from("<H", data, opt)[0] != 0x20B:
        raise SystemExit(f"build_wheels: {path} is not PE32+")
    if struct.unpack_from("<I", data, opt + 64)[0] != 0:
        raise SystemExit(f"build_wheels: {path} has a checksum; it would need updating")
    debug_rva, debug_size = struct.unpack_from("<II", data, opt + 112 + 6 * 8)
    sections = opt + opt_size

    def offset(rva: int) -> int:
        for i in range(n_sections):
            vsize, vaddr, _rsize, raw = struct.unpack_from("<IIII", data, sections + 40 * i + 8)
            if vaddr <= rva < vaddr + max(vsize, _rsize):
                return raw + rva - vaddr
        raise SystemExit(f"build_wheels: {path}: RVA {rva:#x} is in no section")

    guids: list[int] = []
    struct.pack_into("<I", data, coff + 4, epoch)
    if debug_rva:
        base = offset(debug_rva)
        for entry in range(base, base + debug_size, 28):
            struct.pack_into("<I", data, entry + 4, epoch)
            kind, size, _addr, raw = struct.unpack_from("<IIII", data, entry + 12)
            if kind == 2 and size >= 24 and data[raw : raw + 4] == b"RSDS":  # CodeView: GUID at +4
                data[raw + 4 : raw + 20] = bytes(16)
                guids.append(raw + 4)
    digest = hashlib.sha256(data).digest()[:16]
    for at in guids:
        data[at : at + 16] = digest
    path.write_bytes(bytes(data))


def debug_sections(path: Path) -> list[str]:
    out = run(["llvm-objdump", "-h", str(path)])
    return [line.split()[1] for line in out.splitlines() if re.search(r"\s(\.debug|__debug|__DWARF|\.zdebug)", line)]


def go_size_flags() -> list[str]:
    """The -gcflags build.sh uses (one definition, there)."""
    return run(["bash", str(ROOT / "build.sh"), "--go-size-flags"]).split()


def build_launcher(t: Target, out: Path, tmp: Path, epoch: int) -> None:
    """packaging/launcher/launcher.c for this target, with zig cc."""
    assert t.zig is not None
    log(f"{t.goos}/{t.goarch}: launcher ({t.zig})")
    cc = zig_cc(t.zig)
    flags = ["-Os", "-s", "-Wall", "-Werror", f"-I{ROOT / 'include'}"]
    libs = ["-municode"] if t.goos == "windows" else (["-ldl"] if t.goos == "linux" else [])
    run([*cc, *flags, "-o", str(out), str(ROOT / "packaging" / "launcher" / "launcher.c"), *libs], cwd=tmp)
    strip(out, t.goos == "darwin")
    if t.goos == "windows":
        pe_fix_stamps(out, epoch)


def build_binaries(t: Target, work: Path, ver: str, tmp: Path, epoch: int) -> dict[str, Path]:
    out_dir = work / f"{t.goos}-{t.goarch}" / ("launcher" if t.library else "static")
    out_dir.mkdir(parents=True, exist_ok=True)
    ldflags = f"-s -w -buildid= -X {MODULE}/go/internal/protocol.Version={ver}"
    common = ["build", "-trimpath", "-buildvcs=false", *go_size_flags()]
    files: dict[str, Path] = {}
    go = go_exe()

    helper = out_dir / t.helper
    if not helper.exists():
        if t.library:
            build_launcher(t, helper, tmp, epoch)
        else:
            log(f"{t.goos}/{t.goarch}: static Go helper")
            run([go, *common, "-ldflags", ldflags, "-o", str(helper), "./go/cmd/msa-helper"], go_env(t, False, None))
            strip(helper, t.goos == "darwin")
    files[t.helper] = helper

    if t.library and t.zig:
        lib = out_dir / t.library
        if not lib.exists():
            log(f"{t.goos}/{t.goarch}: library ({t.zig})")
            extra: list[str] = []
            if t.goos == "darwin":
                if not (TBD_DIR / "System/Library/Frameworks/CoreFoundation.framework").exists():
                    raise SystemExit(f"build_wheels: {TBD_DIR} has no CoreFoundation stub")
                extra = [f"-F{TBD_DIR}/System/Library/Frameworks", f"-L{TBD_DIR}/usr/lib"]
            cc = zig_wrapper(t.zig, extra)
            cmd = [go, *common, "-buildmode=c-shared", "-ldflags", ldflags, "-o", str(lib), "./go/capi"]
            stray = ROOT / "-.o"  # zig leaves this (empty) behind when Go's linker probes a flag on stdin
            had_stray = stray.exists()
            run(cmd, go_env(t, True, cc))
            if not had_stray and stray.exists() and stray.stat().st_size == 0:
                stray.unlink()
            lib.with_suffix(".h").unlink(missing_ok=True)  # Go's generated header; include/ has ours
            strip(lib, t.goos == "darwin")
            if t.goos == "windows":
                pe_fix_stamps(lib, epoch)
        files[t.library] = lib

    for name, path in files.items():
        left = debug_sections(path)
        if left:
            raise SystemExit(f"build_wheels: {path} ({name}) still has debug sections after stripping: {left}")
    return files


def stage(t: Target, files: dict[str, Path], tmp: Path) -> Path:
    """A copy of the project with this target's binaries next to the package."""
    src = tmp / f"src-{t.key}"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in", "build.sh"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "build_backend", src / "build_backend", ignore=shutil.ignore_patterns("__pycache__"))
    pkg = src / "python" / PKG
    pkg.mkdir(parents=True)
    for f in (ROOT / "python" / PKG).iterdir():
        if (f.suffix == ".py" and f.name != "_ffi.py") or f.name == "py.typed":
            shutil.copy2(f, pkg / f.name)
    run([sys.executable, str(ROOT / "python" / "build_ffi.py"), str(pkg)])
    for name, path in files.items():
        shutil.copy2(path, pkg / name)
        (pkg / name).chmod(0o755)
    return src


def build_wheel(t: Target, src: Path, out: Path, epoch: str) -> Path:
    before = set(out.glob("*.whl"))
    env = dict(os.environ, MSA_PREBUILT="1", MSA_PLAT_NAME=t.plat, SOURCE_DATE_EPOCH=epoch)
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)], env)
    (wheel,) = set(out.glob("*.whl")) - before
    if not wheel.name.endswith(f"-py3-none-{t.plat}.whl"):
        raise SystemExit(f"build_wheels: {wheel.name} does not carry the tag {t.plat}")
    return wheel


def check_auditwheel(t: Target, wheel: Path) -> None:
    if t.auditwheel is None:
        return
    out = run([sys.executable, "-m", "auditwheel", "show", str(wheel)])
    flat = " ".join(out.split())
    if f'"{t.auditwheel}"' not in flat and not re.search(r'"manylinux_2_(5|12|17)_', flat):
        raise SystemExit(f"build_wheels: auditwheel does not accept {wheel.name} as {t.auditwheel}:\n{out}")
    if "external shared libraries" in flat and "system-provided shared libraries" not in flat:
        raise SystemExit(f"build_wheels: {wheel.name} needs external libraries:\n{out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "dist"), help="wheel directory (default: dist/)")
    parser.add_argument("--only", default="", help="comma-separated target keys: " + ", ".join(t.key for t in TARGETS))
    parser.add_argument("--work", default="", help="where binaries are built (default: a temporary directory)")
    args = parser.parse_args()

    keys = [k for k in args.only.split(",") if k]
    unknown = sorted(set(keys) - {t.key for t in TARGETS})
    if unknown:
        raise SystemExit(f"build_wheels: unknown target(s) in --only: {', '.join(unknown)}")
    targets = [t for t in TARGETS if not keys or t.key in keys]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    epoch = source_date_epoch()
    ver = version()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="msa-wheels-") as tmp_name:
        tmp = Path(tmp_name)
        work = Path(args.work).resolve() if args.work else tmp / "bin"
        built: list[Path] = []
        for t in targets:
            for old in out.glob(f"*-py3-none-{t.plat}.whl"):
                old.unlink()
            files = build_binaries(t, work, ver, tmp, int(epoch))
            wheel = build_wheel(t, stage(t, files, tmp), out, epoch)
            check_auditwheel(t, wheel)
            built.append(wheel)
            log(f"{wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB)")
    run([sys.executable, "-m", "twine", "check", "--strict", *map(str, built)])
    log(f"{len(built)} wheel(s) in {out}, twine check passed, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
