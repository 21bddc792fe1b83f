package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"golang.org/x/net/http2"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// kvMount is where a secret path's KV engine is mounted and which version it is.
type kvMount struct {
	mount   string // without trailing slash
	rest    string // the path inside the mount
	version int    // 1 or 2
}

// Provider reads one KV secret. With AppRole it logs in once, keeps the token
// renewed with api.LifetimeWatcher and logs in again when renewal ends.
type Provider struct {
	s       Settings
	timeout time.Duration
	client  *api.Client
	appRole *approle.AppRoleAuth // nil with token auth

	mu       sync.Mutex
	loggedIn bool   // the client holds a usable AppRole token
	login    uint64 // counts logins, so a stale watcher cannot log out a newer token
	kv       *kvMount

	ctx    context.Context // cancelled by Close; ends renewal
	cancel context.CancelFunc
}

func newProvider(s Settings, timeout time.Duration) (*Provider, error) {
	cfg, err := clientConfig(s, timeout)
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err, "vault: cannot create a client for %s", EnvAddr)
	}
	// NewClient reads VAULT_TOKEN and VAULT_NAMESPACE from the process
	// environment; ours come from the snapshot we were given.
	client.SetToken(s.Token)
	client.SetNamespace(s.Namespace)
	p := &Provider{s: s, timeout: timeout, client: client}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if s.Token == "" {
		p.appRole, err = approle.NewAppRoleAuth(s.RoleID, &approle.SecretID{FromString: s.SecretID},
			approle.WithMountPath(s.AppRoleMount))
		if err != nil {
			return nil, msaerr.Wrap(msaerr.NotConfigured, err, "vault: invalid AppRole settings")
		}
	}
	return p, nil
}

// clientConfig is api.DefaultConfig without its reading of the process
// environment: every setting comes from the snapshot.
func clientConfig(s Settings, timeout time.Duration) (*api.Config, error) {
	httpClient := cleanhttp.DefaultPooledClient()
	transport := httpClient.Transport.(*http.Transport)
	transport.TLSHandshakeTimeout = 10 * time.Second
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if err := http2.ConfigureTransport(transport); err != nil {
		return nil, msaerr.Wrap(msaerr.Internal, err, "vault: HTTP/2 set-up failed")
	}
	httpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg := &api.Config{
		Address:      s.Addr,
		HttpClient:   httpClient,
		Timeout:      timeout,
		MinRetryWait: 250 * time.Millisecond,
		MaxRetryWait: 1500 * time.Millisecond,
		MaxRetries:   s.MaxRetries,
		Backoff:      retryablehttp.RateLimitLinearJitterBackoff,
	}
	tlsCfg := &api.TLSConfig{CACert: s.CACert, CAPath: s.CAPath, ClientCert: s.ClientCert,
		ClientKey: s.ClientKey, TLSServerName: s.TLSServerName, Insecure: s.SkipVerify}
	if err := cfg.ConfigureTLS(tlsCfg); err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err, "vault: the TLS settings (%s, %s, %s, %s) are unusable",
			EnvCACert, EnvCAPath, EnvClientCert, EnvClientKey)
	}
	return cfg, nil
}

// Close stops token renewal.
func (p *Provider) Close() { p.cancel() }

// Fetch reads the secret and parses it into a credential.
func (p *Provider) Fetch(ctx context.Context) (secret.Credential, error) {
	data, err := p.read(ctx)
	if err != nil && p.appRole != nil && isPermissionDenied(err) {
		// The token may have been revoked or expired under us: log in again once.
		p.logout()
		data, err = p.read(ctx)
	}
	if err != nil {
		return secret.Credential{}, err
	}
	cred, err := secret.FromMap(data)
	if err != nil {
		e := msaerr.As(err)
		e.Message = fmt.Sprintf("vault: %s at %s", e.Message, p.s.SecretPath)
		return secret.Credential{}, e
	}
	return cred, nil
}

func (p *Provider) read(ctx context.Context) (map[string]any, error) {
	if err := p.ensureLogin(ctx); err != nil {
		return nil, err
	}
	kv, err := p.mountFor(ctx)
	if err != nil {
		return nil, err
	}
	var s *api.KVSecret
	if kv.version == 2 {
		s, err = p.client.KVv2(kv.mount).Get(ctx, kv.rest)
	} else {
		s, err = p.client.KVv1(kv.mount).Get(ctx, kv.rest)
	}
	if errors.Is(err, api.ErrSecretNotFound) {
		return nil, msaerr.New(msaerr.Backend, EnvSecretPath, "vault: no secret at %s=%s (KV v%d mount %q)",
			EnvSecretPath, p.s.SecretPath, kv.version, kv.mount)
	}
	if err != nil {
		return nil, p.backendError(err, "reading "+p.s.SecretPath)
	}
	return s.Data, nil
}

