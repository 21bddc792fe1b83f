// Package vault reads the credential from HashiCorp Vault's or OpenBao's KV
// engine (v1 or v2, detected per mount), logging in with a token, with
// AppRole or with a TLS client certificate (the cert auth method).
package vault

import (
	"context"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// The variables this provider reads. Each VAULT_* variable of the client has
// an OpenBao alias BAO_*; when both are set, the VAULT_* one wins.
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
	EnvCertMount     = "MLFLOW_VAULT_CERT_MOUNT"
	EnvCertRole      = "MLFLOW_VAULT_CERT_ROLE"
	EnvSecretPath    = "MLFLOW_VAULT_SECRET_PATH"
	EnvAuthMode      = "MLFLOW_VAULT_AUTH_MODE"
	EnvTTL           = "MLFLOW_VAULT_TTL_SEC"
)

// Alias returns the OpenBao name of a VAULT_* variable (BAO_ADDR for
// VAULT_ADDR), or "" if it has none.
func Alias(name string) string {
	switch name {
	case EnvAddr, EnvToken, EnvRoleID, EnvSecretID, EnvNamespace, EnvCACert, EnvCAPath,
		EnvClientCert, EnvClientKey, EnvSkipVerify, EnvTLSServerName:
		return "BAO_" + strings.TrimPrefix(name, "VAULT_")
	}
	return ""
}

// Vars records which variable supplied each client setting: the VAULT_* name,
// or its BAO_* alias when only that was set. Errors name these.
type Vars struct {
	Addr, Token, RoleID, SecretID, Namespace string
	CACert, CAPath, ClientCert, ClientKey    string
	SkipVerify, TLSServerName                string
}

