package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// serversEnv is a base configuration (vault, token "base", tracking URI
// mlflow.corp.com) with MLFLOW_SECRETS_SERVERS set to servers.
func serversEnv(servers string) config.Env {
	return config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "base", "MLFLOW_TRACKING_URI": tracking,
		config.EnvServers: servers}
}

func bearer(t *testing.T, e *Engine, target string) string {
	t.Helper()
	res := e.Headers(context.Background(), target)
	if res.Err != nil {
		t.Fatalf("%s: %v", target, res.Err)
	}
	return res.Headers["Authorization"]
}

func TestServersFirstMatchWins(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(serversEnv(`{"*.staging.corp.com": {"FAKE_VAULT_SECRET": "wide"}, "a.staging.corp.com": {"FAKE_VAULT_SECRET": "narrow"}}`))
	if got := bearer(t, e, "https://a.staging.corp.com"); got != "Bearer wide" {
		t.Errorf("a.staging: %q, want the first matching entry's", got)
	}
	if got := bearer(t, e, "https://b.staging.corp.com"); got != "Bearer wide" {
		t.Errorf("b.staging: %q", got)
	}
	if got := bearer(t, e, tracking); got != "Bearer base" {
		t.Errorf("tracking host, matched by no pattern: %q, want the base credential", got)
	}
	// The same entries in the other order: the narrow one now comes first.
	e.SetEnv(serversEnv(`{"a.staging.corp.com": {"FAKE_VAULT_SECRET": "narrow"}, "*.staging.corp.com": {"FAKE_VAULT_SECRET": "wide"}}`))
	if got := bearer(t, e, "https://a.staging.corp.com"); got != "Bearer narrow" {
		t.Errorf("a.staging after reordering: %q", got)
	}
	if got := bearer(t, e, "https://b.staging.corp.com"); got != "Bearer wide" {
		t.Errorf("b.staging after reordering: %q", got)
	}
}

func TestServersHostPolicy(t *testing.T) {
	e, _, _ := newTestEngine()
	env := serversEnv(`{"https://staging.corp.com": {"FAKE_VAULT_SECRET": "staging"},
		"dev.corp.com:8443": {"FAKE_VAULT_SECRET": "dev", "MLFLOW_SECRETS_ALLOW_HTTP": "true"},
		"*.lab.corp.com": {"FAKE_VAULT_SECRET": "lab", "MLFLOW_SECRETS_ALLOWED_HOSTS": "a.lab.corp.com"}}`)
	env[config.EnvAllowedHosts] = "mlflow.corp.com,*.corp.com" // the base policy; it does not extend to servers
	env[config.EnvAllowHTTP] = "true"
	e.SetEnv(env)
	// A server's pattern is its host policy: the base policy does not apply.
	if got := bearer(t, e, "https://staging.corp.com"); got != "Bearer staging" {
		t.Errorf("staging: %q", got)
	}
	// Scheme pinned to https: an http request is refused, never served
	// with the base credential (which the base policy would allow).
	res := e.Headers(context.Background(), "http://staging.corp.com")
	if res.Err == nil || res.Err.Code != msaerr.HostNotAllowed || res.Err.Variable != config.EnvServers || res.Headers != nil ||
		!strings.Contains(res.Err.Message, `server "https://staging.corp.com" (MLFLOW_SECRETS_SERVERS)`) {
		t.Errorf("http to an https-pinned server: %+v", res)
	}
	// Cleartext: the server's own MLFLOW_SECRETS_ALLOW_HTTP decides.
	if got := bearer(t, e, "http://dev.corp.com:8443"); got != "Bearer dev" {
		t.Errorf("dev over http with the server's opt-in: %q", got)
	}
	// The server's own MLFLOW_SECRETS_ALLOWED_HOSTS narrows its pattern.
	if got := bearer(t, e, "https://a.lab.corp.com"); got != "Bearer lab" {
		t.Errorf("a.lab: %q", got)
	}
	res = e.Headers(context.Background(), "https://b.lab.corp.com")
	if res.Err == nil || res.Err.Variable != config.EnvAllowedHosts || !strings.Contains(res.Err.Message, `server "*.lab.corp.com"`) {
		t.Errorf("b.lab, outside the server's own allowed hosts: %+v", res)
	}
	// A host no pattern matches: base settings under the base policy.
	if got := bearer(t, e, "https://other.corp.com"); got != "Bearer base" {
		t.Errorf("other.corp.com: %q", got)
	}
	if res := e.Headers(context.Background(), "https://evil.com"); res.Err == nil || res.Err.Variable != config.EnvAllowedHosts {
		t.Errorf("evil.com: %+v", res)
	}
	// Without the base opt-in, a server's cleartext host is refused.
	delete(env, config.EnvAllowHTTP)
	env[config.EnvServers] = `{"staging.corp.com": {"FAKE_VAULT_SECRET": "staging"}}`
	e.SetEnv(env)
	res = e.Headers(context.Background(), "http://staging.corp.com")
	if res.Err == nil || res.Err.Variable != config.EnvAllowHTTP || !strings.Contains(res.Err.Message, `server "staging.corp.com"`) {
		t.Errorf("cleartext to a server: %+v", res)
	}
	// Proxies: the cleartext rule for the hop uses the server's setting.
	res = e.Serve(context.Background(), Request{Target: "http://staging.corp.com", Proxy: "http://proxy.corp.com:3128"})
	if res.Err == nil || res.Err.Code != msaerr.HostNotAllowed {
		t.Errorf("cleartext through a proxy: %+v", res)
	}
}

