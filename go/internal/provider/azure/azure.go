// Package azure reads the credential from Azure Key Vault, authenticating with
// azidentity's DefaultAzureCredential (service principal with secret or
// certificate, workload identity, managed identity, Azure CLI).
package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/egress"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// SDKPrefixes are the variables azidentity reads from the process itself.
var SDKPrefixes = []string{"AZURE_", "IDENTITY_", "MSI_", "IMDS_"}

// The variables this provider reads itself; azidentity reads AZURE_* on its own.
const (
	EnvVaultURL      = "AZURE_KEY_VAULT_URL"
	EnvVaultURLAlias = "MLFLOW_AZURE_KEY_VAULT_URL"
	EnvSecretName    = "MLFLOW_AZURE_SECRET_NAME"
	EnvSecretVersion = "MLFLOW_AZURE_SECRET_VERSION"
	EnvAuthMode      = "MLFLOW_AZURE_AUTH_MODE"
	EnvTTL           = "MLFLOW_AZURE_TTL_SEC"
	EnvCABundle      = "MLFLOW_AZURE_CA_BUNDLE"
)

// Key Vault's public and sovereign-cloud domains. For any other host (an
// emulator, a test double) the challenge's resource cannot match a Key Vault
// domain, so its verification is relaxed there only.
var keyVaultDomains = []string{".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net",
	".vault.microsoftazure.de", ".managedhsm.azure.net", ".managedhsm.azure.cn", ".managedhsm.usgovcloudapi.net"}

// keyVaultResources are the only resources a token is ever requested for
// (scope "<resource>/.default"), whatever the vault's host or its challenge
// names: Key Vault in the public and sovereign clouds.
var keyVaultResources = map[string]bool{"https://vault.azure.net": true, "https://vault.azure.cn": true,
	"https://vault.usgovcloudapi.net": true, "https://vault.microsoftazure.de": true}

// endpointVars name the endpoints an Azure credential goes to (besides the
// vault): each is checked by the cleartext rule before any connection. IMDS
// (http://169.254.169.254, link-local) is allowed by that rule by design;
// every request, to any endpoint, is checked again by the transport (egress).
var endpointVars = []string{EnvVaultURL, EnvVaultURLAlias, "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_AUTHORITY_HOST",
	"AZURE_POD_IDENTITY_AUTHORITY_HOST"}

// Settings are the Azure provider's settings.
type Settings struct {
	VaultURL, SecretName, Version string
	CABundle                      string
	Timeout                       time.Duration // MLFLOW_SECRETS_TIMEOUT_SEC
	MaxRetries                    int           // MLFLOW_SECRETS_MAX_RETRIES
	relaxChallenge                bool
	Egress                        egress.Policy // proxies and MLFLOW_SECRETS_ALLOW_HTTP
	// sdkEnv is every variable azidentity reads ("NAME=value",
	// NUL-separated), so a change of any gives a new client.
	sdkEnv string
}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	s := Settings{VaultURL: env.Get(EnvVaultURL, EnvVaultURLAlias), SecretName: env.Get(EnvSecretName),
		Version: env.Get(EnvSecretVersion), CABundle: env.Get(EnvCABundle),
		Timeout: shared.Timeout, MaxRetries: shared.MaxRetries}
	if s.VaultURL == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvVaultURL,
			"%s (or %s) is not set (e.g. https://my-vault.vault.azure.net)", EnvVaultURL, EnvVaultURLAlias)
	}
	u, err := url.Parse(s.VaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvVaultURL,
			"%s=%q is not an https URL (e.g. https://my-vault.vault.azure.net)", EnvVaultURL, redact.Echo(redact.URL(s.VaultURL)))
	}
	host := strings.ToLower(u.Hostname())
	s.relaxChallenge = true
	for _, d := range keyVaultDomains {
		if strings.HasSuffix(host, d) {
			s.relaxChallenge = false
		}
	}
	if s.SecretName == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretName, "%s is not set", EnvSecretName)
	}
	if s.CABundle != "" {
		if err := cfgfile.Check(EnvCABundle, s.CABundle, false); err != nil {
			return provider.Spec{}, err
		}
	}
	mode, ttl, err := provider.ModeAndTTL(env, EnvAuthMode, EnvTTL)
	if err != nil {
		return provider.Spec{}, err
	}
	s.sdkEnv = strings.Join(env.WithPrefix(SDKPrefixes...), "\x00")
	s.Egress = egress.New(env, shared)
	var warnings []string
	for _, v := range endpointVars {
		w, err := s.Egress.Check(v, env.Get(v))
		if err != nil {
			return provider.Spec{}, err
		}
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	if s.relaxChallenge {
		warnings = append(warnings, EnvVaultURL+"="+redact.Echo(redact.URL(s.VaultURL))+
			" is not in a Key Vault domain (*.vault.azure.net and its sovereign-cloud forms): the check that the challenge names this host is relaxed; tokens are still requested only for the Key Vault resource")
	}
	details := [][2]string{{"vault", redact.URL(s.VaultURL)}, {"secret", s.SecretName}, {"version", orLatest(s.Version)}}
	return provider.Spec{
		Name:     config.AzureKeyVault,
		Settings: s,
		Mode:     mode,
		ModeVar:  EnvAuthMode,
		TTL:      ttl,
		Details:  details,
		Warnings: warnings,
		// azidentity reads these from the process; the vault URL is ours.
		ProcessEnv: SDKPrefixes,
		OwnEnv:     []string{EnvVaultURL},
		New:        func(ctx context.Context) (provider.Provider, error) { return newProvider(ctx, s) },
	}, nil
}

