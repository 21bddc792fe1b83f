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
		{Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "ftp://x.com"}, "MLFLOW_SECRETS_ALLOWED_HOSTS"},
		{Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1:99999"}, "MLFLOW_SECRETS_ALLOWED_HOSTS"},
		{Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "*."}, "MLFLOW_SECRETS_ALLOWED_HOSTS"},
		{Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "a..b"}, "MLFLOW_SECRETS_ALLOWED_HOSTS"},
		{Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "ok.com,a b"}, "MLFLOW_SECRETS_ALLOWED_HOSTS"},
		{Env{"MLFLOW_SECRETS_ALLOW_HTTP": "sometimes"}, "MLFLOW_SECRETS_ALLOW_HTTP"},
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
	if got := cfg.AllowedHosts.Patterns(); len(got) != 1 || got[0] != "https://mlflow.corp.com:443" {
		t.Errorf("default allowed hosts = %v", got)
	}
	if cfg.AllowHTTP || len(cfg.Warnings) != 0 {
		t.Errorf("AllowHTTP %v, warnings %v", cfg.AllowHTTP, cfg.Warnings)
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

func TestTimeoutBudget(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 10 * time.Second, "2.5": 2500 * time.Millisecond, " 3 ": 3 * time.Second,
		"0": time.Second, "0.2": time.Second, "-4": time.Second, "301": 300 * time.Second, "1e9": 300 * time.Second} {
		b, err := ReadBasics(Env{EnvTimeout: in})
		if err != nil || b.Timeout != want {
			t.Errorf("%q: %s, %v; want %s", in, b.Timeout, err, want)
		}
	}
	for _, in := range []string{"ten", "NaN", "inf", "1s"} {
		b, err := ReadBasics(Env{EnvTimeout: in})
		if err == nil || msaerr.As(err).Variable != EnvTimeout || b.Timeout != DefaultTimeout || b.LogLevel != "INFO" {
			t.Errorf("%q: %+v, %v", in, b, err)
		}
		if _, err := Parse(Env{EnvTimeout: in}); err == nil {
			t.Errorf("%q: Parse accepted it", in)
		}
	}
}

func TestInvalidLogLevelIsAWarning(t *testing.T) {
	cfg, err := Parse(Env{"MLFLOW_SECRETS_LOG_LEVEL": "loud\x1b[2J" + strings.Repeat("x", 5000)})
	if err != nil {
		t.Fatalf("an invalid log level stopped the plugin: %v", err)
	}
	if cfg.LogLevel != "INFO" || len(cfg.Warnings) != 1 {
		t.Fatalf("level %q, warnings %q", cfg.LogLevel, cfg.Warnings)
	}
	w := cfg.Warnings[0]
	if !strings.Contains(w, "MLFLOW_SECRETS_LOG_LEVEL") || !strings.Contains(w, "INFO") || strings.Contains(w, "\x1b") || len(w) > 400 {
		t.Errorf("warning %q", w)
	}
	for in, want := range map[string]string{"warn": "WARNING", "Debug": "DEBUG", "": "INFO", "critical": "CRITICAL"} {
		cfg, err := Parse(Env{"MLFLOW_SECRETS_LOG_LEVEL": in})
		if err != nil || cfg.LogLevel != want || len(cfg.Warnings) != 0 {
			t.Errorf("level %q: %v %v", in, cfg, err)
		}
	}
}

func TestAllowHTTPAndRedaction(t *testing.T) {
	for _, on := range []string{"true", "1", "YES", "on"} {
		cfg, err := Parse(Env{"MLFLOW_SECRETS_ALLOW_HTTP": on})
		if err != nil || !cfg.AllowHTTP {
			t.Errorf("%s: %v %v", on, cfg, err)
		}
	}
	// The tracking URI may hold a password: the derived policy never shows it.
	cfg, err := Parse(Env{"MLFLOW_TRACKING_URI": "https://svc:hunter2@mlflow.corp.com:8443/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.AllowedHosts.Patterns(), ","); got != "https://mlflow.corp.com:8443" {
		t.Errorf("patterns %q", got)
	}
	_, err = Parse(Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "https://svc:hunter2@mlflow.corp.com"})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "***") {
		t.Errorf("userinfo in a pattern: %v", err)
	}
}

func TestEnvHelpers(t *testing.T) {
	env := Env{"A": "  ", "B": " b ", "L": " x, ,y ,", "P_1": "1", "P_2": "2", "Q": "q", "N": "12"}
	if got := env.Get("A", "B"); got != "b" {
		t.Errorf("Get = %q", got)
	}
	if got := env.List("L"); !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Errorf("List = %q", got)
	}
	if got := env.WithPrefix("P_"); !reflect.DeepEqual(got, []string{"P_1=1", "P_2=2"}) {
		t.Errorf("WithPrefix = %q", got)
	}
	if n, err := env.Int("N", 0, 0, 10); err != nil || n != 10 {
		t.Errorf("Int = %d, %v", n, err)
	}
	if _, err := env.Int("B", 0, 0, 10); err == nil || msaerr.As(err).Variable != "B" {
		t.Errorf("Int(b) = %v", err)
	}
	t.Setenv("MSA_CONFIG_TEST_VAR", "v=1")
	if got := ProcessEnv()["MSA_CONFIG_TEST_VAR"]; got != "v=1" {
		t.Errorf("ProcessEnv = %q", got)
	}
}
