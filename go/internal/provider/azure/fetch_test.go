package azure

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
)

// fakeCredential is a TokenCredential that hands out a fixed token and
// records the scopes asked for (as the Azure SDK's own tests do).
type fakeCredential struct {
	mu     sync.Mutex
	token  string
	err    error
	scopes [][]string
}

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, o.Scopes)
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func useCredential(t *testing.T, c *fakeCredential) {
	t.Helper()
	old := newCredential
	newCredential = func(azcore.ClientOptions) (azcore.TokenCredential, error) { return c, nil }
	t.Cleanup(func() { newCredential = old })
}

// fakeKeyVault serves GET /secrets/<name>[/<version>] the way Key Vault
// does: first a 401 challenge naming the token's resource, then the secret
// for a request that carries the token.
type fakeKeyVault struct {
	mu       sync.Mutex
	token    string
	paths    []string
	respond  func(w http.ResponseWriter, r *http.Request)
	requests int
	resource string // the challenge's resource; https://vault.azure.net when empty
}

func (f *fakeKeyVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	f.paths = append(f.paths, r.URL.Path)
	respond := f.respond
	resource := f.resource
	f.mu.Unlock()
	if resource == "" {
		resource = "https://vault.azure.net"
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.Header().Set("WWW-Authenticate",
			`Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="`+resource+`"`)
		kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", "")
		return
	}
	respond(w, r)
}

func kvJSON(w http.ResponseWriter, status int, body any) {
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func kvError(w http.ResponseWriter, status int, code, msg, inner string) {
	e := map[string]any{"code": code, "message": msg}
	if inner != "" {
		e["innererror"] = map[string]any{"code": inner}
	}
	kvJSON(w, status, map[string]any{"error": e})
}

func kvSecret(value string, attrs map[string]any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if attrs == nil {
			attrs = map[string]any{"enabled": true}
		}
		kvJSON(w, http.StatusOK, map[string]any{"value": value, "id": "https://" + r.Host + r.URL.Path, "attributes": attrs})
	}
}

