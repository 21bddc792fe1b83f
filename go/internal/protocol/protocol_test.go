package protocol

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

type panicky struct{}

func (panicky) Fetch(context.Context) (secret.Credential, error) { panic("boom in fetch") }
func (panicky) Close()                                           {}

func TestPanicsBecomeInternalErrors(t *testing.T) {
	factories := map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: 1e9,
				New: func(context.Context) (provider.Provider, error) { return panicky{}, nil }}, nil
		},
		config.AWSSecretsManager: func(config.Env, *config.Config) (provider.Spec, error) { panic("boom in factory") },
	}
	e := engine.NewWith(nil, factories)
	var r map[string]any
	if err := json.Unmarshal(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"http://h"}`)), &r); err != nil || r["ok"] != true {
		t.Fatalf("SetEnv: %v %v", r, err)
	}
	if err := json.Unmarshal(Headers(e, "http://h"), &r); err != nil || r["ok"] != false || r["code"] != "internal" {
		t.Fatalf("fetch panic: %v %v", r, err)
	}
	if err := json.Unmarshal(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"aws-secrets-manager"}`)), &r); err != nil || r["code"] != "internal" {
		t.Fatalf("factory panic: %v %v", r, err)
	}
}

func TestReplies(t *testing.T) {
	e := engine.New(nil)
	var r map[string]any
	if err := json.Unmarshal(SetEnv(e, []byte(`not json`)), &r); err != nil || r["ok"] != false {
		t.Fatalf("bad env JSON: %v %v", r, err)
	}
	_ = json.Unmarshal(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"http://h:1"}`)), &r)
	if err := json.Unmarshal(Headers(e, "http://h:1"), &r); err != nil || r["code"] != "not_configured" || r["variable"] != "VAULT_ADDR" {
		t.Fatalf("unconfigured vault: %v %v", r, err)
	}
	if err := json.Unmarshal(Info(e), &r); err != nil || r["abi"] != float64(ABIVersion) {
		t.Fatalf("info: %v %v", r, err)
	}
}
