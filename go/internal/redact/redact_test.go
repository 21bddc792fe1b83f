package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://svc:pw@vault.corp:8200/x":   "http://***@vault.corp:8200/x",
		"https://user@h":                    "https://***@h",
		"https://h:8200":                    "https://h:8200",
		"http://svc:p%zz@vault:8200":        "http://***@vault:8200", // unparseable escape
		"vault.corp:8200":                   "vault.corp:8200",
		"https://h/path@not-userinfo":       "https://h/path@not-userinfo",
		"http://a:b@c@evil.test/?q=x@y.z#f": "http://***@evil.test/?q=x@y.z#f",
	} {
		got := URL(in)
		if got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "pw") || strings.Contains(got, "svc") {
			t.Errorf("URL(%q) = %q still shows the userinfo", in, got)
		}
	}
}

func TestEcho(t *testing.T) {
	if got := Echo("short"); got != "short" {
		t.Errorf("Echo(short) = %q", got)
	}
	long := strings.Repeat("é", 1<<20)
	got := Echo(long)
	if n := len([]rune(got)); n > MaxEcho+30 {
		t.Errorf("Echo kept %d characters", n)
	}
	if !strings.HasSuffix(got, "(2097152 bytes)") {
		t.Errorf("Echo does not say how long the input was: %q", got[len(got)-20:])
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"h":                     `"h"`,
		"a\"b'c\\d":             `"a\"b'c\\d"`,
		"h\x00\x1b\r\n":         `"h\x00\x1b\r\n"`,
		"http://u:pw@h/":        `"http://***@h/"`,
		strings.Repeat("a", 10): `"aaaaaaaaaa"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	for _, long := range []string{strings.Repeat("\U0001F600", 1<<16), strings.Repeat("\x01", 1<<16), strings.Repeat("x", 1<<20)} {
		got := Quote(long)
		if len(got) > MaxEcho+40 || !strings.Contains(got, "more bytes)") {
			t.Errorf("Quote of %d bytes gave %d bytes: %.60s", len(long), len(got), got)
		}
	}
}
