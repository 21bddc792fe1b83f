package header

import (
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

func TestBuild(t *testing.T) {
	tok := secret.Credential{Token: "tok"}
	up := secret.Credential{Username: "alice", Password: "pw:with:colons"}
	cases := []struct {
		cred       secret.Credential
		mode       Mode
		name, want string
	}{
		{tok, Bearer, Authorization, "Bearer tok"},
		{tok, Bearer, "X-Api-Key", "tok"},
		{up, Basic, Authorization, "Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM="},
		{secret.Credential{Token: "alice:pw:with:colons"}, Basic, Authorization, "Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM="},
		{up, Basic, "X-Auth", "Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM="},
	}
	for _, c := range cases {
		got, err := Build(c.cred, c.mode, "MLFLOW_VAULT_AUTH_MODE", c.name)
		if err != nil {
			t.Errorf("Build(%+v, %s, %s): %v", c.cred, c.mode, c.name, err)
			continue
		}
		if len(got) != 1 || got[c.name] != c.want {
			t.Errorf("Build(%+v, %s, %s) = %v, want %s", c.cred, c.mode, c.name, got, c.want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		cred     secret.Credential
		mode     Mode
		code     msaerr.Code
		mentions string
	}{
		{secret.Credential{Username: "u", Password: "s3cr3t"}, Bearer, msaerr.NotConfigured, "MLFLOW_VAULT_AUTH_MODE=basic"},
		{secret.Credential{Token: "s3cr3t-no-colon"}, Basic, msaerr.NotConfigured, "MLFLOW_VAULT_AUTH_MODE=bearer"},
		{secret.Credential{Token: ":s3cr3t"}, Basic, msaerr.NotConfigured, "user:pass"},
		{secret.Credential{Token: "s3cr3t\r\nX-Evil: 1"}, Bearer, msaerr.SecretUnusable, "line break"},
	}
	for _, c := range cases {
		_, err := Build(c.cred, c.mode, "MLFLOW_VAULT_AUTH_MODE", Authorization)
		if err == nil {
			t.Errorf("Build(%+v, %s) accepted", c.cred, c.mode)
			continue
		}
		e := msaerr.As(err)
		if e.Code != c.code || !strings.Contains(e.Error(), c.mentions) || strings.Contains(e.Error(), "s3cr3t") {
			t.Errorf("Build(%+v, %s) = [%s] %q", c.cred, c.mode, e.Code, e)
		}
		if c.code == msaerr.NotConfigured && e.Variable != "MLFLOW_VAULT_AUTH_MODE" {
			t.Errorf("variable = %q", e.Variable)
		}
	}
}

func TestNamesAndModes(t *testing.T) {
	for _, in := range []string{"", "authorization", "AUTHORIZATION", " Authorization "} {
		if got, err := CanonicalName("V", in); err != nil || got != Authorization {
			t.Errorf("CanonicalName(%q) = %q, %v", in, got, err)
		}
	}
	if got, _ := CanonicalName("V", "X-Token"); got != "X-Token" {
		t.Errorf("custom name changed to %q", got)
	}
	if _, err := CanonicalName("MLFLOW_AUTH_HEADER_NAME", "Bad Header:"); err == nil || msaerr.As(err).Variable != "MLFLOW_AUTH_HEADER_NAME" {
		t.Errorf("invalid header name: %v", err)
	}
	for in, want := range map[string]Mode{"": Bearer, "BEARER": Bearer, " basic ": Basic} {
		if got, err := ParseMode("V", in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("MLFLOW_AWS_AUTH_MODE", "digest"); err == nil || !strings.Contains(err.Error(), "MLFLOW_AWS_AUTH_MODE") {
		t.Errorf("ParseMode(digest) = %v", err)
	}
}
