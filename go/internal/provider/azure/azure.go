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
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

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

// Settings are the Azure provider's settings.
type Settings struct {
	VaultURL, SecretName, Version string
	CABundle                      string
	relaxChallenge                bool
	sdkEnv                        string
}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	s := Settings{VaultURL: env.Get(EnvVaultURL, EnvVaultURLAlias), SecretName: env.Get(EnvSecretName),
		Version: env.Get(EnvSecretVersion), CABundle: env.Get(EnvCABundle)}
	if s.VaultURL == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvVaultURL,
			"azure-key-vault: %s (or %s) is not set (e.g. https://my-vault.vault.azure.net)", EnvVaultURL, EnvVaultURLAlias)
	}
	u, err := url.Parse(s.VaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvVaultURL,
			"azure-key-vault: %s=%q is not an https URL (e.g. https://my-vault.vault.azure.net)", EnvVaultURL, s.VaultURL)
	}
	host := strings.ToLower(u.Hostname())
	s.relaxChallenge = true
	for _, d := range keyVaultDomains {
		if strings.HasSuffix(host, d) {
			s.relaxChallenge = false
		}
	}
	if s.SecretName == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretName, "azure-key-vault: %s is not set", EnvSecretName)
	}
	if s.CABundle != "" {
		if _, err := os.Stat(s.CABundle); err != nil {
			return provider.Spec{}, &msaerr.Error{Code: msaerr.NotConfigured, Variable: EnvCABundle,
				Message: "azure-key-vault: " + EnvCABundle + " cannot be used", Err: err}
		}
	}
	mode, ttl, err := provider.ModeAndTTL(env, EnvAuthMode, EnvTTL)
	if err != nil {
		return provider.Spec{}, err
	}
	s.sdkEnv = strings.Join(env.WithPrefix("AZURE_", "IDENTITY_", "MSI_", "IMDS_"), "\x00")
	details := [][2]string{{"vault", s.VaultURL}, {"secret", s.SecretName}, {"version", orLatest(s.Version)}}
	return provider.Spec{
		Name:     config.AzureKeyVault,
		Settings: s,
		Mode:     mode,
		ModeVar:  EnvAuthMode,
		TTL:      ttl,
		Details:  details,
		New:      func(context.Context) (provider.Provider, error) { return newProvider(s, shared.MaxRetries) },
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
	s      Settings
	client *azsecrets.Client
	now    func() time.Time
}

func newProvider(s Settings, maxRetries int) (*Provider, error) {
	// azcore's default retry waits up to a minute; within our call deadline,
	// a few quick retries are worth more (MLFLOW_SECRETS_MAX_RETRIES).
	opts := azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: int32(maxRetries),
		RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second}}
	if maxRetries == 0 {
		opts.Retry.MaxRetries = -1 // azcore: 0 means its default of 3
	}
	if s.CABundle != "" {
		transport, err := trusting(s.CABundle)
		if err != nil {
			return nil, err
		}
		opts.Transport = transport
	}
	// DefaultAzureCredential also honours AZURE_AUTHORITY_HOST (sovereign clouds).
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: opts})
	if err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err, "azure-key-vault: cannot set up DefaultAzureCredential (AZURE_* variables)")
	}
	client, err := azsecrets.NewClient(s.VaultURL, cred, &azsecrets.ClientOptions{ClientOptions: opts,
		DisableChallengeResourceVerification: s.relaxChallenge})
	if err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err, "azure-key-vault: cannot create a client for %s", EnvVaultURL)
	}
	return &Provider{s: s, client: client, now: time.Now}, nil
}

// trusting returns a transport that trusts the system roots plus the PEM
// certificates in caFile, for the vault and the token endpoint alike.
func trusting(caFile string) (policy.Transporter, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &msaerr.Error{Code: msaerr.NotConfigured, Variable: EnvCABundle,
			Message: "azure-key-vault: " + EnvCABundle + " cannot be read", Err: err}
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, msaerr.New(msaerr.NotConfigured, EnvCABundle, "azure-key-vault: %s=%s holds no PEM certificate", EnvCABundle, caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}, nil
}

// Close has nothing to stop.
func (p *Provider) Close() {}

// Fetch reads the secret version, refusing a disabled or expired one.
func (p *Provider) Fetch(ctx context.Context) (secret.Credential, error) {
	resp, err := p.client.GetSecret(ctx, p.s.SecretName, p.s.Version, nil)
	if err != nil {
		return secret.Credential{}, p.describe(err)
	}
	what := fmt.Sprintf("secret %s (%s)", p.s.SecretName, orLatest(p.s.Version))
	if a := resp.Attributes; a != nil {
		if a.Enabled != nil && !*a.Enabled {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretVersion, "azure-key-vault: %s is disabled", what)
		}
		if a.Expires != nil && !p.now().Before(*a.Expires) {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretVersion,
				"azure-key-vault: %s expired at %s", what, a.Expires.UTC().Format(time.RFC3339))
		}
		if a.NotBefore != nil && p.now().Before(*a.NotBefore) {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretVersion,
				"azure-key-vault: %s is not valid before %s", what, a.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if resp.Value == nil {
		return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretName, "azure-key-vault: %s has no value", what)
	}
	cred, err := secret.Parse([]byte(*resp.Value))
	if err != nil {
		e := msaerr.As(err)
		return secret.Credential{}, &msaerr.Error{Code: e.Code, Variable: EnvSecretName,
			Message: fmt.Sprintf("azure-key-vault: %s in %s", e.Message, what)}
	}
	return cred, nil
}

// describe turns an SDK error into one that names the cause and the variable.
func (p *Provider) describe(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusNotFound:
			variable := EnvSecretName
			if p.s.Version != "" {
				variable = EnvSecretVersion
			}
			return msaerr.New(msaerr.Backend, variable, "azure-key-vault: secret %s (%s) not found in %s (%s)",
				p.s.SecretName, orLatest(p.s.Version), p.s.VaultURL, re.ErrorCode)
		case re.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(err.Error()), "disabled"):
			// Key Vault: 403 Forbidden, innererror SecretDisabled.
			return msaerr.New(msaerr.SecretUnusable, EnvSecretVersion, "azure-key-vault: secret %s (%s) is disabled",
				p.s.SecretName, orLatest(p.s.Version))
		case re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized:
			return msaerr.New(msaerr.Backend, "", "azure-key-vault: access denied to secret %s in %s (HTTP %d %s): check the identity's Key Vault permissions",
				p.s.SecretName, p.s.VaultURL, re.StatusCode, re.ErrorCode)
		}
		return msaerr.New(msaerr.Backend, "", "azure-key-vault: reading secret %s failed with HTTP %d %s",
			p.s.SecretName, re.StatusCode, re.ErrorCode)
	}
	var authErr *azidentity.AuthenticationFailedError
	// "credential unavailable" errors have no exported type; they name the chain.
	if errors.As(err, &authErr) || strings.Contains(err.Error(), "DefaultAzureCredential") {
		return &msaerr.Error{Code: msaerr.Backend, Variable: "AZURE_CLIENT_ID",
			Message: "azure-key-vault: no Azure credential could get a token (DefaultAzureCredential)", Err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return msaerr.New(msaerr.Backend, config.EnvTimeout, "azure-key-vault: no answer in time from %s", p.s.VaultURL)
	}
	return &msaerr.Error{Code: msaerr.Backend, Variable: EnvVaultURL,
		Message: "azure-key-vault: reading secret " + p.s.SecretName + " from " + p.s.VaultURL + " failed", Err: err}
}
