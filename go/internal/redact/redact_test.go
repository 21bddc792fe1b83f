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

func TestServerText(t *testing.T) {
	for in, want := range map[string]string{
		"permission denied":                          "permission denied",
		"bad\r\nFAKE LOG LINE level=ERROR":           "bad FAKE LOG LINE level=ERROR",
		"\x1b[31mred\x1b[0m":                         "[31mred [0m",
		"a\x00b\x7fc\u0085d\u009be":                  "a b c d e",
		"user \u202eexe.txt\u202c ok":                "user exe.txt ok",
		"zero\u200bwidth\ufeff \u2066iso\u2069":      "zero width iso",
		"  \t lead and trail \n ":                    "lead and trail",
		"line\u2028sep\u2029para":                    "line sep para",
		"bad utf8 \xff\xfe here":                     "bad utf8 here",
		"see http://svc:pw@vault.corp:8200/v1 now":   "see http://***@vault.corp:8200/v1 now",
		"1 error occurred:\n\t* permission denied\n": "1 error occurred: * permission denied",
	} {
		if got := ServerText(in); got != want {
			t.Errorf("ServerText(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("x", 5000)
	got := ServerText(long)
	if !strings.HasSuffix(got, "…(cut)") || len(got) != MaxServerText+len("…(cut)") {
		t.Errorf("ServerText(5000 x) = %d bytes %q...", len(got), got[:20])
	}
	if got := ServerText(strings.Repeat("y", MaxServerText)); strings.Contains(got, "cut") {
		t.Errorf("a text of exactly the bound was cut: %q", got)
	}
	for _, r := range ServerText("\x01\x1f\x7f\u0080\u009f\u200e\u200f\u202a\u202e\u2066\u2069 x") {
		if r != ' ' && r != 'x' {
			t.Errorf("control %U survived", r)
		}
	}
}

func TestUserinfo(t *testing.T) {
	in := `Get "http://svc:pw@vault.corp:8200/v1/x": dial tcp; also https://a@b.test`
	got := Userinfo(in)
	if strings.Contains(got, "pw") || strings.Contains(got, "svc") || strings.Contains(got, "a@b") ||
		!strings.Contains(got, "http://***@vault.corp:8200/v1/x") || !strings.Contains(got, "https://***@b.test") {
		t.Errorf("Userinfo = %q", got)
	}
}