// startKV serves f over HTTPS and returns the env that points at it,
// trusting its certificate through MLFLOW_AZURE_CA_BUNDLE.
func startKV(t *testing.T, f *fakeKeyVault, connState ...func(net.Conn, http.ConnState)) (*httptest.Server, config.Env) {
	t.Helper()
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if len(connState) > 0 {
		srv.Config.ConnState = connState[0]
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, config.Env{"AZURE_KEY_VAULT_URL": srv.URL, "MLFLOW_AZURE_SECRET_NAME": "mlflow-auth", "MLFLOW_AZURE_CA_BUNDLE": ca}
}

func openKV(t *testing.T, env config.Env) *Provider {
	t.Helper()
	sp, err := Factory(env, &config.Config{Timeout: 5 * time.Second, MaxRetries: 0})
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

func TestChallengeThenSecret(t *testing.T) {
	cred := &fakeCredential{token: "kv-access-token"}
	useCredential(t, cred)
	f := &fakeKeyVault{token: "kv-access-token", respond: kvSecret(`{"username":"alice","password":"pw"}`, nil)}
	_, env := startKV(t, f)
	c, err := openKV(t, env).Fetch(context.Background())
	if err != nil || c.Username != "alice" || c.Password != "pw" {
		t.Fatalf("Fetch: %+v %v", c, err)
	}
	// One unauthenticated request answered with the challenge, then one with
	// the token for the challenge's resource.
	if f.requests != 2 || len(cred.scopes) != 1 || len(cred.scopes[0]) != 1 || cred.scopes[0][0] != "https://vault.azure.net/.default" {
		t.Errorf("requests = %d, scopes = %v", f.requests, cred.scopes)
	}
	if f.paths[1] != "/secrets/mlflow-auth/" && f.paths[1] != "/secrets/mlflow-auth" {
		t.Errorf("path = %q", f.paths[1])
	}
	// A pinned version is asked for by its id.
	env["MLFLOW_AZURE_SECRET_VERSION"] = "0123456789abcdef0123456789abcdef"
	if _, err := openKV(t, env).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := f.paths[len(f.paths)-1]; last != "/secrets/mlflow-auth/0123456789abcdef0123456789abcdef" {
		t.Errorf("versioned path = %q", last)
	}
}

func TestAttributes(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	f := &fakeKeyVault{token: "tk"}
	_, env := startKV(t, f)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	cases := []struct {
		attrs    map[string]any
		value    *string
		contains string // "" means Fetch succeeds
	}{
		{map[string]any{"enabled": true, "exp": at(time.Hour), "nbf": at(-time.Hour)}, nil, ""},
		{map[string]any{"enabled": false}, nil, "is disabled"},
		{map[string]any{"enabled": true, "exp": at(-time.Second)}, nil, "expired at 2026-06-01T11:59:59Z"},
		{map[string]any{"enabled": true, "exp": at(0)}, nil, "expired at"},
		{map[string]any{"enabled": true, "nbf": at(time.Minute)}, nil, "not valid before 2026-06-01T12:01:00Z"},
	}
	for _, c := range cases {
		f.respond = kvSecret("token-value", c.attrs)
		p := openKV(t, env)
		p.now = func() time.Time { return now }
		_, err := p.Fetch(context.Background())
		if c.contains == "" {
			if err != nil {
				t.Errorf("%v: %v", c.attrs, err)
			}
			continue
		}
		e := msaerr.As(err)
		if err == nil || e.Code != msaerr.SecretUnusable || e.Variable != EnvSecretVersion || !strings.Contains(e.Message, c.contains) ||
			strings.Contains(e.Error(), "token-value") {
			t.Errorf("%v: [%s %s] %v", c.attrs, e.Code, e.Variable, err)
		}
	}
	// No value at all, and a value the parser refuses.
	f.respond = func(w http.ResponseWriter, _ *http.Request) {
		kvJSON(w, http.StatusOK, map[string]any{"id": "x", "attributes": map[string]any{"enabled": true}})
	}
	if _, err := openKV(t, env).Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "has no value") {
		t.Errorf("no value: %v", err)
	}
	f.respond = kvSecret(`{"token": ["x"]}`, nil)
	if _, err := openKV(t, env).Fetch(context.Background()); err == nil || msaerr.As(err).Variable != EnvSecretName ||
		!strings.Contains(err.Error(), "secret mlflow-auth (latest)") {
		t.Errorf("unusable value: %v", err)
	}
}

func TestErrorClasses(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	f := &fakeKeyVault{token: "tk"}
	_, env := startKV(t, f)
	cases := []struct {
		status      int
		code, inner string
		version     string
		wantCode    msaerr.Code
		variable    string
		contains    string
		rejected    bool // a definite refusal (msaerr.IsRejection), not an unavailable source
	}{
		{404, "SecretNotFound", "", "", msaerr.Backend, EnvSecretName, "not found (SecretNotFound)", true},
		{404, "SecretNotFound", "", "0123456789abcdef0123456789abcdef", msaerr.Backend, EnvSecretVersion, "not found", true},
		{403, "Forbidden", "SecretDisabled", "", msaerr.SecretUnusable, EnvSecretVersion, "is disabled", true},
		{403, "Forbidden", "AccessDenied", "", msaerr.Backend, "", "access denied", true},
		{400, "BadParameter", "", "not-a-version", msaerr.NotConfigured, EnvSecretVersion, "HTTP 400 BadParameter", true},
		{409, "Conflict", "", "", msaerr.Backend, "", "HTTP 409 Conflict", true},
		{429, "Throttled", "", "", msaerr.Backend, config.EnvMaxRetries, "throttled", false},
		{500, "InternalError", "", "", msaerr.Backend, "", "HTTP 500 InternalError", false},
		{503, "ServiceUnavailable", "", "", msaerr.Backend, "", "HTTP 503", false},
	}
	for _, c := range cases {
		f.respond = func(w http.ResponseWriter, _ *http.Request) {
			msg := "The request was refused."
			if c.inner == "SecretDisabled" {
				msg = "Operation get is not allowed on a disabled secret."
			}
			kvError(w, c.status, c.code, msg, c.inner)
		}
		env["MLFLOW_AZURE_SECRET_VERSION"] = c.version
		_, err := openKV(t, env).Fetch(context.Background())
		e := msaerr.As(err)
		if err == nil || e.Code != c.wantCode || e.Variable != c.variable || !strings.Contains(e.Error(), c.contains) ||
			!strings.Contains(e.Error(), "mlflow-auth") || strings.HasPrefix(e.Error(), "azure-key-vault:") {
			t.Errorf("%d %s/%s: [%s %s] %v", c.status, c.code, c.inner, e.Code, e.Variable, err)
		}
		if msaerr.IsRejection(err) != c.rejected {
			t.Errorf("%d %s/%s: IsRejection = %v, want %v", c.status, c.code, c.inner, !c.rejected, c.rejected)
		}
	}
}

func TestCredentialErrors(t *testing.T) {
	// The token is refused (a token for another tenant or audience).
	useCredential(t, &fakeCredential{token: "wrong-token"})
	f := &fakeKeyVault{token: "right-token", respond: kvSecret("x", nil)}
	_, env := startKV(t, f)
	_, err := openKV(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != "AZURE_CLIENT_ID" || !strings.Contains(e.Message, "HTTP 401") ||
		strings.Contains(e.Error(), "wrong-token") || !msaerr.IsRejection(err) {
		t.Errorf("refused token: %v", err)
	}
	// No credential in the chain can get a token.
	useCredential(t, &fakeCredential{err: errors.New("DefaultAzureCredential: failed to acquire a token")})
	_, err = openKV(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != "AZURE_CLIENT_ID" || !strings.Contains(e.Message, "no Azure credential") ||
		msaerr.IsRejection(err) {
		t.Errorf("no credential: %v", err)
	}
	// The token endpoint answers and refuses the identity (a bad client
	// secret): a rejection. One that fails with a 5xx is unavailable.
	for status, rejected := range map[int]bool{401: true, 400: true, 503: false, 429: false} {
		useCredential(t, &fakeCredential{err: &azidentity.AuthenticationFailedError{RawResponse: &http.Response{
			StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(strings.NewReader(`{"error":"invalid_client"}`))}}})
		_, err = openKV(t, env).Fetch(context.Background())
		if err == nil || msaerr.IsRejection(err) != rejected {
			t.Errorf("token endpoint %d: rejected=%v: %v", status, msaerr.IsRejection(err), err)
		}
	}
	// The credential cannot even be set up.
	old := newCredential
	newCredential = func(azcore.ClientOptions) (azcore.TokenCredential, error) {
		return nil, errors.New("bad AZURE_* settings")
	}
	defer func() { newCredential = old }()
	sp, err := Factory(env, &config.Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.New(context.Background()); err == nil || msaerr.As(err).Code != msaerr.NotConfigured {
		t.Errorf("credential set-up: %v", err)
	}
}

func TestNetworkErrors(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	env := config.Env{"AZURE_KEY_VAULT_URL": "https://svc:hunter2pw@" + addr, "MLFLOW_AZURE_SECRET_NAME": "s"}
	_, err = openKV(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != EnvVaultURL || strings.Contains(e.Error(), "hunter2pw") || msaerr.IsRejection(err) {
		t.Errorf("refused: %v", err)
	}
	hang := make(chan struct{})
	_, env = startKV(t, &fakeKeyVault{token: "tk", respond: func(http.ResponseWriter, *http.Request) { <-hang }})
	t.Cleanup(func() { close(hang) })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = openKV(t, env).Fetch(ctx)
	if e := msaerr.As(err); err == nil || e.Variable != config.EnvTimeout || msaerr.IsRejection(err) {
		t.Errorf("hung vault: %v", err)
	}
}

func TestBoundedCABundle(t *testing.T) {
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
		env := config.Env{"AZURE_KEY_VAULT_URL": "https://v.vault.azure.net", "MLFLOW_AZURE_SECRET_NAME": "s", "MLFLOW_AZURE_CA_BUNDLE": path}
		_, err := Factory(env, &config.Config{Timeout: time.Second})
		if e := msaerr.As(err); err == nil || e.Variable != EnvCABundle {
			t.Errorf("Factory with %s: %v", path, err)
		}
		if _, err := cfgfile.Read(context.Background(), EnvCABundle, path); err == nil || !strings.Contains(err.Error(), EnvCABundle) {
			t.Errorf("cfgfile.Read(%s): %v", path, err)
		}
		s := Settings{VaultURL: "https://v.vault.azure.net", SecretName: "s", CABundle: path, Timeout: time.Second}
		if _, err := newProvider(context.Background(), s); err == nil || msaerr.As(err).Variable != EnvCABundle {
			t.Errorf("newProvider with %s: %v", path, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cfgfile.Read(ctx, EnvCABundle, big); err == nil {
		t.Error("readFile after the deadline succeeded")
	}
}

func TestSettingsAreTheIdentity(t *testing.T) {
	env := config.Env{"AZURE_KEY_VAULT_URL": "https://v.vault.azure.net", "MLFLOW_AZURE_SECRET_NAME": "s"}
	key := func(c *config.Config) string {
		sp, err := Factory(env, c)
		if err != nil {
			t.Fatal(err)
		}
		return provider.KeyOf("azure", sp.Settings)
	}
	base := key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2})
	if base != key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2}) {
		t.Error("equal settings, different keys")
	}
	if base == key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 3}) {
		t.Error("the retries are not part of the identity")
	}
	if base == key(&config.Config{Timeout: 4 * time.Second, MaxRetries: 2}) {
		t.Error("the timeout is not part of the identity")
	}
	env["AZURE_CLIENT_ID"] = "other"
	if base == key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2}) {
		t.Error("azidentity's variables are not part of the identity")
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	useCredential(t, &fakeCredential{token: "tk"})
	f := &fakeKeyVault{token: "tk", respond: kvSecret("tok", nil)}
	closed := make(chan struct{}, 16)
	_, env := startKV(t, f, func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	})
	sp, err := Factory(env, &config.Config{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sp.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
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
