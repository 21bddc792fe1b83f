package engine

import (
	"context"
	"testing"

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
