// Command msa-helper is the static helper: the library's calls served over
// stdin/stdout (the protocol of go/internal/serve) by a program with no libc
// dependency, for musllinux wheels, where a Go shared library cannot be
// loaded. Wheels that carry the library ship the small native launcher
// (packaging/launcher) under this name instead; it serves the same protocol
// through the library's MsaServe export.
package main

import (
	"io"
	"log"
	"os"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/serve"
)

// A dependency that logs through the standard "log" package must not reach
// stderr: the Go side never writes there.
func init() { log.SetOutput(io.Discard) }

func main() {
	// Best effort: a limit the platform refuses does not stop the helper.
	_ = serve.NoCoreDump()
	// What the first request would build on first use, built while it is awaited.
	go func() { _ = serve.Warm() }()
	serve.Run(engine.New(nil), os.Stdin, os.Stdout)
}
