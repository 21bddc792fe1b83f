package engine

import (
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func mustConfig(t *testing.T, env config.Env) *config.Config {
	t.Helper()
	cfg, err := config.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The C API case list of the issue: every one names another server.
func TestCheckHostRefusesHostileStrings(t *testing.T) {
	loop := mustConfig(t, config.Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "127.0.0.1"})
	corp := mustConfig(t, config.Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "*.corp.test", "MLFLOW_SECRETS_ALLOW_HTTP": "true"})
	for _, c := range []struct {
		cfg  *config.Config
		host string
	}{
		{loop, "127.0.0.1:5000@evil.test"}, {loop, "127.0.0.1:@evil.test"}, {loop, "127.0.0.1:x"},
		{corp, "evil.test/.corp.test"}, {corp, "evil.test#.corp.test"}, {corp, "evil.test?.corp.test"},
		{corp, `evil.test\.corp.test`}, {corp, `http://evil.test\@a.corp.test/`}, {corp, "a.corp.test " + strings.Repeat("x", 1<<20)},
	} {
		err := checkHost(c.cfg, c.host)
		if err == nil || err.Code != msaerr.HostNotAllowed {
			t.Errorf("checkHost(%.40q) = %v", c.host, err)
			continue
		}
		if len(err.Message) > 500 || strings.ContainsAny(err.Message, "\r\n") {
			t.Errorf("checkHost(%.40q): message of %d bytes: %.100q", c.host, len(err.Message), err.Message)
		}
	}
	// The same allow-lists do let their own hosts through.
	if err := checkHost(loop, "http://127.0.0.1:5000/api"); err != nil {
		t.Errorf("loopback: %v", err)
	}
	if err := checkHost(corp, "http://a.corp.test/api"); err != nil {
		t.Errorf("corp with ALLOW_HTTP: %v", err)
	}
}

func TestCheckHostMessages(t *testing.T) {
	cases := []struct {
		env      config.Env
		host     string
		variable string
		mentions []string
	}{
		{config.Env{"MLFLOW_TRACKING_URI": "http://mlflow.example.com:5000"}, "http://mlflow.example.com:5000/api",
			"MLFLOW_SECRETS_ALLOW_HTTP", []string{"http://mlflow.example.com:5000", "cleartext", "MLFLOW_SECRETS_ALLOW_HTTP=true"}},
		{config.Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.corp"}, "mlflow.corp:443",
			"MLFLOW_SECRETS_ALLOW_HTTP", []string{"bare host", "MLFLOW_SECRETS_ALLOW_HTTP"}},
		{config.Env{"MLFLOW_TRACKING_URI": "https://u:hunter2@mlflow.corp"}, "http://mlflow.corp:443/",
			"MLFLOW_SECRETS_ALLOWED_HOSTS", []string{"not the MLflow tracking or registry server (https://mlflow.corp:443)"}},
		{config.Env{"MLFLOW_SECRETS_ALLOWED_HOSTS": "https://*.corp"}, "http://a.corp",
			"MLFLOW_SECRETS_ALLOWED_HOSTS", []string{"does not match MLFLOW_SECRETS_ALLOWED_HOSTS=https://*.corp"}},
		{config.Env{"MLFLOW_TRACKING_URI": "databricks"}, "https://x",
			"MLFLOW_SECRETS_ALLOWED_HOSTS", []string{"not an http(s) URL"}},
		{config.Env{"MLFLOW_TRACKING_URI": "https://h"}, "ftp://u:hunter2@h/",
			"", []string{`"ftp://***@h/"`, "only http and https"}},
	}
	for _, c := range cases {
		err := checkHost(mustConfig(t, c.env), c.host)
		if err == nil {
			t.Errorf("%v %s: allowed", c.env, c.host)
			continue
		}
		if err.Code != msaerr.HostNotAllowed || err.Variable != c.variable || strings.Contains(err.Message, "hunter2") {
			t.Errorf("%s: [%s %s] %s", c.host, err.Code, err.Variable, err.Message)
		}
		for _, m := range c.mentions {
			if !strings.Contains(err.Message, m) {
				t.Errorf("%s: %q does not mention %q", c.host, err.Message, m)
			}
		}
	}
}

