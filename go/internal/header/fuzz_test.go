package header

import (
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// FuzzSecretHeader: parsing any secret content and building a header from it
// in either mode, under any name, never panics; every header value holds only
// visible ASCII and spaces (no CR, LF, NUL or non-ASCII byte); and no error
// repeats the secret.
func FuzzSecretHeader(f *testing.F) {
	for _, s := range []string{
		`{"token": "abc"}`, `{"username": "u", "password": "p"}`, "user:pass", "user:", ":pass", "a:b:c",
		"tok\r\nX-Evil: 1", "t\x00k", "tök", "t€k", "\xff\xfe", `{"token": "\u00e9"}`, `{"token": "\ud800"}`,
		`{"username": "a:b", "password": "p"}`, `{"username": "u\n", "password": "p"}`, `{"token": 12345678901234567890}`,
		`"quoted\r\n"`, `{"token": "  "}`, `{"token": ["x"]}`,
	} {
		f.Add([]byte(s), false, "")
		f.Add([]byte(s), true, "X-Api-Key")
	}
	f.Fuzz(func(t *testing.T, raw []byte, basic bool, name string) {
		mode := Bearer
		if basic {
			mode = Basic
		}
		cred, err := secret.Parse(raw)
		if err != nil {
			checkErr(t, raw, err)
			return
		}
		canon, err := CanonicalName("MLFLOW_AUTH_HEADER_NAME", name)
		if err != nil {
			return
		}
		h, err := Build(cred, mode, "MLFLOW_VAULT_AUTH_MODE", canon)
		if err != nil {
			checkErr(t, raw, err)
			return
		}
		if len(h) != 1 {
			t.Fatalf("%d headers", len(h))
		}
		for k, v := range h {
			if k != canon {
				t.Fatalf("header %q, want %q", k, canon)
			}
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < 0x20 || c > 0x7e {
					t.Fatalf("header value byte %#x at %d", c, i)
				}
			}
		}
	})
}

// checkErr: an error is a *msaerr.Error of a known code that does not repeat
// a secret longer than a few characters.
func checkErr(t *testing.T, raw []byte, err error) {
	t.Helper()
	e := msaerr.As(err)
	if e.Code != msaerr.SecretUnusable && e.Code != msaerr.NotConfigured {
		t.Fatalf("code %s: %v", e.Code, err)
	}
	if s := strings.TrimSpace(string(raw)); len(s) >= 8 && strings.Contains(err.Error(), s) {
		t.Fatalf("error repeats the secret: %v", err)
	}
}
