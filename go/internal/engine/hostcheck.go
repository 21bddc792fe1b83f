package engine

import (
	"strings"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/hostpolicy"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func notEnabled() *msaerr.Error {
	return msaerr.New(msaerr.NotEnabled, config.EnvEnable,
		"no secret provider is enabled; set %s to vault, aws-secrets-manager or azure-key-vault", config.EnvEnable)
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
	switch cfg.AllowedHosts.Check(t, cfg.AllowHTTP) {
	case hostpolicy.Allowed:
		return nil
	case hostpolicy.Cleartext:
		what := "http:// (cleartext)"
		if t.Scheme == "" {
			what = "a bare host (no scheme given, so it may be http://)"
		}
		return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowHTTP,
			"credentials were not sent to %s: it is %s and not a loopback address; use https, or set %s=true to allow cleartext",
			t, what, config.EnvAllowHTTP)
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
