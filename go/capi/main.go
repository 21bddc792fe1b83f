// Command capi is the C shared library (-buildmode=c-shared). The exported
// functions are declared for callers in include/mlflow_secrets_auth.h. Every
// returned string is allocated with malloc and must be released with MsaFree.
// No export panics across the boundary and nothing is written to
// stdout/stderr.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"io"
	"log"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/serve"
)

var eng = engine.New(nil)

func reply(b []byte) *C.char { return C.CString(string(b)) }

// recoverTo turns a panic outside the protocol layer into an error reply.
func recoverTo(out **C.char) {
	if r := recover(); r != nil {
		*out = reply(protocol.Failure("internal error in the C API"))
	}
}

func goString(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// callerReleases: MsaReleaseByCaller(1) was called.
var callerReleases atomic.Bool

// headersReply is a headers reply as a C string. After a fetch, the library's
// read-only pages are released: here, once the reply is ready, or by the
// caller after it returns (MsaReleaseByCaller), which keeps out the code that
// runs on the way back.
func headersReply(b []byte) *C.char {
	if callerReleases.Load() {
		return reply(protocol.WithRelease(b, serve.Plan(eng)))
	}
	out := reply(b)
	serve.Release(eng)
	return out
}

// GetAuthHeaders returns the headers to attach to a request to host, as JSON.
//
//export GetAuthHeaders
func GetAuthHeaders(host *C.char) (out *C.char) {
	defer recoverTo(&out)
	return headersReply(protocol.Headers(eng, goString(host)))
}

// MsaHeaders answers a headers request given as JSON: {"target", "proxy",
// "reject", "deadline_ms"} (see include/mlflow_secrets_auth.h).
//
//export MsaHeaders
func MsaHeaders(requestJSON *C.char) (out *C.char) {
	defer recoverTo(&out)
	return headersReply(protocol.HeadersJSON(eng, []byte(goString(requestJSON))))
}

// MsaReleaseByCaller: on != 0, the headers reply after each fetch carries the
// ranges of the library's read-only pages for the caller to release once it
// has returned, and the library no longer releases them itself; 0 undoes it.
// Returns 1 where pages are released at all (Linux), else 0.
//
//export MsaReleaseByCaller
func MsaReleaseByCaller(on C.int) C.int {
	callerReleases.Store(on != 0)
	if runtime.GOOS == "linux" {
		return 1
	}
	return 0
}

// MsaSetEnv replaces the environment the library reads (JSON object), or
// returns to the process environment when envJSON is NULL.
//
//export MsaSetEnv
func MsaSetEnv(envJSON *C.char) (out *C.char) {
	defer recoverTo(&out)
	var b []byte
	if envJSON != nil {
		b = []byte(C.GoString(envJSON))
	}
	return reply(protocol.SetEnv(eng, b))
}

// MsaInfo describes the effective configuration as JSON.
//
//export MsaInfo
func MsaInfo() (out *C.char) {
	defer recoverTo(&out)
	return reply(protocol.Info(eng))
}

// MsaDoctor diagnoses every enabled provider and, if url is not NULL or
// empty, the host policy for that URL.
//
//export MsaDoctor
func MsaDoctor(url *C.char) (out *C.char) {
	defer recoverTo(&out)
	return reply(protocol.Doctor(eng, goString(url)))
}

// MsaInvalidate forgets every cached credential (an explicit reset); the
// next call fetches again. A 401 does not call it: MsaHeaders' "reject" does.
//
//export MsaInvalidate
func MsaInvalidate() {
	defer func() { _ = recover() }()
	eng.Invalidate()
}

// MsaServe serves the helper protocol (go/internal/serve) on two open
// descriptors until the input ends: file descriptors on POSIX systems, Win32
// handles on Windows (see include/mlflow_secrets_auth.h). It is called by the
// native launcher (packaging/launcher) in a process of its own, and turns
// core dumps off for that process. 0: the input ended; -1: a descriptor is
// not open; -2: internal error.
//
//export MsaServe
func MsaServe(inFD, outFD C.int) (rc C.int) {
	defer func() {
		if r := recover(); r != nil {
			rc = -2
		}
	}()
	_ = serve.NoCoreDump() // best effort, as in the static helper
	if err := serve.FDs(eng, int(inFD), int(outFD)); err != nil {
		return -1
	}
	return 0
}

// MsaShare serves this library's core to a child that is about to be forked:
// fd is this process's end of a connected socket pair whose other end the
// child keeps. The connection is served in the background (serve.Shared)
// until the child's end closes; the caller may close fd at once. 0: served;
// -1: fd is not an open socket (or the platform has no fork); -2: internal
// error.
//
//export MsaShare
func MsaShare(fd C.int) (rc C.int) {
	defer func() {
		if r := recover(); r != nil {
			rc = -2
		}
	}()
	if err := serve.Share(eng, int(fd)); err != nil {
		return -1
	}
	return 0
}

// MsaAbiVersion returns the ABI version of this library.
//
//export MsaAbiVersion
func MsaAbiVersion() C.int { return C.int(protocol.ABIVersion) }

// MsaFree releases a string returned by this library. NULL is ignored.
//
//export MsaFree
func MsaFree(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// A dependency that logs through the standard "log" package must not reach
// stderr: the Go side never writes there.
func init() {
	log.SetOutput(io.Discard)
	go func() { _ = serve.Warm() }() // beside the caller's work up to its first call
}

func main() {}
