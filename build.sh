#!/usr/bin/env bash
# Build the Go core as a C shared library into the Python package, the
# native launcher that serves the helper protocol from that library in a
# process of its own (installed as msa-helper), and the out-of-line cffi
# module that describes the library. Called by the PEP 517 backend
# (pip install ., pip wheel .) and by make. packaging/build_wheels.py builds
# the release wheels for every platform instead.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
PKG=python/mlflow_secrets_auth
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then PATH=/usr/local/go/bin:$PATH; else
    echo "build.sh: the Go toolchain (go 1.26 or newer) is needed to build mlflow-secrets-auth" >&2; exit 1
  fi
fi
# Size: the SDKs' code (everything outside the runtime, crypto and this module)
# is compiled without inlining, which keeps the library about 6% smaller;
# requests served from the cache never reach that code, and a fetch spends
# its time on the network. packaging/build_wheels.py reads these flags from here.
GO_SIZE_FLAGS=(-gcflags=all=-l -gcflags=runtime/...= -gcflags=crypto/...=
  -gcflags=github.com/mlflow-secrets-auth/mlflow-secrets-auth/...=)
if [ "${1:-}" = "--go-size-flags" ]; then printf '%s\n' "${GO_SIZE_FLAGS[@]}"; exit 0; fi
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$PKG/__init__.py")

CGO_ENABLED=1 go build -buildmode=c-shared -trimpath "${GO_SIZE_FLAGS[@]}" \
  -ldflags "-s -w -X github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol.Version=$VERSION" \
  -o "$PKG/libmlflow_secrets_auth.so" ./go/capi
rm -f "$PKG/libmlflow_secrets_auth.h" # Go's generated header; callers use include/
# The helper that forked children and processes that cannot load the library
# talk to over a pipe: a small C program that loads the library next to it
# and calls MsaServe (packaging/launcher/launcher.c). The C compiler: $CC,
# else cc, else zig from PyPI (python -m ziglang cc) when installed.
if [ -n "${CC:-}" ]; then read -r -a cc <<<"$CC"
elif command -v cc >/dev/null 2>&1; then cc=(cc)
elif "$PYTHON" -m ziglang version >/dev/null 2>&1; then cc=("$PYTHON" -m ziglang cc)
else
  echo "build.sh: a C compiler (cc, \$CC, or zig: pip install ziglang) is needed for the msa-helper launcher" >&2; exit 1
fi
"${cc[@]}" -O2 -s -Iinclude -o "$PKG/msa-helper" packaging/launcher/launcher.c -ldl
"$PYTHON" python/build_ffi.py "$PKG"
echo "build.sh: built $PKG/libmlflow_secrets_auth.so and the $PKG/msa-helper launcher ($VERSION)" >&2
