// Command msa-helper serves the library's calls over a pipe, for processes
// that must not call the Go runtime in their own address space (a child forked
// after the library was loaded, or a process that cannot load it).
//
// Protocol: one JSON request per line on stdin,
//
//	{"op": "headers", "arg": "https://host:port"}
//	{"op": "set_env", "env": {"NAME": "value", ...}}   (env null: process environment)
//	{"op": "info"} | {"op": "doctor", "arg": "url"} | {"op": "invalidate"} | {"op": "abi"}
//
// and one JSON reply per line on stdout, exactly as the C API returns them.
// It exits when stdin closes (its parent is gone). It writes nothing else.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol"
)

type request struct {
	Op  string          `json:"op"`
	Arg string          `json:"arg"`
	Env json.RawMessage `json:"env"`
}

func main() {
	eng := engine.New(nil)
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriter(os.Stdout)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := out.Write(append(serve(eng, line), '\n')); werr != nil {
				return
			}
			if out.Flush() != nil {
				return
			}
		}
		if err != nil { // EOF: the parent closed the pipe or exited
			return
		}
	}
}

func serve(eng *engine.Engine, line []byte) []byte {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return []byte(`{"ok":false,"code":"internal","message":"msa-helper: the request is not JSON"}`)
	}
	switch req.Op {
	case "headers":
		return protocol.Headers(eng, req.Arg)
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
		return []byte(fmt.Sprintf(`{"ok":true,"abi":%d}`, protocol.ABIVersion))
	}
	return []byte(fmt.Sprintf(`{"ok":false,"code":"internal","message":%q}`, "msa-helper: unknown op "+req.Op))
}
