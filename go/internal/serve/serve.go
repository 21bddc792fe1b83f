// Package serve is the helper protocol: the library's calls served over a
// pipe, for processes that must not call the Go runtime in their own address
// space (a child forked after the library was loaded, a process that cannot
// load it, or a platform for which no library is built). Two programs serve
// it: the static msa-helper (go/cmd/msa-helper, musllinux wheels) and the
// library's MsaServe export, which the small native launcher
// (packaging/launcher) calls in a fresh process of its own.
//
// Protocol: one JSON request per line on the input,
//
//	{"id": 1, "op": "headers", "arg": "https://host:port", "proxy": "...", "reject": "<fingerprint>", "deadline_ms": 5000}
//	    (proxy, reject and deadline_ms optional: as MsaHeaders' request)
//	{"id": 2, "op": "set_env", "env": {"NAME": "value", ...}}   (env null: process environment)
//	{"id": 3, "op": "info"} | {"op": "doctor", "arg": "url"} | {"op": "invalidate"} | {"op": "abi"}
//	{"id": 4, "op": "ping"}   -> {"ok": true}
//
// and one JSON reply per line on the output, {"id": <the request's id>, "reply": {...}},
// where the reply is exactly what the C API returns. Requests are served
// concurrently, so replies may come in any order; the id pairs them up. A
// request without an id gets "id": null. When the input closes (its parent
// is gone or done) it finishes every request it has read, writes their
// replies, and returns. It writes nothing else.
package serve

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/trim"
)

type request struct {
	ID         json.RawMessage `json:"id"`
	Op         string          `json:"op"`
	Arg        string          `json:"arg"`
	Env        json.RawMessage `json:"env"`
	Proxy      string          `json:"proxy"`
	Reject     string          `json:"reject"`
	DeadlineMs int64           `json:"deadline_ms"`
}

type envelope struct {
	ID    json.RawMessage `json:"id"`
	Reply json.RawMessage `json:"reply"`
}

// Run serves requests from in until it ends, each on its own goroutine, and
// returns once every request read has been answered. A write error (the
// reader is gone) stops the writing, not the serving: Run still returns at
// the input's end.
func Run(eng *engine.Engine, in io.Reader, w io.Writer) { run(eng, in, w, nil) }

// Shared serves the protocol on conn for a process forked from this one
// (the library's MsaShare export): the same engine, so one cache, one login
// and one refresh schedule for a parent and all its forked workers. The
// child may use that engine, not change it: its set_env is accepted only
// when it hands the environment this engine serves (compared by
// engine.EnvDigest), and every other call but ping and abi is refused with
// "not_shared" until it has, or once this process has been handed another
// environment since. A refused child starts a helper of its own. Shared
// returns (and closes conn) when the child's end closes.
func Shared(eng *engine.Engine, conn io.ReadWriteCloser) {
	defer conn.Close()
	defer func() { _ = recover() }() // never take the parent process down
	run(eng, conn, conn, &session{})
}

// session is what one Shared connection agreed on.
type session struct {
	agreed atomic.Pointer[[32]byte] // the digest of the environment the child handed, once it matched
}

func (s *session) setEnv(eng *engine.Engine, raw json.RawMessage) []byte {
	var env config.Env
	if len(raw) == 0 || string(raw) == "null" || json.Unmarshal(raw, &env) != nil || env == nil {
		return notShared("the parent process's core serves only the environment it was handed; this call names none")
	}
	d := engine.EnvDigest(env)
	if d != eng.Serves() {
		return notShared("the parent process's core serves another environment than this process's")
	}
	s.agreed.Store(&d)
	return protocol.Settings(eng)
}

// current: the child agreed on the environment the engine serves now.
func (s *session) current(eng *engine.Engine) bool {
	agreed := s.agreed.Load()
	return agreed != nil && *agreed == eng.Serves()
}

func notShared(message string) []byte {
	return protocol.Refusal(msaerr.NotShared, message)
}

