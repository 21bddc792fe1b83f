package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
)

func certEnv(addr, ca, cert, key, path string) config.Env {
	return config.Env{"VAULT_ADDR": addr, "VAULT_CACERT": ca, "VAULT_CLIENT_CERT": cert, "VAULT_CLIENT_KEY": key,
		"MLFLOW_VAULT_SECRET_PATH": path}
}

func authMethod(t *testing.T, env config.Env) string {
	t.Helper()
	sp, err := Factory(env, shared)
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	for _, d := range sp.Details {
		if d[0] == "auth method" {
			return d[1]
		}
	}
	t.Fatalf("no auth method in %v", sp.Details)
	return ""
}

func TestCertLoginAndRelogin(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "via-cert"}, 1)
	srv, ca, cert, key := f.startTLS(t)
	env := certEnv(srv.URL, ca, cert, key, "secret/a")
	if got := authMethod(t, env); got != "cert (mount cert)" {
		t.Errorf("auth method = %q", got)
	}
	p := open(t, env)
	if got := mustFetch(t, p); got.Token != "via-cert" {
		t.Fatalf("got %+v", got)
	}
	if n := f.certCount(); n != 1 {
		t.Fatalf("cert logins = %d, want 1", n)
	}
	if last := f.tokensSeen[len(f.tokensSeen)-1]; last != "cert-token-1" {
		t.Errorf("read with %q, want the cert login's token", last)
	}
	mustFetch(t, p) // a held token is reused
	if n := f.certCount(); n != 1 {
		t.Errorf("cert logins = %d after a second fetch", n)
	}
	// Revoked under us: one new login, and the read uses its token.
	f.revokeAll()
	f.putV2("a", map[string]any{"token": "rotated"}, 2)
	if got := mustFetch(t, p); got.Token != "rotated" {
		t.Fatalf("after revoke: %+v", got)
	}
	if n := f.certCount(); n != 2 {
		t.Errorf("cert logins = %d, want 2", n)
	}
	if last := f.tokensSeen[len(f.tokensSeen)-1]; last != "cert-token-2" {
		t.Errorf("read with %q after the re-login", last)
	}
	if logins, _ := f.counts(); logins != 0 {
		t.Errorf("AppRole logins = %d with cert auth", logins)
	}
}

