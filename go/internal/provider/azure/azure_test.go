package azure

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestSettings(t *testing.T) {
	for url, relaxed := range map[string]bool{
		"https://my-vault.vault.azure.net":         false,
		"https://my-vault.vault.azure.cn/":         false,
		"https://my-vault.vault.usgovcloudapi.net": false,
		"https://127.0.0.1:8443":                   true,
		"https://vault.azure.net.evil.example":     true,
	} {
		sp, err := Factory(config.Env{"MLFLOW_AZURE_KEY_VAULT_URL": url, "MLFLOW_AZURE_SECRET_NAME": "s"}, &config.Config{})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		p, err := sp.New(context.Background())
		if err != nil {
			t.Fatalf("%s: New: %v", url, err)
		}
		if got := p.(*Provider).s.relaxChallenge; got != relaxed {
			t.Errorf("%s: relaxed challenge verification = %v", url, got)
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	base := config.Env{"AZURE_KEY_VAULT_URL": "https://v.vault.azure.net", "MLFLOW_AZURE_SECRET_NAME": "s"}
	cases := []struct {
		change   config.Env
		variable string
	}{
		{config.Env{"AZURE_KEY_VAULT_URL": ""}, "AZURE_KEY_VAULT_URL"},
		{config.Env{"AZURE_KEY_VAULT_URL": "http://v.vault.azure.net"}, "AZURE_KEY_VAULT_URL"},
		{config.Env{"MLFLOW_AZURE_SECRET_NAME": ""}, "MLFLOW_AZURE_SECRET_NAME"},
		{config.Env{"MLFLOW_AZURE_CA_BUNDLE": "/nonexistent.pem"}, "MLFLOW_AZURE_CA_BUNDLE"},
		{config.Env{"MLFLOW_AZURE_AUTH_MODE": "x"}, "MLFLOW_AZURE_AUTH_MODE"},
		{config.Env{"MLFLOW_AZURE_TTL_SEC": "1h"}, "MLFLOW_AZURE_TTL_SEC"},
	}
	for _, c := range cases {
		env := config.Env{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range c.change {
			env[k] = v
		}
		_, err := Factory(env, &config.Config{Timeout: time.Second})
		if err == nil {
			t.Errorf("%v accepted", c.change)
			continue
		}
		if e := msaerr.As(err); e.Variable != c.variable || !strings.Contains(e.Error(), c.variable) {
			t.Errorf("%v: [%s] %q", c.change, e.Variable, e)
		}
	}
	// A CA bundle without certificates is refused when the client is built.
	env := config.Env{"MLFLOW_AZURE_CA_BUNDLE": "azure_test.go"}
	for k, v := range base {
		env[k] = v
	}
	sp, err := Factory(env, &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.New(context.Background()); err == nil || msaerr.As(err).Variable != "MLFLOW_AZURE_CA_BUNDLE" {
		t.Errorf("CA bundle without PEM: %v", err)
	}
}
