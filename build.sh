#!/usr/bin/env bash
# Build the Go core as a C shared library into the Python package, and the
# out-of-line cffi module that describes it. Called by the PEP 517 backend
# (pip install ., pip wheel .) and by make.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
PKG=python/mlflow_secrets_auth
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then PATH=/usr/local/go/bin:$PATH; else
    echo "build.sh: the Go toolchain (go 1.26 or newer) is needed to build mlflow-secrets-auth" >&2; exit 1
  fi
fi
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$PKG/__init__.py")

CGO_ENABLED=1 go build -buildmode=c-shared -trimpath \
  -ldflags "-s -w -X github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol.Version=$VERSION" \
  -o "$PKG/libmlflow_secrets_auth.so" ./go/capi
rm -f "$PKG/libmlflow_secrets_auth.h" # Go's generated header; callers use include/
# The helper serves the same calls over a pipe to forked children and to
# processes that cannot load the library.
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol.Version=$VERSION" \
  -o "$PKG/msa-helper" ./go/cmd/msa-helper
"$PYTHON" python/build_ffi.py "$PKG"
echo "build.sh: built $PKG/libmlflow_secrets_auth.so and $PKG/msa-helper ($VERSION)" >&2