// Settings are the Vault provider's complete settings: equal values give the
// same provider, any change a new one.
type Settings struct {
	Addr, Namespace       string
	Token                 string // token auth; wins over AppRole and cert
	RoleID, SecretID      string // AppRole auth; wins over cert
	AppRoleMount          string
	CertMount, CertRole   string // cert auth, with ClientCert and ClientKey
	CACert, CAPath        string
	ClientCert, ClientKey string
	TLSServerName         string
	SkipVerify            bool
	SecretPath            string
	Timeout               time.Duration // per call (MLFLOW_SECRETS_TIMEOUT_SEC)
	MaxRetries            int           // MLFLOW_SECRETS_MAX_RETRIES
	Vars                  Vars
}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	var s Settings
	get := func(name string, dst, used *string) {
		*used = name
		if *dst = env.Get(name); *dst == "" {
			if v := env.Get(Alias(name)); v != "" {
				*dst, *used = v, Alias(name)
			}
		}
	}
	var skip string
	get(EnvAddr, &s.Addr, &s.Vars.Addr)
	get(EnvNamespace, &s.Namespace, &s.Vars.Namespace)
	get(EnvToken, &s.Token, &s.Vars.Token)
	get(EnvRoleID, &s.RoleID, &s.Vars.RoleID)
	get(EnvSecretID, &s.SecretID, &s.Vars.SecretID)
	get(EnvCACert, &s.CACert, &s.Vars.CACert)
	get(EnvCAPath, &s.CAPath, &s.Vars.CAPath)
	get(EnvClientCert, &s.ClientCert, &s.Vars.ClientCert)
	get(EnvClientKey, &s.ClientKey, &s.Vars.ClientKey)
	get(EnvTLSServerName, &s.TLSServerName, &s.Vars.TLSServerName)
	get(EnvSkipVerify, &skip, &s.Vars.SkipVerify)
	s.AppRoleMount = strings.Trim(env.Get(EnvAppRoleMount), "/")
	s.CertMount = strings.Trim(env.Get(EnvCertMount), "/")
	s.CertRole = strings.TrimSpace(env.Get(EnvCertRole))
	s.SecretPath = strings.Trim(env.Get(EnvSecretPath), "/")
	s.Timeout, s.MaxRetries = shared.Timeout, shared.MaxRetries
	if s.AppRoleMount == "" {
		s.AppRoleMount = "approle"
	}
	if s.CertMount == "" {
		s.CertMount = "cert"
	}
	v := s.Vars
	if s.Addr == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvAddr,
			"%s (or %s) is not set (e.g. https://vault.example.com:8200)", EnvAddr, Alias(EnvAddr))
	}
	u, err := url.Parse(s.Addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, v.Addr, "%s=%q is not an http(s) URL",
			v.Addr, redact.Echo(redact.URL(s.Addr)))
	}
	if s.SecretPath == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath, "%s is not set (e.g. secret/mlflow/auth)", EnvSecretPath)
	}
	if s.Token == "" {
		switch {
		case s.RoleID == "" && s.SecretID == "" && s.ClientCert == "" && s.ClientKey == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvToken,
				"no credentials for Vault; set %s, or %s and %s for AppRole, or %s and %s for the cert auth method (or their BAO_* aliases)",
				EnvToken, EnvRoleID, EnvSecretID, EnvClientCert, EnvClientKey)
		case s.RoleID == "" && s.SecretID == "":
			// cert auth: the certificate and key pair and the scheme are checked below.
		case s.SecretID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretID, "%s is set but %s (or %s) is not",
				v.RoleID, EnvSecretID, Alias(EnvSecretID))
		case s.RoleID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvRoleID, "%s is set but %s (or %s) is not",
				v.SecretID, EnvRoleID, Alias(EnvRoleID))
		}
	}
	if s.SkipVerify, err = env.Bool(v.SkipVerify); err != nil {
		return provider.Spec{}, err
	}
	for _, f := range []struct {
		variable, path string
		dir            bool
	}{{v.CACert, s.CACert, false}, {v.CAPath, s.CAPath, true}, {v.ClientCert, s.ClientCert, false}, {v.ClientKey, s.ClientKey, false}} {
		if f.path != "" {
			if err := cfgfile.Check(f.variable, f.path, f.dir); err != nil {
				return provider.Spec{}, err
			}
		}
	}
	if (s.ClientCert == "") != (s.ClientKey == "") {
		missing := EnvClientKey
		if s.ClientCert == "" {
			missing = EnvClientCert
		}
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, missing,
			"%s and %s go together: %s (or %s) is not set", EnvClientCert, EnvClientKey, missing, Alias(missing))
	}
	if s.method() == methodCert && u.Scheme != "https" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, v.Addr,
			"the cert auth method (%s) needs an https %s, not %s=%s", v.ClientCert, EnvAddr, v.Addr, redact.Echo(redact.URL(s.Addr)))
	}
	mode, ttl, err := provider.ModeAndTTL(env, EnvAuthMode, EnvTTL)
	if err != nil {
		return provider.Spec{}, err
	}
	var method string
	switch s.method() {
	case methodToken:
		method = "token (" + v.Token + ")"
	case methodAppRole:
		method = "approle (mount " + s.AppRoleMount + ")"
	default:
		method = "cert (mount " + s.CertMount + ")"
		if s.CertRole != "" {
			method = "cert (mount " + s.CertMount + ", role " + s.CertRole + ")"
		}
	}
	details := [][2]string{{"address", redact.URL(s.Addr)}, {"secret path", s.SecretPath}, {"auth method", method}}
	if s.Namespace != "" {
		details = append(details, [2]string{"namespace", s.Namespace})
	}
	var warnings []string
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		warnings = append(warnings, v.Addr+"="+redact.Echo(redact.URL(s.Addr))+
			" is plain http to a host other than loopback: this sends the Vault token in cleartext; use https")
	}
	return provider.Spec{
		Name:     config.Vault,
		Settings: s,
		Mode:     mode,
		ModeVar:  EnvAuthMode,
		TTL:      ttl,
		Details:  details,
		Warnings: warnings,
		New:      func(ctx context.Context) (provider.Provider, error) { return newProvider(ctx, s) },
	}, nil
}

// isLoopback reports whether host is localhost, 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// The ways of logging in, in order of precedence.
const (
	methodToken   = "token"
	methodAppRole = "approle"
	methodCert    = "cert"
)

// method is how the provider logs in: a token wins over AppRole, AppRole over
// the cert auth method.
func (s Settings) method() string {
	switch {
	case s.Token != "":
		return methodToken
	case s.RoleID != "" || s.SecretID != "":
		return methodAppRole
	}
	return methodCert
}
