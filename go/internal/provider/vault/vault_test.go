package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

var shared = &config.Config{Timeout: 5 * time.Second, MaxRetries: 0}

func open(t *testing.T, env config.Env) *Provider {
	t.Helper()
	sp, err := Factory(env, shared)
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	p, err := sp.New(context.Background())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p.(*Provider)
}

func tokenEnv(addr, path string) config.Env {
	return config.Env{"VAULT_ADDR": addr, "VAULT_TOKEN": "root-token", "MLFLOW_VAULT_SECRET_PATH": path}
}

func appRoleEnv(addr, path string) config.Env {
	return config.Env{"VAULT_ADDR": addr, "VAULT_ROLE_ID": "role-1", "VAULT_SECRET_ID": "secret-id-1", "MLFLOW_VAULT_SECRET_PATH": path}
}

func mustFetch(t *testing.T, p *Provider) secret.Credential {
	t.Helper()
	c, err := p.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return c
}

func fetchErr(t *testing.T, p *Provider) *msaerr.Error {
	t.Helper()
	_, err := p.Fetch(context.Background())
	if err == nil {
		t.Fatal("Fetch succeeded, want an error")
	}
	e := msaerr.As(err)
	if strings.HasPrefix(e.Error(), "vault:") {
		t.Errorf("message keeps the hand-written name prefix: %q", e)
	}
	return e
}

func TestKVv2AndV1(t *testing.T) {
	f := newFakeVault()
	f.putV2("mlflow/auth", map[string]any{"token": "tok-v2"}, 1)
	f.kv["kv1/mlflow/auth"] = map[string]any{"username": "alice", "password": "pw-v1"}
	srv := f.start(t)
	for path, want := range map[string]secret.Credential{
		"secret/mlflow/auth":      {Token: "tok-v2"},
		"secret/data/mlflow/auth": {Token: "tok-v2"}, // the API form
		"/kv1/mlflow/auth/":       {Username: "alice", Password: "pw-v1"},
	} {
		if got := mustFetch(t, open(t, tokenEnv(srv.URL, path))); got != want {
			t.Errorf("%s: %+v, want %+v", path, got, want)
		}
	}
}

func TestNamespaceHeaderAndProcessEnvIgnored(t *testing.T) {
	// The process's own VAULT_TOKEN/VAULT_NAMESPACE/VAULT_HEADERS, which the
	// api package reads, must not reach the server: the settings drive the client.
	t.Setenv("VAULT_TOKEN", "process-token")
	t.Setenv("VAULT_NAMESPACE", "process-ns")
	t.Setenv("VAULT_HEADERS", `{"X-Leak":"1"}`)
	f := newFakeVault()
	f.namespace = "team-a/"
	f.putV2("mlflow/auth", map[string]any{"token": "ns-token"}, 1)
	srv := f.start(t)
	env := config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "root-token", "BAO_NAMESPACE": "team-a/",
		"MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth"}
	if got := mustFetch(t, open(t, env)); got.Token != "ns-token" {
		t.Fatalf("got %+v", got)
	}
	for _, ns := range f.namespaces {
		if ns != "team-a/" {
			t.Errorf("a request carried namespace %q", ns)
		}
	}
	// Without a namespace setting, no namespace header at all.
	f2 := newFakeVault()
	f2.putV2("x", map[string]any{"token": "t"}, 1)
	srv2 := f2.start(t)
	mustFetch(t, open(t, tokenEnv(srv2.URL, "secret/x")))
	for _, ns := range f2.namespaces {
		if ns != "" {
			t.Errorf("namespace %q sent although none is set", ns)
		}
	}
}

