//go:build unix

package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

type counting struct{ fetches *atomic.Int32 }

func (c counting) Fetch(context.Context) (secret.Credential, error) {
	n := c.fetches.Add(1)
	return secret.Credential{Token: fmt.Sprintf("tok-%d", n)}, nil
}
func (counting) Close() {}

// child is the forked child's end of one MsaShare connection.
type child struct {
	t    *testing.T
	f    *os.File
	r    *bufio.Scanner
	next int
}

func share(t *testing.T, eng *engine.Engine) *child {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Share(eng, fds[0]); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Close(fds[0]) // Share serves its own duplicate: the caller's may close at once
	f := os.NewFile(uintptr(fds[1]), "child")
	t.Cleanup(func() { f.Close() })
	return &child{t: t, f: f, r: bufio.NewScanner(f)}
}

func (c *child) call(req map[string]any) map[string]any {
	c.t.Helper()
	c.next++
	req["id"] = c.next
	b, _ := json.Marshal(req)
	if _, err := c.f.Write(append(b, '\n')); err != nil {
		c.t.Fatal(err)
	}
	_ = c.f.SetReadDeadline(time.Now().Add(10 * time.Second))
	if !c.r.Scan() {
		c.t.Fatalf("no reply to %s: %v", b, c.r.Err())
	}
	var r reply
	if err := json.Unmarshal(c.r.Bytes(), &r); err != nil || string(r.ID) != fmt.Sprint(c.next) {
		c.t.Fatalf("reply %s to %s: %v", c.r.Bytes(), b, err)
	}
	return r.Reply
}

// A forked child served by its parent's core (MsaShare) uses the parent's
// cache when it hands the same environment, and is refused ("not_shared")
// before it has, when it hands another, and once the parent's environment
// changed; a refused child can never change the parent's settings.
func TestSharedConnectionServesOnlyTheParentsEnvironment(t *testing.T) {
	var fetches atomic.Int32
	eng := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(env config.Env, _ *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: env["MLFLOW_VAULT_SECRET_PATH"], Mode: "bearer", TTL: time.Hour,
				New: func(context.Context) (provider.Provider, error) { return counting{&fetches}, nil }}, nil
		},
	})
	envA := map[string]string{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "MLFLOW_TRACKING_URI": "https://h",
		"MLFLOW_VAULT_SECRET_PATH": "secret/a", "MLFLOW_SECRETS_TIMEOUT_SEC": "7"}
	envB := map[string]string{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "MLFLOW_TRACKING_URI": "https://h",
		"MLFLOW_VAULT_SECRET_PATH": "secret/b", "MLFLOW_SECRETS_TIMEOUT_SEC": "7"}
	eng.SetEnv(envA)
	headers := map[string]any{"op": "headers", "arg": "https://h"}
	refused := func(r map[string]any, what string) {
		t.Helper()
		if r["ok"] != false || r["code"] != "not_shared" {
			t.Fatalf("%s: want a not_shared refusal, got %v", what, r)
		}
	}

	one := share(t, eng)
	refused(one.call(headers), "headers before set_env")
	refused(one.call(map[string]any{"op": "set_env", "env": nil}), "set_env null (the process environment)")
	refused(one.call(map[string]any{"op": "set_env", "env": envB}), "set_env with another environment")
	refused(one.call(headers), "headers after a refused set_env")
	if r := one.call(map[string]any{"op": "ping"}); r["ok"] != true {
		t.Fatalf("ping: %v", r)
	}
	if r := one.call(map[string]any{"op": "set_env", "env": envA}); r["ok"] != true || r["timeout_ms"] != float64(7000) {
		t.Fatalf("set_env with the parent's environment: %v", r)
	}
	r := one.call(headers)
	if r["ok"] != true || r["headers"].(map[string]any)["Authorization"] != "Bearer tok-1" {
		t.Fatalf("headers: %v", r)
	}

	// A second child and the parent itself share that one fetch.
	two := share(t, eng)
	if r := two.call(map[string]any{"op": "set_env", "env": envA}); r["ok"] != true {
		t.Fatalf("second child set_env: %v", r)
	}
	if r := two.call(headers); r["headers"].(map[string]any)["Authorization"] != "Bearer tok-1" {
		t.Fatalf("second child: %v", r)
	}
	if res := eng.Headers(context.Background(), "https://h"); res.Headers["Authorization"] != "Bearer tok-1" {
		t.Fatalf("parent: %+v", res)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for one parent and two children: want 1", n)
	}
	// The refused set_env changed nothing in the parent.
	if got := eng.Serves(); got != engine.EnvDigest(envA) {
		t.Fatal("a child's set_env changed the parent's environment")
	}

	// The parent moves on: its children are refused until they agree again.
	eng.SetEnv(envB)
	refused(one.call(headers), "headers after the parent's environment changed")
	refused(one.call(map[string]any{"op": "info"}), "info after the parent's environment changed")
	refused(one.call(map[string]any{"op": "invalidate"}), "invalidate after the parent's environment changed")
	if r := one.call(map[string]any{"op": "set_env", "env": envB}); r["ok"] != true {
		t.Fatalf("set_env with the parent's new environment: %v", r)
	}
	if r := one.call(headers); r["ok"] != true {
		t.Fatalf("headers after agreeing again: %v", r)
	}
}

func TestEnvDigestTellsEnvironmentsApart(t *testing.T) {
	a := engine.EnvDigest(config.Env{"A": "1", "B": "2"})
	if a != engine.EnvDigest(config.Env{"B": "2", "A": "1"}) {
		t.Fatal("the order of a map changed its digest")
	}
	for _, other := range []config.Env{{"A": "1"}, {"A": "1", "B": "3"}, {"A": "12", "B": ""}, {"A": "1", "B": "2", "C": ""}, {"A=1": "", "B": "2"}} {
		if engine.EnvDigest(other) == a {
			t.Fatalf("%v has the digest of A=1 B=2", other)
		}
	}
}

// Share refuses a descriptor that is not an open socket before serving anything.
func TestShareRefusesWhatIsNotASocket(t *testing.T) {
	eng := engine.New(nil)
	if err := Share(eng, -1); err == nil {
		t.Fatal("descriptor -1 accepted")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := Share(eng, int(r.Fd())); err == nil {
		t.Fatal("a pipe accepted as a socket")
	}
}
