package azure

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// sink records every request that reaches it.
type sink struct {
	mu   sync.Mutex
	seen []string
	h    http.HandlerFunc
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.String()+" auth="+r.Header.Get("Authorization"))
	h := s.h
	s.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *sink) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// identityEndpoint is an App Service managed-identity endpoint
// (IDENTITY_ENDPOINT, IDENTITY_HEADER) that hands out a token per resource.
func identityEndpoint(t *testing.T) *sink {
	t.Helper()
	id := &sink{h: func(w http.ResponseWriter, r *http.Request) {
		resource := r.URL.Query().Get("resource")
		b, _ := json.Marshal(map[string]string{"access_token": "token-for " + resource, "token_type": "Bearer", "resource": resource,
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}}
	srv := httptest.NewServer(id)
	t.Cleanup(srv.Close)
	unsetAzure(t)
	t.Setenv("IDENTITY_ENDPOINT", srv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "h")
	return id
}

// A vault outside Azure that names another resource in its challenge gets
// no token for it: the managed-identity endpoint is never asked, and the
// error says why. Fails without keyVaultOnly.
func TestChallengeForAnotherResourceIsRefused(t *testing.T) {
	id := identityEndpoint(t)
	f := &fakeKeyVault{token: "token-for https://management.azure.com", resource: "https://management.azure.com", respond: kvSecret("x", nil)}
	_, env := startKV(t, f)
	env["IDENTITY_ENDPOINT"] = "http://127.0.0.1/x" // for the cleartext check only; azidentity reads the process env
	p := openKV(t, env)
	_, err := p.Fetch(context.Background())
	e := msaerr.As(err)
	if err == nil || e.Variable != EnvVaultURL || !strings.Contains(e.Message, "management.azure.com") || !strings.Contains(e.Message, "refused") {
		t.Errorf("management challenge: [%s] %v", e.Variable, err)
	}
	for _, r := range id.requests() {
		if strings.Contains(r, "management") {
			t.Errorf("a token for Azure Resource Manager was requested: %q", r)
		}
	}
	if got := f.requests; got != 1 {
		t.Errorf("the vault got %d requests, want only the unauthenticated one", got)
	}
	// The same vault naming Key Vault's resource is served (the host check
	// is relaxed for a non-Azure host, with a warning).
	f.mu.Lock()
	f.resource, f.token = "", "token-for https://vault.azure.net"
	f.mu.Unlock()
	if _, err := openKV(t, env).Fetch(context.Background()); err != nil {
		t.Fatalf("Key Vault resource: %v", err)
	}
	if got := id.requests(); len(got) != 1 || !strings.Contains(got[0], "resource=https%3A%2F%2Fvault.azure.net") {
		t.Errorf("identity requests %q", got)
	}
}

func TestKeyVaultOnlyScopes(t *testing.T) {
	inner := &fakeCredential{token: "t"}
	c := keyVaultOnly{inner}
	for _, scope := range []string{"https://vault.azure.net/.default", "https://VAULT.azure.cn/.default", "https://vault.usgovcloudapi.net",
		"https://vault.microsoftazure.de/.default"} {
		if _, err := c.GetToken(context.Background(), tokenOpts(scope)); err != nil {
			t.Errorf("%s: %v", scope, err)
		}
	}
	for _, scope := range []string{"https://management.azure.com/.default", "https://vault.azure.net.evil.test/.default",
		"https://graph.microsoft.com/.default", "https://storage.azure.com/.default", "https://vault.azure.net/other/.default", "\x1b[31m"} {
		_, err := c.GetToken(context.Background(), tokenOpts(scope))
		if e := msaerr.As(err); err == nil || e.Variable != EnvVaultURL || strings.ContainsAny(e.Message, "\x1b") {
			t.Errorf("%q: %v", scope, err)
		}
	}
	if _, err := c.GetToken(context.Background(), tokenOpts()); err == nil {
		t.Error("no scope accepted")
	}
	if _, err := c.GetToken(context.Background(), tokenOpts("https://vault.azure.net/.default", "https://management.azure.com/.default")); err == nil {
		t.Error("a mixed scope list accepted")
	}
	if len(inner.scopes) != 4 {
		t.Errorf("the inner credential was asked %d times: %v", len(inner.scopes), inner.scopes)
	}
}

// Once the token is attached, a redirect from the vault is not followed.
func TestRedirectsAreNotFollowed(t *testing.T) {
	useCredential(t, &fakeCredential{token: "kv-token"})
	other := &sink{}
	osrv := httptest.NewServer(other)
	t.Cleanup(osrv.Close)
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		f := &fakeKeyVault{token: "kv-token", respond: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", osrv.URL+r.URL.Path)
			w.WriteHeader(status)
		}}
		_, env := startKV(t, f)
		if _, err := openKV(t, env).Fetch(context.Background()); err == nil {
			t.Errorf("%d: a redirect served a secret", status)
		}
		if got := other.requests(); len(got) != 0 {
			t.Fatalf("%d: the redirect target received %q", status, got)
		}
	}
}

