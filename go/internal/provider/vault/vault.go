package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"golang.org/x/net/http2"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// expiryMargin: an AppRole token this close to the end of its lease is
// replaced by a new login before use.
const expiryMargin = 500 * time.Millisecond

// kvMount is where a secret path's KV engine is mounted and which version it is.
type kvMount struct {
	mount   string // without trailing slash
	rest    string // the path inside the mount
	version int    // 1 or 2
}

// Provider reads one KV secret. With AppRole or the cert auth method it logs
// in, keeps the token renewed with api.LifetimeWatcher and, once the watcher
// ends (maximum TTL reached, renewal refused) or the token is refused, logs in
// again on the next Fetch.
type Provider struct {
	s         Settings
	client    *api.Client
	transport *http.Transport
	auth      api.AuthMethod // how to log in; nil with token auth and in agent mode
	loginWhat string         // "AppRole login at auth/approle", ...
	wl        *workload      // the kubernetes, jwt and aws methods
	now       func() time.Time

	mu        sync.Mutex
	loggedIn  bool      // the client holds a usable login token
	expires   time.Time // end of that token's lease; zero if it has none
	login     uint64    // counts logins, so a stale watcher cannot log out a newer token
	stopWatch func()
	kv        *kvMount

	ctx       context.Context // cancelled by Close; ends renewal
	cancel    context.CancelFunc
	watchDone func()             // test hook: a watcher has ended
	revoked   func(token string) // test hook: a replaced token was revoked
}

func newProvider(ctx context.Context, s Settings) (*Provider, error) {
	if err := checkProcessEnv(); err != nil {
		return nil, err
	}
	tlsCfg, err := tlsConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	transport := cleanhttp.DefaultPooledTransport()
	transport.TLSHandshakeTimeout = 10 * time.Second
	transport.TLSClientConfig = tlsCfg
	if err := http2.ConfigureTransport(transport); err != nil {
		return nil, msaerr.Wrap(msaerr.Internal, err, "HTTP/2 set-up failed")
	}
	// The one place the Vault client is configured: never follow a
	// redirect, the cleartext rule and the proxy on every request (egress).
	client, err := api.NewClient(s.Egress.VaultConfig(&api.Config{
		Address:      s.Addr,
		Timeout:      s.Timeout,
		MinRetryWait: 250 * time.Millisecond,
		MaxRetryWait: 1500 * time.Millisecond,
		MaxRetries:   s.MaxRetries,
		Backoff:      retryablehttp.RateLimitLinearJitterBackoff,
	}, transport))
	if err != nil {
		return nil, msaerr.New(msaerr.NotConfigured, s.Vars.Addr, "cannot create a Vault client for %s=%s: %s",
			s.Vars.Addr, redact.URL(s.Addr), redact.ServerText(err.Error()))
	}
	// NewClient also takes VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS
	// from the process environment; ours come from the settings alone.
	client.SetHeaders(http.Header{api.RequestHeaderName: {"true"}})
	client.SetCloneHeaders(true)
	client.SetToken(s.Token)
	if s.Namespace != "" {
		client.SetNamespace(s.Namespace)
	}
	p := &Provider{s: s, client: client, transport: transport, now: time.Now}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	switch s.Method {
	case methodKubernetes, methodJWT, methodAWS:
		if p.wl, err = newWorkload(ctx, s); err != nil {
			return nil, err
		}
		p.auth, p.loginWhat = p.wl.auth(), p.wl.what()
	case methodAppRole:
		p.auth, err = approle.NewAppRoleAuth(s.RoleID, &approle.SecretID{FromString: s.SecretID},
			approle.WithMountPath(s.AppRoleMount))
		if err != nil {
			return nil, msaerr.New(msaerr.NotConfigured, s.Vars.RoleID, "invalid AppRole settings (%s, %s)", s.Vars.RoleID, s.Vars.SecretID)
		}
		p.loginWhat = "AppRole login at auth/" + s.AppRoleMount
	case methodCert:
		// The TLS connection presents the client certificate (tlsConfig).
		p.auth = certAuth{mount: s.CertMount, role: s.CertRole}
		p.loginWhat = "cert login at auth/" + s.CertMount
	}
	return p, nil
}