func orLatest(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

// Provider reads one Key Vault secret.
type Provider struct {
	s         Settings
	client    *azsecrets.Client
	transport *http.Transport
	now       func() time.Time
}

// newCredential is azidentity's DefaultAzureCredential; tests replace it.
var newCredential = func(opts azcore.ClientOptions) (azcore.TokenCredential, error) {
	// DefaultAzureCredential also honours AZURE_AUTHORITY_HOST (sovereign clouds).
	return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: opts})
}

func newProvider(ctx context.Context, s Settings) (*Provider, error) {
	// azcore's default retry waits up to a minute; within our call deadline,
	// a few quick retries are worth more (MLFLOW_SECRETS_MAX_RETRIES).
	opts := azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: int32(s.MaxRetries),
		RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second}}
	if s.MaxRetries == 0 {
		opts.Retry.MaxRetries = -1 // azcore: 0 means its default of 3
	}
	// A transport of our own (for the vault and the token endpoints alike),
	// so that Close can close its idle connections, in the egress client:
	// no redirects, the cleartext rule and the proxy on every request.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CABundle != "" {
		pool, err := cfgfile.SystemPoolWith(ctx, EnvCABundle, s.CABundle)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	opts.Transport = s.Egress.Client(transport)
	inner, err := newCredential(opts)
	if err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err, "cannot set up DefaultAzureCredential (AZURE_* variables)")
	}
	cred := keyVaultOnly{inner}
	client, err := azsecrets.NewClient(s.VaultURL, cred, &azsecrets.ClientOptions{ClientOptions: opts,
		DisableChallengeResourceVerification: s.relaxChallenge})
	if err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err, "cannot create a client for %s", EnvVaultURL)
	}
	return &Provider{s: s, client: client, transport: transport, now: time.Now}, nil
}

// keyVaultOnly is the one way to a token: it refuses a scope outside Key
// Vault's resources before any token request, whatever the vault's challenge
// asked for (a non-Azure host may name https://management.azure.com, say).
type keyVaultOnly struct{ inner azcore.TokenCredential }

func (c keyVaultOnly) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(o.Scopes) == 0 {
		return azcore.AccessToken{}, msaerr.New(msaerr.Backend, EnvVaultURL, "the Key Vault at %s asked for a token without a scope; refused", EnvVaultURL)
	}
	for _, scope := range o.Scopes {
		resource := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(scope), "/.default"), "/")
		if !keyVaultResources[resource] {
			return azcore.AccessToken{}, msaerr.New(msaerr.Backend, EnvVaultURL,
				"the Key Vault at %s asked for a token for the resource %s, which is not Key Vault's: refused (tokens go only to https://vault.azure.net and its sovereign-cloud forms)",
				EnvVaultURL, redact.Quote(redact.ServerText(scope)))
		}
	}
	return c.inner.GetToken(ctx, o)
}

// Close closes idle connections.
func (p *Provider) Close() { p.transport.CloseIdleConnections() }

// Fetch reads the secret version, refusing a disabled or expired one.
func (p *Provider) Fetch(ctx context.Context) (secret.Credential, error) {
	resp, err := p.client.GetSecret(ctx, p.s.SecretName, p.s.Version, nil)
	if err != nil {
		return secret.Credential{}, p.describe(err)
	}
	what := fmt.Sprintf("secret %s (%s)", p.s.SecretName, orLatest(p.s.Version))
	if a := resp.Attributes; a != nil {
		if a.Enabled != nil && !*a.Enabled {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretVersion, "%s is disabled", what)
		}
		if a.Expires != nil && !p.now().Before(*a.Expires) {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretVersion,
				"%s expired at %s", what, a.Expires.UTC().Format(time.RFC3339))
		}
		if a.NotBefore != nil && p.now().Before(*a.NotBefore) {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretVersion,
				"%s is not valid before %s", what, a.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if resp.Value == nil {
		return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretName, "%s has no value", what)
	}
	cred, err := secret.Parse([]byte(*resp.Value))
	if err != nil {
		e := msaerr.As(err)
		return secret.Credential{}, &msaerr.Error{Code: e.Code, Variable: EnvSecretName,
			Message: fmt.Sprintf("%s in %s", e.Message, what)}
	}
	if a := resp.Attributes; a != nil && a.Expires != nil {
		cred = cred.ExpiringBy(*a.Expires) // the secret's own exp attribute (a JWT's exp may come first)
	}
	return cred, nil
}