func TestOpenBaoAliases(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "via-bao"}, 1)
	srv := f.start(t)
	// BAO_* alone works.
	env := config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "root-token", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	if got := mustFetch(t, open(t, env)); got.Token != "via-bao" {
		t.Fatalf("got %+v", got)
	}
	// VAULT_* wins over BAO_*.
	env = config.Env{"VAULT_ADDR": srv.URL, "BAO_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "root-token",
		"BAO_TOKEN": "revoked", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	p := open(t, env)
	mustFetch(t, p)
	if p.s.Vars.Addr != "VAULT_ADDR" || p.s.Vars.Token != "VAULT_TOKEN" {
		t.Errorf("vars = %+v", p.s.Vars)
	}
	// AppRole through the aliases.
	env = config.Env{"BAO_ADDR": srv.URL, "BAO_ROLE_ID": "role-1", "BAO_SECRET_ID": "secret-id-1", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	mustFetch(t, open(t, env))
	// Errors name the variable actually used.
	for _, c := range []struct {
		env      config.Env
		variable string
	}{
		{config.Env{"BAO_ADDR": "vault:8200", "BAO_TOKEN": "t", "MLFLOW_VAULT_SECRET_PATH": "s/x"}, "BAO_ADDR"},
		{config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "t", "BAO_SKIP_VERIFY": "maybe", "MLFLOW_VAULT_SECRET_PATH": "s/x"}, "BAO_SKIP_VERIFY"},
		{config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "t", "BAO_CACERT": "/nonexistent.pem", "MLFLOW_VAULT_SECRET_PATH": "s/x"}, "BAO_CACERT"},
		{config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "t", "BAO_CLIENT_CERT": "vault_test.go", "MLFLOW_VAULT_SECRET_PATH": "s/x"}, "BAO_CLIENT_KEY"},
		{config.Env{"BAO_ADDR": srv.URL, "MLFLOW_VAULT_SECRET_PATH": "s/x"}, "BAO_TOKEN"},
		{config.Env{"BAO_ADDR": srv.URL, "BAO_ROLE_ID": "r", "MLFLOW_VAULT_SECRET_PATH": "s/x"}, "BAO_SECRET_ID"},
	} {
		_, err := Factory(c.env, shared)
		if e := msaerr.As(err); err == nil || e.Variable != c.variable || !strings.Contains(e.Message, c.variable) {
			t.Errorf("%v: %v (variable %q)", c.env, err, e.Variable)
		}
	}
	// A revoked BAO_TOKEN is reported naming BAO_TOKEN.
	env = config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "revoked", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	if e := fetchErr(t, open(t, env)); e.Variable != "BAO_TOKEN" || !strings.Contains(e.Message, "BAO_TOKEN") {
		t.Errorf("revoked BAO_TOKEN: %v [%s]", e, e.Variable)
	}
}

func TestRevokedStaticToken(t *testing.T) {
	f := newFakeVault()
	f.tokens["static"] = true
	f.putV2("a", map[string]any{"token": "x"}, 1)
	srv := f.start(t)
	env := tokenEnv(srv.URL, "secret/a")
	env["VAULT_TOKEN"] = "static"
	p := open(t, env)
	mustFetch(t, p)
	f.mu.Lock()
	delete(f.tokens, "static")
	f.mu.Unlock()
	e := fetchErr(t, p)
	if e.Variable != "VAULT_TOKEN" || !strings.Contains(e.Message, "VAULT_TOKEN") || !strings.Contains(e.Message, "revoked") || !msaerr.IsRejection(e) {
		t.Errorf("revoked token: %v [%s]", e, e.Variable)
	}
	if strings.Contains(e.Error(), "static") {
		t.Errorf("message shows the token: %q", e)
	}
}

