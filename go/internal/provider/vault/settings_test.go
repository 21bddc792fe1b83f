package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
)

func base() config.Env {
	return config.Env{"VAULT_ADDR": "https://vault.corp.com:8200", "VAULT_TOKEN": "s.tok3n-value",
		"MLFLOW_VAULT_SECRET_PATH": "/secret/mlflow/auth/"}
}

func TestSettingsErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		change   config.Env
		variable string
	}{
		{config.Env{"VAULT_ADDR": ""}, "VAULT_ADDR"},
		{config.Env{"VAULT_ADDR": "vault.corp.com:8200"}, "VAULT_ADDR"},
		{config.Env{"MLFLOW_VAULT_SECRET_PATH": " "}, "MLFLOW_VAULT_SECRET_PATH"},
		{config.Env{"VAULT_TOKEN": ""}, "VAULT_TOKEN"},
		{config.Env{"VAULT_TOKEN": "", "VAULT_ROLE_ID": "r"}, "VAULT_SECRET_ID"},
		{config.Env{"VAULT_TOKEN": "", "VAULT_SECRET_ID": "s3cr3t-id"}, "VAULT_ROLE_ID"},
		{config.Env{"VAULT_CACERT": "/nonexistent/ca.pem"}, "VAULT_CACERT"},
		{config.Env{"VAULT_SKIP_VERIFY": "sometimes"}, "VAULT_SKIP_VERIFY"},
		{config.Env{"MLFLOW_VAULT_AUTH_MODE": "token"}, "MLFLOW_VAULT_AUTH_MODE"},
		{config.Env{"MLFLOW_VAULT_TTL_SEC": "5m"}, "MLFLOW_VAULT_TTL_SEC"},
	}
	for _, c := range cases {
		env := base()
		for k, v := range c.change {
			env[k] = v
		}
		_, err := Factory(env, &config.Config{Timeout: time.Second})
		if err == nil {
			t.Errorf("%v accepted", c.change)
			continue
		}
		e := msaerr.As(err)
		if e.Code != msaerr.NotConfigured || e.Variable != c.variable || !strings.Contains(e.Error(), c.variable) {
			t.Errorf("%v: [%s %s] %q", c.change, e.Code, e.Variable, e)
		}
		for _, secret := range []string{"s.tok3n-value", "s3cr3t-id"} {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("%v: message leaks a credential: %q", c.change, e)
			}
		}
	}
}