// certAuth logs in with Vault's cert auth method: the TLS connection presents
// the client certificate; the body may name the certificate role to match.
type certAuth struct{ mount, role string }

func (c certAuth) Login(ctx context.Context, client *api.Client) (*api.Secret, error) {
	body := map[string]any{}
	if c.role != "" {
		body["name"] = c.role
	}
	return client.Logical().WriteWithContext(ctx, "auth/"+c.mount+"/login", body)
}

// checkProcessEnv: api.NewClient reads the TLS files named by the process's
// own VAULT_* variables (and throws the result away); one that is a FIFO or a
// device would hang or exhaust memory there, so refuse it first.
func checkProcessEnv() error {
	for _, v := range []struct {
		name string
		dir  bool
	}{{EnvCACert, false}, {EnvCAPath, true}, {EnvClientCert, false}, {EnvClientKey, false}} {
		if path := os.Getenv(v.name); path != "" {
			if err := cfgfile.Check(v.name, path, v.dir); err != nil {
				e := msaerr.As(err)
				e.Message += " (set in the process environment, which the Vault API client reads)"
				return e
			}
		}
	}
	return nil
}

// tlsConfig builds the client's TLS settings, reading every file with
// readFile's limits (what api.Config.ConfigureTLS would do unbounded).
func tlsConfig(ctx context.Context, s Settings) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLSServerName, InsecureSkipVerify: s.SkipVerify} //nolint:gosec // VAULT_SKIP_VERIFY is the user's explicit choice
	v := s.Vars
	switch {
	case s.CACert != "":
		pem, err := cfgfile.Read(ctx, v.CACert, s.CACert)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, msaerr.New(msaerr.NotConfigured, v.CACert, "%s=%s holds no PEM certificate", v.CACert, redact.Echo(s.CACert))
		}
	case s.CAPath != "":
		pems, err := cfgfile.ReadDir(ctx, v.CAPath, s.CAPath)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		n := 0
		for _, pem := range pems {
			if cfg.RootCAs.AppendCertsFromPEM(pem) {
				n++
			}
		}
		if n == 0 {
			return nil, msaerr.New(msaerr.NotConfigured, v.CAPath, "%s=%s holds no PEM certificate file", v.CAPath, redact.Echo(s.CAPath))
		}
	}
	if s.ClientCert != "" {
		certPEM, err := cfgfile.Read(ctx, v.ClientCert, s.ClientCert)
		if err != nil {
			return nil, err
		}
		keyPEM, err := cfgfile.Read(ctx, v.ClientKey, s.ClientKey)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, msaerr.New(msaerr.NotConfigured, v.ClientCert, "%s and %s are not a matching PEM certificate and key: %v",
				v.ClientCert, v.ClientKey, err)
		}
		// As the Vault client does: present the certificate whatever CAs the
		// server names.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg, nil
}

// revokeTimeout bounds the revoke-self call of Close.
const revokeTimeout = 2 * time.Second

// Close stops token renewal, revokes the token this provider logged in for
// (AppRole, cert; never a static VAULT_TOKEN) with auth/token/revoke-self
// within revokeTimeout, and closes idle connections.
func (p *Provider) Close() {
	p.cancel()
	p.mu.Lock()
	if p.stopWatch != nil {
		p.stopWatch()
	}
	revoke := p.auth != nil && p.loggedIn && (p.expires.IsZero() || p.now().Before(p.expires))
	p.loggedIn = false
	p.mu.Unlock()
	if revoke {
		ctx, cancel := context.WithTimeout(context.Background(), min(revokeTimeout, p.s.Timeout))
		_ = p.client.Auth().Token().RevokeSelfWithContext(ctx, "")
		cancel()
	}
	p.transport.CloseIdleConnections()
}