func run(eng *engine.Engine, in io.Reader, w io.Writer, sess *session) {
	r := bufio.NewReaderSize(in, 1<<16)
	var mu sync.Mutex
	var broken bool
	// One write per reply, straight to w: a buffered writer's code (another
	// package, elsewhere in the binary) would run after the release.
	write := func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			broken = true
		}
	}
	var inflight sync.WaitGroup
	one := func(line []byte) {
		defer inflight.Done()
		reply := handle(eng, line, sess)
		Release(eng) // before the reply leaves
		write(reply)
	}
	// Requests run concurrently on workers that, once done, wait for the
	// next request rather than exit: the runtime looks up an exiting
	// goroutine's start function in the function table, which maps three
	// parts of it back in right after a release (about 3 MB with 1 MB
	// page-cache folios). A request that finds no worker waiting gets a new
	// one, so a slow fetch never holds up another request. The workers end
	// with the input.
	work := make(chan []byte)
	worker := func(line []byte) {
		one(line)
		for line := range work {
			one(line)
		}
	}
	defer inflight.Wait() // EOF: the parent closed the pipe; answer what was read
	defer close(work)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			inflight.Add(1)
			select {
			case work <- line:
			default:
				go worker(line)
			}
		}
		if err != nil {
			return
		}
	}
}

// Release releases this binary's read-only pages from the process's resident
// set (go/internal/trim) when a release is due (engine.ReleaseDue): after the
// first headers, the start-up's pages (the loader's, the Go runtime's start
// and every SDK's initialisers) and the fetch's; after a refresh, the
// refresh's; and at a call a minute or more after the last release, what the
// runtime's background work mapped back. Callers call it once a reply is
// built, so that little code runs between the release and the reply.
func Release(eng *engine.Engine) {
	if eng.ReleaseDue() {
		_, _ = trim.Code()
	}
}

// Plan is Release for a caller that releases the pages itself once it has
// returned from the library (MsaReleaseByCaller): the ranges to release when
// a release is due, else none.
func Plan(eng *engine.Engine) []trim.Range {
	if !eng.ReleaseDue() {
		return nil
	}
	ranges, _ := trim.Plan()
	return ranges
}

// handle serves one request line and returns the reply line.
func handle(eng *engine.Engine, line []byte, sess *session) []byte {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return wrap(nil, protocol.Failure("msa-helper: the request is not JSON"))
	}
	return wrap(req.ID, dispatch(eng, req, sess))
}

func wrap(id json.RawMessage, reply []byte) []byte {
	if len(id) == 0 || !json.Valid(id) {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(envelope{ID: id, Reply: reply})
	if err != nil {
		b, _ = json.Marshal(envelope{ID: id, Reply: protocol.Failure("msa-helper: cannot encode the reply")})
	}
	return b
}

func dispatch(eng *engine.Engine, req request, sess *session) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			out = protocol.Failure("msa-helper: internal error")
		}
	}()
	if sess != nil {
		switch req.Op {
		case "ping", "abi":
		case "set_env":
			return sess.setEnv(eng, req.Env)
		default:
			if !sess.current(eng) {
				return notShared("the parent process's core serves another environment now (or none was agreed)")
			}
		}
	}
	switch req.Op {
	case "headers":
		return protocol.Serve(eng, protocol.Request{Target: req.Arg, Proxy: req.Proxy, Reject: req.Reject, DeadlineMs: req.DeadlineMs})
	case "ping":
		return []byte(`{"ok":true}`)
	case "set_env":
		if string(req.Env) == "null" || len(req.Env) == 0 {
			return protocol.SetEnv(eng, nil)
		}
		return protocol.SetEnv(eng, req.Env)
	case "info":
		return protocol.Info(eng)
	case "doctor":
		return protocol.Doctor(eng, req.Arg)
	case "invalidate":
		eng.Invalidate()
		return []byte(`{"ok":true}`)
	case "abi":
		return protocol.ABI()
	}
	return protocol.Failure("msa-helper: unknown op " + req.Op)
}

// FDs serves the protocol on two open descriptors of this process (see
// Files for what they are on each platform) and returns at the input's end.
// The caller's descriptors stay open: FDs works on duplicates and closes
// those. A descriptor that is not open is an error, returned before anything
// is read.
func FDs(eng *engine.Engine, inFD, outFD int) error {
	in, err := dupFile(inFD, "input")
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := dupFile(outFD, "output")
	if err != nil {
		return err
	}
	defer out.Close()
	Run(eng, in, out)
	return nil
}
