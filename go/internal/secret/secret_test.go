package secret

import (
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestParse(t *testing.T) {
	cases := []struct {
		raw  string
		want Credential
	}{
		{`{"token": " abc "}`, Credential{Token: "abc"}},
		{`{"username": "u", "password": "p"}`, Credential{Username: "u", Password: "p"}},
		{`{"token": "t", "username": "u", "password": "p"}`, Credential{Token: "t"}},
		{`{"token": "t", "extra": {"x": 1}}`, Credential{Token: "t"}},
		{`{"token": "", "username": "u", "password": "p"}`, Credential{Username: "u", Password: "p"}},
		{`{"token": 123456789012345678901}`, Credential{Token: "123456789012345678901"}},
		{"  plain-token\n", Credential{Token: "plain-token"}},
		{"user:pa:ss", Credential{Token: "user:pa:ss"}},
		{"12345", Credential{Token: "12345"}},
		{`"quoted"`, Credential{Token: "quoted"}},
	}
	for _, c := range cases {
		got, err := Parse([]byte(c.raw))
		if err != nil {
			t.Errorf("Parse(%q): %v", c.raw, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.raw, got, c.want)
		}
	}
}

func TestParseErrorsNeverShowTheSecret(t *testing.T) {
	cases := []struct{ raw, mentions string }{
		{"   ", "empty"},
		{`{"token": "s3cr3t-value"`, "not a valid JSON object"},
		{`{"username": "s3cr3t-value"}`, "no \"password\""},
		{`{"password": "s3cr3t-value"}`, "no \"username\""},
		{`{"api_key": "s3cr3t-value"}`, `needs a "token" field or "username" and "password" fields; it has none of them`},
		{`{"s3cr3t-name": "x"}`, "it has none of them"},
		{`{}`, "no fields"},
		{`{"token": "   "}`, `"token" field is empty`},
		{`{"token": ""}`, `"token" field is empty`},
		{`{"username": "s3cr3t-u", "password": " "}`, `"password" field is empty`},
		{`{"username": "", "password": "s3cr3t-p"}`, `"username" field is empty`},
		{`{"username": "", "password": ""}`, `"username" and "password" fields are empty`},
		{"s3cr3t\xff\xfe", "not valid UTF-8"},
		{`"   "`, "empty"},
		{`{"token": ["s3cr3t-value"]}`, "must be a string"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.raw))
		if err == nil {
			t.Errorf("Parse(%q) accepted", c.raw)
			continue
		}
		if msaerr.As(err).Code != msaerr.SecretUnusable {
			t.Errorf("Parse(%q): code %s", c.raw, msaerr.As(err).Code)
		}
		if !strings.Contains(err.Error(), c.mentions) {
			t.Errorf("Parse(%q) = %q, want it to mention %q", c.raw, err, c.mentions)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Parse(%q) leaked the secret: %q", c.raw, err)
		}
	}
}
