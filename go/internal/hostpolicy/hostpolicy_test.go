package hostpolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestMatching(t *testing.T) {
	cases := []struct {
		patterns, target string
		want             bool
	}{
		{"*.example.com", "https://a.example.com", true},
		{"*.example.com.", "https://a.example.com", true},
		{"https://a\u200bb.com", "https://ab.com", true}, // UTS 46 ignores U+200B, as Python's idna does
		{"*.example.com", "https://a.b.example.com", true},
		{"*.example.com", "https://example.com", false},
		{"*.example.com", "https://example.com.evil.net", false},
		{"*.example.com", "https://a.example.com.evil.net", false},
		{"*.example.com", "https://evilexample.com", false},
		{"mlflow-*", "https://mlflow-prod", true},
		{"mlflow-*", "https://mlflow-x.evil.net", false},
		{"mlflow-*.corp.com", "https://mlflow-prod.corp.com", true},
		{"mlflow-*.corp.com", "https://mlflow-a.b.corp.com", false},
		{"MLflow.Corp.COM", "https://mlflow.corp.com", true},
		{"mlflow.corp.com", "https://MLFLOW.CORP.COM.", true},
		{"mlflow.corp.com.", "https://mlflow.corp.com", true},
		{"mlflow.corp.com", "https://mlflow.corp.com:5000", true},
		{"mlflow.corp.com:8443", "https://mlflow.corp.com:8443", true},
		{"mlflow.corp.com:8443", "https://mlflow.corp.com:443", false},
		{"mlflow.corp.com:443", "https://mlflow.corp.com/api", true},
		{"mlflow.corp.com:80", "https://mlflow.corp.com/api", false},
		{"*", "https://anything.at.all:1234", true},
		{"a.com, b.com", "https://b.com", true},
		{"a.com,b.com", "https://c.com", false},
		{"127.0.0.1", "http://127.0.0.1:5000", true},
		{"127.0.0.1", "127.0.0.1:5000", true}, // bare loopback: no cleartext concern
		{"[::1]:5000", "[::1]:5000", true},
		{"::1", "http://[::1]:5000/x", true},
		{"::1", "http://[::2]:5000/x", false},
		{"*.corp.com", "https://user:pw@mlflow.corp.com:5000/", true},
		{"10.0.0.*", "https://10.0.0.7", true},
		// IPv4 patterns match IPv4 literals only, never a name (issue 13).
		{"10.*.*.*", "https://10.www.evil.com", false},
		{"10.*.*.*", "https://10.1.2.3", true},
		{"192.168.1.*", "https://192.168.1.com", false},
		{"192.168.1.*", "https://192.168.1.20:8443", true},
		{"127.0.0.*", "http://127.0.0.evil", false},
		{"127.0.0.*", "http://127.0.0.9:5000", true},
		{"*.*.*.*", "https://a.b.c.d", false},
		{"*.*.*.*", "https://203.0.113.9", true},
		// A name pattern never matches an address.
		{"*.corp.com", "https://10.0.0.1", false},
		{"10.mlflow.corp.com", "https://10.mlflow.corp.com", true},
		{"*.10.corp.com", "https://a.10.corp.com", true},
		// Scheme pinning.
		{"https://mlflow.corp.com", "https://mlflow.corp.com:8443/x", true},
		{"https://mlflow.corp.com", "http://mlflow.corp.com", false},
		{"https://mlflow.corp.com/", "https://mlflow.corp.com", true},
		{"https://*.corp.com:8443", "https://a.corp.com:8443", true},
		{"https://*.corp.com:8443", "https://a.corp.com", false},
		{"http://localhost", "https://localhost", false},
		{"http://localhost", "http://localhost:5000", true},
		{"http://localhost", "localhost:5000", true},
		{"https://localhost", "localhost:5000", false},
		{"https://*", "https://x.y", true},
		{"https://*", "http://localhost", false},
		// IDNA: a Unicode pattern and a Unicode target compare in punycode.
		{"bücher.example", "https://xn--bcher-kva.example", true},
		{"xn--bcher-kva.example", "https://BÜCHER.example", true},
		{"*.bücher.example", "https://a.xn--bcher-kva.example", true},
	}
	for _, c := range cases {
		p, err := Parse(c.patterns)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.patterns, err)
		}
		target, err := ParseTarget(c.target)
		if err != nil {
			t.Fatalf("ParseTarget(%q): %v", c.target, err)
		}
		if got := p.Allows(target); got != c.want {
			t.Errorf("%q allows %q = %v, want %v", c.patterns, c.target, got, c.want)
		}
	}
}

