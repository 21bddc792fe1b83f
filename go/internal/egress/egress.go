// Package egress is where every backend HTTP client is built, so that the
// rules for where a backend credential may travel hold by construction:
//
//   - no redirect is ever followed: the http.Client's CheckRedirect returns
//     the 3xx response, the transport itself refuses any request an
//     http.Client creates from a redirect, and the Vault API client (which
//     follows redirects on its own) gets DisableRedirects;
//   - the cleartext rule: a request that would travel in cleartext beyond
//     this machine (an http:// URL to a host that is not local, or an http://
//     URL through a proxy that is not local and not https) is refused unless
//     MLFLOW_SECRETS_ALLOW_HTTP=true;
//   - the proxy comes from the environment the engine was given (HTTP_PROXY,
//     HTTPS_PROXY, NO_PROXY and their lower-case forms), never from the
//     process environment, and the same function decides both the rule and
//     the hop the transport takes.
//
// "Local" is loopback (localhost, 127.0.0.0/8, ::1) and link-local
// (169.254.0.0/16, fe80::/10): the cloud metadata services (Azure IMDS, AWS
// IMDS and container credentials) are plain http on link-local addresses by
// design, and those addresses are never routed beyond the machine's link.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/hashicorp/vault/api"
	"golang.org/x/net/http/httpproxy"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// The proxy variables read from the engine's environment (upper case wins,
// as in net/http).
const (
	EnvHTTPProxy  = "HTTP_PROXY"
	EnvHTTPSProxy = "HTTPS_PROXY"
	EnvNoProxy    = "NO_PROXY"
)

// Policy is the egress rule of one backend: a comparable value, so that it
// can be part of a provider's settings (a change gives a new provider).
type Policy struct {
	HTTPProxy, HTTPSProxy, NoProxy string
	AllowHTTP                      bool // MLFLOW_SECRETS_ALLOW_HTTP
}

// New reads the proxy settings from env and the cleartext opt-in from shared.
func New(env config.Env, shared *config.Config) Policy {
	return Policy{
		HTTPProxy:  env.Get(EnvHTTPProxy, strings.ToLower(EnvHTTPProxy)),
		HTTPSProxy: env.Get(EnvHTTPSProxy, strings.ToLower(EnvHTTPSProxy)),
		NoProxy:    env.Get(EnvNoProxy, strings.ToLower(EnvNoProxy)),
		AllowHTTP:  shared != nil && shared.AllowHTTP,
	}
}

// ProxyFor returns the proxy a request to u goes through (nil: direct), by
// the same rules as net/http's ProxyFromEnvironment, applied to p's values.
func (p Policy) ProxyFor(u *url.URL) (*url.URL, error) {
	return (&httpproxy.Config{HTTPProxy: p.HTTPProxy, HTTPSProxy: p.HTTPSProxy, NoProxy: p.NoProxy}).ProxyFunc()(u)
}

// IsLocal reports whether host is loopback (localhost, 127.0.0.0/8, ::1) or
// link-local (169.254.0.0/16, fe80::/10).
func IsLocal(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && (ip.IsLoopback() || ip.IsLinkLocalUnicast())
}

// cleartext says why a request to u through proxy would travel unencrypted
// beyond this machine, or "" when it would not.
func cleartext(u, proxy *url.URL) string {
	if u.Scheme != "http" {
		return "" // https, also through any proxy (a CONNECT tunnel)
	}
	if !IsLocal(u.Hostname()) {
		return "plain http to a host other than loopback"
	}
	if proxy != nil && proxy.Scheme != "https" && !IsLocal(proxy.Hostname()) {
		return "plain http through the proxy " + redact.URL(proxy.String()) + " (not loopback, not https)"
	}
	return ""
}

// Decide applies the cleartext rule to one request URL: the proxy it goes
// through (nil: direct), the reason it is cleartext ("" when it is not), and
// an error when it is refused or the proxy setting is invalid (fail closed).
func (p Policy) Decide(u *url.URL) (proxy *url.URL, reason string, err error) {
	for _, v := range [...]struct{ name, value string }{{EnvHTTPProxy, p.HTTPProxy}, {EnvHTTPSProxy, p.HTTPSProxy}} {
		if err := checkProxy(v.name, v.value); err != nil {
			return nil, "", err
		}
	}
	proxy, err = p.ProxyFor(u)
	if err != nil {
		return nil, "", msaerr.New(msaerr.NotConfigured, EnvHTTPProxy,
			"the proxy setting (%s/%s) for %s is invalid: %s", EnvHTTPProxy, EnvHTTPSProxy, redact.URL(u.Redacted()), redact.ServerText(err.Error()))
	}
	return proxy, cleartext(u, proxy), nil
}

