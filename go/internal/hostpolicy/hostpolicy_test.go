package hostpolicy

import "testing"

func TestMatching(t *testing.T) {
	cases := []struct {
		patterns, target string
		want             bool
	}{
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "example.com.evil.net", false},
		{"*.example.com", "a.example.com.evil.net", false},
		{"*.example.com", "evilexample.com", false},
		{"mlflow-*", "mlflow-prod", true},
		{"mlflow-*", "mlflow-x.evil.net", false},
		{"mlflow-*.corp.com", "mlflow-prod.corp.com", true},
		{"mlflow-*.corp.com", "mlflow-a.b.corp.com", false},
		{"MLflow.Corp.COM", "mlflow.corp.com", true},
		{"mlflow.corp.com", "MLFLOW.CORP.COM.", true},
		{"mlflow.corp.com.", "mlflow.corp.com", true},
		{"mlflow.corp.com", "mlflow.corp.com:5000", true},
		{"mlflow.corp.com:8443", "mlflow.corp.com:8443", true},
		{"mlflow.corp.com:8443", "mlflow.corp.com:443", false},
		{"mlflow.corp.com:443", "https://mlflow.corp.com/api", true},
		{"mlflow.corp.com:80", "https://mlflow.corp.com/api", false},
		{"*", "anything.at.all:1234", true},
		{"a.com, b.com", "b.com", true},
		{"a.com,b.com", "c.com", false},
		{"127.0.0.1", "http://127.0.0.1:5000", true},
		{"[::1]:5000", "[::1]:5000", true},
		{"::1", "http://[::1]:5000/x", true},
		{"*.corp.com", "http://user@mlflow.corp.com:5000/", true},
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

func TestInvalidPatterns(t *testing.T) {
	for _, bad := range []string{"", " , ", "https://mlflow.corp.com", "a..b", "mlflow[.corp.com", "host:port", "a/b"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted an invalid pattern", bad)
		}
	}
}

func TestFromURIs(t *testing.T) {
	p := FromURIs("https://MLflow.corp.com", "https://mlflow.corp.com/", "databricks", "file:///tmp/x", "")
	if got := p.Patterns(); len(got) != 1 || got[0] != "mlflow.corp.com:443" {
		t.Fatalf("patterns = %v", got)
	}
	for target, want := range map[string]bool{
		"https://mlflow.corp.com/api/2.0": true,
		"mlflow.corp.com:443":             true,
		"mlflow.corp.com:8080":            false,
		"http://mlflow.corp.com":          false, // port 80
		"other.corp.com:443":              false,
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
	if none.Allows(Target{Host: "x"}) {
		t.Error("nil policy allowed a host")
	}
}

func TestParseTargetErrors(t *testing.T) {
	for _, bad := range []string{"", "  ", "http://", ":5000"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
}
