package gcp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// maxBody bounds what is read of an answer (a secret holds at most 64 KiB).
const maxBody = 1 << 20

// castagnoli is the CRC32C table Secret Manager's dataCrc32c uses.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// Provider reads one secret version.
type Provider struct {
	s         Settings
	creds     *creds
	project   string
	client    *retryablehttp.Client
	transport *http.Transport
	meta      *http.Transport
}

// noRedirects makes a client return a redirect as the answer: no request,
// token or body ever follows one to another address.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func newProvider(ctx context.Context, s Settings) (*Provider, error) {
	// One transport for Secret Manager and the token endpoints (OAuth, STS,
	// impersonation), so that MLFLOW_GCP_CA_BUNDLE covers them all and Close
	// can close their idle connections.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CABundle != "" {
		pool, err := cfgfile.SystemPoolWith(ctx, EnvCABundle, s.CABundle)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	hc := &http.Client{Transport: transport, CheckRedirect: noRedirects, Timeout: s.Timeout}
	// The metadata server is reached directly (never through a proxy), as
	// Google's metadata client does.
	meta := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		ResponseHeaderTimeout: s.Timeout, IdleConnTimeout: 60 * time.Second}
	metaClient := &http.Client{Transport: toHost{host: s.ADC.metadataHost(), base: meta}, CheckRedirect: noRedirects, Timeout: s.Timeout}
	// The token sources keep this context for every later token request: it
	// carries our client and no deadline.
	tokenCtx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	c, err := findCredentials(ctx, tokenCtx, s.ADC, metaClient, s.Timeout)
	if err != nil {
		return nil, err
	}
	project := s.Project
	if project == "" && c.meta != nil {
		if id, err := c.meta.GetWithContext(ctx, "project/project-id"); err == nil {
			project = strings.TrimSpace(id)
		}
	}
	if project == "" {
		project = c.project
	}
	if project == "" {
		return nil, msaerr.New(msaerr.NotConfigured, EnvProject,
			"no Google Cloud project for secret %s: set %s (or %s), or give %s as projects/P/secrets/S; the credentials (%s) name none",
			s.Secret, EnvProject, EnvCloudProject, EnvSecretName, c.identity)
	}
	if !projectPattern.MatchString(project) {
		return nil, msaerr.New(msaerr.NotConfigured, EnvProject, "the credentials' project %q is not a project id; set %s",
			redact.Echo(serverText(project)), EnvProject)
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = hc
	rc.Logger = nil // the Go side never writes to stderr
	rc.RetryMax = s.MaxRetries
	rc.RetryWaitMin, rc.RetryWaitMax = 200*time.Millisecond, 2*time.Second
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return &Provider{s: s, creds: c, project: project, client: rc, transport: transport, meta: meta}, nil
}

// Close closes idle connections.
func (p *Provider) Close() {
	p.transport.CloseIdleConnections()
	p.meta.CloseIdleConnections()
}

// accessResponse is the answer of versions:access.
type accessResponse struct {
	Name    string `json:"name"`
	Payload struct {
		Data       *string         `json:"data"`
		DataCrc32c json.RawMessage `json:"dataCrc32c"` // int64: a decimal string in JSON
	} `json:"payload"`
}

// googleError is the error body of Google APIs.
type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