func TestCleartext(t *testing.T) {
	p, err := Parse("*.corp.com,localhost,127.0.0.1,::1,mlflow.test")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		target          string
		without, withIt Verdict
	}{
		{"https://a.corp.com", Allowed, Allowed},
		{"http://a.corp.com", Cleartext, Allowed},
		{"a.corp.com:443", Cleartext, Allowed}, // bare: the scheme is unknown
		{"http://mlflow.test:5000", Cleartext, Allowed},
		{"http://localhost:5000", Allowed, Allowed},
		{"http://127.0.0.1:5000", Allowed, Allowed},
		{"http://[::1]:5000", Allowed, Allowed},
		{"http://evil.net", NoMatch, NoMatch},
	}
	for _, c := range cases {
		tg, err := ParseTarget(c.target)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Check(tg, false); got != c.without {
			t.Errorf("Check(%q, false) = %v, want %v", c.target, got, c.without)
		}
		if got := p.Check(tg, true); got != c.withIt {
			t.Errorf("Check(%q, true) = %v, want %v", c.target, got, c.withIt)
		}
	}
	// 127.0.0.0/8 is loopback, 128.0.0.1 is not.
	any, _ := Parse("*")
	for target, want := range map[string]Verdict{"http://127.8.9.10": Allowed, "http://128.0.0.1": Cleartext,
		"http://[::ffff:127.0.0.1]": Allowed, "http://localhost.evil.net": Cleartext} {
		tg, err := ParseTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := any.Check(tg, false); got != want {
			t.Errorf("Check(%q) = %v, want %v", target, got, want)
		}
	}
}

func TestInvalidPatterns(t *testing.T) {
	for _, bad := range []string{"", " , ", "a..b", "*.", ".a.com", "mlflow[.corp.com", "host:port", "a/b",
		"127.0.0.1:99999", "h:0", "h:", "h:-1", "ftp://h", "a@b", "a#b", "a?b", `a\b`, "a%2eb", "a b", "a\x00b",
		"https://h/path", "[::1", "[nothost]:80", "::1:80x", "127.1", "0x7f.0.0.1", strings.Repeat("a", 64) + ".com",
		// IPv4 patterns: four parts, no "*." prefix, no mix with names.
		"10.*.*", "*.10.*.*.*", "10.*.corp.com", "192.168.*.example", "a[0-9]*.[0-9]*.[0-9]*.[0-9]*"} {
		_, err := Parse(bad)
		if err == nil {
			t.Errorf("Parse(%q) accepted an invalid pattern", bad)
			continue
		}
		if len(err.Error()) > 400 {
			t.Errorf("Parse(%q): error too long: %d", bad, len(err.Error()))
		}
	}
	_, err := Parse("https://admin:hunter2@mlflow.corp.com/x")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("userinfo in a pattern: %v", err)
	}
	_, err = Parse(strings.Repeat("x", 1<<20) + "/")
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("a 1 MiB pattern: error of %d bytes", len(err.Error()))
	}
}

func TestFromURIs(t *testing.T) {
	p := FromURIs("https://MLflow.corp.com", "https://mlflow.corp.com/", "databricks", "file:///tmp/x", "",
		"http://svc:pw@127.0.0.1:5000")
	got := p.Patterns()
	if len(got) != 2 || got[0] != "https://mlflow.corp.com:443" || got[1] != "http://127.0.0.1:5000" {
		t.Fatalf("patterns = %v", got)
	}
	for target, want := range map[string]bool{
		"https://mlflow.corp.com/api/2.0": true,
		"https://mlflow.corp.com:443":     true,
		"mlflow.corp.com:443":             false, // scheme unknown: might be http
		"https://mlflow.corp.com:8080":    false,
		"http://mlflow.corp.com":          false,
		"http://mlflow.corp.com:443":      false, // https://host allows https only
		"https://other.corp.com":          false,
		"http://127.0.0.1:5000/x":         true,
		"https://127.0.0.1:5000/x":        false,
	} {
		tg, err := ParseTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Allows(tg); got != want {
			t.Errorf("Allows(%q) = %v, want %v", target, got, want)
		}
	}
	if !FromURIs("sqlite:///x.db").Empty() {
		t.Error("a non-http tracking URI must allow nothing")
	}
	var none *Policy
	if none.Allows(Target{Host: "x"}) || !none.Empty() || none.Patterns() != nil {
		t.Error("nil policy allowed a host")
	}
}