// Fetch reads the secret and parses it into a credential.
func (p *Provider) Fetch(ctx context.Context) (secret.Credential, error) {
	data, err := p.read(ctx)
	if err != nil && hasStatus(err, http.StatusForbidden) {
		if p.auth != nil {
			// The token may have been revoked or expired under us: log in again once.
			p.logout()
			data, err = p.read(ctx)
		} else if p.s.Method == methodToken && p.tokenRejected(ctx) {
			return secret.Credential{}, msaerr.New(msaerr.Backend, p.s.Vars.Token,
				"Vault rejected the token in %s (permission denied on auth/token/lookup-self%s): it is invalid, expired or revoked, or belongs to another namespace",
				p.s.Vars.Token, p.inNamespace()).Reject()
		}
	}
	if err != nil {
		return secret.Credential{}, p.describe(err)
	}
	cred, err := secret.FromMap(data)
	if err != nil {
		e := *msaerr.As(err)
		e.Message = fmt.Sprintf("%s at %s=%s", e.Message, EnvSecretPath, p.s.SecretPath)
		if e.Variable == "" {
			e.Variable = EnvSecretPath
		}
		return secret.Credential{}, &e
	}
	if p.auth != nil {
		// The lease of the login token that read the secret (zero: none):
		// refresh while it still works. It does not end the value itself.
		p.mu.Lock()
		cred.RefreshBy = p.expires
		p.mu.Unlock()
	}
	return cred, nil
}

// opError is a failed Vault call, described by Fetch once it is final.
type opError struct {
	what string
	err  error
}

func (e *opError) Error() string { return e.what + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

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
	if err != nil {
		p.forgetMount() // it may have been moved or removed
	}
	if errors.Is(err, api.ErrSecretNotFound) {
		return nil, msaerr.New(msaerr.Backend, EnvSecretPath, "no secret at %s=%s (KV v%d mount %q)",
			EnvSecretPath, p.s.SecretPath, kv.version, kv.mount).Reject()
	}
	if err != nil {
		return nil, &opError{"reading " + p.s.SecretPath, err}
	}
	if m := s.VersionMetadata; kv.version == 2 && s.Data == nil && m != nil {
		switch {
		case m.Destroyed:
			return nil, msaerr.New(msaerr.SecretUnusable, EnvSecretPath,
				"the latest version (%d) of the secret at %s=%s is destroyed; write a new version", m.Version, EnvSecretPath, p.s.SecretPath)
		case !m.DeletionTime.IsZero():
			return nil, msaerr.New(msaerr.SecretUnusable, EnvSecretPath,
				"the latest version (%d) of the secret at %s=%s was deleted at %s; undelete it or write a new version",
				m.Version, EnvSecretPath, p.s.SecretPath, m.DeletionTime.UTC().Format(time.RFC3339))
		}
	}
	return s.Data, nil
}

func (p *Provider) forgetMount() {
	p.mu.Lock()
	p.kv = nil
	p.mu.Unlock()
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
	if err != nil && hasStatus(err, http.StatusForbidden) && p.noRoute(ctx) {
		// Vault answers 403 here for a path without a mount, whatever the
		// token may do; a direct read tells the two apart.
		resp, err = nil, nil
	}
	if err != nil {
		return kvMount{}, &opError{"looking up the KV mount of " + p.s.SecretPath, err}
	}
	if resp == nil || resp.Data == nil {
		return kvMount{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath, "no secrets engine is mounted at %s=%s", EnvSecretPath, p.s.SecretPath).Reject()
	}
	mountPath, _ := resp.Data["path"].(string)
	engine, _ := resp.Data["type"].(string)
	if engine != "kv" && engine != "generic" {
		return kvMount{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath,
			"%s=%s is on a %q secrets engine at %q, not KV", EnvSecretPath, p.s.SecretPath, engine, mountPath).Reject()
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
			"%s=%s names the mount %q itself, not a secret in it", EnvSecretPath, p.s.SecretPath, m.mount).Reject()
	}
	p.mu.Lock()
	p.kv = &m
	p.mu.Unlock()
	return m, nil
}