func TestServersOwnSettings(t *testing.T) {
	e, v, a := newTestEngine()
	env := serversEnv(`{"staging.corp.com": {"MLFLOW_AUTH_HEADER_NAME": "X-Token"},
		"aws.corp.com": {"MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws"},
		"broken.corp.com": {"FAKE_VAULT_MODE": "weird"}}`)
	e.SetEnv(env)
	res := e.Headers(context.Background(), "https://staging.corp.com")
	if res.Err != nil || res.Headers["X-Token"] != "base" || len(res.Headers) != 1 {
		t.Errorf("staging with its own header name: %+v", res)
	}
	res = e.Headers(context.Background(), "https://aws.corp.com")
	if res.Err != nil || res.Provider != config.AWSSecretsManager || res.Headers["Authorization"] != "Bearer from-aws" {
		t.Errorf("aws server: %+v", res)
	}
	// A server whose settings are unusable fails alone, naming the server
	// and the variable; the others keep working.
	res = e.Headers(context.Background(), "https://broken.corp.com")
	if res.Err == nil || res.Err.Variable != "FAKE_VAULT_MODE" || !strings.Contains(res.Err.Message, `server "broken.corp.com" (MLFLOW_SECRETS_SERVERS)`) {
		t.Errorf("broken server: %+v", res)
	}
	if got := bearer(t, e, tracking); got != "Bearer base" {
		t.Errorf("base: %q", got)
	}
	// Same settings as the base (only the header differs): one provider,
	// one fetch, shared by the base and staging.
	if n, m := v.instances.Load(), v.fetches.Load(); n != 1 || m != 1 {
		t.Errorf("vault: %d instances, %d fetches; want 1 and 1", n, m)
	}
	if a.instances.Load() != 1 {
		t.Errorf("aws: %d instances", a.instances.Load())
	}
}

func TestServersUnusableFailsClosed(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(serversEnv(`{"staging.corp.com": {"MLFLOW_SECRETS_LOG_LEVEL": "DEBUG"}}`))
	for _, target := range []string{tracking, "https://staging.corp.com"} {
		res := e.Headers(context.Background(), target)
		if res.Err == nil || res.Err.Variable != config.EnvServers || res.Headers != nil ||
			!strings.Contains(res.Err.Message, `server "staging.corp.com"`) || !strings.Contains(res.Err.Message, config.EnvLogLevel) {
			t.Errorf("%s: %+v", target, res)
		}
	}
	info := e.Info()
	if info.Err == nil || info.Err.Variable != config.EnvServers {
		t.Errorf("info: %+v", info)
	}
	if checks := e.Doctor(context.Background(), ""); len(checks) != 1 || checks[0].Err == nil {
		t.Errorf("doctor: %+v", checks)
	}
	// The SDKs' own variables are refused; those our providers read are not.
	e.SetEnv(serversEnv(`{"staging.corp.com": {"AZURE_CLIENT_SECRET": "x"}}`))
	if res := e.Headers(context.Background(), tracking); res.Err == nil || !strings.Contains(res.Err.Message, "AZURE_CLIENT_SECRET cannot be set per server") {
		t.Errorf("AZURE_CLIENT_SECRET: %+v", res)
	}
	e.SetEnv(serversEnv(`{"staging.corp.com": {"AWS_REGION": "eu-west-1", "AZURE_KEY_VAULT_URL": "https://kv.vault.azure.net"}}`))
	if res := e.Headers(context.Background(), tracking); res.Err != nil {
		t.Errorf("AWS_REGION, AZURE_KEY_VAULT_URL: %+v", res.Err)
	}
}

