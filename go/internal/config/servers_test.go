package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/hostpolicy"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestParseServersKeepsOrder(t *testing.T) {
	// Go maps have no order; the JSON object's order is the priority.
	raw := `{"z.corp.com": {"B": "1", "A": "2"}, "a.corp.com": {}, "*.corp.com": {"MLFLOW_VAULT_SECRET_PATH": "secret/x"},
	         "m.corp.com:8443": {"C": ""}}`
	servers, err := ParseServers(Env{EnvServers: raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range servers {
		got = append(got, s.Pattern)
	}
	if want := []string{"z.corp.com", "a.corp.com", "*.corp.com", "m.corp.com:8443"}; !slices.Equal(got, want) {
		t.Fatalf("patterns %v, want %v", got, want)
	}
	if !slices.Equal(servers[0].Names, []string{"B", "A"}) || servers[0].Overrides["A"] != "2" {
		t.Errorf("first server: %+v", servers[0])
	}
	if len(servers[1].Names) != 0 || len(servers[1].Overrides) != 0 {
		t.Errorf("empty server: %+v", servers[1])
	}
	if v, ok := servers[3].Overrides["C"]; !ok || v != "" {
		t.Errorf("an empty value is kept (it unsets the variable): %+v", servers[3])
	}
	tgt, _ := hostpolicy.ParseTarget("https://x.y.corp.com")
	if servers[2].Match.Check(tgt, false) != hostpolicy.Allowed || servers[0].Match.Check(tgt, false) != hostpolicy.NoMatch {
		t.Error("patterns do not match like MLFLOW_SECRETS_ALLOWED_HOSTS entries")
	}
}

func TestParseServersUnset(t *testing.T) {
	for _, raw := range []string{"", "  ", "{}"} {
		if s, err := ParseServers(Env{EnvServers: raw}, nil); err != nil || len(s) != 0 {
			t.Errorf("%q: %v, %v", raw, s, err)
		}
	}
}

func TestParseServersErrors(t *testing.T) {
	const secret = "s3cr3t-t0ken"
	refuse := func(name string) string {
		if name == "AWS_PROFILE" {
			return "the SDK reads it"
		}
		return ""
	}
	for _, c := range []struct {
		raw  string
		want []string // every piece must be in the message
	}{
		{`[1, 2]`, []string{"must be a JSON object"}},
		{`"x"`, []string{"must be a JSON object"}},
		{`{"a.corp.com": {"VAULT_TOKEN": "` + secret + `" x}}`, []string{"not valid JSON at byte"}},
		{`{"a.corp.com": {"VAULT_TOKEN": "` + secret + `"`, []string{"ends too early"}},
		{`{"a.corp.com": {}} {"b": {}}`, []string{"more after the JSON object"}},
		{`{"a.corp.com": "` + secret + `"}`, []string{`server "a.corp.com"`, "must be an object of variables", "not a string"}},
		{`{"a.corp.com": ["x"]}`, []string{`server "a.corp.com"`, "not an array"}},
		{`{"a.corp.com": {"MLFLOW_VAULT_TTL_SEC": 30}}`, []string{`server "a.corp.com"`, "MLFLOW_VAULT_TTL_SEC", "must be a string, not a number"}},
		{`{"a.corp.com": {"X": true}}`, []string{`server "a.corp.com"`, "X must be a string, not a boolean"}},
		{`{"a.corp.com": {"X": null}}`, []string{"X must be a string, not null"}},
		{`{"a.corp.com": {"X": {"y": "` + secret + `"}}}`, []string{"X must be a string, not an object"}},
		{`{"a.corp.com": {"BAD NAME": "v"}}`, []string{`server "a.corp.com"`, `"BAD NAME" is not a variable name`}},
		{`{"a.corp.com": {"X": "1", "X": "2"}}`, []string{`server "a.corp.com"`, "X is given twice"}},
		{`{"a.corp.com": {}, "A.CORP.COM": {}}`, []string{`"A.CORP.COM" is given twice`}},
		{`{"a.corp.com,b.corp.com": {}}`, []string{`"a.corp.com,b.corp.com"`, "one host pattern per entry"}},
		{`{"": {}}`, []string{"no host pattern given"}},
		{`{"a.corp.com/path": {}}`, []string{`"a.corp.com/path" is not a host pattern`}},
		{`{"ftp://a.corp.com": {}}`, []string{`"ftp://a.corp.com" is not a host pattern`}},
		{`{"a.corp.com": {"MLFLOW_SECRETS_LOG_LEVEL": "` + secret + `"}}`,
			[]string{`server "a.corp.com"`, "MLFLOW_SECRETS_LOG_LEVEL cannot be set per server", "one per process"}},
		{`{"a.corp.com": {"MLFLOW_SECRETS_TIMEOUT_SEC": "` + secret + `"}}`, []string{"MLFLOW_SECRETS_TIMEOUT_SEC cannot be set per server"}},
		{`{"a.corp.com": {"MLFLOW_SECRETS_SERVERS": "{}"}}`, []string{"MLFLOW_SECRETS_SERVERS cannot be set per server", "nested"}},
		{`{"a.corp.com": {"MLFLOW_TRACKING_URI": "https://x"}}`, []string{"MLFLOW_TRACKING_URI cannot be set per server"}},
		{`{"a.corp.com": {"MLFLOW_SECRETS_AUTH_TRANSPORT": "helper"}}`, []string{"MLFLOW_SECRETS_AUTH_TRANSPORT cannot be set per server"}},
		{`{"a.corp.com": {"AWS_PROFILE": "` + secret + `"}}`, []string{`server "a.corp.com"`, "AWS_PROFILE cannot be set per server: the SDK reads it"}},
	} {
		_, err := ParseServers(Env{EnvServers: c.raw}, refuse)
		if err == nil {
			t.Errorf("%s: no error", c.raw)
			continue
		}
		me := msaerr.As(err)
		if me.Code != msaerr.NotConfigured || me.Variable != EnvServers || !strings.HasPrefix(me.Message, EnvServers+": ") {
			t.Errorf("%s: %+v", c.raw, me)
		}
		for _, w := range c.want {
			if !strings.Contains(me.Message, w) {
				t.Errorf("%s: %q lacks %q", c.raw, me.Message, w)
			}
		}
		if strings.Contains(me.Message, secret) {
			t.Errorf("%s: the message repeats a value: %s", c.raw, me.Message)
		}
	}
}

func TestParseServerSettings(t *testing.T) {
	base := Env{EnvEnable: "vault", EnvTrackingURI: "https://prod.corp.com", EnvAllowedHosts: "prod.corp.com",
		EnvHeaderName: "X-Base", "VAULT_TOKEN": "t", EnvServers: `{}`}
	servers, err := ParseServers(Env{EnvServers: `{"staging.corp.com": {"MLFLOW_AUTH_HEADER_NAME": "authorization", "VAULT_TOKEN": ""},
		"*.dev.corp.com": {"MLFLOW_SECRETS_ALLOWED_HOSTS": "a.dev.corp.com", "MLFLOW_SECRETS_ALLOW_HTTP": "true"}}`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env, c, err := ParseServer(base, servers[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != servers[0] || c.HeaderName != "Authorization" || c.AllowedHosts != nil || c.AllowedFrom != "" {
		t.Errorf("staging: %+v", c)
	}
	if env.Get("VAULT_TOKEN") != "" || env[EnvServers] != "" || env[EnvAllowedHosts] != "" || env.Get(EnvEnable) != "vault" {
		t.Errorf("staging env: %v", env)
	}
	if base["VAULT_TOKEN"] != "t" {
		t.Error("the base environment was changed")
	}
	_, c, err = ParseServer(base, servers[1])
	if err != nil {
		t.Fatal(err)
	}
	if !c.AllowHTTP || c.AllowedFrom != EnvAllowedHosts || !slices.Equal(c.AllowedHosts.Patterns(), []string{"a.dev.corp.com"}) || c.HeaderName != "X-Base" {
		t.Errorf("dev: %+v", c)
	}
	bad, _ := ParseServers(Env{EnvServers: `{"s.corp.com": {"MLFLOW_AUTH_HEADER_NAME": "bad header"}}`}, nil)
	if _, _, err := ParseServer(base, bad[0]); err == nil || msaerr.As(err).Variable != EnvHeaderName {
		t.Errorf("bad header name: %v", err)
	}
}