// noRoute reports whether Vault has no mount for the secret path ("no
// handler for route", HTTP 404).
func (p *Provider) noRoute(ctx context.Context) bool {
	resp, err := p.client.Logical().ReadRawWithContext(ctx, p.s.SecretPath)
	if resp != nil {
		_ = resp.Body.Close()
	}
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, "no handler for route") {
			return true
		}
	}
	return false
}

// tokenRejected reports whether Vault refuses the static token itself
// (lookup-self denied), as opposed to a policy denying the path.
func (p *Provider) tokenRejected(ctx context.Context) bool {
	_, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
	return hasStatus(err, http.StatusForbidden) || hasStatus(err, http.StatusUnauthorized)
}

// ensureLogin logs in (AppRole or cert) unless a usable token is already held.
func (p *Provider) ensureLogin(ctx context.Context) error {
	if p.auth == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wl != nil && p.wl.file != "" {
		// The token file is read at every Fetch: when kubelet or CI has
		// rotated it, log in with the new identity before the token of the
		// old one is used again.
		changed, err := p.wl.readJWT(ctx)
		if err != nil {
			return err
		}
		if changed && p.loggedIn {
			p.revokeInBackground(p.client.Token())
			p.loggedIn = false
		}
	}
	if p.loggedIn && (p.expires.IsZero() || p.now().Before(p.expires.Add(-expiryMargin))) {
		return nil
	}
	return p.loginLocked(ctx)
}

func (p *Provider) loginLocked(ctx context.Context) error {
	p.client.ClearToken() // a login needs none; a stale one is not sent along
	auth, err := p.client.Auth().Login(ctx, p.auth)
	if err != nil {
		return &opError{p.loginWhat, err}
	}
	if p.wl != nil {
		p.wl.loggedIn()
	}
	p.loggedIn = true
	p.login++
	p.expires = time.Time{}
	if lease := auth.Auth.LeaseDuration; lease > 0 {
		p.expires = p.now().Add(time.Duration(lease) * time.Second)
	}
	if p.stopWatch != nil {
		p.stopWatch()
		p.stopWatch = nil
	}
	if auth.Auth.Renewable {
		if w, err := p.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: auth}); err == nil {
			p.stopWatch = w.Stop
			go p.watch(w, p.login)
		}
	}
	return nil
}

// watch keeps one login's token renewed, as Vault documents for
// LifetimeWatcher; when the watcher ends, the next Fetch logs in again.
func (p *Provider) watch(w *api.LifetimeWatcher, login uint64) {
	defer func() { _ = recover() }() // never crash the host process; the next Fetch logs in
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case r := <-w.RenewCh():
			p.mu.Lock()
			if p.login == login && r != nil && r.Secret != nil && r.Secret.Auth != nil && r.Secret.Auth.LeaseDuration > 0 {
				p.expires = p.now().Add(time.Duration(r.Secret.Auth.LeaseDuration) * time.Second)
			}
			p.mu.Unlock()
		case <-w.DoneCh():
			p.mu.Lock()
			if p.login == login {
				p.loggedIn = false
			}
			hook := p.watchDone
			p.mu.Unlock()
			if hook != nil {
				hook()
			}
			return
		}
	}
}

// revokeInBackground revokes a login token that is replaced (a rotated
// identity), within revokeTimeout, without delaying the caller.
func (p *Provider) revokeInBackground(token string) {
	c, err := p.client.Clone() // with the namespace header (SetCloneHeaders)
	if err != nil || token == "" {
		return
	}
	c.SetToken(token)
	go func() {
		defer func() { _ = recover() }() // never crash the host process
		ctx, cancel := context.WithTimeout(context.Background(), min(revokeTimeout, p.s.Timeout))
		defer cancel()
		_ = c.Auth().Token().RevokeSelfWithContext(ctx, "")
		if p.revoked != nil {
			p.revoked(token)
		}
	}()
}

