package provider

import (
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
)

func TestModeAndTTL(t *testing.T) {
	mode, ttl, err := ModeAndTTL(config.Env{}, "M", "T")
	if err != nil || mode != header.Bearer || ttl != 300*time.Second {
		t.Fatalf("defaults: %s %s %v", mode, ttl, err)
	}
	mode, ttl, err = ModeAndTTL(config.Env{"M": "Basic", "T": "999999"}, "M", "T")
	if err != nil || mode != header.Basic || ttl != 86400*time.Second {
		t.Fatalf("basic, clamped: %s %s %v", mode, ttl, err)
	}
	if _, ttl, _ := ModeAndTTL(config.Env{"T": "0"}, "M", "T"); ttl != time.Second {
		t.Fatalf("clamped up: %s", ttl)
	}
	if _, _, err := ModeAndTTL(config.Env{"M": "digest"}, "M", "T"); err == nil || !strings.Contains(err.Error(), "M") {
		t.Fatalf("bad mode: %v", err)
	}
	if _, _, err := ModeAndTTL(config.Env{"T": "soon"}, "M", "T"); err == nil || !strings.Contains(err.Error(), "T") {
		t.Fatalf("bad ttl: %v", err)
	}
}

type settings struct {
	Addr    string
	Timeout time.Duration
	Retries int
}

// The key covers the whole settings value and the provider's name, and
// never shows a setting (which may be a credential).
func TestKeyOf(t *testing.T) {
	base := settings{Addr: "https://vault", Timeout: time.Second, Retries: 2}
	k := KeyOf("vault", base)
	if k != KeyOf("vault", base) {
		t.Fatal("equal settings give different keys")
	}
	for _, other := range []settings{{"https://vault", 2 * time.Second, 2}, {"https://vault", time.Second, 3}, {"https://v", time.Second, 2}} {
		if KeyOf("vault", other) == k {
			t.Errorf("settings %+v share the key of %+v", other, base)
		}
	}
	if KeyOf("aws-secrets-manager", base) == k {
		t.Error("two providers share a key")
	}
	if !strings.HasPrefix(k, "vault:") || strings.Contains(k, "https") {
		t.Errorf("key = %q", k)
	}
}

// Pattern compiles nothing until it is used, then once: a bad expression
// panics at its first use, not when the library loads.
func TestPatternCompilesOnFirstUseAndOnce(t *testing.T) {
	bad := Pattern(`(`) // no panic here
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("a bad pattern did not panic at its first use")
			}
		}()
		bad()
	}()
	p := Pattern(`^a+$`)
	first := p()
	if !first.MatchString("aaa") || first.MatchString("b") || p() != first {
		t.Fatalf("pattern %v: wrong matches or compiled twice", first)
	}
}
