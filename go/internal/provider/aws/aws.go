// Package aws reads the credential from AWS Secrets Manager. Credentials,
// region, endpoints and retries come from the AWS SDK's own default chain
// (environment, shared config and profiles, SSO, web identity, container and
// instance roles); nothing is hand-rolled.
package aws

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/egress"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// The variables this provider reads itself; the SDK reads AWS_* on its own.
const (
	EnvSecretID      = "MLFLOW_AWS_SECRET_ID"
	EnvSecretName    = "MLFLOW_AWS_SECRET_NAME" // alias of MLFLOW_AWS_SECRET_ID
	EnvSecretVersion = "MLFLOW_AWS_SECRET_VERSION"
	EnvAuthMode      = "MLFLOW_AWS_AUTH_MODE"
	EnvTTL           = "MLFLOW_AWS_TTL_SEC"
	EnvMaxRetries    = "MLFLOW_AWS_MAX_RETRIES"
	EnvRegion        = "AWS_REGION"
	EnvDefaultRegion = "AWS_DEFAULT_REGION"
	envMaxAttempts   = "AWS_MAX_ATTEMPTS"
	envCABundle      = "AWS_CA_BUNDLE"
)

// A version id is what Secrets Manager generates: a UUID, or 32-64 characters.
var versionIDPattern = provider.Pattern(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$|^[A-Za-z0-9-]{32,64}$`)

// Settings are the AWS provider's settings.
type Settings struct {
	SecretID    string
	Stage       string // version stage, or
	VersionID   string // version id
	Region      string // from the ARN, AWS_REGION or AWS_DEFAULT_REGION; else the SDK's shared config
	MaxAttempts int    // 0: the SDK decides (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, defaults)
	Timeout     time.Duration
	// SDKEnv is every AWS_* variable ("NAME=value", NUL-separated): the SDK
	// reads them itself, so a change of any gives a new client.
	SDKEnv string
	Egress egress.Policy // proxies and MLFLOW_SECRETS_ALLOW_HTTP
}

// endpointVars are the variables naming an endpoint the AWS credentials (or
// the signed request) go to; each is checked by the cleartext rule before any
// connection. Endpoints the SDK finds elsewhere (a profile's endpoint_url,
// IMDS, SSO) are checked on every request by the transport (egress).
var endpointVars = []string{"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS",
	"AWS_ENDPOINT_URL_SSO", "AWS_ENDPOINT_URL_SSO_OIDC", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_SERVICE_ENDPOINT"}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	s := Settings{SecretID: env.Get(EnvSecretID, EnvSecretName)}
	if s.SecretID == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretID,
			"%s (or %s) is not set: give the secret's name or ARN", EnvSecretID, EnvSecretName)
	}
	s.Region = env.Get(EnvRegion, EnvDefaultRegion)
	if strings.HasPrefix(s.SecretID, "arn:") {
		a, err := arn.Parse(s.SecretID)
		if err != nil || a.Service != "secretsmanager" || a.Region == "" {
			return provider.Spec{}, msaerr.New(msaerr.NotConfigured, EnvSecretID,
				"%s=%q is not a Secrets Manager ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)",
				EnvSecretID, redact.Echo(s.SecretID))
		}
		s.Region = a.Region // the ARN's region wins
	}
	if v := env.Get(EnvSecretVersion); versionIDPattern().MatchString(v) {
		s.VersionID = v
	} else {
		s.Stage = v
	}
	switch {
	case env.Get(EnvMaxRetries) != "":
		n, err := env.Int(EnvMaxRetries, 2, 0, 10)
		if err != nil {
			return provider.Spec{}, err
		}
		s.MaxAttempts = n + 1
	case env.Get(envMaxAttempts) == "" && env.Get(config.EnvMaxRetries) != "":
		s.MaxAttempts = shared.MaxRetries + 1
	}
	mode, ttl, err := provider.ModeAndTTL(env, EnvAuthMode, EnvTTL)
	if err != nil {
		return provider.Spec{}, err
	}
	s.Timeout = shared.Timeout
	s.SDKEnv = strings.Join(env.WithPrefix("AWS_"), "\x00")
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
	details := [][2]string{{"secret", s.SecretID}, {"region", orDefault(s.Region, "(from the AWS shared config)")}}
	if s.Stage != "" || s.VersionID != "" {
		details = append(details, [2]string{"version", s.Stage + s.VersionID})
	}
	return provider.Spec{
		Name:     config.AWSSecretsManager,
		Settings: s,
		Mode:     mode,
		ModeVar:  EnvAuthMode,
		TTL:      ttl,
		Details:  details,
		Warnings: warnings,
		// The SDK reads every other AWS_* variable from the process.
		ProcessEnv: []string{"AWS_"},
		OwnEnv:     []string{EnvRegion, EnvDefaultRegion},
		New:        func(ctx context.Context) (provider.Provider, error) { return newProvider(ctx, s) },
	}, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Provider reads one secret version.
type Provider struct {
	s         Settings
	client    *secretsmanager.Client
	transport *http.Transport
}

func newProvider(ctx context.Context, s Settings) (*Provider, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	// The SDK logs to stderr by default (for example "failed to discard
	// remaining HTTP response body"); the Go side never writes there.
	// Every client the SDK builds (Secrets Manager, and STS, SSO, IMDS and
	// container credentials for the credential chain) goes through the
	// egress transport: redirects and cleartext refused, the proxy from the
	// engine's environment.
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithLogger(logging.Nop{}), awsconfig.WithClientLogMode(0),
		awsconfig.WithHTTPClient(s.Egress.AWSClient())}
	if s.Region != "" {
		opts = append(opts, awsconfig.WithRegion(s.Region))
	}
	if s.MaxAttempts > 0 {
		opts = append(opts, awsconfig.WithRetryMaxAttempts(s.MaxAttempts))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, msaerr.Wrap(msaerr.NotConfigured, err,
			"cannot load the AWS configuration (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)")
	}
	if cfg.Region == "" {
		return nil, msaerr.New(msaerr.NotConfigured, EnvRegion,
			"no region: set %s, give %s as an ARN, or set a region in the AWS profile", EnvRegion, EnvSecretID)
	}
	// Secrets Manager gets the same transport (AWS_CA_BUNDLE included) in a
	// client that never follows a redirect (the SDK's follows 307 and 308),
	// and that Close can close the idle connections of.
	bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		return nil, msaerr.New(msaerr.Internal, "", "unexpected AWS HTTP client %T", cfg.HTTPClient)
	}
	p := &Provider{s: s, transport: bc.GetTransport()}
	cfg.HTTPClient = s.Egress.Client(p.transport)
	p.client = secretsmanager.NewFromConfig(cfg)
	return p, nil
}

// Close closes idle connections.
func (p *Provider) Close() { p.transport.CloseIdleConnections() }

// Fetch reads the secret version and parses it.
func (p *Provider) Fetch(ctx context.Context) (secret.Credential, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: awsv2.String(p.s.SecretID)}
	if p.s.VersionID != "" {
		in.VersionId = awsv2.String(p.s.VersionID)
	} else if p.s.Stage != "" {
		in.VersionStage = awsv2.String(p.s.Stage)
	}
	out, err := p.client.GetSecretValue(ctx, in)
	if err != nil {
		return secret.Credential{}, p.describe(err)
	}
	var raw []byte
	switch {
	case out.SecretString != nil:
		raw = []byte(*out.SecretString)
	case out.SecretBinary != nil:
		raw = out.SecretBinary // the SDK has already base64-decoded it: use as is
		if !utf8.Valid(raw) {
			return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, EnvSecretID,
				"the SecretBinary of secret %s (%s) is not UTF-8 text; store the credential as text", p.s.SecretID, p.version())
		}
	default:
		return secret.Credential{}, msaerr.New(msaerr.SecretUnusable, p.versionVar(),
			"secret %s (%s) has no value", p.s.SecretID, p.version())
	}
	cred, err := secret.Parse(raw)
	if err != nil {
		e := msaerr.As(err)
		return secret.Credential{}, &msaerr.Error{Code: e.Code, Variable: EnvSecretID,
			Message: fmt.Sprintf("%s in secret %s (%s)", e.Message, p.s.SecretID, p.version())}
	}
	return cred, nil
}

func (p *Provider) version() string {
	switch {
	case p.s.VersionID != "":
		return "version id " + p.s.VersionID
	case p.s.Stage != "":
		return "stage " + p.s.Stage
	}
	return "stage AWSCURRENT"
}

// versionVar is the variable to blame for a missing version: the version
// when one is set, else the secret.
func (p *Provider) versionVar() string {
	if p.s.Stage != "" || p.s.VersionID != "" {
		return EnvSecretVersion
	}
	return EnvSecretID
}

// refusedStatus reports whether err carries an HTTP status that is a
// definite refusal by the backend: a 4xx other than 408 (timeout) and 429
// (throttling), which are transient.
func refusedStatus(err error) bool {
	var respErr *awshttp.ResponseError
	if !errors.As(err, &respErr) {
		return false
	}
	status := respErr.HTTPStatusCode()
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// describe turns an SDK error into one that names the cause and the variable.
// A definite refusal (access denied, no such secret, a secret scheduled for
// deletion, rejected credentials, a request refused as invalid) is a
// rejection (msaerr.Error.Rejected); throttling, 5xx, network failures and
// timeouts are not (the source is unavailable). AWS's messages name the secret and the reason, never its value.
func (p *Provider) describe(err error) error {
	id := p.s.SecretID
	var me *msaerr.Error
	if errors.As(err, &me) {
		return me // refused by the egress rules (cleartext, redirect, proxy)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code, msg := redact.ServerText(apiErr.ErrorCode()), redact.ServerText(apiErr.ErrorMessage())
		switch code {
		case "ResourceNotFoundException":
			return msaerr.New(msaerr.Backend, p.versionVar(), "secret %s (%s) not found: %s", id, p.version(), msg).Reject()
		case "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
			"ExpiredTokenException", "ExpiredToken", "InvalidClientTokenId", "IncompleteSignature", "MissingAuthenticationToken":
			return msaerr.New(msaerr.Backend, "AWS_ACCESS_KEY_ID", "the AWS credentials were rejected (%s: %s)", code, msg).Reject()
		case "AccessDeniedException", "AccessDenied":
			return msaerr.New(msaerr.Backend, EnvSecretID,
				"access denied to secret %s: the identity needs secretsmanager:GetSecretValue (and kms:Decrypt for a customer key): %s", id, msg).Reject()
		case "DecryptionFailure":
			return msaerr.New(msaerr.Backend, EnvSecretID, "cannot decrypt secret %s with its KMS key: %s", id, msg).Reject()
		case "InvalidRequestException":
			// For example: the secret is marked for deletion.
			return msaerr.New(msaerr.Backend, EnvSecretID, "Secrets Manager refused to read secret %s (%s): %s", id, p.version(), msg).Reject()
		case "InvalidParameterException", "ValidationException":
			return msaerr.New(msaerr.NotConfigured, p.versionVar(), "Secrets Manager rejected the request for secret %s (%s): %s",
				id, p.version(), msg).Reject()
		case "InternalServiceError", "InternalFailure", "ServiceUnavailable":
			return msaerr.New(msaerr.Backend, "", "Secrets Manager failed internally reading secret %s (%s: %s)", id, code, msg)
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
			return msaerr.New(msaerr.Backend, EnvMaxRetries, "Secrets Manager throttled reading secret %s (%s); retries were exhausted", id, code)
		}
		e := msaerr.New(msaerr.Backend, "", "reading secret %s failed: %s: %s", id, code, msg)
		if refusedStatus(err) {
			e.Reject() // an error code we do not know, in a definite refusal
		}
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return msaerr.New(msaerr.Backend, config.EnvTimeout, "no answer in time reading secret %s", id)
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() > 0 {
		switch status := respErr.HTTPStatusCode(); status {
		case http.StatusUnauthorized, http.StatusForbidden:
			// Some endpoints answer 403 without an error code the SDK can read.
			return msaerr.New(msaerr.Backend, "AWS_ACCESS_KEY_ID",
				"access to secret %s refused (HTTP %d): the AWS credentials were rejected or lack secretsmanager:GetSecretValue", id, status).Reject()
		case http.StatusNotFound:
			return msaerr.New(msaerr.Backend, p.versionVar(), "secret %s (%s) not found (HTTP 404)", id, p.version()).Reject()
		default:
			e := msaerr.New(msaerr.Backend, "", "reading secret %s failed with HTTP %d", id, status)
			if refusedStatus(err) {
				e.Reject()
			}
			return e
		}
	}
	if strings.Contains(err.Error(), "failed to retrieve credentials") || strings.Contains(err.Error(), "no EC2 IMDS role found") {
		return msaerr.New(msaerr.Backend, "AWS_PROFILE",
			"no usable AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role): %s", redact.ServerText(err.Error()))
	}
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &invalid) {
		return msaerr.New(msaerr.Backend, envCABundle,
			"the TLS certificate of the Secrets Manager endpoint is not trusted reading secret %s (%s): set %s to the CA bundle that signed it, or check the endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER)",
			id, redact.ServerText(msaerr.RootCause(err)), envCABundle)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return msaerr.New(msaerr.Backend, "", "cannot reach Secrets Manager reading secret %s: %s", id, redact.ServerText(netErr.Error()))
	}
	return msaerr.New(msaerr.Backend, "", "reading secret %s failed: %s", id, redact.ServerText(err.Error()))
}
