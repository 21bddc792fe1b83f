// Package vault reads the credential from HashiCorp Vault's KV engine (v1 or
// v2, detected per mount), logging in with a token or with AppRole.
package vault

import (
	"context"
	"net/url"
	"os"
	"strings"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
)

// The variables this provider reads.
const (
	EnvAddr          = "VAULT_ADDR"
	EnvToken         = "VAULT_TOKEN"
	EnvRoleID        = "VAULT_ROLE_ID"
	EnvSecretID      = "VAULT_SECRET_ID"
	EnvNamespace     = "VAULT_NAMESPACE"
	EnvCACert        = "VAULT_CACERT"
	EnvCAPath        = "VAULT_CAPATH"
	EnvClientCert    = "VAULT_CLIENT_CERT"
	EnvClientKey     = "VAULT_CLIENT_KEY"
	EnvSkipVerify    = "VAULT_SKIP_VERIFY"
	EnvTLSServerName = "VAULT_TLS_SERVER_NAME"
	EnvAppRoleMount  = "MLFLOW_VAULT_APPROLE_MOUNT"
	EnvSecretPath    = "MLFLOW_VAULT_SECRET_PATH"
	EnvAuthMode      = "MLFLOW_VAULT_AUTH_MODE"
	EnvTTL           = "MLFLOW_VAULT_TTL_SEC"
)

// Settings are the Vault provider's settings.
type Settings struct {
	Addr, Namespace       string
	Token                 string // token auth; wins over AppRole
	RoleID, SecretID      string // AppRole auth
	AppRoleMount          string
	CACert, CAPath        string
	ClientCert, ClientKey string
	TLSServerName         string
	SkipVerify            bool
	SecretPath            string
	MaxRetries            int
}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	s := Settings{
		Addr:          env.Get(EnvAddr),
		Namespace:     env.Get(EnvNamespace),
		Token:         env.Get(EnvToken),
		RoleID:        env.Get(EnvRoleID),
		SecretID:      env.Get(EnvSecretID),
		AppRoleMount:  strings.Trim(env.Get(EnvAppRoleMount), "/"),
		CACert:        env.Get(EnvCACert),
		CAPath:        env.Get(EnvCAPath),
		ClientCert:    env.Get(EnvClientCert),
		ClientKey:     env.Get(EnvClientKey),
		TLSServerName: env.Get(EnvTLSServerName),
		SecretPath:    strings.Trim(env.Get(EnvSecretPath), "/"),
		MaxRetries:    shared.MaxRetries,
	}
	if s.AppRoleMount == "" {
		s.AppRoleMount = "approle"
	}
	if s.Addr == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvAddr, "vault: %s is not set (e.g. https://vault.example.com:8200)", EnvAddr)
	}
	if u, err := url.Parse(s.Addr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvAddr, "vault: %s=%q is not an http(s) URL", EnvAddr, s.Addr)
	}
	if s.SecretPath == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath, "vault: %s is not set (e.g. secret/mlflow/auth)", EnvSecretPath)
	}
	if s.Token == "" {
		switch {
		case s.RoleID == "" && s.SecretID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvToken,
				"vault: no credentials for Vault; set %s, or %s and %s for AppRole", EnvToken, EnvRoleID, EnvSecretID)
		case s.SecretID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretID, "vault: %s is set but %s is not", EnvRoleID, EnvSecretID)
		case s.RoleID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvRoleID, "vault: %s is set but %s is not", EnvSecretID, EnvRoleID)
		}
	}
	var err error
	if s.SkipVerify, err = env.Bool(EnvSkipVerify); err != nil {
		return provider.Spec{}, err
	}
	for _, f := range [][2]string{{EnvCACert, s.CACert}, {EnvCAPath, s.CAPath}, {EnvClientCert, s.ClientCert}, {EnvClientKey, s.ClientKey}} {
		if f[1] == "" {
			continue
		}
		if _, err := os.Stat(f[1]); err != nil {
			return provider.Spec{}, &msaerr.Error{Code: msaerr.NotConfigured, Variable: f[0],
				Message: "vault: " + f[0] + " cannot be used", Err: err}
		}
	}
	mode, ttl, err := provider.ModeAndTTL(env, EnvAuthMode, EnvTTL)
	if err != nil {
		return provider.Spec{}, err
	}
	method := "token"
	if s.Token == "" {
		method = "approle (mount " + s.AppRoleMount + ")"
	}
	details := [][2]string{{"address", s.Addr}, {"secret path", s.SecretPath}, {"auth method", method}}
	if s.Namespace != "" {
		details = append(details, [2]string{"namespace", s.Namespace})
	}
	return provider.Spec{
		Name:     config.Vault,
		Settings: s,
		Mode:     mode,
		ModeVar:  EnvAuthMode,
		TTL:      ttl,
		Details:  details,
		New:      func(context.Context) (provider.Provider, error) { return newProvider(s, shared.Timeout) },
	}, nil
}