func TestCertReloginAfterLeaseAndMaxTTL(t *testing.T) {
	f := newFakeVault()
	f.loginLease = 60
	f.putV2("a", map[string]any{"token": "v1"}, 1)
	srv, ca, cert, key := f.startTLS(t)
	p := open(t, certEnv(srv.URL, ca, cert, key, "secret/a"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	mustFetch(t, p)
	now = now.Add(59 * time.Second)
	mustFetch(t, p)
	if n := f.certCount(); n != 1 {
		t.Fatalf("cert logins = %d within the lease", n)
	}
	now = now.Add(800 * time.Millisecond) // within expiryMargin of the end
	mustFetch(t, p)
	if n := f.certCount(); n != 2 {
		t.Fatalf("cert logins = %d at the end of the lease, want 2", n)
	}

	// Renewable, near its max TTL: the LifetimeWatcher renews, ends, and the
	// next Fetch logs in again (the machinery AppRole uses).
	f2 := newFakeVault()
	f2.loginLease, f2.renewable, f2.renewLease = 10, true, 3
	f2.putV2("a", map[string]any{"token": "v1"}, 1)
	srv2, ca2, cert2, key2 := f2.startTLS(t)
	p2 := open(t, certEnv(srv2.URL, ca2, cert2, key2, "secret/a"))
	done := make(chan struct{}, 4)
	p2.watchDone = func() { done <- struct{}{} }
	mustFetch(t, p2)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the LifetimeWatcher never ended")
	}
	if _, renews := f2.counts(); renews < 1 {
		t.Errorf("renews = %d: the watcher never renewed", renews)
	}
	mustFetch(t, p2)
	if n := f2.certCount(); n != 2 {
		t.Errorf("cert logins = %d, want a second login after the watcher ended", n)
	}
}

func TestCertMountAndRole(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	f.certMount, f.certRole = "ci/tls", "web"
	srv, ca, cert, key := f.startTLS(t)
	env := certEnv(srv.URL, ca, cert, key, "secret/a")
	env["MLFLOW_VAULT_CERT_MOUNT"], env["MLFLOW_VAULT_CERT_ROLE"] = "/ci/tls/", "web"
	if got := authMethod(t, env); got != "cert (mount ci/tls, role web)" {
		t.Errorf("auth method = %q", got)
	}
	mustFetch(t, open(t, env))
	if n := f.certCount(); n != 1 {
		t.Fatalf("cert logins = %d", n)
	}
	// Another role: Vault's 400 names the certificate and the role.
	env["MLFLOW_VAULT_CERT_ROLE"] = "db"
	e := fetchErr(t, open(t, env))
	if e.Code != msaerr.Backend || e.Variable != "VAULT_CLIENT_CERT" || !strings.Contains(e.Message, "MLFLOW_VAULT_CERT_ROLE=db") ||
		!strings.Contains(e.Message, "HTTP 400") || !strings.Contains(e.Message, "MLFLOW_VAULT_CERT_MOUNT=ci/tls") {
		t.Errorf("wrong role: [%s %s] %v", e.Code, e.Variable, e)
	}
	// The default mount (cert/) is not enabled: Vault answers 403.
	delete(env, "MLFLOW_VAULT_CERT_MOUNT")
	env["MLFLOW_VAULT_CERT_ROLE"] = "web"
	e = fetchErr(t, open(t, env))
	if e.Code != msaerr.NotConfigured || e.Variable != "MLFLOW_VAULT_CERT_MOUNT" || !strings.Contains(e.Message, "MLFLOW_VAULT_CERT_MOUNT=cert?") ||
		!strings.Contains(e.Message, "VAULT_CLIENT_CERT") {
		t.Errorf("missing mount: [%s %s] %v", e.Code, e.Variable, e)
	}
}

func TestCertNotTrusted(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	srv, ca, _, _ := f.startTLS(t)
	other, otherKey, _ := selfSigned(t, t.TempDir(), "stranger.test")
	env := certEnv(srv.URL, ca, other, otherKey, "secret/a")
	e := fetchErr(t, open(t, env))
	if e.Code != msaerr.Backend || e.Variable != "VAULT_CLIENT_CERT" || !strings.Contains(e.Message, "invalid certificate") {
		t.Errorf("untrusted certificate: [%s %s] %v", e.Code, e.Variable, e)
	}
	// The BAO_* aliases are named when they were the ones set.
	env = config.Env{"BAO_ADDR": srv.URL, "BAO_CACERT": ca, "BAO_CLIENT_CERT": other, "BAO_CLIENT_KEY": otherKey,
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	if e := fetchErr(t, open(t, env)); e.Variable != "BAO_CLIENT_CERT" || !strings.Contains(e.Message, "BAO_CLIENT_CERT") {
		t.Errorf("alias: [%s] %v", e.Variable, e)
	}
}

func TestCertPrecedence(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	srv, ca, cert, key := f.startTLS(t)
	// A token wins over AppRole and cert: no login at all.
	env := certEnv(srv.URL, ca, cert, key, "secret/a")
	env["VAULT_TOKEN"], env["VAULT_ROLE_ID"], env["VAULT_SECRET_ID"] = "root-token", "role-1", "secret-id-1"
	if got := authMethod(t, env); got != "token (VAULT_TOKEN)" {
		t.Errorf("auth method = %q", got)
	}
	mustFetch(t, open(t, env))
	if logins, _ := f.counts(); logins != 0 || f.certCount() != 0 {
		t.Errorf("token auth logged in: approle %d, cert %d", logins, f.certCount())
	}
	// AppRole wins over cert.
	delete(env, "VAULT_TOKEN")
	if got := authMethod(t, env); got != "approle (mount approle)" {
		t.Errorf("auth method = %q", got)
	}
	mustFetch(t, open(t, env))
	if logins, _ := f.counts(); logins != 1 || f.certCount() != 0 {
		t.Errorf("approle + cert: approle %d, cert %d logins", logins, f.certCount())
	}
	// Cert alone.
	delete(env, "VAULT_ROLE_ID")
	delete(env, "VAULT_SECRET_ID")
	mustFetch(t, open(t, env))
	if logins, _ := f.counts(); logins != 1 || f.certCount() != 1 {
		t.Errorf("cert alone: approle %d, cert %d logins", logins, f.certCount())
	}
}

func TestCertSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := selfSigned(t, dir, "client.test")
	env := config.Env{"VAULT_ADDR": "https://vault.corp.com:8200", "VAULT_CLIENT_CERT": cert, "VAULT_CLIENT_KEY": key,
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	sp, err := Factory(env, shared)
	if err != nil {
		t.Fatal(err)
	}
	s := sp.Settings.(Settings)
	if s.CertMount != "cert" || s.CertRole != "" || s.Method != methodCert {
		t.Errorf("settings = %+v", s)
	}
	// The mount and role are part of the identity.
	for k, v := range map[string]string{"MLFLOW_VAULT_CERT_MOUNT": "tls", "MLFLOW_VAULT_CERT_ROLE": "web"} {
		other := config.Env{}
		for k2, v2 := range env {
			other[k2] = v2
		}
		other[k] = v
		sp2, err := Factory(other, shared)
		if err != nil {
			t.Fatal(err)
		}
		if provider.KeyOf("vault", sp2.Settings) == provider.KeyOf("vault", sp.Settings) {
			t.Errorf("%s does not change the provider's identity", k)
		}
	}
	cases := []struct {
		change   config.Env
		variable string
		contains string
	}{
		// cert auth needs https.
		{config.Env{"VAULT_ADDR": "http://127.0.0.1:8200"}, "VAULT_ADDR", "https"},
		{config.Env{"VAULT_ADDR": "", "BAO_ADDR": "http://127.0.0.1:8200", "VAULT_CLIENT_CERT": "", "VAULT_CLIENT_KEY": "",
			"BAO_CLIENT_CERT": cert, "BAO_CLIENT_KEY": key}, "BAO_ADDR", "https"},
		// A certificate of the other family.
		{config.Env{"VAULT_ADDR": "", "BAO_ADDR": "https://127.0.0.1:8200"}, "VAULT_CLIENT_CERT", "BAO_ADDR"},
		// Half a pair.
		{config.Env{"VAULT_CLIENT_KEY": ""}, "VAULT_CLIENT_KEY", "VAULT_CLIENT_KEY"},
		{config.Env{"VAULT_CLIENT_CERT": ""}, "VAULT_CLIENT_CERT", "VAULT_CLIENT_CERT"},
		// Nothing at all: the message offers the certificate too.
		{config.Env{"VAULT_CLIENT_CERT": "", "VAULT_CLIENT_KEY": ""}, "VAULT_TOKEN", "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY"},
	}
	for _, c := range cases {
		e2 := config.Env{}
		for k, v := range env {
			e2[k] = v
		}
		for k, v := range c.change {
			e2[k] = v
		}
		_, err := Factory(e2, shared)
		e := msaerr.As(err)
		if err == nil || e.Code != msaerr.NotConfigured || e.Variable != c.variable || !strings.Contains(e.Message, c.contains) {
			t.Errorf("%v: %v [%s]", c.change, err, e.Variable)
		}
	}
	// The https check does not apply to a token over loopback http.
	tok := config.Env{"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t", "VAULT_CLIENT_CERT": cert, "VAULT_CLIENT_KEY": key,
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	if _, err := Factory(tok, shared); err != nil {
		t.Errorf("token over http with a client certificate: %v", err)
	}
	// Over plain http the fake's cert login sees no certificate: refused,
	// naming the certificate (Settings built directly, past Factory's check).
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	srv := f.start(t)
	s.Addr = srv.URL
	p, err := newProvider(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if e := fetchErr(t, p); e.Variable != "VAULT_CLIENT_CERT" {
		t.Errorf("cert login without TLS: [%s] %v", e.Variable, e)
	}
}
