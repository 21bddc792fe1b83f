package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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
	// A fresh map per reply: a reused map would keep "code" from an earlier reply.
	if r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h"}`))); err != nil || r["ok"] != true {
		t.Fatalf("SetEnv: %v %v", r, err)
	}
	if r, err := decode(Headers(e, "https://h")); err != nil || r["ok"] != false || r["code"] != "internal" {
		t.Fatalf("fetch panic: %v %v", r, err)
	}
	r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"aws-secrets-manager"}`)))
	if err != nil || r["ok"] != false || r["code"] != "internal" || !strings.Contains(fmt.Sprint(r["message"]), "boom in factory") {
		t.Fatalf("factory panic: %v %v", r, err)
	}
}

func decode(b []byte) (map[string]any, error) {
	var r map[string]any
	err := json.Unmarshal(b, &r)
	return r, err
}

func TestFailureIsJSONWhateverTheMessage(t *testing.T) {
	for _, msg := range []string{"unknown op \u0001\"\n\x00", "\xff\xfe not UTF-8", strings.Repeat("é", 5000)} {
		r, err := decode(Failure(msg))
		if err != nil || r["ok"] != false || r["code"] != "internal" {
			t.Fatalf("Failure(%q) = %v, %v", msg, r, err)
		}
		if m := fmt.Sprint(r["message"]); len(m) > 1000 {
			t.Fatalf("echo not cut: %d bytes", len(m))
		}
	}
	if r, err := decode(ABI()); err != nil || r["abi"] != float64(ABIVersion) {
		t.Fatalf("ABI: %v %v", r, err)
	}
}

func TestReplies(t *testing.T) {
	e := engine.New(nil)
	if r, err := decode(SetEnv(e, []byte(`not json`))); err != nil || r["ok"] != false {
		t.Fatalf("bad env JSON: %v %v", r, err)
	}
	if r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h:1"}`))); err != nil || r["ok"] != true {
		t.Fatalf("SetEnv: %v %v", r, err)
	}
	if r, err := decode(Headers(e, "https://h:1")); err != nil || r["code"] != "not_configured" || r["variable"] != "VAULT_ADDR" {
		t.Fatalf("unconfigured vault: %v %v", r, err)
	}
	if r, err := decode(Info(e)); err != nil || r["abi"] != float64(ABIVersion) {
		t.Fatalf("info: %v %v", r, err)
	}
}

type staticTok struct{}

func (staticTok) Fetch(context.Context) (secret.Credential, error) {
	return secret.Credential{Token: "tok"}, nil
}
func (staticTok) Close() {}

func TestEventsAreDeliveredOnce(t *testing.T) {
	e := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: 1e12, Warnings: []string{"sent in cleartext"},
				New: func(context.Context) (provider.Provider, error) { return staticTok{}, nil }}, nil
		},
	})
	SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h"}`))
	var first, second struct {
		OK     bool    `json:"ok"`
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(Headers(e, "https://h"), &first); err != nil || !first.OK {
		t.Fatalf("headers: %+v %v", first, err)
	}
	if len(first.Events) != 1 || first.Events[0].Level != "warning" || !strings.Contains(first.Events[0].Message, "sent in cleartext") {
		t.Fatalf("events: %+v", first.Events)
	}
	if err := json.Unmarshal(Headers(e, "https://h"), &second); err != nil || !second.OK || len(second.Events) != 0 {
		t.Fatalf("events repeated: %+v %v", second, err)
	}
}