func TestAppRoleReloginAfterRevoke(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "old"}, 1)
	srv := f.start(t)
	p := open(t, appRoleEnv(srv.URL, "secret/a"))
	if got := mustFetch(t, p); got.Token != "old" {
		t.Fatalf("got %+v", got)
	}
	f.revokeAll()
	f.putV2("a", map[string]any{"token": "rotated"}, 2)
	if got := mustFetch(t, p); got.Token != "rotated" {
		t.Fatalf("after revoke: %+v", got)
	}
	if logins, _ := f.counts(); logins != 2 {
		t.Errorf("logins = %d, want 2 (one re-login after the 403)", logins)
	}
	// The read after the re-login used the new token.
	if last := f.tokensSeen[len(f.tokensSeen)-1]; last != "approle-token-2" {
		t.Errorf("read with %q", last)
	}
	// A held, valid token is reused.
	mustFetch(t, p)
	if logins, _ := f.counts(); logins != 2 {
		t.Errorf("logins = %d after a normal fetch", logins)
	}
	// Revoked, and the re-login refused too (the secret ID was revoked):
	// a rejection.
	f.revokeAll()
	f.mu.Lock()
	f.secretID = "another"
	f.mu.Unlock()
	if e := fetchErr(t, p); !msaerr.IsRejection(e) || e.Variable != "VAULT_SECRET_ID" {
		t.Errorf("revoked, re-login refused: [%s] %v", e.Variable, e)
	}
}

