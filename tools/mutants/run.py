"""`make mutants`: apply each deliberate breakage of tools/mutants/mutants.py to
a COPY of the tree (never the working tree), rebuild what it touches, run the
fast suite and require it to fail. A surviving mutant is a missing test.

The fast suite: the Go unit tests (Go mutants only: the mutated package's, then
``go test ./go/...``, stopping there once they fail), then the fast in-process Python tests against
real servers (FAST_PY) with the copy's package and library first on the path.
First the unmutated copy must pass the same suite, or no verdict is possible.

Exit status 0 only if every mutant's text matched and every mutant was caught.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from mutants import MUTANTS, Mutant  # noqa: E402
from vaultbuild import cache_dir  # noqa: E402

# Fast, in-process Python tests that talk to real servers (OpenBao, loopback HTTP).
FAST_PY = ("tests/unit", "tests/test_guards.py", "tests/test_redirects.py")
# A mutant can make a test wait forever (a refresh that never comes): the timeout fails it.
GO_UNIT = ("go", "test", "-timeout=45s", "./go/...")


def copy_tree(dest: Path) -> None:
    """The working tree as it is now (tracked and untracked, not ignored files)."""
    if dest.exists():
        shutil.rmtree(dest)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def run(
    cmd: list[str] | tuple[str, ...],
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    stop_at_first_failure: bool = False,
) -> tuple[bool, float]:
    """Run ``cmd``, its output appended to ``log``; True if it exits 0.

    With ``stop_at_first_failure`` (the Go tests under a mutant), the first
    ``--- FAIL`` line settles the verdict: the process group is stopped then,
    rather than waiting for other packages (one that waits forever under the
    mutant runs into the timeout otherwise). A baseline run never stops early."""
    started = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        if not stop_at_first_failure:
            rc = subprocess.run(
                list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
            return rc == 0, time.monotonic() - started
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        failed = False
        for line in proc.stdout:
            out.write(line)
            if line.lstrip().startswith(b"--- FAIL"):
                failed = True
                out.write(b"mutants: a test failed; stopping the rest of this run\n")
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.stdout.close()
        rc = proc.wait()
        return (rc == 0 and not failed), time.monotonic() - started


def go_unit_under_mutant(m: Mutant, tree: Path, log: Path) -> tuple[bool, float]:
    """The Go unit tests under a Go mutant: the mutated file's own package first (one
    test binary to relink, where most mutants are caught), then every package. The
    second run reuses the first one's build, so a survivor costs little more."""
    own = (*GO_UNIT[:-1], "./" + str(Path(m.path).parent))
    ok, took = run(own, tree, log, stop_at_first_failure=True)
    if not ok:
        return ok, took
    ok, more = run(GO_UNIT, tree, log, stop_at_first_failure=True)
    return ok, took + more


def python_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MLFLOW_SECRETS_AUTH_LIBRARY", None)
    return env


def fast_python(tree: Path, log: Path) -> tuple[bool, float]:
    files = [f for f in FAST_PY if (tree / f).exists()]
    missing = sorted(set(FAST_PY) - set(files))
    if missing:
        raise SystemExit(f"mutants: fast test files missing: {', '.join(missing)} (update FAST_PY in {__file__})")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files]
    return run(cmd, tree, log, python_env(tree))


def build(tree: Path, log: Path) -> tuple[bool, float]:
    return run(["bash", "build.sh"], tree, log, dict(os.environ, PYTHON=sys.executable))


def apply(tree: Path, m: Mutant) -> str:
    """Apply ``m``; return the original text of its file (for restoring)."""
    path = tree / m.path
    text = path.read_text()
    count = text.count(m.old)
    if count != 1:
        raise LookupError(f"{m.path}: the mutant's text occurs {count} times, not once (the code changed: update it)")
    path.write_text(text.replace(m.old, m.new))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument(
        "--python-only",
        action="store_true",
        help="skip the Go unit tests for Go mutants: shows whether the Python tests alone catch them",
    )
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    work = cache_dir() / "mutants"
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tree, log = work / "tree", work / "mutants.log"
        log.write_text("")
        t0 = time.monotonic()
        copy_tree(tree)  # a fixed path, so Go's build cache is reused between runs
        print(f"mutants: copy of the tree in {tree}; log {log}", flush=True)
        ok, took = build(tree, log)
        if not ok:
            print(f"mutants: the unmutated copy does not build ({took:.0f}s); see {log}", file=sys.stderr)
            return 2
        go_ok, go_took = run(GO_UNIT, tree, log)
        py_ok, py_took = fast_python(tree, log)
        print(f"mutants: baseline build {took:.0f}s, Go unit tests {go_took:.0f}s, fast Python tests {py_took:.0f}s")
        if not (go_ok and py_ok):
            print(
                f"mutants: the fast suite fails WITHOUT any mutant, so no verdict is possible; see {log}",
                file=sys.stderr,
            )
            return 2
        results: list[tuple[Mutant, str]] = []
        # Python mutants first: they reuse the unmutated library built above.
        for m in sorted(chosen, key=lambda m: m.lang != "python"):
            with open(log, "a") as f:
                f.write(f"\n===== mutant {m.name} =====\n")
            try:
                original = apply(tree, m)
            except LookupError as exc:
                results.append((m, f"ERROR: {exc}"))
                continue
            try:
                verdict = ""
                if m.lang == "go":
                    ok, took = (True, 0.0) if args.python_only else go_unit_under_mutant(m, tree, log)
                    if not ok:
                        verdict = f"caught by the Go unit tests ({took:.0f}s)"
                    else:
                        built, btook = build(tree, log)
                        if not built:
                            verdict = f"ERROR: the mutant does not build ({btook:.0f}s)"
                if not verdict:
                    ok, took = fast_python(tree, log)
                    verdict = f"caught by the fast Python tests ({took:.0f}s)" if not ok else "SURVIVED"
            finally:
                (tree / m.path).write_text(original)
            results.append((m, verdict))
            print(f"  {m.name:24} {verdict}", flush=True)
        bad = [(m, v) for m, v in results if not v.startswith("caught")]
        print(f"mutants: {len(results) - len(bad)} of {len(results)} caught in {time.monotonic() - t0:.0f}s")
        for m, v in bad:
            print(f"  {m.name}: {v} - missing test: {m.why}", file=sys.stderr)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