// Fetch reads the secret version, checks its CRC32C and parses it.
func (p *Provider) Fetch(ctx context.Context) (secret.Credential, error) {
	what := "secret " + p.s.resourceIn(p.project)
	tok, err := p.creds.ts.Token()
	if err != nil {
		return secret.Credential{}, p.tokenError(err)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, p.s.accessURL(p.project), nil)
	if err != nil {
		return secret.Credential{}, msaerr.New(msaerr.NotConfigured, EnvEndpoint, "cannot build the request for %s", what)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return secret.Credential{}, msaerr.New(msaerr.Backend, config.EnvTimeout, "no answer in time reading %s", what)
		}
		return secret.Credential{}, msaerr.New(msaerr.Backend, EnvEndpoint, "cannot reach Secret Manager at %s reading %s: %s",
			redact.URL(p.s.Endpoint), what, serverText(msaerr.RootCause(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return secret.Credential{}, msaerr.New(msaerr.Backend, "", "reading the answer for %s failed: %s", what, serverText(err.Error()))
	}
	if resp.StatusCode != http.StatusOK {
		return secret.Credential{}, p.statusError(resp, body, what)
	}
	var ar accessResponse
	if err := json.Unmarshal(body, &ar); err != nil || ar.Payload.Data == nil {
		return secret.Credential{}, msaerr.New(msaerr.Backend, EnvEndpoint,
			"the answer for %s is not a Secret Manager payload (%s is the API's base URL?)", what, EnvEndpoint)
	}
	data, err := base64.StdEncoding.DecodeString(*ar.Payload.Data)
	if err != nil {
		return secret.Credential{}, msaerr.New(msaerr.Backend, EnvEndpoint, "the payload of %s is not base64", what)
	}
	if err := checkCRC(data, ar.Payload.DataCrc32c); err != nil {
		return secret.Credential{}, msaerr.New(msaerr.Backend, "", "%s: %s", what, err.Error())
	}
	cred, err := secret.Parse(data)
	if err != nil {
		e := msaerr.As(err)
		return secret.Credential{}, &msaerr.Error{Code: e.Code, Variable: EnvSecretName,
			Message: fmt.Sprintf("%s in %s", e.Message, what)}
	}
	cred.Expires = time.Time{} // Secret Manager gives no expiry
	return cred, nil
}

// checkCRC verifies the payload against dataCrc32c when the API sends it.
// The value is an int64, as a decimal string (proto3 JSON) or a number.
func checkCRC(data []byte, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	text := strings.Trim(string(raw), `"`)
	want, err := strconv.ParseUint(text, 10, 32)
	if err != nil {
		return fmt.Errorf("the payload's dataCrc32c %q is not a CRC32C; the payload is not used", redact.Echo(serverText(text)))
	}
	if got := crc32.Checksum(data, castagnoli()); uint64(got) != want {
		return fmt.Errorf("the payload does not match its CRC32C checksum (got %d, the API says %d): it was corrupted on the way; the payload is not used", got, want)
	}
	return nil
}

// statusError turns an error answer of Secret Manager into one that names
// the secret, the cause and the variable to change.
func (p *Provider) statusError(resp *http.Response, body []byte, what string) error {
	var ge googleError
	_ = json.Unmarshal(body, &ge)
	status, msg := ge.Error.Status, serverText(ge.Error.Message)
	code := resp.StatusCode
	detail := fmt.Sprintf("HTTP %d", code)
	if status != "" {
		detail += " " + serverText(status)
	}
	if msg != "" {
		detail += ": " + msg
	}
	switch {
	case code >= 300 && code < 400:
		return msaerr.New(msaerr.NotConfigured, EnvEndpoint,
			"Secret Manager at %s answered reading %s with a redirect (HTTP %d); redirects are not followed: set %s to the API's address",
			redact.URL(p.s.Endpoint), what, code, EnvEndpoint)
	case code == http.StatusNotFound || status == "NOT_FOUND":
		return msaerr.New(msaerr.Backend, p.s.VersionFrom, "%s not found (%s)", what, detail).Reject()
	case status == "FAILED_PRECONDITION" && strings.Contains(ge.Error.Message, "DESTROYED"):
		return msaerr.New(msaerr.SecretUnusable, p.s.VersionFrom,
			"%s is destroyed (its data is gone): point %s at another version", what, p.s.VersionFrom).Reject()
	case status == "FAILED_PRECONDITION" && strings.Contains(ge.Error.Message, "DISABLED"):
		return msaerr.New(msaerr.SecretUnusable, p.s.VersionFrom,
			"%s is disabled: enable it or point %s at another version", what, p.s.VersionFrom).Reject()
	case code == http.StatusForbidden || status == "PERMISSION_DENIED":
		return msaerr.New(msaerr.Backend, p.creds.variable,
			"access denied to %s for %s (%s): the identity needs secretmanager.versions.access (for example the Secret Manager Secret Accessor role)",
			what, p.creds.describeIdentity(), detail).Reject()
	case code == http.StatusUnauthorized:
		return msaerr.New(msaerr.Backend, p.creds.variable, "Secret Manager did not accept the access token of %s (%s)",
			p.creds.describeIdentity(), detail).Reject()
	case code == http.StatusTooManyRequests:
		return msaerr.New(msaerr.Backend, config.EnvMaxRetries, "Secret Manager throttled reading %s (%s); retries were exhausted", what, detail)
	case code == http.StatusBadRequest:
		return msaerr.New(msaerr.NotConfigured, p.s.VersionFrom, "Secret Manager rejected the request for %s (%s)", what, detail).Reject()
	case code >= 500:
		return msaerr.New(msaerr.Backend, "", "Secret Manager failed reading %s (%s)", what, detail)
	}
	return msaerr.New(msaerr.Backend, "", "reading %s failed (%s)", what, detail).Reject()
}

// describeIdentity names the identity; for the metadata server it asks for
// the default account's e-mail address (bounded, best effort).
func (c *creds) describeIdentity() string {
	if c.meta == nil {
		return c.identity
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	email, err := c.meta.GetWithContext(ctx, "instance/service-accounts/default/email")
	if err != nil || strings.TrimSpace(email) == "" {
		return c.identity
	}
	return c.identity + " (" + redact.Echo(serverText(strings.TrimSpace(email))) + ")"
}

// statusInText finds the HTTP status the token libraries put in their messages.
var statusInText = provider.Pattern(`(?:status code|cannot fetch token:) (\d{3})`)

// tokenError describes a failure to get an access token. A 4xx from a token
// endpoint is a refusal of the credentials; anything else (unreachable,
// 5xx) leaves the source unavailable.
func (p *Provider) tokenError(err error) error {
	status := 0
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		status = re.Response.StatusCode
	} else if m := statusInText().FindStringSubmatch(err.Error()); m != nil {
		status, _ = strconv.Atoi(m[1])
	}
	e := msaerr.New(msaerr.Backend, p.creds.variable, "cannot get a Google access token for %s: %s",
		p.creds.identity, serverText(err.Error()))
	if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
		e.Reject()
	}
	return e
}

// serverText makes text from a server or library safe to show (the one
// sanitizer every backend uses).
func serverText(s string) string { return redact.ServerText(s) }
