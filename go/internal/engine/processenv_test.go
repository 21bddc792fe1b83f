package engine

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// The AWS and Azure SDKs read their settings from the process environment as
// it was when the library loaded. The library never writes that environment
// (a setenv from a Go thread races any C getenv in the host's other threads):
// a provider whose SDK would read another value than the one handed over
// refuses, naming the variables, and set_env reports them so that the caller
// can start the core in a process that has them.
func TestHandedSDKVariablesAreNeverWrittenAndRefuseTheProvider(t *testing.T) {
	if _, ok := os.LookupEnv("AWS_PROFILE"); ok {
		t.Skip("AWS_PROFILE is set in this test process") // the check below needs it unset
	}
	proc := config.Env{"AWS_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": "/start/credentials",
		"IDENTITY_ENDPOINT": "http://127.0.0.1:1/start", "AZURE_KEY_VAULT_URL": "https://start.vault.azure.net"}
	e := New(nil)
	e.process = func() config.Env { return proc }
	base := config.Env{"MLFLOW_TRACKING_URI": tracking, "MLFLOW_AWS_SECRET_ID": "mlflow/token",
		"AWS_SHARED_CREDENTIALS_FILE": "/start/credentials"}

	cases := []struct {
		name   string
		env    config.Env
		differ []string // what set_env reports, sorted
	}{
		{"the same as the process", config.Env{"AWS_REGION": "us-east-1"}, []string{}},
		// AWS_REGION is passed to the SDK explicitly when set, so it may differ.
		{"a region of its own", config.Env{"AWS_REGION": "eu-west-1"}, []string{}},
		{"a profile the process lacks", config.Env{"AWS_REGION": "us-east-1", "AWS_PROFILE": "ml"}, []string{"AWS_PROFILE"}},
		// Unset in the handed environment but set in the process: the SDK would use the process's.
		{"a region removed", config.Env{}, []string{"AWS_REGION"}},
		{"a file changed and a key added", config.Env{"AWS_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": "/other",
			"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"}, []string{"AWS_ACCESS_KEY_ID", "AWS_SHARED_CREDENTIALS_FILE"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager"}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range c.env {
				env[k] = v
			}
			e.SetEnv(env)
			got := e.Settings().ProcessEnv
			if !slices.Equal(got, c.differ) {
				t.Fatalf("ProcessEnv = %q, want %q", got, c.differ)
			}
			if _, ok := os.LookupEnv("AWS_PROFILE"); ok {
				t.Fatal("SetEnv wrote AWS_PROFILE into the process environment")
			}
			if len(c.differ) == 0 {
				return
			}
			res := e.Headers(context.Background(), tracking)
			me := msaerr.As(res.Err)
			if me == nil || me.Code != msaerr.NotConfigured || me.Variable != c.differ[0] {
				t.Fatalf("Headers error = %#v, want not_configured naming %s", me, c.differ[0])
			}
			if me.Message == "" || !containsAll(me.Message, c.differ...) {
				t.Fatalf("message %q does not name %q", me.Message, c.differ)
			}
		})
	}

	// Azure: the identity endpoint is azidentity's; the vault URL is ours.
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault", "MLFLOW_TRACKING_URI": tracking,
		"MLFLOW_AZURE_SECRET_NAME": "token", "AZURE_KEY_VAULT_URL": "https://other.vault.azure.net",
		"IDENTITY_ENDPOINT": "http://127.0.0.1:2/other", "AWS_PROFILE": "not-read-by-azure"})
	if got := e.Settings().ProcessEnv; !slices.Equal(got, []string{"IDENTITY_ENDPOINT"}) {
		t.Fatalf("azure ProcessEnv = %q, want [IDENTITY_ENDPOINT]", got)
	}
	// A provider that reads nothing from the process (Vault with a token) is unaffected.
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "MLFLOW_TRACKING_URI": tracking,
		"VAULT_ADDR": "https://vault.corp.com", "VAULT_TOKEN": "t", "MLFLOW_VAULT_SECRET_PATH": "secret/x",
		"AWS_PROFILE": "p", "IDENTITY_ENDPOINT": "x"})
	if got := e.Settings().ProcessEnv; len(got) != 0 {
		t.Fatalf("vault token ProcessEnv = %q, want none", got)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
