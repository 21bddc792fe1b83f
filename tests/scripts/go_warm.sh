#!/usr/bin/env bash
# Download the Go modules and compile the library's and the helper's packages
# with build.sh's flags, so that its build later only links. `make` runs this
# in the background while pip installs the Python dependencies: on a fresh
# machine the two overlap (network and unpacking vs. compiling).
set -u
cd "$(dirname "$0")/../.."
command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=1 go build -buildmode=c-shared -trimpath -o "$tmp/lib.so" ./go/capi
CGO_ENABLED=0 go build -trimpath -o "$tmp/msa-helper" ./go/cmd/msa-helper