// checkProxy refuses a proxy value that net/http's parser would take in a
// surprising way (or ignore, connecting directly): it must be a URL (or a
// bare host[:port], meaning http) with a scheme net/http supports and a host.
func checkProxy(name, value string) error {
	if value == "" {
		return nil
	}
	s := value
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err == nil && u.Host != "" && u.Hostname() != "" {
		switch u.Scheme {
		case "http", "https", "socks5", "socks5h":
			return nil
		}
	}
	return msaerr.New(msaerr.NotConfigured, name, "%s=%s is not a proxy URL (e.g. http://proxy.example:3128)",
		name, redact.Quote(value))
}

// Check applies the cleartext rule to a backend endpoint named by variable,
// before any connection: an error (naming variable and
// MLFLOW_SECRETS_ALLOW_HTTP) when the endpoint would be reached in cleartext
// and the user did not opt in; with the opt-in, the warning to show (the same
// text for every backend); else "". An empty endpoint is no check.
func (p Policy) Check(variable, endpoint string) (warning string, err error) {
	if endpoint == "" {
		return "", nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "", msaerr.New(msaerr.NotConfigured, variable, "%s=%s is not a URL", variable, redact.Quote(endpoint))
	}
	_, reason, err := p.Decide(u)
	if err != nil || reason == "" {
		return "", err
	}
	shown := redact.Echo(redact.URL(endpoint))
	if !p.AllowHTTP {
		return "", msaerr.New(msaerr.NotConfigured, variable,
			"%s=%s is %s: the backend credential would travel in cleartext; use https, or set %s=true to allow it",
			variable, shown, reason, config.EnvAllowHTTP)
	}
	return Warning(variable, shown, reason), nil
}

// Warning is the one text shown, for every backend, when a cleartext endpoint
// is allowed by MLFLOW_SECRETS_ALLOW_HTTP.
func Warning(variable, endpoint, reason string) string {
	return fmt.Sprintf("%s=%s is %s: the backend credential travels in cleartext (allowed by %s=true); use https",
		variable, endpoint, reason, config.EnvAllowHTTP)
}

// Refused starts the message of a request the cleartext rule refused. An
// SDK that flattens its errors into text (azidentity's credential chain)
// still shows it; FindRefusal finds it there.
const Refused = "refused to send a backend request"

// FindRefusal returns the cleartext refusal inside an error text (from
// Refused on, sanitized), or "".
func FindRefusal(text string) string {
	if i := strings.Index(text, Refused); i >= 0 {
		return redact.ServerText(text[i:])
	}
	return ""
}

// ErrRedirect is the cause of a request refused because an http.Client made
// it from a redirect.
var ErrRedirect = errors.New("redirect not followed")

// proxy is the transport's Proxy function: the choke point every request of
// a backend client passes, whatever client wraps the transport.
func (p Policy) proxy(req *http.Request) (*url.URL, error) {
	if req.Response != nil {
		// Only an http.Client following a redirect sets Response.
		return nil, msaerr.Wrap(msaerr.Backend, ErrRedirect, "the backend redirected a request to %s",
			redact.Echo(redact.URL(req.URL.Redacted())))
	}
	proxy, reason, err := p.Decide(req.URL)
	if err != nil {
		return nil, err
	}
	if reason != "" && !p.AllowHTTP {
		return nil, msaerr.New(msaerr.NotConfigured, config.EnvAllowHTTP,
			Refused+" to %s: %s; use https, or set %s=true to allow it",
			redact.Echo(redact.URL(req.URL.Scheme+"://"+req.URL.Host)), reason, config.EnvAllowHTTP)
	}
	return proxy, nil
}

// Secure makes t follow p: its Proxy decides the hop and refuses cleartext
// and redirected requests.
func (p Policy) Secure(t *http.Transport) {
	t.Proxy = p.proxy
}

// NoRedirect is a CheckRedirect that returns the redirect response itself.
func NoRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Client returns an http.Client over t (made to follow p) that never
// follows a redirect. Azure's azcore takes it as its Transporter.
func (p Policy) Client(t *http.Transport) *http.Client {
	p.Secure(t)
	return &http.Client{Transport: t, CheckRedirect: NoRedirect}
}

// VaultConfig completes cfg (address, timeouts, retries) for the Vault API
// client: the HTTP client over t from Client, and DisableRedirects, without
// which the Vault API client re-sends a request (X-Vault-Token and login
// bodies included) to any Location a 301/302/307 names.
func (p Policy) VaultConfig(cfg *api.Config, t *http.Transport) *api.Config {
	cfg.HttpClient = p.Client(t)
	cfg.DisableRedirects = true
	return cfg
}

// AWSClient returns the SDK's buildable HTTP client (which follows 307 and
// 308) with its transport made to follow p, so that the credential
// providers (STS, SSO, IMDS, container credentials) built with it refuse
// redirected and cleartext requests too. The SDK adds its own transport
// options (AWS_CA_BUNDLE) after these.
func (p Policy) AWSClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(p.Secure)
}
