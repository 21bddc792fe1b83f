package engine

import (
	"context"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
)

func benchEngine(b *testing.B, extra config.Env) *Engine {
	e, _, _ := newTestEngine()
	env := config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking}
	for k, v := range extra {
		env[k] = v
	}
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Err != nil {
		b.Fatal(res.Err)
	}
	return e
}

// BenchmarkHeadersCacheHit is what a C caller pays per request once the
// credential is cached.
func BenchmarkHeadersCacheHit(b *testing.B) {
	e := benchEngine(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Headers(context.Background(), tracking); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

func BenchmarkHeadersCacheHitParallel(b *testing.B) {
	e := benchEngine(b, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := e.Headers(context.Background(), tracking); res.Err != nil {
				b.Error(res.Err)
				return
			}
		}
	})
}

func BenchmarkHeadersDenied(b *testing.B) {
	e := benchEngine(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Headers(context.Background(), "https://evil.example"); res.Err == nil {
			b.Fatal("allowed")
		}
	}
}

// BenchmarkHeadersDuringOutage is the per-request cost while the backend is
// down and the held credential is served stale (retries run in the
// background with back-off).
func BenchmarkHeadersDuringOutage(b *testing.B) {
	clk := &testClock{t: time.Unix(1000, 0)}
	e, v, _ := newTestEngineAt(clk.now)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	if res := e.Headers(context.Background(), tracking); res.Err != nil {
		b.Fatal(res.Err)
	}
	v.failNow.Store(true)
	clk.advance(2 * time.Minute) // past the TTL: every call is served stale
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Headers(context.Background(), tracking); res.Err != nil || res.Headers == nil {
			b.Fatal(res.Err)
		}
	}
}
