package vault

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// sink records every request that reaches it: in these tests, nothing may.
type sink struct {
	mu   sync.Mutex
	seen []string
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.Path+" token="+r.Header.Get("X-Vault-Token")+" body="+string(body))
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"auth":{"client_token":"stolen"},"data":{"path":"secret/","type":"kv"}}`))
}

func (s *sink) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// redirector answers every request with status and a Location on target.
func redirector(status int, target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", target+r.URL.Path)
		w.WriteHeader(status)
	})
}

// No redirect from VAULT_ADDR is followed: the token (token auth), the
// AppRole login body (secret_id) and the cert login never reach the
// Location. Fails without api.Config.DisableRedirects (egress.VaultConfig).
func TestRedirectsAreNotFollowed(t *testing.T) {
	other := &sink{}
	osrv := httptest.NewServer(other)
	t.Cleanup(osrv.Close)
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		src := httptest.NewServer(redirector(status, osrv.URL))
		t.Cleanup(src.Close)
		for name, env := range map[string]config.Env{
			"token":   {"VAULT_ADDR": src.URL, "VAULT_TOKEN": "s.sentinel-token", "MLFLOW_VAULT_SECRET_PATH": "secret/a"},
			"approle": {"VAULT_ADDR": src.URL, "VAULT_ROLE_ID": "role-1", "VAULT_SECRET_ID": "sentinel-secret-id", "MLFLOW_VAULT_SECRET_PATH": "secret/a"},
		} {
			e := fetchErr(t, open(t, env))
			if strings.Contains(e.Error(), "sentinel") {
				t.Errorf("%d %s: message leaks: %v", status, name, e)
			}
			if got := other.requests(); len(got) != 0 {
				t.Fatalf("%d %s: the redirect target received %q", status, name, got)
			}
		}
	}
	// Cert login: the TLS address redirects the login to a plain listener.
	tsrv, ca, cert, key := startTLSWith(t, redirector(http.StatusTemporaryRedirect, osrv.URL), tls.RequestClientCert)
	fetchErr(t, open(t, certEnv(tsrv.URL, ca, cert, key, "secret/a")))
	if got := other.requests(); len(got) != 0 {
		t.Fatalf("cert login: the redirect target received %q", got)
	}
}

// A loopback http VAULT_ADDR that is reached through a non-loopback http
// proxy would carry the token in cleartext: refused at Factory, and (for a
// provider built past that check) at request time by the transport.
func TestCleartextThroughProxyRefusedPerRequest(t *testing.T) {
	proxy := &sink{}
	psrv := httptest.NewServer(proxy)
	t.Cleanup(psrv.Close)
	env := tokenEnv("http://169.254.1.1:8200", "secret/a")
	env["HTTP_PROXY"] = psrv.URL // loopback: allowed, the proxy is a recipient
	sp, err := Factory(env, shared)
	if err != nil {
		t.Fatal(err)
	}
	s := sp.Settings.(Settings)
	s.Egress.HTTPProxy = "http://proxy.corp.test:3128"
	p, err := newProvider(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	e := fetchErr(t, p)
	if e.Variable != config.EnvAllowHTTP || e.Code != msaerr.NotConfigured {
		t.Errorf("[%s %s] %v", e.Code, e.Variable, e)
	}
}

// Vault's errors[] reach messages without control characters or escapes.
func TestServerTextIsSanitized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusBadRequest, errorsBody("bad\r\nFAKE LOG LINE level=ERROR \x1b[31mred\x1b[0m \u202egnp.exe", strings.Repeat("z", 5000)))
	}))
	t.Cleanup(srv.Close)
	e := fetchErr(t, open(t, appRoleEnv(srv.URL, "secret/a")))
	msg := e.Error()
	if strings.ContainsAny(msg, "\r\n\x1b\u202e") || !strings.Contains(msg, "bad FAKE LOG LINE") || len(msg) > 1000 {
		t.Errorf("message not sanitized (%d bytes): %q", len(msg), msg)
	}
	e = fetchErr(t, open(t, tokenEnv(srv.URL, "secret/a")))
	if msg := e.Error(); strings.ContainsAny(msg, "\r\n\x1b\u202e") || len(msg) > 1000 {
		t.Errorf("message not sanitized (%d bytes): %q", len(msg), msg)
	}
}

// Close revokes the token the provider logged in for, never a static one.
func TestCloseRevokesOwnLoginToken(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	var mu sync.Mutex
	var revoked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/auth/token/revoke-self" {
			mu.Lock()
			revoked = append(revoked, r.Header.Get("X-Vault-Token"))
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), revoked...)
	}
	// Static token: never revoked.
	p := open(t, tokenEnv(srv.URL, "secret/a"))
	mustFetch(t, p)
	p.Close()
	if r := got(); len(r) != 0 {
		t.Fatalf("a static token was revoked: %q", r)
	}
	// AppRole: the login token is revoked once on Close.
	p = open(t, appRoleEnv(srv.URL, "secret/a"))
	mustFetch(t, p)
	p.Close()
	if r := got(); len(r) != 1 || r[0] != "approle-token-1" {
		t.Fatalf("revoked %q, want the login token", r)
	}
	// Never logged in: nothing to revoke.
	p = open(t, appRoleEnv(srv.URL, "secret/a"))
	p.Close()
	if r := got(); len(r) != 1 {
		t.Fatalf("revoked %q without a login", r)
	}
	// Cert login too.
	tsrv, ca, cert, key := startTLSWith(t, srv.Config.Handler, tls.RequestClientCert)
	p = open(t, certEnv(tsrv.URL, ca, cert, key, "secret/a"))
	mustFetch(t, p)
	p.Close()
	if r := got(); len(r) != 2 || !strings.HasPrefix(r[1], "cert-token-") {
		t.Fatalf("revoked %q, want the cert login token", r)
	}
}

// Close is bounded when Vault does not answer the revocation.
func TestCloseRevocationIsBounded(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/auth/token/revoke-self" {
			<-hang
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	env := appRoleEnv(srv.URL, "secret/a")
	sp, err := Factory(env, &config.Config{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pp, err := sp.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := pp.(*Provider)
	mustFetch(t, p)
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the revocation is not bounded")
	}
}

// A credential read with a login token carries that token's lease end.
func TestRefreshByFromLoginLease(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	f.loginLease = 600
	srv := f.start(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := open(t, appRoleEnv(srv.URL, "secret/a"))
	p.now = func() time.Time { return now }
	if c := mustFetch(t, p); !c.RefreshBy.Equal(now.Add(600 * time.Second)) {
		t.Errorf("RefreshBy = %v, want %v", c.RefreshBy, now.Add(600*time.Second))
	}
	// No lease: unknown. A static token: unknown (no lookup per fetch).
	f.loginLease = 0
	p = open(t, appRoleEnv(srv.URL, "secret/a"))
	if c := mustFetch(t, p); !c.RefreshBy.IsZero() {
		t.Errorf("RefreshBy = %v without a lease", c.RefreshBy)
	}
	if c := mustFetch(t, open(t, tokenEnv(srv.URL, "secret/a"))); !c.RefreshBy.IsZero() {
		t.Errorf("RefreshBy = %v for a static token", c.RefreshBy)
	}
}

// TLS failures name the variable that fixes them, in the address's family.
func TestTLSFailuresNameTheRightVariable(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	srv, ca, _, _ := startTLSWith(t, f, tls.RequestClientCert)
	// Unknown CA with BAO_ADDR: BAO_CACERT, not BAO_ADDR or VAULT_CACERT.
	e := fetchErr(t, open(t, config.Env{"BAO_ADDR": srv.URL, "BAO_TOKEN": "root-token", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}))
	if e.Variable != "BAO_CACERT" || !strings.Contains(e.Message, "BAO_CACERT") || strings.Contains(e.Message, "VAULT_") {
		t.Errorf("unknown CA: [%s] %v", e.Variable, e)
	}
	// A CA directory set: it is the one to fix.
	dir := t.TempDir()
	selfSigned(t, dir, "other-ca.test") // a CA directory without the server's CA
	e = fetchErr(t, open(t, config.Env{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": "root-token", "VAULT_CAPATH": dir, "MLFLOW_VAULT_SECRET_PATH": "secret/a"}))
	if e.Variable != "VAULT_CAPATH" {
		t.Errorf("unknown CA with a CA path: [%s] %v", e.Variable, e)
	}
	// The server requires a client certificate we do not present.
	srv2, ca, _, _ := startTLSWith(t, f, tls.RequireAndVerifyClientCert)
	e = fetchErr(t, open(t, config.Env{"BAO_ADDR": srv2.URL, "BAO_TOKEN": "root-token", "BAO_CACERT": ca, "MLFLOW_VAULT_SECRET_PATH": "secret/a"}))
	if e.Variable != "BAO_CLIENT_CERT" || !strings.Contains(e.Message, "TLS handshake") {
		t.Errorf("client certificate refused: [%s] %v", e.Variable, e)
	}
}

// startTLSWith is fakeVault.startTLS for any handler and client-auth mode.
func startTLSWith(t *testing.T, h http.Handler, auth tls.ClientAuthType) (srv *httptest.Server, caFile, clientCert, clientKey string) {
	t.Helper()
	dir := t.TempDir()
	caFile, _, serverCert := selfSigned(t, dir, "vault.test")
	clientCert, clientKey, _ = selfSigned(t, dir, "client.test")
	srv = httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: auth}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, caFile, clientCert, clientKey
}
