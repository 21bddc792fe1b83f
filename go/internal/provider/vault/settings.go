// Package vault reads the credential from HashiCorp Vault's or OpenBao's KV
// engine (v1 or v2, detected per mount), logging in with a token, with
// AppRole or with a TLS client certificate (the cert auth method).
package vault

import (
	"context"
	"fmt"
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
	EnvAgentAddr     = "VAULT_AGENT_ADDR"
	EnvAuthMethod    = "MLFLOW_VAULT_AUTH_METHOD"
	EnvK8sRole       = "MLFLOW_VAULT_K8S_ROLE"
	EnvK8sMount      = "MLFLOW_VAULT_K8S_MOUNT"
	EnvK8sTokenPath  = "MLFLOW_VAULT_K8S_TOKEN_PATH"
	EnvJWTRole       = "MLFLOW_VAULT_JWT_ROLE"
	EnvJWTMount      = "MLFLOW_VAULT_JWT_MOUNT"
	EnvJWTPath       = "MLFLOW_VAULT_JWT_PATH"
	EnvAWSRole       = "MLFLOW_VAULT_AWS_ROLE"
	EnvAWSMount      = "MLFLOW_VAULT_AWS_MOUNT"
	EnvAWSRegion     = "MLFLOW_VAULT_AWS_REGION"
	EnvAWSHeader     = "MLFLOW_VAULT_AWS_HEADER_VALUE"
)

// DefaultK8sTokenPath is where Kubernetes mounts a pod's service-account token.
const DefaultK8sTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Alias returns the OpenBao name of a VAULT_* variable (BAO_ADDR for
// VAULT_ADDR), or "" if it has none.
func Alias(name string) string {
	switch name {
	case EnvAddr, EnvToken, EnvRoleID, EnvSecretID, EnvNamespace, EnvCACert, EnvCAPath,
		EnvClientCert, EnvClientKey, EnvSkipVerify, EnvTLSServerName, EnvAgentAddr:
		return "BAO_" + strings.TrimPrefix(name, "VAULT_")
	}
	return ""
}

// Vars records which variable supplied each client setting: the VAULT_* name,
// or its BAO_* alias when only that was set. Errors name these.
type Vars struct {
	Addr, Token, RoleID, SecretID, Namespace string
	AgentAddr                                string // VAULT_AGENT_ADDR or BAO_AGENT_ADDR
	CACert, CAPath, ClientCert, ClientKey    string
	SkipVerify, TLSServerName                string
}

// Settings are the Vault provider's complete settings: equal values give the
// same provider, any change a new one.
type Settings struct {
	Addr, Namespace       string // Addr: the agent's address in agent mode
	Method                string // how to log in: one of the method* constants
	Token                 string // token auth
	RoleID, SecretID      string // AppRole auth
	AppRoleMount          string
	CertMount, CertRole   string // cert auth, with ClientCert and ClientKey
	K8sRole, K8sMount     string // Kubernetes auth, with the service-account token in K8sTokenPath
	K8sTokenPath          string
	JWTRole, JWTMount     string // JWT/OIDC auth, with the JWT in JWTPath
	JWTPath               string
	AWSRole, AWSMount     string // AWS IAM auth: sts:GetCallerIdentity signed with the AWS SDK's default chain
	AWSRegion, AWSHeader  string // the STS region signed for; the X-Vault-AWS-IAM-Server-ID value
	AWSEnv                string // every AWS_* variable ("NAME=value", NUL-separated): a change gives a new provider
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
	selector := strings.ToLower(strings.TrimSpace(env.Get(EnvAuthMethod)))
	if selector != "" && !knownMethod(selector) {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvAuthMethod, "%s=%s is not one of %s",
			EnvAuthMethod, redact.Quote(selector), strings.Join(methodOrder, ", "))
	}
	// The agent's address wins over VAULT_ADDR (as in the Vault CLI) when
	// agent mode is in use: selected, or VAULT_AGENT_ADDR set and no
	// other method selected.
	var agentAddr, agentVar string
	get(EnvAgentAddr, &agentAddr, &agentVar)
	if agentAddr != "" && (selector == "" || selector == methodAgent) {
		s.Addr, s.Vars.Addr, s.Vars.AgentAddr = agentAddr, agentVar, agentVar
	} else {
		get(EnvAddr, &s.Addr, &s.Vars.Addr)
	}
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
	s.K8sRole, s.K8sMount = strings.TrimSpace(env.Get(EnvK8sRole)), strings.Trim(env.Get(EnvK8sMount), "/")
	s.K8sTokenPath = env.Get(EnvK8sTokenPath)
	s.JWTRole, s.JWTMount = strings.TrimSpace(env.Get(EnvJWTRole)), strings.Trim(env.Get(EnvJWTMount), "/")
	s.JWTPath = env.Get(EnvJWTPath)
	s.AWSRole, s.AWSMount = strings.TrimSpace(env.Get(EnvAWSRole)), strings.Trim(env.Get(EnvAWSMount), "/")
	s.AWSRegion, s.AWSHeader = strings.TrimSpace(env.Get(EnvAWSRegion)), env.Get(EnvAWSHeader)
	s.K8sMount = orDefault(s.K8sMount, "kubernetes")
	s.K8sTokenPath = orDefault(s.K8sTokenPath, DefaultK8sTokenPath)
	s.JWTMount = orDefault(s.JWTMount, "jwt")
	s.AWSMount = orDefault(s.AWSMount, "aws")
	s.AWSRegion = orDefault(s.AWSRegion, "us-east-1")
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
	var notes []string
	if s.Method, notes, err = s.chooseMethod(selector); err != nil {
		return provider.Spec{}, err
	}
	if s.Method == methodAWS {
		s.AWSEnv = strings.Join(env.WithPrefix("AWS_"), "\x00")
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
	if s.Method == methodCert && u.Scheme != "https" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, v.Addr,
			"the cert auth method (%s) needs an https %s, not %s=%s", v.ClientCert, v.Addr, v.Addr, redact.Echo(redact.URL(s.Addr)))
	}
	mode, ttl, err := provider.ModeAndTTL(env, EnvAuthMode, EnvTTL)
	if err != nil {
		return provider.Spec{}, err
	}
	method := s.describe(s.Method)
	details := [][2]string{{"address", redact.URL(s.Addr)}, {"secret path", s.SecretPath}, {"auth method", method}}
	if s.Namespace != "" {
		details = append(details, [2]string{"namespace", s.Namespace})
	}
	var warnings []string
	if warning != "" {
		warnings = append(warnings, warning)
	}
	warnings = append(warnings, notes...)
	var processEnv []string
	if s.Method == methodAWS {
		processEnv = []string{"AWS_"} // the AWS SDK's credential chain signs the login
	}
	return provider.Spec{
		Name:       config.Vault,
		Settings:   s,
		Mode:       mode,
		ModeVar:    EnvAuthMode,
		TTL:        ttl,
		Details:    details,
		Warnings:   warnings,
		ProcessEnv: processEnv,
		New:        func(ctx context.Context) (provider.Provider, error) { return newProvider(ctx, s) },
	}, nil
}