// refusedStatus reports whether an HTTP status is a definite refusal: a 4xx
// other than 408 (timeout) and 429 (throttling), which are transient.
func refusedStatus(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// describe turns an SDK error into one that names the cause and the variable.
// A definite refusal by Key Vault or by the token endpoint (401, 403, 404, a
// rejected request; a disabled secret is SecretUnusable) is a rejection
// (msaerr.Error.Rejected); throttling, 5xx, an unavailable credential chain,
// network failures and timeouts are not. Key Vault's error codes name the reason, never the secret's value.
func (p *Provider) describe(err error) error {
	what := fmt.Sprintf("secret %s (%s) in %s", p.s.SecretName, orLatest(p.s.Version), redact.URL(p.s.VaultURL))
	versionVar := EnvSecretName
	if p.s.Version != "" {
		versionVar = EnvSecretVersion
	}
	var me *msaerr.Error
	if errors.As(err, &me) {
		return me // refused: by the egress rules, or a token for another resource
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		re.ErrorCode = redact.ServerText(re.ErrorCode)
		switch status := re.StatusCode; {
		case status == http.StatusNotFound:
			return msaerr.New(msaerr.Backend, versionVar, "%s not found (%s)", what, re.ErrorCode).Reject()
		case status == http.StatusForbidden && strings.Contains(strings.ToLower(err.Error()), "disabled"):
			// Key Vault: 403 Forbidden, innererror SecretDisabled.
			return msaerr.New(msaerr.SecretUnusable, EnvSecretVersion, "%s is disabled", what)
		case status == http.StatusUnauthorized:
			return msaerr.New(msaerr.Backend, "AZURE_CLIENT_ID",
				"Key Vault did not accept the Azure token for %s (HTTP 401 %s): check the identity (AZURE_CLIENT_ID, AZURE_TENANT_ID)",
				what, re.ErrorCode).Reject()
		case status == http.StatusForbidden:
			return msaerr.New(msaerr.Backend, "",
				"access denied to %s (HTTP 403 %s): the identity needs get permission on secrets (for example the Key Vault Secrets User role)",
				what, re.ErrorCode).Reject()
		case status == http.StatusBadRequest:
			return msaerr.New(msaerr.NotConfigured, versionVar, "Key Vault rejected the request for %s (HTTP 400 %s)", what, re.ErrorCode).Reject()
		case status == http.StatusTooManyRequests:
			return msaerr.New(msaerr.Backend, config.EnvMaxRetries, "Key Vault throttled reading %s; retries were exhausted", what)
		}
		e := msaerr.New(msaerr.Backend, "", "reading %s failed with HTTP %d %s", what, re.StatusCode, re.ErrorCode)
		if refusedStatus(re.StatusCode) {
			e.Reject()
		}
		return e
	}
	if refusal := egress.FindRefusal(err.Error()); refusal != "" {
		// A token request of the credential chain (IMDS through a proxy, say).
		return msaerr.New(msaerr.NotConfigured, config.EnvAllowHTTP, "getting an Azure token: %s", refusal)
	}
	var authErr *azidentity.AuthenticationFailedError
	// "credential unavailable" errors have no exported type; they name the chain.
	if errors.As(err, &authErr) || strings.Contains(err.Error(), "DefaultAzureCredential") {
		e := msaerr.New(msaerr.Backend, "AZURE_CLIENT_ID", "no Azure credential could get a token (DefaultAzureCredential): %s",
			redact.ServerText(err.Error()))
		if authErr != nil && authErr.RawResponse != nil && refusedStatus(authErr.RawResponse.StatusCode) {
			// The token endpoint answered and refused the identity (a bad
			// client secret, an unknown client): a login refused.
			e.Reject()
		}
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return msaerr.New(msaerr.Backend, config.EnvTimeout, "no answer in time reading %s", what)
	}
	cause := redact.ServerText(msaerr.RootCause(err))
	var hostErr x509.HostnameError
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &hostErr) || errors.As(err, &unknownCA) || errors.As(err, &invalid) {
		return msaerr.New(msaerr.Backend, EnvCABundle, "reading %s: the TLS certificate is not trusted (%s): set %s to the CA that signed it, or check %s",
			what, cause, EnvCABundle, EnvVaultURL)
	}
	return msaerr.New(msaerr.Backend, EnvVaultURL, "reading %s failed: %s", what, cause)
}
