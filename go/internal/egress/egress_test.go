package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestNewReadsTheEngineEnvNotTheProcess(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://process-proxy:1")
	p := New(config.Env{"http_proxy": "http://lower:3128", "HTTPS_PROXY": "https://up:443", "no_proxy": ".corp"},
		&config.Config{AllowHTTP: true})
	want := Policy{HTTPProxy: "http://lower:3128", HTTPSProxy: "https://up:443", NoProxy: ".corp", AllowHTTP: true}
	if p != want {
		t.Errorf("New = %+v, want %+v", p, want)
	}
	if p := New(config.Env{"HTTP_PROXY": "http://A:1", "http_proxy": "http://b:1"}, nil); p.HTTPProxy != "http://A:1" || p.AllowHTTP {
		t.Errorf("upper case must win and nil shared means no opt-in: %+v", p)
	}
}

func TestIsLocal(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "x.localhost": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true, "[::1]": true,
		"169.254.169.254": true, "fe80::1": true,
		"10.0.0.1": false, "vault.corp": false, "localhost.evil.test": false, "127.0.0.1.nip.io": false, "": false,
	} {
		if got := IsLocal(host); got != want {
			t.Errorf("IsLocal(%q) = %v", host, got)
		}
	}
}

func TestCheck(t *testing.T) {
	const v = "VAULT_ADDR"
	cases := []struct {
		name     string
		p        Policy
		endpoint string
		refused  bool
		warn     bool
	}{
		{"https", Policy{}, "https://vault.corp:8200", false, false},
		{"empty", Policy{}, "", false, false},
		{"http loopback", Policy{}, "http://127.0.0.1:8200", false, false},
		{"http localhost", Policy{}, "http://localhost:8200", false, false},
		{"http imds", Policy{}, "http://169.254.169.254/metadata", false, false},
		{"http remote", Policy{}, "http://vault.corp:8200", true, false},
		{"http remote allowed", Policy{AllowHTTP: true}, "http://vault.corp:8200", false, true},
		{"http through remote http proxy", Policy{HTTPProxy: "http://proxy.corp:3128"}, "http://169.254.169.254/x", true, false},
		{"http through remote http proxy allowed", Policy{HTTPProxy: "http://proxy.corp:3128", AllowHTTP: true}, "http://169.254.169.254/x", false, true},
		{"http through remote https proxy", Policy{HTTPProxy: "https://proxy.corp:3128"}, "http://169.254.169.254/x", false, false},
		{"http through loopback proxy", Policy{HTTPProxy: "http://127.0.0.1:3128"}, "http://169.254.169.254/x", false, false},
		{"http loopback never proxied", Policy{HTTPProxy: "http://proxy.corp:3128"}, "http://127.0.0.1:8200", false, false},
		{"http no_proxy", Policy{HTTPProxy: "http://proxy.corp:3128", NoProxy: "169.254.169.254"}, "http://169.254.169.254/x", false, false},
		{"https through http proxy", Policy{HTTPSProxy: "http://proxy.corp:3128"}, "https://vault.corp", false, false},
	}
	for _, c := range cases {
		w, err := c.p.Check(v, c.endpoint)
		if c.refused {
			e := msaerr.As(err)
			if err == nil || e.Code != msaerr.NotConfigured || e.Variable != v || !strings.Contains(e.Message, v) ||
				!strings.Contains(e.Message, "MLFLOW_SECRETS_ALLOW_HTTP") {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if (w != "") != c.warn {
			t.Errorf("%s: warning %q", c.name, w)
		}
		if c.warn && (!strings.Contains(w, v) || !strings.Contains(w, "MLFLOW_SECRETS_ALLOW_HTTP=true") || !strings.Contains(w, "cleartext")) {
			t.Errorf("%s: warning %q", c.name, w)
		}
	}
}

func TestCheckRedactsAndFailsClosed(t *testing.T) {
	_, err := Policy{}.Check("VAULT_ADDR", "http://svc:pw@vault.corp:8200")
	if err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("userinfo in message or not refused: %v", err)
	}
	w, _ := Policy{AllowHTTP: true}.Check("VAULT_ADDR", "http://svc:pw@vault.corp:8200")
	if strings.Contains(w, "pw") || !strings.Contains(w, "***@") {
		t.Errorf("warning %q", w)
	}
	if _, err := (Policy{}).Check("X", "::not a url"); msaerr.As(err).Variable != "X" {
		t.Errorf("bad URL: %v", err)
	}
	// A proxy setting that does not parse is an error, never a direct connection.
	for _, bad := range []Policy{{HTTPProxy: "http://[bad"}, {HTTPProxy: "%zz"}, {HTTPSProxy: "ftp://x"}, {HTTPSProxy: "http://u:pw@:3128"}} {
		_, err = bad.Check("VAULT_ADDR", "https://vault.corp/")
		want := EnvHTTPProxy
		if bad.HTTPSProxy != "" {
			want = EnvHTTPSProxy
		}
		if e := msaerr.As(err); err == nil || e.Variable != want || strings.Contains(err.Error(), "pw") {
			t.Errorf("bad proxy %+v: %v", bad, err)
		}
	}
	if _, err := (Policy{HTTPProxy: "proxy.corp:3128", HTTPSProxy: "socks5://127.0.0.1:1080"}).Check("VAULT_ADDR", "https://v/"); err != nil {
		t.Errorf("valid proxies refused: %v", err)
	}
}

// recorder counts the requests it receives.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func TestClientNeverFollowsARedirect(t *testing.T) {
	target := &recorder{}
	tsrv := httptest.NewServer(target)
	defer tsrv.Close()
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, tsrv.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer src.Close()
	c := Policy{}.Client(http.DefaultTransport.(*http.Transport).Clone())
	req, _ := http.NewRequest(http.MethodPost, src.URL, strings.NewReader("secret_id=x"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || target.count() != 0 {
		t.Errorf("status %d, target got %d requests", resp.StatusCode, target.count())
	}
	// Even a client that follows redirects refuses them through a secured transport.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	Policy{}.Secure(tr)
	req, _ = http.NewRequest(http.MethodPost, src.URL, strings.NewReader("secret_id=x"))
	_, err = (&http.Client{Transport: tr}).Do(req)
	if !errors.Is(err, ErrRedirect) || target.count() != 0 {
		t.Errorf("err %v, target got %d requests", err, target.count())
	}
}

func TestTransportRefusesCleartextPerRequest(t *testing.T) {
	proxy := &recorder{}
	psrv := httptest.NewServer(proxy)
	defer psrv.Close()
	// The proxy listens on loopback, but is named by a non-loopback address
	// form the rule sees: use a name that is not local and a dialer that
	// takes every connection to it.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	pu, _ := url.Parse(psrv.URL)
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, pu.Host)
	}
	for _, c := range []struct {
		p      Policy
		target string
		ok     bool
	}{
		{Policy{}, "http://vault.corp.test/x", false},
		{Policy{HTTPProxy: "http://proxy.corp.test:3128"}, "http://169.254.169.254/x", false},
		{Policy{HTTPProxy: "http://proxy.corp.test:3128", AllowHTTP: true}, "http://169.254.169.254/x", true},
		{Policy{AllowHTTP: true}, "http://vault.corp.test/x", true},
	} {
		before := proxy.count()
		cl := c.p.Client(tr.Clone())
		cl.Timeout = 5 * time.Second
		resp, err := cl.Get(c.target)
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		got := proxy.count() - before
		if c.ok != (err == nil) || c.ok != (got == 1) {
			t.Errorf("%+v %s: err %v, %d requests reached the listener", c.p, c.target, err, got)
		}
		if !c.ok {
			if e := msaerr.As(err); e.Variable != config.EnvAllowHTTP {
				t.Errorf("%+v %s: %v", c.p, c.target, err)
			}
		}
	}
}

func TestVaultConfig(t *testing.T) {
	cfg := Policy{}.VaultConfig(&api.Config{Address: "https://v"}, http.DefaultTransport.(*http.Transport).Clone())
	if !cfg.DisableRedirects || cfg.HttpClient == nil || cfg.HttpClient.CheckRedirect == nil {
		t.Errorf("VaultConfig = %+v", cfg)
	}
	if tr := cfg.HttpClient.Transport.(*http.Transport); tr.Proxy == nil {
		t.Error("transport has no guarded Proxy")
	}
}

func TestAWSClient(t *testing.T) {
	if tr := (Policy{}).AWSClient().GetTransport(); tr.Proxy == nil {
		t.Error("the AWS transport has no guarded Proxy")
	}
}

func TestFindRefusal(t *testing.T) {
	if got := FindRefusal("chain: a: x\n\tb: Get \"http://h\": " + Refused + " to http://h: why\r\n"); got != Refused+" to http://h: why" {
		t.Errorf("FindRefusal = %q", got)
	}
	if FindRefusal("nothing here") != "" {
		t.Error("found a refusal in plain text")
	}
}