// The ways of logging in. Without MLFLOW_VAULT_AUTH_METHOD, the first one
// whose settings are present is used, in methodOrder.
const (
	methodAgent      = "agent"
	methodToken      = "token"
	methodAppRole    = "approle"
	methodCert       = "cert"
	methodKubernetes = "kubernetes"
	methodJWT        = "jwt"
	methodAWS        = "aws"
)

// methodOrder is the documented order: a node-local agent (VAULT_AGENT_ADDR)
// first, then the client's own credentials from the most explicit (a
// token) to the workload identities.
var methodOrder = []string{methodAgent, methodToken, methodAppRole, methodCert, methodKubernetes, methodJWT, methodAWS}

func knownMethod(m string) bool {
	for _, k := range methodOrder {
		if k == m {
			return true
		}
	}
	return false
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// present reports whether method's settings are (partly) given.
func (s Settings) present(method string) bool {
	switch method {
	case methodAgent:
		return s.Vars.AgentAddr != ""
	case methodToken:
		return s.Token != ""
	case methodAppRole:
		return s.RoleID != "" || s.SecretID != ""
	case methodCert:
		return s.ClientCert != "" || s.ClientKey != ""
	case methodKubernetes:
		return s.K8sRole != ""
	case methodJWT:
		return s.JWTRole != "" || s.JWTPath != ""
	case methodAWS:
		return s.AWSRole != ""
	}
	return false
}

// chooseMethod picks the login method (the selector, else the first present
// in methodOrder) and checks that its settings are complete. Notes are the
// warnings about other credentials that are set and not used.
func (s Settings) chooseMethod(selector string) (string, []string, error) {
	v, name := s.Vars, s.Vars.Name
	method := selector
	if method == "" {
		for _, m := range methodOrder {
			if s.present(m) {
				method = m
				break
			}
		}
	}
	missing := func(variable, format string, args ...any) error {
		return msaerr.New(msaerr.NotConfigured, variable, format, args...)
	}
	switch method {
	case "":
		return "", nil, missing(name(EnvToken),
			"no credentials for Vault at %s; set %s, or %s and %s for AppRole, or %s and %s for the cert auth method, or %s, %s or %s for a workload identity, or %s for a node-local agent",
			v.Addr, name(EnvToken), name(EnvRoleID), name(EnvSecretID), name(EnvClientCert), name(EnvClientKey),
			EnvK8sRole, EnvJWTRole, EnvAWSRole, name(EnvAgentAddr))
	case methodToken:
		if s.Token == "" {
			return "", nil, missing(name(EnvToken), "%s=token but %s is not set", EnvAuthMethod, name(EnvToken))
		}
	case methodAppRole:
		switch {
		case s.RoleID == "" && s.SecretID == "":
			return "", nil, missing(name(EnvRoleID), "%s=approle but %s and %s are not set", EnvAuthMethod, name(EnvRoleID), name(EnvSecretID))
		case s.RoleID == "":
			return "", nil, missing(name(EnvRoleID), "%s is set but %s is not", v.SecretID, name(EnvRoleID))
		case s.SecretID == "":
			return "", nil, missing(name(EnvSecretID), "%s is set but %s is not", v.RoleID, name(EnvSecretID))
		}
	case methodCert:
		if s.ClientCert == "" && s.ClientKey == "" {
			return "", nil, missing(name(EnvClientCert), "%s=cert but %s and %s are not set", EnvAuthMethod, name(EnvClientCert), name(EnvClientKey))
		}
	case methodKubernetes:
		if s.K8sRole == "" {
			return "", nil, missing(EnvK8sRole, "%s=kubernetes but %s is not set", EnvAuthMethod, EnvK8sRole)
		}
		if err := cfgfile.Check(EnvK8sTokenPath, s.K8sTokenPath, false); err != nil {
			return "", nil, err
		}
	case methodJWT:
		if s.JWTRole == "" {
			return "", nil, missing(EnvJWTRole, "%s is not set (the role of the JWT auth method at %s=%s)", EnvJWTRole, EnvJWTMount, s.JWTMount)
		}
		if s.JWTPath == "" {
			return "", nil, missing(EnvJWTPath, "%s is set but %s (the file holding the JWT) is not", EnvJWTRole, EnvJWTPath)
		}
		if err := cfgfile.Check(EnvJWTPath, s.JWTPath, false); err != nil {
			return "", nil, err
		}
	case methodAWS:
		if s.AWSRole == "" {
			return "", nil, missing(EnvAWSRole, "%s=aws but %s is not set", EnvAuthMethod, EnvAWSRole)
		}
	case methodAgent:
		if s.Addr == "" {
			return "", nil, missing(name(EnvAgentAddr), "%s=agent but neither %s nor %s is set", EnvAuthMethod, name(EnvAgentAddr), name(EnvAddr))
		}
	}
	var notes []string
	for _, m := range methodOrder {
		// A client certificate may serve TLS alone; an agent address is
		// only an address.
		if m != method && m != methodAgent && m != methodCert && s.present(m) {
			notes = append(notes, fmt.Sprintf("the %s auth method is also configured and is not used: %s (set %s to choose)",
				m, s.describe(m), EnvAuthMethod))
		}
	}
	return method, notes, nil
}

// describe is the "auth method" detail of info and doctor for method.
func (s Settings) describe(method string) string {
	switch method {
	case methodAgent:
		return "agent (the agent at " + redact.URL(s.Addr) + " authenticates)"
	case methodToken:
		return "token (" + s.Vars.Token + ")"
	case methodAppRole:
		return "approle (mount " + s.AppRoleMount + ")"
	case methodCert:
		if s.CertRole != "" {
			return "cert (mount " + s.CertMount + ", role " + s.CertRole + ")"
		}
		return "cert (mount " + s.CertMount + ")"
	case methodKubernetes:
		return "kubernetes (mount " + s.K8sMount + ", role " + s.K8sRole + ", token file " + s.K8sTokenPath + ")"
	case methodJWT:
		return "jwt (mount " + s.JWTMount + ", role " + s.JWTRole + ", token file " + s.JWTPath + ")"
	case methodAWS:
		return "aws iam (mount " + s.AWSMount + ", role " + s.AWSRole + ", signed for " + s.AWSRegion + ")"
	}
	return method
}
