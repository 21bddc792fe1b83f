package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// fake is a backend whose secret is the env variable FAKE_<NAME>_SECRET;
// FAKE_<NAME>_FAIL makes fetches fail, FAKE_<NAME>_BLOCK makes them hang.
type fake struct {
	name      string
	fetches   atomic.Int64
	instances atomic.Int64
	closed    atomic.Int64
	failNow   atomic.Bool // fail every fetch from now on
	block     chan struct{}
}

type fakeProvider struct {
	f      *fake
	secret string
	fail   bool
	block  bool
}

func (p *fakeProvider) Fetch(ctx context.Context) (secret.Credential, error) {
	p.f.fetches.Add(1)
	if p.block {
		select {
		case <-p.f.block:
			return secret.Credential{}, errors.New("unblocked")
		case <-ctx.Done():
			return secret.Credential{}, fmt.Errorf("backend call: %w", ctx.Err())
		}
	}
	if p.fail || p.f.failNow.Load() {
		return secret.Credential{}, msaerr.New(msaerr.Backend, "", "%s: backend down", p.f.name)
	}
	return secret.Parse([]byte(p.secret))
}

func (p *fakeProvider) Close() { p.f.closed.Add(1) }

func (f *fake) factory(env config.Env, _ *config.Config) (provider.Spec, error) {
	prefix := "FAKE_" + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
	sec := env.Get(prefix + "_SECRET")
	if sec == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, prefix+"_SECRET", "%s: %s_SECRET is not set", f.name, prefix)
	}
	mode, err := header.ParseMode(prefix+"_MODE", env.Get(prefix+"_MODE"))
	if err != nil {
		return provider.Spec{}, err
	}
	p := &fakeProvider{f: f, secret: sec, fail: env.Get(prefix+"_FAIL") != "", block: env.Get(prefix+"_BLOCK") != ""}
	return provider.Spec{Name: f.name, Settings: [3]string{sec, env.Get(prefix + "_FAIL"), env.Get(prefix + "_BLOCK")},
		Mode: mode, ModeVar: prefix + "_MODE", TTL: time.Minute,
		New: func(context.Context) (provider.Provider, error) { f.instances.Add(1); return p, nil }}, nil
}

func newTestEngine() (*Engine, *fake, *fake) { return newTestEngineAt(nil) }

func newTestEngineAt(now func() time.Time) (*Engine, *fake, *fake) {
	v, a := &fake{name: config.Vault, block: make(chan struct{})}, &fake{name: config.AWSSecretsManager}
	return NewWith(now, map[string]provider.Factory{config.Vault: v.factory, config.AWSSecretsManager: a.factory}), v, a
}

const tracking = "https://mlflow.corp.com"

func TestNotEnabled(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_TRACKING_URI": tracking})
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || res.Err.Code != msaerr.NotEnabled || res.Err.Variable != "MLFLOW_SECRETS_AUTH_ENABLE" {
		t.Fatalf("res = %+v", res)
	}
}

func TestHostPolicy(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	if res := e.Headers(context.Background(), "https://mlflow.corp.com:443"); res.Err != nil || res.Headers["Authorization"] != "Bearer tok" {
		t.Fatalf("tracking host: %+v", res)
	}
	for _, host := range []string{"https://evil.com", "http://mlflow.corp.com", "mlflow.corp.com.evil.net:443"} {
		res := e.Headers(context.Background(), host)
		if res.Err == nil || res.Err.Code != msaerr.HostNotAllowed || res.Headers != nil {
			t.Errorf("%s: %+v", host, res)
		}
		if !strings.Contains(res.Err.Message, "MLFLOW_SECRETS_ALLOWED_HOSTS") {
			t.Errorf("%s: message does not name the variable: %s", host, res.Err.Message)
		}
	}
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking,
		"MLFLOW_SECRETS_ALLOWED_HOSTS": "*.corp.com"})
	if res := e.Headers(context.Background(), "http://other.corp.com:8080"); res.Err != nil {
		t.Fatalf("allowed by pattern: %+v", res)
	}
	if res := e.Headers(context.Background(), tracking+".evil.net"); res.Err == nil {
		t.Fatal("suffix attack allowed")
	}
	if n := v.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (cache kept across the env change)", n)
	}
}