func (p *Provider) logout() {
	p.mu.Lock()
	p.loggedIn = false
	p.mu.Unlock()
}

func (p *Provider) inNamespace() string {
	if p.s.Namespace == "" {
		return ""
	}
	return " in namespace " + p.s.Vars.Namespace + "=" + p.s.Namespace
}

// hasStatus reports whether err (through any wrapping) is a Vault response
// with HTTP status code.
func hasStatus(err error, code int) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

// describe turns a failed call into an error naming the cause and the
// variable to change. Vault's own messages name paths and reasons, never the
// token or secret ID; URLs in them are shown without userinfo.
func (p *Provider) describe(err error) error {
	var me *msaerr.Error
	if errors.As(err, &me) {
		return me
	}
	what := "Vault call"
	var oe *opError
	if errors.As(err, &oe) {
		what = oe.what
	}
	login := p.auth != nil && what == p.loginWhat
	if login && p.s.Method == methodCert {
		return p.describeCertLogin(err)
	}
	if login && p.wl != nil {
		return p.describeWorkloadLogin(err)
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		reason := redact.ServerText(strings.Join(re.Errors, "; "))
		if reason == "" {
			reason = http.StatusText(re.StatusCode)
		}
		switch {
		case login && re.StatusCode == http.StatusNotFound || login && strings.Contains(reason, "no handler for route"):
			return msaerr.New(msaerr.NotConfigured, EnvAppRoleMount, "%s failed (HTTP %d: %s): is AppRole enabled at %s=%s?",
				what, re.StatusCode, reason, EnvAppRoleMount, p.s.AppRoleMount).Reject()
		case login && re.StatusCode == http.StatusForbidden:
			// Vault asks for a token on a path that is no login path: AppRole
			// is not enabled there (or not in this namespace).
			return msaerr.New(msaerr.NotConfigured, EnvAppRoleMount,
				"%s refused (HTTP 403: %s): is AppRole enabled at %s=%s%s? Otherwise check %s and %s",
				what, reason, EnvAppRoleMount, p.s.AppRoleMount, p.inNamespace(), p.s.Vars.RoleID, p.s.Vars.SecretID).Reject()
		case login && re.StatusCode == http.StatusBadRequest:
			return msaerr.New(msaerr.Backend, p.s.Vars.SecretID, "%s refused (HTTP 400: %s): check %s and %s",
				what, reason, p.s.Vars.RoleID, p.s.Vars.SecretID).Reject()
		case re.StatusCode == http.StatusForbidden && p.s.Method == methodAgent:
			return msaerr.New(msaerr.Backend, EnvSecretPath,
				"permission denied %s (HTTP 403: %s): check the policies of the token the agent at %s=%s authenticates with, for %s=%s",
				what, reason, p.s.Vars.Addr, redact.URL(p.s.Addr), EnvSecretPath, p.s.SecretPath).Reject()
		case re.StatusCode == http.StatusForbidden:
			return msaerr.New(msaerr.Backend, EnvSecretPath, "permission denied %s (HTTP 403: %s): check the token's policies for %s=%s",
				what, reason, EnvSecretPath, p.s.SecretPath).Reject()
		}
		e := msaerr.New(msaerr.Backend, "", "%s failed with HTTP %d: %s", what, re.StatusCode, reason)
		if refused(re.StatusCode) {
			e.Reject()
		}
		return e
	}
	if strings.Contains(err.Error(), "did not return client token") || strings.Contains(err.Error(), "response did not return") {
		return msaerr.New(msaerr.NotConfigured, EnvAppRoleMount, "%s returned no token: is AppRole enabled at %s=%s?",
			what, EnvAppRoleMount, p.s.AppRoleMount)
	}
	return p.describeTransport(what, err)
}