func TestCheckHostCleartextOptIn(t *testing.T) {
	env := config.Env{"MLFLOW_TRACKING_URI": "http://mlflow.example.com:5000"}
	if err := checkHost(mustConfig(t, env), "http://mlflow.example.com:5000"); err == nil {
		t.Fatal("cleartext to a remote host without the opt-in")
	}
	env["MLFLOW_SECRETS_ALLOW_HTTP"] = "yes"
	if err := checkHost(mustConfig(t, env), "http://mlflow.example.com:5000"); err != nil {
		t.Fatalf("opted in: %v", err)
	}
	if err := checkHost(mustConfig(t, config.Env{"MLFLOW_TRACKING_URI": "http://localhost:5000"}), "http://localhost:5000/x"); err != nil {
		t.Fatalf("loopback over http: %v", err)
	}
}

// The cleartext rule applies to the hop through the proxy (issue 13): an
// http target through a non-loopback http proxy is cleartext on the network.
func TestCheckHopThroughProxy(t *testing.T) {
	local := config.Env{"MLFLOW_TRACKING_URI": "http://localhost:5000"}
	remote := config.Env{"MLFLOW_TRACKING_URI": "https://mlflow.corp.com"}
	optIn := config.Env{"MLFLOW_TRACKING_URI": "http://localhost:5000", "MLFLOW_SECRETS_ALLOW_HTTP": "true"}
	for _, c := range []struct {
		env           config.Env
		target, proxy string
		refused       bool
		variable      string
	}{
		{local, "http://localhost:5000", "", false, ""},
		{local, "http://localhost:5000", "http://proxy.corp:3128", true, "MLFLOW_SECRETS_ALLOW_HTTP"},
		{local, "http://localhost:5000/api", "proxy.corp:3128", true, "MLFLOW_SECRETS_ALLOW_HTTP"},
		{local, "http://localhost:5000", "socks5h://proxy.corp:1080", true, "MLFLOW_SECRETS_ALLOW_HTTP"},
		{optIn, "http://localhost:5000", "http://proxy.corp:3128", false, ""},
		{local, "http://localhost:5000", "http://127.0.0.1:3128", false, ""},
		{local, "http://localhost:5000", "http://user:pw@[::1]:3128", false, ""},
		{local, "http://localhost:5000", "https://proxy.corp:3128", false, ""},
		{remote, "https://mlflow.corp.com/api", "http://proxy.corp:3128", false, ""},
		{remote, "https://mlflow.corp.com", "socks5://proxy.corp:1080", false, ""},
		{local, "http://localhost:5000", "ftp://proxy.corp", true, ""},
		{local, "http://localhost:5000", "http://proxy corp:3128", true, ""},
		{remote, "https://mlflow.corp.com", "http://user:s3cret@proxy.corp:3128/\x00", true, ""},
	} {
		err := checkHop(mustConfig(t, c.env), c.target, c.proxy)
		if (err != nil) != c.refused {
			t.Errorf("%s via %q: err %v, want refused=%v", c.target, c.proxy, err, c.refused)
			continue
		}
		if err == nil {
			continue
		}
		if err.Code != msaerr.HostNotAllowed || err.Variable != c.variable || strings.Contains(err.Message, "s3cret") {
			t.Errorf("%s via %q: %+v", c.target, c.proxy, err)
		}
		if c.variable != "" && (!strings.Contains(err.Message, "proxy.corp:") || !strings.Contains(err.Message, c.variable)) {
			t.Errorf("%s via %q: message %q names neither the proxy nor the variable", c.target, c.proxy, err.Message)
		}
	}
	// The destination's own policy still comes first.
	if err := checkHop(mustConfig(t, local), "http://evil.test", "http://127.0.0.1:3128"); err == nil ||
		err.Variable != "MLFLOW_SECRETS_ALLOWED_HOSTS" {
		t.Fatalf("policy: %v", err)
	}
}