func TestFallbackAndAttempts(t *testing.T) {
	e, v, a := newTestEngine()
	base := config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_AWS_SECRETS_MANAGER_SECRET": `{"username":"u","password":"p"}`, "FAKE_AWS_SECRETS_MANAGER_MODE": "basic"}
	e.SetEnv(base) // vault not configured
	res := e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.AWSSecretsManager || res.Headers["Authorization"] != "Basic dTpw" {
		t.Fatalf("res = %+v", res)
	}
	if len(res.Attempts) != 1 || res.Attempts[0].Provider != config.Vault || res.Attempts[0].Err.Variable != "FAKE_VAULT_SECRET" {
		t.Fatalf("attempts = %+v", res.Attempts)
	}
	env := config.Env{"FAKE_VAULT_SECRET": "tok", "FAKE_VAULT_FAIL": "1"}
	for k, val := range base {
		env[k] = val
	}
	e.SetEnv(env) // vault down
	res = e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.AWSSecretsManager || !strings.Contains(res.Attempts[0].Err.Message, "backend down") {
		t.Fatalf("res = %+v", res)
	}
	env["FAKE_AWS_SECRETS_MANAGER_MODE"] = "bearer" // now aws fails too: user/pass in bearer mode
	e.SetEnv(env)
	res = e.Headers(context.Background(), tracking)
	if res.Err == nil || !strings.Contains(res.Err.Message, "vault: backend down") ||
		!strings.Contains(res.Err.Message, "aws-secrets-manager: FAKE_AWS_SECRETS_MANAGER_MODE is bearer") {
		t.Fatalf("res = %+v", res)
	}
	if strings.Contains(res.Err.Message, `"p"`) {
		t.Fatal("secret leaked")
	}
	if v.fetches.Load() == 0 || a.fetches.Load() != 1 {
		t.Errorf("fetches vault=%d aws=%d", v.fetches.Load(), a.fetches.Load())
	}
}

func TestEnvChangeReplacesProvider(t *testing.T) {
	e, v, _ := newTestEngine()
	env := config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "one", "MLFLOW_TRACKING_URI": tracking}
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Headers["Authorization"] != "Bearer one" {
		t.Fatalf("res = %+v", res)
	}
	env["FAKE_VAULT_SECRET"] = "two"
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Headers["Authorization"] != "Bearer two" {
		t.Fatalf("after change: %+v", res)
	}
	if v.instances.Load() != 2 || v.closed.Load() != 1 {
		t.Errorf("instances=%d closed=%d, want 2 and 1", v.instances.Load(), v.closed.Load())
	}
	env["MLFLOW_AUTH_HEADER_NAME"] = "X-Token" // header-only change: no new fetch
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Headers["X-Token"] != "two" || v.fetches.Load() != 2 {
		t.Errorf("header change: %+v, %d fetches", res, v.fetches.Load())
	}
}

func TestConcurrentCallersOneFetch(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if res := e.Headers(context.Background(), tracking); res.Err != nil {
					t.Error(res.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := v.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestTimeoutBoundsTheCall(t *testing.T) {
	e, v, _ := newTestEngine()
	defer close(v.block)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "FAKE_VAULT_BLOCK": "1",
		"MLFLOW_TRACKING_URI": tracking, "MLFLOW_SECRETS_TIMEOUT_SEC": "1"})
	start := time.Now()
	res := e.Headers(context.Background(), tracking)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %s", took)
	}
	if res.Err == nil || res.Err.Variable != "MLFLOW_SECRETS_TIMEOUT_SEC" {
		t.Fatalf("res = %+v", res)
	}
}

func TestInfoAndDoctor(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "FAKE_VAULT_SECRET": "s3cr3t",
		"MLFLOW_TRACKING_URI": tracking})
	info := e.Info()
	if info.Err != nil || len(info.Providers) != 2 || info.Providers[1].Err == nil || info.Providers[0].Mode != "bearer" {
		t.Fatalf("info = %+v", info)
	}
	checks := e.Doctor(context.Background(), "https://evil.com")
	var text strings.Builder
	failed := 0
	for _, c := range checks {
		text.WriteString(c.Name + " " + c.Detail + " ")
		if c.Err != nil {
			failed++
			text.WriteString(c.Err.Error())
		}
	}
	if failed != 2 || strings.Contains(text.String(), "s3cr3t") || !strings.Contains(text.String(), "Bearer <redacted, 6 chars>") {
		t.Fatalf("doctor: %d failed: %s", failed, text.String())
	}
}

func TestFreshFallbackBeatsStale(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e, v, a := newTestEngineAt(clock)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_VAULT_SECRET": "from-vault", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws"})
	if res := e.Headers(context.Background(), tracking); res.Provider != config.Vault {
		t.Fatalf("first: %+v", res)
	}
	v.failNow.Store(true) // Vault goes down; its value expires
	advance(61 * time.Second)
	res := e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.AWSSecretsManager || res.Headers["Authorization"] != "Bearer from-aws" {
		t.Fatalf("vault down: %+v", res)
	}
	if len(res.Attempts) != 1 || !strings.Contains(res.Attempts[0].Err.Error(), "vault: backend down") || res.Stale != nil {
		t.Fatalf("attempts = %+v", res.Attempts)
	}
	if res.FreshFor > 5*time.Second {
		t.Errorf("FreshFor = %s: the caller should come back when Vault's back-off ends", res.FreshFor)
	}
	a.failNow.Store(true) // both down: the stale Vault value is better than nothing
	advance(61 * time.Second)
	res = e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.Vault || res.Stale == nil || res.Headers["Authorization"] != "Bearer from-vault" {
		t.Fatalf("both down: %+v", res)
	}
	v.failNow.Store(false) // Vault recovers: fresh again once the back-off has passed
	advance(6 * time.Second)
	if res = e.Headers(context.Background(), tracking); res.Provider != config.Vault || res.Stale != nil {
		t.Fatalf("recovered: %+v", res)
	}
}
