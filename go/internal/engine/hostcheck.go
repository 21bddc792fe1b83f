package engine

import (
	"strings"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/hostpolicy"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

func notEnabled() *msaerr.Error {
	return msaerr.New(msaerr.NotEnabled, config.EnvEnable,
		"no secret provider is enabled; set %s to vault, aws-secrets-manager or azure-key-vault", config.EnvEnable)
}

// checkHop applies the host policy to the destination, then the cleartext
// rule to the hop that carries the request: for an http:// target (or a bare
// host, which may be http) the credential crosses the proxy in cleartext
// unless the proxy is https:// or loopback. That is refused like a cleartext
// destination, unless MLFLOW_SECRETS_ALLOW_HTTP=true. An https:// target
// through any proxy is a CONNECT tunnel (TLS end to end): allowed. A proxy
// string that does not parse is refused (fail closed). socks4/4a/5/5h
// proxies are read like http ones: they see the bytes of an http request.
func checkHop(cfg *config.Config, target, proxy string) *msaerr.Error {
	if err := checkHost(cfg, target); err != nil {
		return err
	}
	if proxy == "" {
		return nil
	}
	t, _ := hostpolicy.ParseTarget(target) // checkHost parsed it
	p, err := parseProxy(proxy)
	if err != nil {
		return msaerr.New(msaerr.HostNotAllowed, "", "credentials were not sent: the proxy for this request cannot be read: %v", err)
	}
	if t.Scheme == "https" || cfg.AllowHTTP || p.Scheme == "https" || p.Loopback() {
		return nil
	}
	return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowHTTP,
		"credentials were not sent to %s through the proxy %s: that hop is cleartext and the proxy is not a loopback address; "+
			"use https, an https or loopback proxy, NO_PROXY for this host, or set %s=true to allow cleartext",
		t, p, config.EnvAllowHTTP)
}

// socksSchemes are the proxy schemes read like http ones.
var socksSchemes = []string{"socks4://", "socks4a://", "socks5://", "socks5h://"}

// parseProxy reads a proxy URL (a bare host:port is http, as requests reads it).
func parseProxy(proxy string) (hostpolicy.Target, error) {
	lower := strings.ToLower(proxy)
	for _, s := range socksSchemes {
		if strings.HasPrefix(lower, s) {
			p, err := hostpolicy.ParseTarget("http://" + proxy[len(s):])
			p.Scheme = "http"
			return p, err
		}
	}
	p, err := hostpolicy.ParseTarget(proxy)
	if err == nil && p.Scheme == "" {
		p.Scheme = "http"
	}
	return p, err
}

// checkHost applies the host policy to a destination given as "host",
// "host:port", "[v6]:port" or an http(s) URL. Anything the strict grammar of
// hostpolicy.ParseTarget refuses is refused here too (fail closed), with a
// shortened echo that never shows URL userinfo.
func checkHost(cfg *config.Config, host string) *msaerr.Error {
	t, err := hostpolicy.ParseTarget(host)
	if err != nil {
		return msaerr.New(msaerr.HostNotAllowed, "", "cannot send credentials: %v", err)
	}
	if srv := cfg.Server; srv != nil {
		// A server's settings: its pattern first (the cleartext rule with
		// the server's own MLFLOW_SECRETS_ALLOW_HTTP), then its own
		// MLFLOW_SECRETS_ALLOWED_HOSTS when it sets one.
		switch srv.Match.Check(t, cfg.AllowHTTP) {
		case hostpolicy.Cleartext:
			return cleartext(t)
		case hostpolicy.NoMatch:
			return msaerr.New(msaerr.HostNotAllowed, config.EnvServers,
				"%s does not match the pattern %s (a pattern with a scheme matches that scheme only); credentials were not sent",
				t, redact.Quote(srv.Pattern))
		}
		if cfg.AllowedHosts == nil {
			return nil
		}
	}
	switch cfg.AllowedHosts.Check(t, cfg.AllowHTTP) {
	case hostpolicy.Allowed:
		return nil
	case hostpolicy.Cleartext:
		return cleartext(t)
	}
	if cfg.AllowedFrom == config.EnvAllowedHosts {
		return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowedHosts,
			"%s does not match %s=%s; credentials were not sent", t, config.EnvAllowedHosts,
			strings.Join(cfg.AllowedHosts.Patterns(), ","))
	}
	if cfg.AllowedHosts.Empty() {
		return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowedHosts,
			"%s is not allowed: the tracking URI is not an http(s) URL, so set %s to the hosts that may receive credentials",
			t, config.EnvAllowedHosts)
	}
	return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowedHosts,
		"%s is not the MLflow tracking or registry server (%s); to send credentials there, add it to %s",
		t, strings.Join(cfg.AllowedHosts.Patterns(), ", "), config.EnvAllowedHosts)
}

func cleartext(t hostpolicy.Target) *msaerr.Error {
	what := "http:// (cleartext)"
	if t.Scheme == "" {
		what = "a bare host (no scheme given, so it may be http://)"
	}
	return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowHTTP,
		"credentials were not sent to %s: it is %s and not a loopback address; use https, or set %s=true to allow cleartext",
		t, what, config.EnvAllowHTTP)
}