func TestAppRoleReloginAfterLeaseEnds(t *testing.T) {
	f := newFakeVault()
	f.loginLease = 60 // not renewable: the provider must log in again before it ends
	f.putV2("a", map[string]any{"token": "v1"}, 1)
	srv := f.start(t)
	p := open(t, appRoleEnv(srv.URL, "secret/a"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	mustFetch(t, p)
	now = now.Add(59 * time.Second) // within the lease, outside the margin
	mustFetch(t, p)
	if logins, _ := f.counts(); logins != 1 {
		t.Fatalf("logins = %d within the lease", logins)
	}
	now = now.Add(800 * time.Millisecond) // within expiryMargin of the end
	mustFetch(t, p)
	if logins, _ := f.counts(); logins != 2 {
		t.Fatalf("logins = %d at the end of the lease, want 2", logins)
	}
}

func TestAppRoleReloginAfterMaxTTL(t *testing.T) {
	f := newFakeVault()
	// The token is near its max TTL: renewal caps the lease at the 3 s left
	// instead of extending it to 10 s. LifetimeWatcher's grace period is
	// 10-20% of the 10 s lease, so with 3 s left it ends at once, as Vault
	// documents: time to authenticate again.
	f.loginLease, f.renewable = 10, true
	f.renewLease = 3
	f.putV2("a", map[string]any{"token": "v1"}, 1)
	srv := f.start(t)
	p := open(t, appRoleEnv(srv.URL, "secret/a"))
	done := make(chan struct{}, 4)
	p.watchDone = func() { done <- struct{}{} }
	mustFetch(t, p)
	select {
	case <-done: // the LifetimeWatcher has ended: renewal is over
	case <-time.After(10 * time.Second):
		t.Fatal("the LifetimeWatcher never ended")
	}
	if _, renews := f.counts(); renews < 1 {
		t.Errorf("renews = %d: the watcher never renewed", renews)
	}
	f.putV2("a", map[string]any{"token": "v2"}, 2)
	if got := mustFetch(t, p); got.Token != "v2" {
		t.Fatalf("got %+v", got)
	}
	if logins, _ := f.counts(); logins != 2 {
		t.Errorf("logins = %d, want a second login after the watcher ended", logins)
	}
}

func TestErrorClasses(t *testing.T) {
	f := newFakeVault()
	f.putV2("ok", map[string]any{"token": "t"}, 1)
	f.putV2("empty", map[string]any{}, 1)
	f.kv["secret/data/deleted"] = map[string]any{"data": nil, "metadata": map[string]any{
		"created_time": "2026-01-01T00:00:00Z", "deletion_time": "2026-02-01T10:00:00Z", "destroyed": false, "version": 4}}
	f.kv["secret/data/destroyed"] = map[string]any{"data": nil, "metadata": map[string]any{
		"created_time": "2026-01-01T00:00:00Z", "deletion_time": "", "destroyed": true, "version": 7}}
	f.deny["secret/data/denied"] = true
	f.deny["secret/hidden"] = true // the mount lookup is denied too
	f.deny["secret/data/hidden"] = true
	f.fail["secret/data/flaky"] = 1
	srv := f.start(t)
	cases := []struct {
		path     string
		code     msaerr.Code
		variable string
		contains []string
	}{
		{"nomount/mlflow/auth", msaerr.NotConfigured, "MLFLOW_VAULT_SECRET_PATH", []string{"no secrets engine is mounted", "MLFLOW_VAULT_SECRET_PATH=nomount/mlflow/auth"}},
		{"secret/denied", msaerr.Backend, "MLFLOW_VAULT_SECRET_PATH", []string{"permission denied", "policies", "MLFLOW_VAULT_SECRET_PATH=secret/denied"}},
		{"secret/hidden", msaerr.Backend, "MLFLOW_VAULT_SECRET_PATH", []string{"permission denied", "looking up the KV mount"}},
		{"secret/deleted", msaerr.SecretUnusable, "MLFLOW_VAULT_SECRET_PATH", []string{"latest version (4)", "deleted at 2026-02-01T10:00:00Z", "MLFLOW_VAULT_SECRET_PATH=secret/deleted"}},
		{"secret/destroyed", msaerr.SecretUnusable, "MLFLOW_VAULT_SECRET_PATH", []string{"latest version (7)", "destroyed"}},
		{"secret/missing", msaerr.Backend, "MLFLOW_VAULT_SECRET_PATH", []string{"no secret at MLFLOW_VAULT_SECRET_PATH=secret/missing"}},
		{"secret/empty", msaerr.SecretUnusable, "MLFLOW_VAULT_SECRET_PATH", []string{"MLFLOW_VAULT_SECRET_PATH=secret/empty"}},
		{"pki/issue/x", msaerr.NotConfigured, "MLFLOW_VAULT_SECRET_PATH", []string{`"pki" secrets engine`}},
		{"secret", msaerr.NotConfigured, "MLFLOW_VAULT_SECRET_PATH", []string{"names the mount"}},
		{"secret/flaky", msaerr.Backend, "", []string{"failed with HTTP 500"}},
	}
	for _, c := range cases {
		e := fetchErr(t, open(t, tokenEnv(srv.URL, c.path)))
		if e.Code != c.code || e.Variable != c.variable {
			t.Errorf("%s: [%s %s] %v", c.path, e.Code, e.Variable, e)
		}
		// Every answer that refuses is a rejection; only the 500 is not.
		if msaerr.IsRejection(e) != (c.path != "secret/flaky") {
			t.Errorf("%s: IsRejection = %v", c.path, msaerr.IsRejection(e))
		}
		for _, s := range c.contains {
			if !strings.Contains(e.Error(), s) {
				t.Errorf("%s: %q lacks %q", c.path, e, s)
			}
		}
	}
}

func TestLoginErrors(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	srv := f.start(t)
	env := appRoleEnv(srv.URL, "secret/a")
	env["VAULT_SECRET_ID"] = "wrong-secret-id"
	e := fetchErr(t, open(t, env))
	if e.Variable != "VAULT_SECRET_ID" || !strings.Contains(e.Message, "VAULT_ROLE_ID") || strings.Contains(e.Error(), "wrong-secret-id") ||
		!msaerr.IsRejection(e) {
		t.Errorf("bad secret id: [%s] %v", e.Variable, e)
	}
	env = appRoleEnv(srv.URL, "secret/a")
	env["MLFLOW_VAULT_APPROLE_MOUNT"] = "/other-approle/"
	e = fetchErr(t, open(t, env))
	if e.Variable != "MLFLOW_VAULT_APPROLE_MOUNT" || !strings.Contains(e.Message, "other-approle") {
		t.Errorf("missing AppRole mount: [%s] %v", e.Variable, e)
	}
	// A custom mount works.
	f.appRoleMount = "ci/approle"
	env["MLFLOW_VAULT_APPROLE_MOUNT"] = "ci/approle"
	mustFetch(t, open(t, env))
}

func TestNetworkErrors(t *testing.T) {
	// Nothing listens: the error names VAULT_ADDR without its userinfo.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	e := fetchErr(t, open(t, tokenEnv("http://svc:hunter2pw@"+addr, "secret/a")))
	if e.Variable != "VAULT_ADDR" || strings.Contains(e.Error(), "hunter2pw") || !strings.Contains(e.Error(), "***@"+addr) || msaerr.IsRejection(e) {
		t.Errorf("refused: [%s] %v", e.Variable, e)
	}
	// A server that never answers: the caller's deadline ends the call.
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	p := open(t, tokenEnv(srv.URL, "secret/a"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.Fetch(ctx)
	if e := msaerr.As(err); err == nil || e.Variable != config.EnvTimeout || msaerr.IsRejection(err) {
		t.Errorf("hung server: %v", err)
	}
}

func TestCleartextWarningAndDetails(t *testing.T) {
	allow := &config.Config{Timeout: time.Second, AllowHTTP: true}
	for addr, cleartext := range map[string]bool{
		"http://vault.example.com:8200": true,
		"http://10.0.0.5:8200":          true,
		"http://127.0.0.1:8200":         false,
		"http://127.8.9.10:8200":        false,
		"http://localhost:8200":         false,
		"http://[::1]:8200":             false,
		"https://vault.example.com":     false,
	} {
		// Without MLFLOW_SECRETS_ALLOW_HTTP, cleartext is refused.
		_, err := Factory(tokenEnv(addr, "secret/a"), shared)
		if e := msaerr.As(err); cleartext != (err != nil) || cleartext && (e.Variable != "VAULT_ADDR" || !strings.Contains(e.Message, "MLFLOW_SECRETS_ALLOW_HTTP")) {
			t.Errorf("%s: %v", addr, err)
		}
		// With it, it is allowed with the warning every backend gives.
		sp, err := Factory(tokenEnv(addr, "secret/a"), allow)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(sp.Warnings) == 1 && strings.Contains(sp.Warnings[0], "cleartext (allowed by MLFLOW_SECRETS_ALLOW_HTTP=true)"); got != cleartext {
			t.Errorf("%s: warnings %q", addr, sp.Warnings)
		}
	}
	// A loopback http address reached through a non-loopback http proxy is
	// cleartext on the network: refused; https through that proxy is fine.
	for _, env := range []config.Env{
		{"VAULT_ADDR": "http://169.254.1.1:8200", "HTTP_PROXY": "http://proxy.corp:3128"},
		{"VAULT_ADDR": "http://169.254.1.1:8200", "http_proxy": "http://proxy.corp:3128"},
	} {
		e2 := tokenEnv(env["VAULT_ADDR"], "secret/a")
		for k, v := range env {
			e2[k] = v
		}
		if _, err := Factory(e2, shared); err == nil || msaerr.As(err).Variable != "VAULT_ADDR" || !strings.Contains(err.Error(), "proxy.corp") {
			t.Errorf("%v: %v", env, err)
		}
		if sp, err := Factory(e2, allow); err != nil || len(sp.Warnings) != 1 {
			t.Errorf("%v allowed: %v %v", env, sp.Warnings, err)
		}
	}
	e2 := tokenEnv("https://vault.example.com", "secret/a")
	e2["HTTPS_PROXY"] = "http://proxy.corp:3128"
	if sp, err := Factory(e2, shared); err != nil || len(sp.Warnings) != 0 {
		t.Errorf("https through a proxy: %v %v", sp.Warnings, err)
	}
	// The proxy settings are part of the provider's identity.
	if sp, _ := Factory(tokenEnv("https://vault.example.com", "secret/a"), shared); provider.KeyOf("v", sp.Settings) ==
		provider.KeyOf("v", mustSpec(t, e2).Settings) {
		t.Error("HTTPS_PROXY does not change the identity")
	}
	sp, err := Factory(tokenEnv("http://svc:s3cretpw@vault.example.com:8200", "secret/a"), allow)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(sp.Warnings, " ")
	for _, d := range sp.Details {
		all += " " + d[1]
	}
	if strings.Contains(all, "s3cretpw") || !strings.Contains(all, "http://***@vault.example.com:8200") {
		t.Errorf("details/warnings: %q", all)
	}
	_, err = Factory(tokenEnv("ftp://svc:s3cretpw@vault.example.com", "secret/a"), shared)
	if err == nil || strings.Contains(err.Error(), "s3cretpw") {
		t.Errorf("bad scheme: %v", err)
	}
}

func TestSettingsAreTheIdentity(t *testing.T) {
	env := tokenEnv("https://vault.example.com", "secret/a")
	key := func(c *config.Config) string {
		sp, err := Factory(env, c)
		if err != nil {
			t.Fatal(err)
		}
		return provider.KeyOf("vault", sp.Settings)
	}
	base := key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2})
	if base != key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2}) {
		t.Error("equal settings, different keys")
	}
	if base == key(&config.Config{Timeout: 3 * time.Second, MaxRetries: 2}) {
		t.Error("the shared timeout is not part of the identity")
	}
	if base == key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 0}) {
		t.Error("the retries are not part of the identity")
	}
	env["VAULT_TLS_SERVER_NAME"] = "other"
	if base == key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2}) {
		t.Error("TLS settings are not part of the identity")
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	closed := make(chan struct{}, 16)
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	sp, err := Factory(tokenEnv(srv.URL, "secret/a"), shared)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sp.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustFetch(t, p.(*Provider))
	select {
	case <-closed:
		t.Fatal("the client closed its connection itself: nothing left for Close to do")
	default:
	}
	// The client returns a connection to its idle pool just after the
	// response is read, in its own goroutine: Close until the server sees
	// the connection closed (Close may be called more than once).
	deadline := time.After(10 * time.Second)
	for {
		p.Close()
		select {
		case <-closed:
			return
		case <-deadline:
			t.Fatal("Close left the idle connection open")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// writePEM writes a self-signed certificate for names (and its key) and
// returns the file paths.
func selfSigned(t *testing.T, dir string, names ...string) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: names,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, names[0]+".pem"), filepath.Join(dir, names[0]+"-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, _, serverCert := selfSigned(t, dir, "vault.test")
	clientCert, clientKey, _ := selfSigned(t, dir, "client.test")
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "over-tls"}, 1)
	var sawClientCert bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == "client.test" {
			sawClientCert = true
		}
		f.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	env := tokenEnv(srv.URL, "secret/a")

	// Untrusted server: refused, naming VAULT_CACERT (not VAULT_ADDR).
	if e := fetchErr(t, open(t, env)); e.Variable != "VAULT_CACERT" || !strings.Contains(e.Error(), "not trusted") {
		t.Errorf("untrusted: [%s] %v", e.Variable, e)
	}
	// VAULT_CACERT.
	env["VAULT_CACERT"] = serverCA
	if got := mustFetch(t, open(t, env)); got.Token != "over-tls" {
		t.Fatalf("got %+v", got)
	}
	// VAULT_CAPATH: regular files inside; a FIFO there is skipped, not read.
	caDir := filepath.Join(dir, "cas")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(serverCA)
	if err := os.WriteFile(filepath.Join(caDir, "ca.pem"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	mkfifo(t, filepath.Join(caDir, "fifo"))
	delete(env, "VAULT_CACERT")
	env["VAULT_CAPATH"] = caDir
	mustFetch(t, open(t, env))
	// VAULT_TLS_SERVER_NAME: the certificate names vault.test, not other.test.
	env["VAULT_TLS_SERVER_NAME"] = "vault.test"
	mustFetch(t, open(t, env))
	env["VAULT_TLS_SERVER_NAME"] = "other.test"
	if e := fetchErr(t, open(t, env)); !strings.Contains(e.Error(), "other.test") || e.Variable != "VAULT_TLS_SERVER_NAME" {
		t.Errorf("wrong server name: %v", e)
	}
	delete(env, "VAULT_TLS_SERVER_NAME")
	// Client certificate.
	env["VAULT_CLIENT_CERT"], env["VAULT_CLIENT_KEY"] = clientCert, clientKey
	mustFetch(t, open(t, env))
	if !sawClientCert {
		t.Error("the client certificate was not presented")
	}
	// A certificate with another certificate's key.
	env["VAULT_CLIENT_KEY"] = filepath.Join(dir, "vault.test-key.pem")
	sp, err := Factory(env, shared)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.New(context.Background()); err == nil || msaerr.As(err).Variable != "VAULT_CLIENT_CERT" {
		t.Errorf("mismatched pair: %v", err)
	}
	// A CA file without certificates.
	env = tokenEnv(srv.URL, "secret/a")
	env["VAULT_CACERT"] = clientKey
	sp, _ = Factory(env, shared)
	if _, err := sp.New(context.Background()); err == nil || msaerr.As(err).Variable != "VAULT_CACERT" {
		t.Errorf("CA file without certificates: %v", err)
	}
	// A CA directory without certificates.
	empty := t.TempDir()
	env = tokenEnv(srv.URL, "secret/a")
	env["VAULT_CAPATH"] = empty
	sp, _ = Factory(env, shared)
	if _, err := sp.New(context.Background()); err == nil || msaerr.As(err).Variable != "VAULT_CAPATH" {
		t.Errorf("CA dir without certificates: %v", err)
	}
}

func TestBoundedFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if !mkfifo(t, fifo) {
		t.Skip("no FIFOs or /dev/zero on this system")
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, cfgfile.MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", big, dir} {
		// Factory refuses it without opening it.
		env := tokenEnv("https://vault.example.com", "secret/a")
		env["VAULT_CACERT"] = path
		_, err := Factory(env, shared)
		if e := msaerr.As(err); err == nil || e.Variable != "VAULT_CACERT" || e.Code != msaerr.NotConfigured {
			t.Errorf("Factory with VAULT_CACERT=%s: %v", path, err)
		}
		// So does the reader itself, should the file change type in between
		// (the FIFO must not block, /dev/zero must not be read to the end).
		if _, err := cfgfile.Read(context.Background(), "VAULT_CACERT", path); err == nil ||
			!strings.Contains(err.Error(), "VAULT_CACERT") {
			t.Errorf("cfgfile.Read(%s): %v", path, err)
		}
		// And the client build, given such settings directly.
		s := Settings{Addr: "https://vault.example.com", Token: "t", SecretPath: "secret/a", CACert: path,
			Timeout: time.Second, Vars: Vars{CACert: "VAULT_CACERT"}}
		if _, err := newProvider(context.Background(), s); err == nil {
			t.Errorf("newProvider with CACert=%s succeeded", path)
		}
	}
	// A CA directory with a file over the limit.
	env := tokenEnv("https://vault.example.com", "secret/a")
	if _, err := cfgfile.ReadDir(context.Background(), "VAULT_CAPATH", dir); err == nil || !strings.Contains(err.Error(), "big.pem") {
		t.Errorf("readDir with an oversized file: %v", err)
	}
	env["VAULT_CAPATH"] = big
	if _, err := Factory(env, shared); err == nil || msaerr.As(err).Variable != "VAULT_CAPATH" {
		t.Errorf("VAULT_CAPATH naming a file: %v", err)
	}
	// The process's own VAULT_CACERT, which the Vault API client reads, is
	// checked before the client is built.
	t.Setenv("VAULT_CACERT", fifo)
	s := Settings{Addr: "https://vault.example.com", Token: "t", SecretPath: "secret/a", Timeout: time.Second}
	_, err := newProvider(context.Background(), s)
	if e := msaerr.As(err); err == nil || e.Variable != "VAULT_CACERT" || !strings.Contains(e.Message, "process environment") {
		t.Errorf("process VAULT_CACERT=fifo: %v", err)
	}
}