func TestCleartextEndpoints(t *testing.T) {
	base := config.Env{"AZURE_KEY_VAULT_URL": "https://v.vault.azure.net", "MLFLOW_AZURE_SECRET_NAME": "s"}
	with := func(kv ...string) config.Env {
		e := config.Env{}
		for k, v := range base {
			e[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			e[kv[i]] = kv[i+1]
		}
		return e
	}
	strict := &config.Config{Timeout: time.Second}
	allow := &config.Config{Timeout: time.Second, AllowHTTP: true}
	for _, v := range []string{"IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_AUTHORITY_HOST"} {
		env := with(v, "http://identity.corp.test/token")
		_, err := Factory(env, strict)
		if e := msaerr.As(err); err == nil || e.Code != msaerr.NotConfigured || e.Variable != v || !strings.Contains(e.Message, "MLFLOW_SECRETS_ALLOW_HTTP") {
			t.Errorf("%s: %v", v, err)
		}
		sp, err := Factory(env, allow)
		if err != nil || len(sp.Warnings) != 1 || !strings.Contains(sp.Warnings[0], "cleartext (allowed by MLFLOW_SECRETS_ALLOW_HTTP=true)") {
			t.Errorf("%s allowed: %v %q", v, err, sp.Warnings)
		}
	}
	for _, env := range []config.Env{
		with("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token"),
		with("IDENTITY_ENDPOINT", "http://localhost:40342/metadata/identity/oauth2/token"),
		with("HTTPS_PROXY", "http://proxy.corp.test:3128"),
	} {
		if sp, err := Factory(env, strict); err != nil || len(sp.Warnings) != 0 {
			t.Errorf("%v: %v %q", env, err, sp.Warnings)
		}
	}
	env := with("IDENTITY_ENDPOINT", "http://169.254.169.254/metadata/identity/oauth2/token", "HTTP_PROXY", "http://proxy.corp.test:3128")
	if _, err := Factory(env, strict); err == nil || msaerr.As(err).Variable != "IDENTITY_ENDPOINT" {
		t.Errorf("IMDS through a remote http proxy: %v", err)
	}
}

// IMDS (no IDENTITY_ENDPOINT: azidentity's default, http://169.254.169.254)
// through a remote http proxy would carry the token back in cleartext: the
// transport refuses the request.
func TestIMDSThroughRemoteProxyRefused(t *testing.T) {
	f := &fakeKeyVault{token: "t", respond: kvSecret("x", nil)}
	_, env := startKV(t, f)
	unsetAzure(t)
	t.Setenv("PATH", "")
	env["HTTP_PROXY"] = "http://proxy.corp.test:3128"
	env["NO_PROXY"] = "127.0.0.1"
	_, err := openKV(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != config.EnvAllowHTTP || !strings.Contains(e.Message, "169.254.169.254") ||
		!strings.Contains(e.Message, "proxy.corp.test") {
		t.Errorf("%v", err)
	}
}

func TestRelaxedChallengeWarning(t *testing.T) {
	sp, err := Factory(config.Env{"AZURE_KEY_VAULT_URL": "https://kv.example.test", "MLFLOW_AZURE_SECRET_NAME": "s"}, &config.Config{})
	if err != nil || len(sp.Warnings) != 1 || !strings.Contains(sp.Warnings[0], "AZURE_KEY_VAULT_URL=https://kv.example.test") ||
		!strings.Contains(sp.Warnings[0], "relaxed") {
		t.Errorf("%v %q", err, sp.Warnings)
	}
	sp, err = Factory(config.Env{"AZURE_KEY_VAULT_URL": "https://kv.vault.azure.net", "MLFLOW_AZURE_SECRET_NAME": "s"}, &config.Config{})
	if err != nil || len(sp.Warnings) != 0 {
		t.Errorf("%v %q", err, sp.Warnings)
	}
}

func TestServerTextIsSanitized(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	f := &fakeKeyVault{token: "tk", respond: func(w http.ResponseWriter, _ *http.Request) {
		kvError(w, http.StatusConflict, "Odd\r\nFAKE LOG LINE \x1b[31m\u202e", "message", "")
	}}
	_, env := startKV(t, f)
	_, err := openKV(t, env).Fetch(context.Background())
	if err == nil || strings.ContainsAny(err.Error(), "\r\n\x1b\u202e") || !strings.Contains(err.Error(), "Odd FAKE LOG LINE") {
		t.Errorf("not sanitized: %q", err)
	}
}

func TestExpiresFromSecretAttribute(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	f := &fakeKeyVault{token: "tk", respond: kvSecret("x", map[string]any{"enabled": true, "exp": exp.Unix()})}
	_, env := startKV(t, f)
	c, err := openKV(t, env).Fetch(context.Background())
	if err != nil || !c.Expires.Equal(exp) {
		t.Errorf("Expires = %v, want %v (%v)", c.Expires, exp, err)
	}
	f.respond = kvSecret("x", nil)
	if c, err := openKV(t, env).Fetch(context.Background()); err != nil || !c.Expires.IsZero() {
		t.Errorf("no exp: Expires = %v (%v)", c.Expires, err)
	}
}

func TestUntrustedVaultNamesTheCABundle(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	_, env := startKV(t, &fakeKeyVault{token: "tk", respond: kvSecret("x", nil)})
	delete(env, EnvCABundle)
	_, err := openKV(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != EnvCABundle || !strings.Contains(e.Message, "not trusted") {
		t.Errorf("%v", err)
	}
}

func tokenOpts(scopes ...string) policy.TokenRequestOptions {
	return policy.TokenRequestOptions{Scopes: scopes}
}

// unsetAzure removes the variables azidentity reads from the process
// environment for the test (restored after it).
func unsetAzure(t *testing.T) {
	t.Helper()
	for _, k := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID",
		"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME", "IMDS_ENDPOINT"} {
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
}
