package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
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
	MaxRetries   int
	Timeout      time.Duration // see Basics
	LogLevel     string        // see Basics
	Warnings     []string      // see Basics
	// Server is set for the settings of one MLFLOW_SECRETS_SERVERS entry:
	// a destination must match its pattern, and also AllowedHosts when that
	// is not nil (the server's own MLFLOW_SECRETS_ALLOWED_HOSTS).
	Server *Server
}

// Basics are the shared settings the caller's side needs from the core (it
// parses none of them itself): the time budget of one call, the log level
// and the warnings.
type Basics struct {
	// Timeout is the budget of one GetAuthHeaders call, shared by the
	// providers tried in order (MLFLOW_SECRETS_TIMEOUT_SEC).
	Timeout  time.Duration
	LogLevel string // DEBUG, INFO, WARNING, ERROR or CRITICAL
	// Warnings are problems that do not stop the plugin (an invalid log
	// level, say), shown by info and doctor and returned by set_env. They
	// never hold a secret.
	Warnings []string
	// ProcessEnv names the variables whose value in the handed environment
	// differs from the process environment that an enabled provider's SDK
	// reads (see provider.Spec.ProcessEnv); those providers refuse to run.
	ProcessEnv []string
}

// DefaultTimeout is the call budget when MLFLOW_SECRETS_TIMEOUT_SEC is unset.
const DefaultTimeout = 10 * time.Second

// ReadBasics reads the budget, log level and warnings. It never fails to
// fill them: an invalid budget gives DefaultTimeout and is returned as the
// error (which makes the whole configuration unusable in Parse).
func ReadBasics(env Env) (Basics, error) {
	var b Basics
	b.LogLevel = parseLogLevel(&b, env)
	var err error
	b.Timeout, err = parseTimeout(env)
	return b, err
}

// parseTimeout reads MLFLOW_SECRETS_TIMEOUT_SEC: seconds, with decimals
// ("2.5"), clamped to 1..300; DefaultTimeout when unset.
func parseTimeout(env Env) (time.Duration, error) {
	v := env.Get(EnvTimeout)
	if v == "" {
		return DefaultTimeout, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return DefaultTimeout, msaerr.New(msaerr.NotConfigured, EnvTimeout,
			"%s=%q is not a number of seconds (e.g. 10 or 2.5)", EnvTimeout, redact.Echo(v))
	}
	return time.Duration(min(max(f, 1), 300) * float64(time.Second)), nil
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
	b, err := ReadBasics(env)
	if err != nil {
		return nil, err
	}
	c.Timeout, c.LogLevel, c.Warnings = b.Timeout, b.LogLevel, b.Warnings
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
func parseLogLevel(c *Basics, env Env) string {
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
