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
		{secret.Credential{Username: "jürgen", Password: "pässword"}, Basic, Authorization, "Basic asO8cmdlbjpww6Rzc3dvcmQ="}, // UTF-8, RFC 7617
		{secret.Credential{Token: "a b~!"}, Bearer, Authorization, "Bearer a b~!"},
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
		{secret.Credential{Token: "s3cr3t\x00"}, Bearer, msaerr.SecretUnusable, "control character"},
		{secret.Credential{Token: "s3cr3t\t"}, Bearer, msaerr.SecretUnusable, "control character"},
		{secret.Credential{Token: "s3cr3t€"}, Bearer, msaerr.SecretUnusable, "non-ASCII"},
		{secret.Credential{Token: "s3cr3té"}, Bearer, msaerr.SecretUnusable, "non-ASCII"},
		{secret.Credential{Token: "s3cr3t\xe9"}, Bearer, msaerr.SecretUnusable, "not valid UTF-8"},
		{secret.Credential{Token: "s3cr3t\u0085"}, Bearer, msaerr.SecretUnusable, "control character"},
		{secret.Credential{Token: "user-s3cr3t:"}, Basic, msaerr.SecretUnusable, "password is empty"},
		{secret.Credential{Username: "a:s3cr3t", Password: "p"}, Basic, msaerr.SecretUnusable, "username contains ':'"},
		{secret.Credential{Username: "s3cr3t\r\nX-y", Password: "p"}, Basic, msaerr.SecretUnusable, "username contains a control"},
		{secret.Credential{Username: "u", Password: "s3cr3t\n"}, Basic, msaerr.SecretUnusable, "password contains a control"},
		{secret.Credential{Username: "u", Password: "s3cr3t\xff"}, Basic, msaerr.SecretUnusable, "password is not valid UTF-8"},
		{secret.Credential{Username: "u", Password: "s3cr3t\ufffd"}, Basic, msaerr.SecretUnusable, "U+FFFD"},
		{secret.Credential{Username: "", Password: "s3cr3t"}, Basic, msaerr.SecretUnusable, "needs a username"},
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
	for _, bad := range []string{"Bad Header:", "X\r\nY", "Host", "host", "Content-Length", "content-type", "Transfer-Encoding",
		"Connection", "Keep-Alive", "Upgrade", "TE", "Trailer", "Cookie", "Set-Cookie", "Proxy-Authorization",
		"proxy-connection", "Expect", ":authority", "X-Tok\u00e9n", strings.Repeat("\x01", 1000)} {
		_, err := CanonicalName("MLFLOW_AUTH_HEADER_NAME", bad)
		if err == nil {
			t.Errorf("CanonicalName(%q) accepted", bad)
			continue
		}
		e := msaerr.As(err)
		if e.Code != msaerr.NotConfigured || e.Variable != "MLFLOW_AUTH_HEADER_NAME" || !strings.Contains(e.Message, "MLFLOW_AUTH_HEADER_NAME") ||
			len(e.Message) > 500 || strings.ContainsAny(e.Message, "\r\n\x01") {
			t.Errorf("CanonicalName(%q) = [%s %s] %q", bad, e.Code, e.Variable, e.Message)
		}
	}
	for _, good := range []string{"X-Api-Key", "X-Content-Key", "Api_Key", "Private-Token"} {
		if got, err := CanonicalName("V", good); err != nil || got != good {
			t.Errorf("CanonicalName(%q) = %q, %v", good, got, err)
		}
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

func TestUnknownMode(t *testing.T) {
	if _, err := Build(secret.Credential{Token: "t"}, Mode("digest"), "V", Authorization); err == nil || msaerr.As(err).Code != msaerr.Internal {
		t.Errorf("unknown mode: %v", err)
	}
}