func TestSpec(t *testing.T) {
	env := base()
	env["MLFLOW_VAULT_TTL_SEC"] = "0"
	env["MLFLOW_VAULT_AUTH_MODE"] = "BASIC"
	spec, err := Factory(env, &config.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if spec.TTL != time.Second || spec.Mode != header.Basic || spec.ModeVar != "MLFLOW_VAULT_AUTH_MODE" {
		t.Errorf("spec = %+v", spec)
	}
	for _, d := range spec.Details {
		if strings.Contains(d[1], "tok3n") {
			t.Errorf("details leak the token: %v", d)
		}
	}
	if strings.Contains(provider.KeyOf("vault", spec.Settings), "tok3n") {
		t.Error("the cache key holds the token in clear")
	}
	other := base()
	other["MLFLOW_VAULT_SECRET_PATH"] = "secret/mlflow/other"
	spec2, _ := Factory(other, &config.Config{Timeout: time.Second})
	if provider.KeyOf("vault", spec2.Settings) == provider.KeyOf("vault", spec.Settings) {
		t.Error("a different secret path must be a different cache key")
	}
	approle := base()
	delete(approle, "VAULT_TOKEN")
	approle["VAULT_ROLE_ID"], approle["VAULT_SECRET_ID"] = "r", "s"
	spec3, err := Factory(approle, &config.Config{Timeout: time.Second})
	if err != nil || !strings.Contains(spec3.Details[2][1], "approle") {
		t.Errorf("approle spec = %+v, %v", spec3, err)
	}
	if _, err := spec3.New(context.Background()); err != nil {
		t.Errorf("New: %v", err)
	}
}

func mustSpec(t *testing.T, env config.Env) provider.Spec {
	t.Helper()
	sp, err := Factory(env, &config.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// Credentials and TLS settings of one family never go to the other
// family's address; VAULT_* still wins when both names of one setting are set.
func TestVariableFamilies(t *testing.T) {
	const path = "secret/a"
	mixed := []struct {
		env        config.Env
		variable   string
		addrInUse  string
		suggestion string
	}{
		{config.Env{"VAULT_ADDR": "https://v", "BAO_TOKEN": "bao-tok"}, "BAO_TOKEN", "VAULT_ADDR", "VAULT_TOKEN"},
		{config.Env{"BAO_ADDR": "https://b", "VAULT_TOKEN": "vault-tok"}, "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"},
		// A leftover BAO_TOKEN with VAULT_* AppRole: the token would win and go to VAULT_ADDR.
		{config.Env{"VAULT_ADDR": "https://v", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s", "BAO_TOKEN": "bao-tok"}, "BAO_TOKEN", "VAULT_ADDR", "VAULT_TOKEN"},
		{config.Env{"BAO_ADDR": "https://b", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s"}, "VAULT_ROLE_ID", "BAO_ADDR", "BAO_ROLE_ID"},
		{config.Env{"BAO_ADDR": "https://b", "BAO_ROLE_ID": "r", "VAULT_SECRET_ID": "s"}, "VAULT_SECRET_ID", "BAO_ADDR", "BAO_SECRET_ID"},
		// Both tokens with BAO_ADDR: VAULT_TOKEN wins, and may not go to BAO_ADDR.
		{config.Env{"BAO_ADDR": "https://b", "VAULT_TOKEN": "vault-tok", "BAO_TOKEN": "bao-tok"}, "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"},
		// TLS trust of the other family.
		{config.Env{"VAULT_ADDR": "https://v", "VAULT_TOKEN": "t", "BAO_SKIP_VERIFY": "true"}, "BAO_SKIP_VERIFY", "VAULT_ADDR", "VAULT_SKIP_VERIFY"},
		{config.Env{"VAULT_ADDR": "https://v", "VAULT_TOKEN": "t", "BAO_CACERT": "/x.pem"}, "BAO_CACERT", "VAULT_ADDR", "VAULT_CACERT"},
		{config.Env{"VAULT_ADDR": "https://v", "VAULT_TOKEN": "t", "BAO_NAMESPACE": "ns"}, "BAO_NAMESPACE", "VAULT_ADDR", "VAULT_NAMESPACE"},
	}
	for _, c := range mixed {
		c.env["MLFLOW_VAULT_SECRET_PATH"] = path
		_, err := Factory(c.env, &config.Config{Timeout: time.Second})
		e := msaerr.As(err)
		if err == nil || e.Code != msaerr.NotConfigured || e.Variable != c.variable || !strings.Contains(e.Message, c.variable) ||
			!strings.Contains(e.Message, c.addrInUse) || !strings.Contains(e.Message, c.suggestion) {
			t.Errorf("%v: %v [%s]", c.env, err, e.Variable)
		}
		if strings.Contains(e.Error(), "tok") && !strings.Contains(e.Error(), "TOKEN") {
			t.Errorf("%v: message may leak the token: %v", c.env, e)
		}
	}
	ok := []struct {
		env   config.Env
		token string
		vars  Vars
	}{
		{config.Env{"VAULT_ADDR": "https://v", "VAULT_TOKEN": "vt", "BAO_TOKEN": "bt"}, "vt", Vars{Addr: "VAULT_ADDR", Token: "VAULT_TOKEN"}},
		{config.Env{"VAULT_ADDR": "https://v", "BAO_ADDR": "https://b", "VAULT_TOKEN": "vt", "BAO_TOKEN": "bt"}, "vt", Vars{Addr: "VAULT_ADDR", Token: "VAULT_TOKEN"}},
		{config.Env{"BAO_ADDR": "https://b", "BAO_TOKEN": "bt"}, "bt", Vars{Addr: "BAO_ADDR", Token: "BAO_TOKEN"}},
	}
	for _, c := range ok {
		c.env["MLFLOW_VAULT_SECRET_PATH"] = path
		s := mustSpec(t, c.env).Settings.(Settings)
		if s.Token != c.token || s.Vars.Addr != c.vars.Addr || s.Vars.Token != c.vars.Token {
			t.Errorf("%v: token %q vars %+v", c.env, s.Token, s.Vars)
		}
		// Unset settings are named in the address's family.
		if want := c.vars.Name(EnvCACert); s.Vars.CACert != want {
			t.Errorf("%v: CACert named %q, want %q", c.env, s.Vars.CACert, want)
		}
	}
}
