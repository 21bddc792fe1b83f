"""Read `go test -cover ./...` output on stdin (passed through as it arrives),
then print each package's statement coverage and fail if a package whose
import path contains --prefix is below --min percent. A package without tests
counts as 0%; a package whose tests failed is reported as failed."""

from __future__ import annotations

import argparse
import re
import sys

LINE = re.compile(r"^(ok|FAIL|\?|)\s+(\S+)\s.*?(?:coverage: ([\d.]+)% of statements|\[no test files\])")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min", type=float, default=80.0)
    parser.add_argument("--prefix", default="go/internal/")
    args = parser.parse_args()
    coverage: dict[str, float] = {}
    failed: set[str] = set()
    for raw in sys.stdin:
        sys.stdout.write(raw)
        sys.stdout.flush()
        line = raw.rstrip("\n")
        if line.startswith("FAIL\t") or line.startswith("FAIL "):
            parts = line.split()
            if len(parts) >= 2:
                failed.add(parts[1])
        m = LINE.match(line)
        if m:
            coverage[m.group(2)] = float(m.group(3)) if m.group(3) else 0.0
    if not coverage:
        print("coverage gate: no package coverage lines found in the go test output", file=sys.stderr)
        return 1
    print(f"\nGo statement coverage per package (gate: {args.min:.0f}% under {args.prefix}):")
    low = []
    for pkg in sorted(coverage):
        gated = f"/{args.prefix}" in f"/{pkg}/" or pkg.startswith(args.prefix)
        mark = ""
        if gated and coverage[pkg] < args.min:
            mark = "  <-- below the gate"
            low.append(pkg)
        print(f"  {coverage[pkg]:5.1f}%  {pkg}{mark}")
    if failed:
        print(f"coverage gate: go test failed in {', '.join(sorted(failed))}", file=sys.stderr)
        return 1
    if low:
        print(f"coverage gate: {len(low)} package(s) under {args.prefix} below {args.min:.0f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
