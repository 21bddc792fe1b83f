package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/hostpolicy"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// Provider names, in the order the per-provider switches add them.
const (
	Vault             = "vault"
	AWSSecretsManager = "aws-secrets-manager"
	AzureKeyVault     = "azure-key-vault"
	GCPSecretManager  = "gcp-secret-manager"
)

// Known lists every provider name with the switch that enables it alone.
var Known = []struct{ Name, Switch string }{
	{Vault, "MLFLOW_SECRETS_AUTH_ENABLE_VAULT"},
	{AWSSecretsManager, "MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER"},
	{AzureKeyVault, "MLFLOW_SECRETS_AUTH_ENABLE_AZURE_KEY_VAULT"},
	{GCPSecretManager, "MLFLOW_SECRETS_AUTH_ENABLE_GCP_SECRET_MANAGER"},
}

// Variables shared by all providers.
const (
	EnvEnable       = "MLFLOW_SECRETS_AUTH_ENABLE"
	EnvAllowedHosts = "MLFLOW_SECRETS_ALLOWED_HOSTS"
	EnvAllowHTTP    = "MLFLOW_SECRETS_ALLOW_HTTP"
	EnvHeaderName   = "MLFLOW_AUTH_HEADER_NAME"
	EnvLogLevel     = "MLFLOW_SECRETS_LOG_LEVEL"
	EnvTimeout      = "MLFLOW_SECRETS_TIMEOUT_SEC"
	EnvMaxRetries   = "MLFLOW_SECRETS_MAX_RETRIES"
	EnvTrackingURI  = "MLFLOW_TRACKING_URI"
	EnvRegistryURI  = "MLFLOW_REGISTRY_URI"
)

// Config holds the settings shared by all providers.
type Config struct {
	Providers    []string           // enabled providers, in priority order
	HeaderName   string             // canonical header name
	AllowedHosts *hostpolicy.Policy // the effective host policy
	AllowedFrom  string             // the variable(s) the policy came from
	AllowHTTP    bool               // credentials may go over http:// to hosts that are not loopback
	LogLevel     string
	Timeout      time.Duration // deadline for one GetAuthHeaders call
	MaxRetries   int
	// Warnings are problems that do not stop the plugin (an invalid log level,
	// say); the engine reports each as an event. They never hold a secret.
	Warnings []string
}

// Parse reads the shared settings. The first error found is returned.
func Parse(env Env) (*Config, error) {
	c := &Config{}
	var err error
	if c.Providers, err = parseProviders(env); err != nil {
		return nil, err
	}
	if c.HeaderName, err = header.CanonicalName(EnvHeaderName, env.Get(EnvHeaderName)); err != nil {
		return nil, err
	}
	c.LogLevel = parseLogLevel(c, env)
	if c.Timeout, err = env.Seconds(EnvTimeout, 10, 1, 300); err != nil {
		return nil, err
	}
	if c.MaxRetries, err = env.Int(EnvMaxRetries, 2, 0, 10); err != nil {
		return nil, err
	}
	if c.AllowHTTP, err = env.Bool(EnvAllowHTTP); err != nil {
		return nil, err
	}
	if patterns := env.Get(EnvAllowedHosts); patterns != "" {
		c.AllowedFrom = EnvAllowedHosts
		if c.AllowedHosts, err = hostpolicy.Parse(patterns); err != nil {
			return nil, &msaerr.Error{Code: msaerr.NotConfigured, Variable: EnvAllowedHosts,
				Message: EnvAllowedHosts + " is invalid", Err: err}
		}
	} else {
		c.AllowedFrom = EnvTrackingURI + " / " + EnvRegistryURI
		c.AllowedHosts = hostpolicy.FromURIs(env.Get(EnvTrackingURI), env.Get(EnvRegistryURI))
	}
	return c, nil
}

func parseProviders(env Env) ([]string, error) {
	var out []string
	for _, name := range env.List(EnvEnable) {
		name = strings.ToLower(name)
		if !slices.ContainsFunc(Known, func(k struct{ Name, Switch string }) bool { return k.Name == name }) {
			return nil, msaerr.New(msaerr.NotConfigured, EnvEnable,
				"%s lists unknown provider %q; known providers: vault, aws-secrets-manager, azure-key-vault, gcp-secret-manager", EnvEnable, name)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, k := range Known {
		on, err := env.Bool(k.Switch)
		if err != nil {
			return nil, err
		}
		if on && !slices.Contains(out, k.Name) {
			out = append(out, k.Name)
		}
	}
	return out, nil
}

// parseLogLevel reads the log level. Only Python's logger uses it, so an
// invalid value never stops requests: INFO is used and a warning recorded.
func parseLogLevel(c *Config, env Env) string {
	raw := env.Get(EnvLogLevel)
	v := strings.ToUpper(raw)
	switch v {
	case "":
		return "INFO"
	case "WARN":
		return "WARNING"
	case "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL":
		return v
	}
	c.Warnings = append(c.Warnings, fmt.Sprintf("%s=%q is not a level; using INFO (use DEBUG, INFO, WARNING or ERROR)",
		EnvLogLevel, redact.Echo(raw)))
	return "INFO"
}
