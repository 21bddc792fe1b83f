//go:build unix

package serve

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
)

// FDs serves on two descriptors (as MsaServe does for the launcher's stdin
// and stdout), returns at the input's end, and leaves the caller's
// descriptors open.
func TestFDsServesAndLeavesDescriptorsOpen(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer outR.Close()
	defer outW.Close()
	done := make(chan error, 1)
	go func() { done <- FDs(engine.New(nil), int(inR.Fd()), int(outW.Fd())) }()
	if _, err := io.WriteString(inW, `{"id":1,"op":"abi"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil || line != `{"id":1,"reply":{"ok":true,"abi":2}}`+"\n" {
		t.Fatalf("reply %q, %v", line, err)
	}
	_ = inW.Close()
	if err := <-done; err != nil {
		t.Fatalf("FDs: %v", err)
	}
	// The caller's descriptors are still open: FDs closed only its duplicates.
	for _, f := range []*os.File{inR, outW} {
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatalf("descriptor %d was closed by FDs: %v", f.Fd(), err)
		}
	}
	if _, err := outW.Write([]byte("x")); err != nil {
		t.Fatalf("the caller's output descriptor no longer writes: %v", err)
	}
}

// A descriptor that is not open is an error before anything is served.
func TestFDsRefusesDescriptorsNotOpen(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	const notOpen = 1 << 20 // above any descriptor limit this test runs with
	for _, c := range []struct {
		in, out int
		want    string
	}{
		{-1, int(w.Fd()), "input descriptor -1 is not valid"},
		{notOpen, int(w.Fd()), "input descriptor 1048576 is not open"},
		{int(r.Fd()), notOpen, "output descriptor 1048576 is not open"},
	} {
		err := FDs(engine.New(nil), c.in, c.out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("FDs(%d, %d) = %v, want %q", c.in, c.out, err, c.want)
		}
	}
}

// Every op of the protocol answers with the C API's reply under the request's id.
func TestEveryOpAnswers(t *testing.T) {
	eng := engine.New(nil)
	for _, c := range []struct{ line, want string }{
		{`{"id":1,"op":"ping"}`, `"ok":true`},
		{`{"id":2,"op":"set_env","env":{"MLFLOW_SECRETS_AUTH_ENABLE":"vault"}}`, `"ok":true`},
		{`{"id":3,"op":"info"}`, `"vault"`},
		{`{"id":4,"op":"doctor","arg":"https://h"}`, `"checks"`},
		{`{"id":5,"op":"invalidate"}`, `"ok":true`},
		{`{"id":6,"op":"set_env","env":null}`, `"ok":true`},
		{`{"id":7,"op":"headers","arg":"https://h"}`, `"not_enabled"`},
		{`{"id":8,"op":"set_env"}`, `"ok":true`},
	} {
		var r reply
		out := handle(eng, []byte(c.line), nil)
		if err := json.Unmarshal(out, &r); err != nil || !strings.Contains(string(out), c.want) {
			t.Fatalf("%s -> %s (%v), want %s", c.line, out, err, c.want)
		}
		var req request
		_ = json.Unmarshal([]byte(c.line), &req)
		if string(r.ID) != string(req.ID) {
			t.Fatalf("%s: id %s", c.line, r.ID)
		}
	}
}

// A reader that goes away stops the writing, not the serving: Run still
// returns at the input's end.
func TestRunSurvivesAClosedOutput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	defer w.Close()
	Run(engine.New(nil), strings.NewReader(`{"id":1,"op":"abi"}`+"\n"+`{"id":2,"op":"ping"}`+"\n"), w)
}