// describeTransport describes a call that got no Vault answer: a deadline,
// a refusal by the egress rules, or a network or TLS failure. A TLS failure
// names the variable that fixes it (the CA, the server name, the client
// certificate), in the family of the address in use.
func (p *Provider) describeTransport(what string, err error) error {
	var me *msaerr.Error
	if errors.As(err, &me) {
		return me // refused by the egress rules (cleartext, redirect, proxy)
	}
	v := p.s.Vars
	addr := v.Addr + "=" + redact.URL(p.s.Addr)
	if errors.Is(err, context.DeadlineExceeded) {
		return msaerr.New(msaerr.Backend, config.EnvTimeout, "%s: no answer from %s within the deadline", what, addr)
	}
	cause := redact.ServerText(msaerr.RootCause(err))
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &hostErr):
		variable := v.TLSServerName
		if p.s.TLSServerName == "" {
			variable = v.Addr
		}
		return msaerr.New(msaerr.Backend, variable, "%s: the TLS certificate of %s does not match the expected name (%s): check %s (or set %s)",
			what, addr, cause, v.Addr, v.TLSServerName)
	case errors.As(err, &authErr) || errors.As(err, &invalid):
		variable := v.CACert
		if p.s.CACert == "" && p.s.CAPath != "" {
			variable = v.CAPath
		}
		return msaerr.New(msaerr.Backend, variable, "%s: the TLS certificate of %s is not trusted (%s): set %s to the CA that signed it",
			what, addr, cause, variable)
	case strings.Contains(err.Error(), "remote error: tls:"):
		// The server refused the TLS handshake: usually our client
		// certificate (missing, unknown CA, expired).
		return msaerr.New(msaerr.Backend, v.ClientCert, "%s: %s refused the TLS handshake (%s): check %s and %s",
			what, addr, cause, v.ClientCert, v.ClientKey)
	}
	return msaerr.New(msaerr.Backend, v.Addr, "%s failed talking to %s: %s", what, addr, cause)
}

// describeCertLogin names what to change when a cert auth login fails.
func (p *Provider) describeCertLogin(err error) error {
	what, v := p.loginWhat, p.s.Vars
	role := ""
	if p.s.CertRole != "" {
		role = " and " + EnvCertRole + "=" + p.s.CertRole
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		reason := redact.ServerText(strings.Join(re.Errors, "; "))
		if reason == "" {
			reason = http.StatusText(re.StatusCode)
		}
		switch {
		case re.StatusCode == http.StatusNotFound || strings.Contains(reason, "no handler for route"):
			return msaerr.New(msaerr.NotConfigured, EnvCertMount, "%s failed (HTTP %d: %s): is the cert auth method enabled at %s=%s%s?",
				what, re.StatusCode, reason, EnvCertMount, p.s.CertMount, p.inNamespace()).Reject()
		case re.StatusCode == http.StatusForbidden:
			// Vault asks for a token on a path that is no login path: cert
			// auth is not enabled there (or not in this namespace).
			return msaerr.New(msaerr.NotConfigured, EnvCertMount,
				"%s refused (HTTP 403: %s): is the cert auth method enabled at %s=%s%s? Otherwise check %s",
				what, reason, EnvCertMount, p.s.CertMount, p.inNamespace(), v.ClientCert).Reject()
		case re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusUnauthorized:
			return msaerr.New(msaerr.Backend, v.ClientCert,
				"%s refused (HTTP %d: %s): check that the certificate in %s is trusted by the cert auth method at %s=%s%s",
				what, re.StatusCode, reason, v.ClientCert, EnvCertMount, p.s.CertMount, role).Reject()
		}
		e := msaerr.New(msaerr.Backend, "", "%s failed with HTTP %d: %s", what, re.StatusCode, reason)
		if refused(re.StatusCode) {
			e.Reject()
		}
		return e
	}
	if strings.Contains(err.Error(), "did not return client token") || strings.Contains(err.Error(), "response did not return") {
		return msaerr.New(msaerr.NotConfigured, EnvCertMount, "%s returned no token: is the cert auth method enabled at %s=%s?",
			what, EnvCertMount, p.s.CertMount)
	}
	return p.describeTransport(what, err)
}
