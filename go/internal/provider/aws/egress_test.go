package aws

import (
	"context"
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
	s.seen = append(s.seen, r.Method+" "+r.URL.String()+" "+string(body))
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *sink) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func redirector(status int, target string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", target+r.URL.Path)
		w.WriteHeader(status)
	}))
}

// The signed Secrets Manager request never follows a redirect (a plain
// http.Client would follow the 302 as a GET to the other listener).
func TestRedirectsAreNotFollowed(t *testing.T) {
	other := &sink{}
	osrv := httptest.NewServer(other)
	t.Cleanup(osrv.Close)
	_, env := start(t, &fakeSM{respond: secretString("x")})
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		src := redirector(status, osrv.URL)
		t.Cleanup(src.Close)
		t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", src.URL)
		env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = src.URL
		if _, err := openProvider(t, env).Fetch(context.Background()); err == nil {
			t.Errorf("%d: a redirect served a secret", status)
		}
		if got := other.requests(); len(got) != 0 {
			t.Fatalf("%d: the redirect target received %q", status, got)
		}
	}
	// (The credential chain's clients (STS, SSO, IMDS) use the same egress
	// transport. The SDK's own client does not follow a 301/302, nor a
	// 307/308 with a body, so no end-to-end test can tell the difference
	// there; egress's TestClientNeverFollowsARedirect covers the transport.)
}

func TestCleartextEndpoints(t *testing.T) {
	base := config.Env{"MLFLOW_AWS_SECRET_ID": "x", "AWS_REGION": "us-east-1"}
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
	allow := &config.Config{Timeout: time.Second, AllowHTTP: true}
	strict := &config.Config{Timeout: time.Second}
	for _, v := range []string{"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"} {
		env := with(v, "http://sm.corp.test:4566")
		_, err := Factory(env, strict)
		if e := msaerr.As(err); err == nil || e.Code != msaerr.NotConfigured || e.Variable != v ||
			!strings.Contains(e.Message, "MLFLOW_SECRETS_ALLOW_HTTP") {
			t.Errorf("%s: %v", v, err)
		}
		sp, err := Factory(env, allow)
		if err != nil || len(sp.Warnings) != 1 || !strings.Contains(sp.Warnings[0], v+"=http://sm.corp.test:4566") ||
			!strings.Contains(sp.Warnings[0], "cleartext (allowed by MLFLOW_SECRETS_ALLOW_HTTP=true)") {
			t.Errorf("%s allowed: %v %q", v, err, sp.Warnings)
		}
	}
	for _, env := range []config.Env{
		with("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4566"),
		with("AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://sm.corp.test", "HTTPS_PROXY", "http://proxy.corp.test:3128"),
		with("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4566", "HTTP_PROXY", "http://proxy.corp.test:3128"),
	} {
		if sp, err := Factory(env, strict); err != nil || len(sp.Warnings) != 0 {
			t.Errorf("%v: %v %q", env, err, sp.Warnings)
		}
	}
	// Container credentials on a link-local address through a remote http proxy.
	env := with("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.2/creds", "HTTP_PROXY", "http://proxy.corp.test:3128")
	if _, err := Factory(env, strict); err == nil || msaerr.As(err).Variable != "AWS_CONTAINER_CREDENTIALS_FULL_URI" ||
		!strings.Contains(err.Error(), "proxy.corp.test") {
		t.Errorf("container credentials through a proxy: %v", err)
	}
	env["NO_PROXY"] = "169.254.170.2"
	if _, err := Factory(env, strict); err != nil {
		t.Errorf("NO_PROXY: %v", err)
	}
}

// A request the transport would send in cleartext is refused even when the
// endpoint comes from somewhere Factory does not see (here the process
// environment, as a profile's endpoint_url would).
func TestCleartextRefusedPerRequest(t *testing.T) {
	other := &sink{}
	osrv := httptest.NewServer(other)
	t.Cleanup(osrv.Close)
	_, env := start(t, &fakeSM{respond: secretString("x")})
	env["HTTP_PROXY"] = "http://proxy.corp.test:3128"
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://169.254.1.1:4566")
	_, err := openProvider(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != config.EnvAllowHTTP {
		t.Errorf("%v", err)
	}
}

func TestServerTextIsSanitized(t *testing.T) {
	_, env := start(t, &fakeSM{respond: func(w http.ResponseWriter, _ map[string]string) {
		awsError(w, http.StatusBadRequest, "AccessDeniedException", "no\r\nFAKE LOG LINE \x1b[31mred \u202eexe.txt "+strings.Repeat("z", 3000))
	}})
	_, err := openProvider(t, env).Fetch(context.Background())
	if err == nil || strings.ContainsAny(err.Error(), "\r\n\x1b\u202e") || !strings.Contains(err.Error(), "no FAKE LOG LINE") || len(err.Error()) > 1000 {
		t.Errorf("not sanitized: %q", err)
	}
}

func TestUntrustedEndpointNamesTheCABundle(t *testing.T) {
	srv := httptest.NewUnstartedServer(&fakeSM{respond: secretString("x")})
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, env := start(t, &fakeSM{respond: secretString("x")})
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	_, err := openProvider(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != "AWS_CA_BUNDLE" || !strings.Contains(e.Message, "not trusted") {
		t.Errorf("%v", err)
	}
}
