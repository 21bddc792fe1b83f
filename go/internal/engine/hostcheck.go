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

func checkHost(cfg *config.Config, host string) *msaerr.Error {
	t, err := hostpolicy.ParseTarget(host)
	if err != nil {
		return msaerr.New(msaerr.HostNotAllowed, "", "cannot send credentials: %v", err)
	}
	if cfg.AllowedHosts.Allows(t) {
		return nil
	}
	if cfg.AllowedFrom == config.EnvAllowedHosts {
		return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowedHosts,
			"host %s does not match %s=%s; credentials were not sent", t, config.EnvAllowedHosts,
			strings.Join(cfg.AllowedHosts.Patterns(), ","))
	}
	if cfg.AllowedHosts.Empty() {
		return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowedHosts,
			"host %s is not allowed: the tracking URI is not an http(s) URL, so set %s to the hosts that may receive credentials",
			t, config.EnvAllowedHosts)
	}
	return msaerr.New(msaerr.HostNotAllowed, config.EnvAllowedHosts,
		"host %s is not the MLflow tracking or registry server (%s); to send credentials there, add it to %s",
		t, strings.Join(cfg.AllowedHosts.Patterns(), ", "), config.EnvAllowedHosts)
}
