// Package vault reads the credential from HashiCorp Vault's or OpenBao's KV
// engine (v1 or v2, detected per mount), logging in with a token, with
// AppRole or with a TLS client certificate (the cert auth method).
package vault

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/egress"
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
	Egress                egress.Policy // proxies and MLFLOW_SECRETS_ALLOW_HTTP
	Vars                  Vars
	skipRaw               string // the VAULT_SKIP_VERIFY text, for the family check
}

// Family is "VAULT" or "BAO": the family of the address in use. Every
// client setting (credentials, TLS trust, namespace) must come from the same
// family, so that a leftover BAO_TOKEN never goes to VAULT_ADDR, nor a
// VAULT_TOKEN to BAO_ADDR.
func (v Vars) Family() string {
	if strings.HasPrefix(v.Addr, "BAO_") {
		return "BAO"
	}
	return "VAULT"
}

// Name returns the name of the VAULT_* variable name in the family of the
// address in use (BAO_CACERT for VAULT_CACERT when BAO_ADDR is in use).
func (v Vars) Name(name string) string {
	if v.Family() == "BAO" && Alias(name) != "" {
		return Alias(name)
	}
	return name
}

// checkFamily refuses a client setting taken from the other family than the
// address's (the VAULT_* name wins when both names of one setting are set).
func (s Settings) checkFamily() error {
	v := s.Vars
	fam := v.Family() + "_"
	for _, c := range []struct{ used, value string }{
		{v.Token, s.Token}, {v.RoleID, s.RoleID}, {v.SecretID, s.SecretID}, {v.ClientCert, s.ClientCert},
		{v.ClientKey, s.ClientKey}, {v.CACert, s.CACert}, {v.CAPath, s.CAPath}, {v.Namespace, s.Namespace},
		{v.SkipVerify, s.skipRaw}, {v.TLSServerName, s.TLSServerName},
	} {
		if c.value != "" && !strings.HasPrefix(c.used, fam) {
			return msaerr.New(msaerr.NotConfigured, c.used,
				"%s is set but the address in use is %s: VAULT_* settings go only to VAULT_ADDR and BAO_* settings only to BAO_ADDR; set %s instead, or unset %s",
				c.used, v.Addr, v.Name(strings.Replace(c.used, "BAO_", "VAULT_", 1)), c.used)
		}
	}
	return nil
}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	var s Settings
	get := func(name string, dst, used *string) {
		// VAULT_* wins over BAO_*; an unset setting is named in the
		// address's family (read first).
		*used = name
		if *dst = env.Get(name); *dst == "" {
			*used = s.Vars.Name(name)
			if v := env.Get(Alias(name)); v != "" {
				*dst, *used = v, Alias(name)
			}
		}
	}
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
	get(EnvSkipVerify, &s.skipRaw, &s.Vars.SkipVerify)
	s.AppRoleMount = strings.Trim(env.Get(EnvAppRoleMount), "/")
	s.CertMount = strings.Trim(env.Get(EnvCertMount), "/")
	s.CertRole = strings.TrimSpace(env.Get(EnvCertRole))
	s.SecretPath = strings.Trim(env.Get(EnvSecretPath), "/")
	s.Timeout, s.MaxRetries = shared.Timeout, shared.MaxRetries
	s.Egress = egress.New(env, shared)
	if s.AppRoleMount == "" {
		s.AppRoleMount = "approle"
	}
	if s.CertMount == "" {
		s.CertMount = "cert"
	}
	v := s.Vars
	name := v.Name
	if s.Addr == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvAddr,
			"%s (or %s) is not set (e.g. https://vault.example.com:8200)", EnvAddr, Alias(EnvAddr))
	}
	u, err := url.Parse(s.Addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, v.Addr, "%s=%q is not an http(s) URL",
			v.Addr, redact.Echo(redact.URL(s.Addr)))
	}
	if err := s.checkFamily(); err != nil {
		return provider.Spec{}, err
	}
	warning, err := s.Egress.Check(v.Addr, s.Addr)
	if err != nil {
		return provider.Spec{}, err
	}
	if s.SecretPath == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretPath, "%s is not set (e.g. secret/mlflow/auth)", EnvSecretPath)
	}
	if s.Token == "" {
		switch {
		case s.RoleID == "" && s.SecretID == "" && s.ClientCert == "" && s.ClientKey == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, name(EnvToken),
				"no credentials for Vault at %s; set %s, or %s and %s for AppRole, or %s and %s for the cert auth method",
				v.Addr, name(EnvToken), name(EnvRoleID), name(EnvSecretID), name(EnvClientCert), name(EnvClientKey))
		case s.RoleID == "" && s.SecretID == "":
			// cert auth: the certificate and key pair and the scheme are checked below.
		case s.SecretID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, name(EnvSecretID), "%s is set but %s is not",
				v.RoleID, name(EnvSecretID))
		case s.RoleID == "":
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, name(EnvRoleID), "%s is set but %s is not",
				v.SecretID, name(EnvRoleID))
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
		missing := name(EnvClientKey)
		if s.ClientCert == "" {
			missing = name(EnvClientCert)
		}
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, missing,
			"%s and %s go together: %s is not set", name(EnvClientCert), name(EnvClientKey), missing)
	}
	if s.method() == methodCert && u.Scheme != "https" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, v.Addr,
			"the cert auth method (%s) needs an https %s, not %s=%s", v.ClientCert, v.Addr, v.Addr, redact.Echo(redact.URL(s.Addr)))
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
	if warning != "" {
		warnings = append(warnings, warning)
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