// mountFor finds the KV mount of the secret path and its version, asking
// Vault (as the vault CLI does) and remembering the answer.
func (p *Provider) mountFor(ctx context.Context) (kvMount, error) {
	p.mu.Lock()
	kv := p.kv
	p.mu.Unlock()
	if kv != nil {
		return *kv, nil
	}
	resp, err := p.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+p.s.SecretPath)
	if err != nil {
		return kvMount{}, p.backendError(err, "looking up the KV mount of "+p.s.SecretPath)
	}
	if resp == nil || resp.Data == nil {
		return kvMount{}, msaerr.New(msaerr.Backend, EnvSecretPath, "vault: no secrets engine is mounted at %s=%s", EnvSecretPath, p.s.SecretPath)
	}
	mountPath, _ := resp.Data["path"].(string)
	engine, _ := resp.Data["type"].(string)
	if engine != "kv" && engine != "generic" {
		return kvMount{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath,
			"vault: %s=%s is on a %q secrets engine at %q, not KV", EnvSecretPath, p.s.SecretPath, engine, mountPath)
	}
	m := kvMount{mount: strings.TrimSuffix(mountPath, "/"), version: 1}
	if opts, ok := resp.Data["options"].(map[string]any); ok && fmt.Sprint(opts["version"]) == "2" {
		m.version = 2
	}
	m.rest = strings.TrimPrefix(strings.TrimPrefix(p.s.SecretPath, m.mount), "/")
	if m.version == 2 {
		// Accept the API form secret/data/x as well as secret/x.
		m.rest = strings.TrimPrefix(m.rest, "data/")
	}
	if m.rest == "" {
		return kvMount{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath,
			"vault: %s=%s names the mount %q itself, not a secret in it", EnvSecretPath, p.s.SecretPath, m.mount)
	}
	p.mu.Lock()
	p.kv = &m
	p.mu.Unlock()
	return m, nil
}

// ensureLogin logs in with AppRole unless a usable token is already held.
func (p *Provider) ensureLogin(ctx context.Context) error {
	if p.appRole == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loggedIn {
		return nil
	}
	return p.loginLocked(ctx)
}

func (p *Provider) loginLocked(ctx context.Context) error {
	auth, err := p.client.Auth().Login(ctx, p.appRole)
	if err != nil {
		return p.backendError(err, "AppRole login (check "+EnvRoleID+" and "+EnvSecretID+")")
	}
	p.loggedIn = true
	p.login++
	if auth == nil || auth.Auth == nil {
		return nil
	}
	if auth.Auth.Renewable {
		if w, err := p.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: auth}); err == nil {
			go p.watch(w, p.login)
			return nil
		}
	}
	// Not renewable: log in again shortly before the token expires.
	if ttl := time.Duration(auth.Auth.LeaseDuration) * time.Second; ttl > 0 {
		n := p.login
		time.AfterFunc(ttl*9/10, func() { p.expire(n) })
	}
	return nil
}

// watch keeps one login's token renewed; when it can no longer be renewed it
// logs in again, in the background, so requests do not wait for it.
func (p *Provider) watch(w *api.LifetimeWatcher, login uint64) {
	defer func() { _ = recover() }() // never crash the host process; the next Fetch logs in
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-w.RenewCh():
		case <-w.DoneCh():
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.login != login || p.ctx.Err() != nil {
				return
			}
			p.loggedIn = false
			ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
			defer cancel()
			_ = p.loginLocked(ctx) // on failure the next Fetch tries again and reports
			return
		}
	}
}

func (p *Provider) expire(login uint64) {
	p.mu.Lock()
	if p.login == login {
		p.loggedIn = false
	}
	p.mu.Unlock()
}

func (p *Provider) logout() {
	p.mu.Lock()
	p.loggedIn = false
	p.mu.Unlock()
}

func isPermissionDenied(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// backendError describes a failed Vault call. Vault's messages name paths and
// reasons, never the token or secret ID.
func (p *Provider) backendError(err error, what string) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		reason := strings.Join(re.Errors, "; ")
		if reason == "" {
			reason = http.StatusText(re.StatusCode)
		}
		if re.StatusCode == http.StatusForbidden {
			return msaerr.New(msaerr.Backend, "", "vault: permission denied %s: %s (check the token's policies)", what, reason)
		}
		return msaerr.New(msaerr.Backend, "", "vault: %s failed with HTTP %d: %s", what, re.StatusCode, reason)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return msaerr.New(msaerr.Backend, EnvAddr, "vault: %s timed out talking to %s=%s", what, EnvAddr, p.s.Addr)
	}
	return &msaerr.Error{Code: msaerr.Backend, Variable: EnvAddr,
		Message: fmt.Sprintf("vault: %s failed talking to %s=%s", what, EnvAddr, p.s.Addr), Err: err}
}
