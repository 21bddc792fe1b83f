package secret

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

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

func jwt(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(2000000000, 0).UTC()
	tok := jwt(`{"alg":"RS256","typ":"JWT"}`, `{"sub":"me","exp":2000000000}`)
	for _, raw := range []string{tok, `{"token":"` + tok + `"}`, "  " + tok + "\n"} {
		c, err := Parse([]byte(raw))
		if err != nil || c.Token != tok || !c.Expires.Equal(exp) {
			t.Fatalf("Parse(%.20q) = %+v, %v", raw, c, err)
		}
	}
	if got := TokenExpiry(jwt(`{"alg":"none"}`, `{"exp":1.5e9}`)); !got.Equal(time.Unix(1500000000, 0)) {
		t.Errorf("float exp: %s", got)
	}
	if got := TokenExpiry(jwt(`{"alg":"none"}`, `{"exp":1700000000.25}`)); !got.Equal(time.Unix(1700000000, 250000000)) {
		t.Errorf("fractional exp: %s", got)
	}
	// Not a JWT, or no usable exp: unknown (zero).
	for _, tok := range []string{
		"plain-token", "a.b", "a.b.c.d", "not base64!.x.y",
		jwt(`not json`, `{"exp":2000000000}`),
		jwt(`{"alg":"none"}`, `{"sub":"no exp"}`),
		jwt(`{"alg":"none"}`, `{"exp":"2000000000"}`),
		jwt(`{"alg":"none"}`, `{"exp":-5}`),
		jwt(`{"alg":"none"}`, `{"exp":1e300}`),
		jwt(`{"alg":"none"}`, `[1,2]`),
		jwt(`{"alg":"none"}`, `{"exp":2000000000}`) + strings.Repeat("x", 70000),
	} {
		if got := TokenExpiry(tok); !got.IsZero() {
			t.Errorf("TokenExpiry(%.30q) = %s, want zero", tok, got)
		}
	}
	if c, _ := Parse([]byte("user:pass")); !c.Expires.IsZero() {
		t.Error("plain token got an expiry")
	}
}

func TestExpiringBy(t *testing.T) {
	a, b := time.Unix(100, 0), time.Unix(200, 0)
	if c := (Credential{}).ExpiringBy(b).ExpiringBy(a).ExpiringBy(b); !c.Expires.Equal(a) {
		t.Fatal(c.Expires)
	}
	if c := (Credential{Expires: a}).ExpiringBy(time.Time{}); !c.Expires.Equal(a) {
		t.Fatal("zero replaced a known expiry")
	}
}
