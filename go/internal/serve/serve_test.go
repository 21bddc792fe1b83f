package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

type reply struct {
	ID    json.RawMessage `json:"id"`
	Reply map[string]any  `json:"reply"`
}

func TestUnknownOpAndBadRequestsGetJSON(t *testing.T) {
	eng := engine.New(nil)
	for _, line := range []string{
		`{"id":1,"op":"\u0001\"\\"}`,
		`{"id":2,"op":"` + strings.Repeat("x", 100000) + `"}`,
		`not json`,
		`{"op":"abi"}`,
	} {
		out := handle(eng, []byte(line), nil)
		var r reply
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("reply to %.40q is not JSON: %v: %s", line, err, out)
		}
		if len(out) > 2000 {
			t.Fatalf("reply to %.40q echoes too much: %d bytes", line, len(out))
		}
		if strings.HasPrefix(line, `{"op":"abi"`) {
			if string(r.ID) != "null" || r.Reply["ok"] != true {
				t.Fatalf("abi: %s", out)
			}
		} else if r.Reply["ok"] != false || r.Reply["code"] != "internal" {
			t.Fatalf("reply to %.40q: %s", line, out)
		}
	}
	var r reply
	if err := json.Unmarshal(handle(eng, []byte(`{"id":1,"op":"\u0001"}`), nil), &r); err != nil || string(r.ID) != "1" ||
		!strings.Contains(r.Reply["message"].(string), "unknown op \u0001") {
		t.Fatalf("id or message lost: %+v %v", r, err)
	}
}

type gated struct{ release chan struct{} }

func (g gated) Fetch(ctx context.Context) (secret.Credential, error) {
	select {
	case <-g.release:
		return secret.Credential{Token: "tok"}, nil
	case <-ctx.Done():
		return secret.Credential{}, ctx.Err()
	}
}
func (gated) Close() {}

// A request waiting on a backend does not hold up the requests behind it:
// their replies come first, each with its own id.
func TestRequestsAreServedConcurrently(t *testing.T) {
	release := make(chan struct{})
	eng := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: time.Hour,
				New: func(context.Context) (provider.Provider, error) { return gated{release}, nil }}, nil
		},
	})
	eng.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "MLFLOW_TRACKING_URI": "https://h", "MLFLOW_SECRETS_TIMEOUT_SEC": "60"})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan struct{})
	go func() { Run(eng, inR, outW); close(done) }()
	lines := make(chan []byte, 4)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(lines)
	}()
	next := func() reply {
		select {
		case line := <-lines:
			var r reply
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("not JSON: %s", line)
			}
			return r
		case <-time.After(10 * time.Second):
			close(release) // unblock the engine so the test ends
			t.Fatalf("no reply while another request waits: requests are served one at a time")
		}
		return reply{}
	}
	if _, err := io.WriteString(inW, `{"id":1,"op":"headers","arg":"https://h"}`+"\n"+`{"id":2,"op":"info"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	if r := next(); string(r.ID) != "2" || r.Reply["ok"] != true {
		t.Fatalf("first reply should be info (id 2), got %+v", r)
	}
	close(release)
	if r := next(); string(r.ID) != "1" || r.Reply["ok"] != true {
		t.Fatalf("second reply should be headers (id 1), got %+v", r)
	}
	_ = inW.Close()
	<-done
}

// Requests one after another are served by the same worker, not each on a
// goroutine of its own: a goroutine's exit maps part of the function table
// back in after the release of the binary's pages (see run).
func TestSequentialRequestsReuseAWorker(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan struct{})
	go func() { Run(engine.New(nil), inR, outW); close(done) }()
	sc := bufio.NewScanner(outR)
	ask := func(id int) {
		if _, err := fmt.Fprintf(inW, `{"id":%d,"op":"ping"}`+"\n", id); err != nil {
			t.Fatal(err)
		}
		var r reply
		if !sc.Scan() || json.Unmarshal(sc.Bytes(), &r) != nil || string(r.ID) != strconv.Itoa(id) || r.Reply["ok"] != true {
			t.Fatalf("reply to ping %d: %q", id, sc.Bytes())
		}
	}
	created := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	ask(0) // starts the first worker
	before := created()
	const n = 200
	for i := 1; i <= n; i++ {
		ask(i)
	}
	if got := created() - before; got > 10 {
		t.Fatalf("%d goroutines started for %d requests one after another, want a few at most (workers reused)", got, n)
	}
	_ = inW.Close()
	<-done
}

// At EOF the helper answers what it read: `printf '{"id":1,"op":"abi"}\n' |
// msa-helper` prints the reply.
func TestEOFAnswersWhatWasRead(t *testing.T) {
	var out strings.Builder
	Run(engine.New(nil), strings.NewReader(`{"id":1,"op":"abi"}`+"\n"+`{"id":2,"op":"ping"}`), &out)
	got := out.String()
	if !strings.Contains(got, `{"id":1,"reply":{"ok":true,"abi":2}}`) || !strings.Contains(got, `{"id":2,"reply":{"ok":true}}`) {
		t.Fatalf("output %q", got)
	}
}

// A request still waiting on a backend when stdin closes is answered before
// the helper exits.
func TestEOFWaitsForSlowRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	eng := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: time.Hour,
				New: func(context.Context) (provider.Provider, error) { entered <- struct{}{}; return gated{release}, nil }}, nil
		},
	})
	eng.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "MLFLOW_TRACKING_URI": "https://h", "MLFLOW_SECRETS_TIMEOUT_SEC": "60"})
	var out strings.Builder
	done := make(chan struct{})
	go func() {
		Run(eng, strings.NewReader(`{"id":7,"op":"headers","arg":"https://h","proxy":"http://127.0.0.1:3128","deadline_ms":30000}`+"\n"), &out)
		close(done)
	}()
	<-entered // the request is waiting on the backend, and stdin is at EOF
	select {
	case <-done:
		t.Fatal("the helper exited with a request in flight")
	default:
	}
	close(release)
	<-done
	var r reply
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &r); err != nil || string(r.ID) != "7" || r.Reply["ok"] != true ||
		r.Reply["fingerprint"] == nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
}
