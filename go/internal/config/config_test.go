package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestProviderOrder(t *testing.T) {
	cases := []struct {
		env  Env
		want []string
	}{
		{Env{}, nil},
		{Env{"MLFLOW_SECRETS_AUTH_ENABLE": " Azure-Key-Vault , vault ,vault"}, []string{"azure-key-vault", "vault"}},
		{Env{"MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager", "MLFLOW_SECRETS_AUTH_ENABLE_AZURE_KEY_VAULT": "yes",
			"MLFLOW_SECRETS_AUTH_ENABLE_VAULT": "ON"}, []string{"aws-secrets-manager", "vault", "azure-key-vault"}},
		{Env{"MLFLOW_SECRETS_AUTH_ENABLE_VAULT": "false", "MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER": "1"}, []string{"aws-secrets-manager"}},
	}
	for _, c := range cases {
		cfg, err := Parse(c.env)
		if err != nil {
			t.Fatalf("Parse(%v): %v", c.env, err)
		}
		if !reflect.DeepEqual(cfg.Providers, c.want) {
			t.Errorf("Parse(%v).Providers = %v, want %v", c.env, cfg.Providers, c.want)
		}
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env      Env
		variable string
	}{
		{Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,gcp"}, "MLFLOW_SECRETS_AUTH_ENABLE"},
		{Env{"MLFLOW_SECRETS_AUTH_ENABLE_VAULT": "maybe"}, "MLFLOW_SECRETS_AUTH_ENABLE_VAULT"},
		{Env{"MLFLOW_AUTH_HEADER_NAME": "X Bad"}, "MLFLOW_AUTH_HEADER_NAME"},
		{Env{"MLFLOW_SECRETS_LOG_LEVEL": "loud"}, "MLFLOW_SECRETS_LOG_LEVEL"},
		{Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "https://x.com"}, "MLFLOW_SECRETS_ALLOWED_HOSTS"},
		{Env{"MLFLOW_SECRETS_TIMEOUT_SEC": "ten"}, "MLFLOW_SECRETS_TIMEOUT_SEC"},
		{Env{"MLFLOW_SECRETS_MAX_RETRIES": "-x"}, "MLFLOW_SECRETS_MAX_RETRIES"},
	}
	for _, c := range cases {
		_, err := Parse(c.env)
		if err == nil {
			t.Errorf("Parse(%v) accepted", c.env)
			continue
		}
		e := msaerr.As(err)
		if e.Code != msaerr.NotConfigured || e.Variable != c.variable || !strings.Contains(e.Error(), c.variable) {
			t.Errorf("Parse(%v) = [%s %s] %q", c.env, e.Code, e.Variable, e)
		}
	}
}

func TestDefaultsAndClamping(t *testing.T) {
	cfg, err := Parse(Env{"MLFLOW_AUTH_HEADER_NAME": "AUTHORIZATION", "MLFLOW_SECRETS_LOG_LEVEL": "debug",
		"MLFLOW_TRACKING_URI": "https://mlflow.corp.com"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HeaderName != "Authorization" || cfg.LogLevel != "DEBUG" || cfg.Timeout != 10*time.Second || cfg.MaxRetries != 2 {
		t.Errorf("cfg = %+v", cfg)
	}
	if got := cfg.AllowedHosts.Patterns(); len(got) != 1 || got[0] != "mlflow.corp.com:443" {
		t.Errorf("default allowed hosts = %v", got)
	}
	env := Env{"MLFLOW_VAULT_TTL_SEC": "0", "BIG": "999999", "NEG": "-5"}
	if d, _ := env.Seconds("MLFLOW_VAULT_TTL_SEC", 300, 1, 86400); d != time.Second {
		t.Errorf("TTL 0 clamped to %s", d)
	}
	if d, _ := env.Seconds("BIG", 300, 1, 86400); d != 86400*time.Second {
		t.Errorf("TTL 999999 clamped to %s", d)
	}
	if d, _ := env.Seconds("UNSET", 300, 1, 86400); d != 300*time.Second {
		t.Errorf("default TTL %s", d)
	}
}
