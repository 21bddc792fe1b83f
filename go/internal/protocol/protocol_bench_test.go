package protocol

import (
	"context"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

type static struct{}

func (static) Fetch(context.Context) (secret.Credential, error) {
	return secret.Credential{Token: "tok"}, nil
}
func (static) Close() {}

// BenchmarkHeadersJSON is the whole GetAuthHeaders reply at a cache hit,
// short of the C string copy.
func BenchmarkHeadersJSON(b *testing.B) {
	e := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: 1e12,
				New: func(context.Context) (provider.Provider, error) { return static{}, nil }}, nil
		},
	})
	SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://mlflow.corp.com"}`))
	b.ReportAllocs()
	for b.Loop() {
		if out := Headers(e, "https://mlflow.corp.com"); out[6] != 't' {
			b.Fatalf("reply %s", out)
		}
	}
}