func TestServersCacheSeparation(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(serversEnv(`{"staging.corp.com": {"FAKE_VAULT_SECRET": "staging"}, "qa.corp.com": {"FAKE_VAULT_SECRET": "staging"}}`))
	for range 3 {
		if bearer(t, e, tracking) != "Bearer base" || bearer(t, e, "https://staging.corp.com") != "Bearer staging" ||
			bearer(t, e, "https://qa.corp.com") != "Bearer staging" {
			t.Fatal("wrong credential")
		}
	}
	// base and staging differ; qa has staging's settings: two providers.
	if n, m := v.instances.Load(), v.fetches.Load(); n != 2 || m != 2 {
		t.Errorf("%d instances, %d fetches; want 2 and 2", n, m)
	}
	// A 401 rejects one credential: only the provider that made it is refreshed.
	staging := e.Headers(context.Background(), "https://staging.corp.com")
	e.Serve(context.Background(), Request{Target: "https://staging.corp.com", Reject: staging.Fingerprint})
	if m := v.fetches.Load(); m != 3 {
		t.Errorf("%d fetches after a 401, want 3", m)
	}
	// Dropping a server closes its provider; the base one is kept.
	e.SetEnv(serversEnv(""))
	if v.closed.Load() != 1 || bearer(t, e, tracking) != "Bearer base" {
		t.Errorf("closed %d", v.closed.Load())
	}
	if res := e.Headers(context.Background(), "https://staging.corp.com"); res.Err == nil || res.Err.Code != msaerr.HostNotAllowed {
		t.Errorf("staging without its entry: %+v", res)
	}
}

func TestServersStickyPerChain(t *testing.T) {
	// The base's vault is down, so aws serves the base (and stays first
	// there). The server has a working vault of its own: aws serving the
	// base must not put aws first for the server.
	e, _, _ := newTestEngine()
	env := serversEnv(`{"staging.corp.com": {"FAKE_VAULT_SECRET": "staging", "FAKE_VAULT_FAIL": ""}}`)
	env["MLFLOW_SECRETS_AUTH_ENABLE"] = "vault,aws-secrets-manager"
	env["FAKE_VAULT_FAIL"] = "1"
	env["FAKE_AWS_SECRETS_MANAGER_SECRET"] = "aws"
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Provider != config.AWSSecretsManager {
		t.Fatalf("base: %+v", res)
	}
	for range 2 {
		if res := e.Headers(context.Background(), "https://staging.corp.com"); res.Provider != config.Vault || res.Headers["Authorization"] != "Bearer staging" {
			t.Fatalf("staging: %+v", res)
		}
	}
}

func TestServersOnlyServersEnable(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_TRACKING_URI": tracking,
		config.EnvServers: `{"staging.corp.com": {"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "staging"}}`})
	if got := bearer(t, e, "https://staging.corp.com"); got != "Bearer staging" {
		t.Errorf("staging: %q", got)
	}
	if res := e.Headers(context.Background(), "https://evil.com"); res.Err == nil || res.Err.Code != msaerr.HostNotAllowed {
		t.Errorf("a host outside every policy is refused as such: %+v", res)
	}
	if res := e.Headers(context.Background(), tracking); res.Err == nil || res.Err.Code != msaerr.NotEnabled {
		t.Errorf("the tracking host, with no base provider: %+v", res)
	}
	for _, c := range e.Doctor(context.Background(), "") {
		if !c.OK {
			t.Errorf("doctor: %+v", c)
		}
	}
}