func TestParseTarget(t *testing.T) {
	cases := map[string]Target{
		"h":                               {Host: "h"},
		"H.Example.COM.:0443":             {Host: "h.example.com", Port: "443"},
		"https://h":                       {Scheme: "https", Host: "h", Port: "443"},
		"HTTP://h/x?y#z":                  {Scheme: "http", Host: "h", Port: "80"},
		"http://u:p@h:81/a@b":             {Scheme: "http", Host: "h", Port: "81"},
		"http://a@b@h":                    {Scheme: "http", Host: "h", Port: "80"},
		"http://a%3Ab@h":                  {Scheme: "http", Host: "h", Port: "80"},
		"[::1]":                           {Host: "::1"},
		"[0:0::1]:5000":                   {Host: "::1", Port: "5000"},
		"https://[2001:DB8::1]:8443/x":    {Scheme: "https", Host: "2001:db8::1", Port: "8443"},
		"192.168.0.1:65535":               {Host: "192.168.0.1", Port: "65535"},
		"https://bücher.example":          {Scheme: "https", Host: "xn--bcher-kva.example", Port: "443"},
		"https://ｅｘａｍｐｌｅ．com":             {Scheme: "https", Host: "example.com", Port: "443"},
		"my_host.internal:5000":           {Host: "my_host.internal", Port: "5000"},
		"https://h?x=http://evil.test@z/": {Scheme: "https", Host: "h", Port: "443"},
	}
	for in, want := range cases {
		got, err := ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if s := (Target{Scheme: "https", Host: "::1", Port: "1"}).String(); s != "https://[::1]:1" {
		t.Errorf("String = %q", s)
	}
}

// The C API case list of the issue, and other strings that name another server.
func TestParseTargetRefuses(t *testing.T) {
	for _, bad := range []string{
		"127.0.0.1:5000@evil.test", "127.0.0.1:@evil.test", "evil.test/.corp.test", "evil.test#.corp.test",
		"evil.test?.corp.test", `evil.test\.corp.test`, "", " ", " h", "h ", "h\t", "h\r\n", "h\x00", "h\x7f",
		"h:", "h:x", "h:0", "h:65536", "h:+80", "h:-1", "h:123456", ":5000", "http://", "http://:80", "http://h:/",
		"http://h:80x/", `http://evil.test\@good.test/`, `https://good.test\.evil.test`, "ftp://h", "file:///etc/passwd",
		"javascript://h", "::1", "::1:5000", "[::1", "[::1]x", "[::1]:", "[fe80::1%25eth0]:80", "[127.0.0.1]:80",
		"a..b", ".h", "h..", "*.corp.test", "a%2eb", "http://evil%2etest", "http://a b", "127.1", "0x7f.1",
		"2130706433", "0177.0.0.1", "127.000.0.1", "1.2.3.4.5", "http://u<p@h", "http://%zz@h", "http://h/%zz", "http://h/#%zz", "http://h/?%zz=1#x%", "http://a%4@h", "http://a%@h", strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 130) + "com", "https://\u2100.com", "*.", "https://*.", "*..com",
	} {
		got, err := ParseTarget(bad)
		if err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want an error", bad, got)
			continue
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseTarget(%q): %v does not wrap ErrSyntax", bad, err)
		}
	}
}

func TestParseTargetErrorEcho(t *testing.T) {
	_, err := ParseTarget("ftp://admin:hunter2@h/" + strings.Repeat("x", 1<<20))
	if err == nil || strings.Contains(err.Error(), "hunter2") || len(err.Error()) > 400 {
		t.Fatalf("error %d bytes, shows userinfo: %v", len(err.Error()), strings.Contains(err.Error(), "hunter2"))
	}
	_, err = ParseTarget("h\x00\x1b[31m")
	if err == nil || strings.ContainsAny(err.Error(), "\x00\x1b") {
		t.Fatalf("control characters echoed raw: %q", err)
	}
}