func TestServersInfoAndDoctor(t *testing.T) {
	e, _, _ := newTestEngine()
	env := serversEnv(`{"staging.corp.com": {"FAKE_VAULT_SECRET": "staging", "MLFLOW_AUTH_HEADER_NAME": "X-Token"},
		"same.corp.com": {}, "typo.corp.com": {"FAKE_VAULT_SECRT": "oops"}, "broken.corp.com": {"MLFLOW_AUTH_HEADER_NAME": "bad header"},
		"https://dev.corp.com": {"MLFLOW_SECRETS_ALLOWED_HOSTS": "dev.corp.com:443", "FAKE_VAULT_WARN": "dev warning"}}`)
	e.SetEnv(env)
	info := e.Info()
	if info.Err != nil || info.HeaderName != "Authorization" || len(info.Providers) != 1 {
		t.Fatalf("info: %+v", info)
	}
	var patterns []string
	for _, s := range info.Servers {
		patterns = append(patterns, s.Pattern)
	}
	if want := []string{"staging.corp.com", "same.corp.com", "typo.corp.com", "broken.corp.com", "https://dev.corp.com"}; !slices.Equal(patterns, want) {
		t.Fatalf("servers %v", patterns)
	}
	st := info.Servers[0]
	if st.HeaderName != "X-Token" || !slices.Equal(st.Variables, []string{"FAKE_VAULT_SECRET", "MLFLOW_AUTH_HEADER_NAME"}) ||
		len(st.Providers) != 1 || st.Providers[0].Name != config.Vault || st.Err != nil || st.AllowedHosts != nil {
		t.Errorf("staging: %+v", st)
	}
	if b := info.Servers[3]; b.Err == nil || b.Err.Variable != config.EnvHeaderName || b.Providers != nil ||
		!strings.HasPrefix(b.Err.Message, `server "broken.corp.com" (MLFLOW_SECRETS_SERVERS): `) {
		t.Errorf("broken: %+v", b)
	}
	if d := info.Servers[4]; !slices.Equal(d.AllowedHosts, []string{"dev.corp.com:443"}) {
		t.Errorf("dev: %+v", d)
	}
	// Warnings: the typo (its variables change nothing) and the dev
	// provider's, named after the server; none for the empty entry.
	w := strings.Join(info.Warnings, "\n")
	if !strings.Contains(w, `server "typo.corp.com" (MLFLOW_SECRETS_SERVERS): its variables (FAKE_VAULT_SECRT) change nothing`) ||
		!strings.Contains(w, `server "https://dev.corp.com" (MLFLOW_SECRETS_SERVERS): vault: dev warning`) || strings.Contains(w, "same.corp.com") {
		t.Errorf("warnings:\n%s", w)
	}
	if strings.Contains(w, "oops") {
		t.Error("a value in a warning")
	}

	checks := e.Doctor(context.Background(), "https://staging.corp.com")
	byName := map[string]Check{}
	for _, c := range checks {
		byName[c.Name] = c
	}
	if c := byName["server staging.corp.com: vault credential"]; !c.OK || c.Server != "staging.corp.com" || !strings.Contains(c.Detail, "X-Token: <redacted") {
		t.Errorf("staging credential: %+v", c)
	}
	if c := byName["server staging.corp.com: configuration"]; !c.OK || !strings.Contains(c.Detail, "sets FAKE_VAULT_SECRET, MLFLOW_AUTH_HEADER_NAME") {
		t.Errorf("staging configuration: %+v", c)
	}
	if c := byName["server same.corp.com: configuration"]; !c.OK || !strings.HasPrefix(c.Detail, "the base settings") {
		t.Errorf("same configuration: %+v", c)
	}
	if c := byName["server broken.corp.com: configuration"]; c.OK || c.Err == nil || c.Server != "broken.corp.com" {
		t.Errorf("broken: %+v", c)
	}
	if c := byName["host policy"]; !c.OK || !strings.Contains(c.Detail, `server "staging.corp.com"`) {
		t.Errorf("host policy: %+v", c)
	}
	if c := byName["vault credential"]; !c.OK || c.Server != "" {
		t.Errorf("base credential: %+v", c)
	}
	checks = e.Doctor(context.Background(), "http://dev.corp.com")
	if c := checks[len(checks)-1]; c.Name != "host policy" || c.OK || !strings.Contains(c.Err.Message, `server "https://dev.corp.com"`) {
		t.Errorf("host policy for a refused scheme: %+v", c)
	}
	checks = e.Doctor(context.Background(), tracking)
	if c := checks[len(checks)-1]; !c.OK || !strings.Contains(c.Detail, "MLFLOW_TRACKING_URI") {
		t.Errorf("host policy for the base: %+v", c)
	}
}
