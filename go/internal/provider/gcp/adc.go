package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"cloud.google.com/go/compute/metadata"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// scope is the OAuth scope Secret Manager accepts.
const scope = "https://www.googleapis.com/auth/cloud-platform"

// defaultMetadataHost is the metadata server's documented address (a variable for tests).
var defaultMetadataHost = "169.254.169.254"

// metadataProbe bounds the check for a metadata server when
// GCE_METADATA_HOST is not set (off Google Cloud, nothing answers).
const metadataProbe = 3 * time.Second

// homeVar is where gcloud's configuration folder lives by default.
var homeVar = map[bool]string{true: "APPDATA", false: "HOME"}[runtime.GOOS == "windows"]

// wellKnownFile is gcloud's Application Default Credentials file (written by
// `gcloud auth application-default login`), in CLOUDSDK_CONFIG when set, as
// gcloud itself does.
func (a adcEnv) wellKnownFile() string {
	const f = "application_default_credentials.json"
	switch {
	case a.CloudSDKConfig != "":
		return filepath.Join(a.CloudSDKConfig, f)
	case a.Home == "":
		return ""
	case runtime.GOOS == "windows":
		return filepath.Join(a.Home, "gcloud", f)
	}
	return filepath.Join(a.Home, ".config", "gcloud", f)
}

func (a adcEnv) metadataHost() string { return orDefault(a.MetadataHost, defaultMetadataHost) }

// describe says where the credentials will come from, for `info` and `doctor`.
func (a adcEnv) describe() string {
	if a.CredentialsFile != "" {
		return EnvCredentials + "=" + redact.Echo(a.CredentialsFile)
	}
	if wk := a.wellKnownFile(); wk != "" {
		return "gcloud's file " + redact.Echo(wk) + " if present, else the metadata server at " + a.metadataHost()
	}
	return "the metadata server at " + a.metadataHost()
}

// creds are the Application Default Credentials found.
type creds struct {
	ts       oauth2.TokenSource
	project  string // the credentials' own project, if they name one
	identity string // who the token is for, for error messages (never a token)
	variable string // the variable that chose these credentials ("" for the metadata server)
	meta     *metadata.Client
}

// The credential file types accepted. Client-secret files ("installed",
// "web") need a browser flow and are refused.
var fileTypes = []google.CredentialsType{google.ServiceAccount, google.AuthorizedUser, google.ExternalAccount,
	google.ImpersonatedServiceAccount, google.ExternalAccountAuthorizedUser}

// findCredentials looks for credentials in ADC's order: the file named by
// GOOGLE_APPLICATION_CREDENTIALS, gcloud's well-known file, the metadata
// server. Token requests use the HTTP client in tokenCtx, which outlives
// this call; the metadata server is asked through metaClient.
func findCredentials(ctx, tokenCtx context.Context, a adcEnv, metaClient *http.Client, timeout time.Duration) (*creds, error) {
	if a.CredentialsFile != "" {
		if err := cfgfile.Check(EnvCredentials, a.CredentialsFile, false); err != nil {
			return nil, err
		}
		data, err := cfgfile.Read(ctx, EnvCredentials, a.CredentialsFile)
		if err != nil {
			return nil, err
		}
		return fromJSON(tokenCtx, data, EnvCredentials, EnvCredentials+"="+redact.Echo(a.CredentialsFile))
	}
	wk := a.wellKnownFile()
	if wk != "" {
		if fi, err := os.Stat(wk); err == nil && fi.Mode().IsRegular() {
			variable := EnvCloudSDK
			if a.CloudSDKConfig == "" {
				variable = homeVar
			}
			data, err := cfgfile.Read(ctx, variable, wk)
			if err != nil {
				return nil, err
			}
			return fromJSON(tokenCtx, data, variable, "gcloud's file "+redact.Echo(wk))
		}
	}
	mc := metadata.NewClient(metaClient)
	if a.MetadataHost == "" {
		probe, cancel := context.WithTimeout(ctx, metadataProbe)
		defer cancel()
		if !mc.OnGCEWithContext(probe) {
			tried := EnvCredentials + " is not set"
			if wk != "" {
				tried += fmt.Sprintf(", gcloud's file %s does not exist", redact.Echo(wk))
			}
			return nil, msaerr.New(msaerr.NotConfigured, EnvCredentials,
				"no Google credentials found (Application Default Credentials): %s, and no metadata server answered at %s (%s); "+
					"set %s to a service account key or workload identity configuration, run `gcloud auth application-default login`, or run on Google Cloud",
				tried, defaultMetadataHost, EnvMetadataHost, EnvCredentials)
		}
	}
	return &creds{
		ts:       oauth2.ReuseTokenSourceWithExpiry(nil, metadataSource{mc, timeout}, 30*time.Second),
		identity: "metadata server default account",
		meta:     mc,
	}, nil
}

// fromJSON builds a token source from a credentials file's content.
func fromJSON(tokenCtx context.Context, data []byte, variable, where string) (*creds, error) {
	var f struct {
		Type           string `json:"type"`
		ClientEmail    string `json:"client_email"`
		ClientID       string `json:"client_id"`
		ProjectID      string `json:"project_id"`
		QuotaProjectID string `json:"quota_project_id"`
		Audience       string `json:"audience"`
		Impersonation  string `json:"service_account_impersonation_url"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, msaerr.New(msaerr.NotConfigured, variable, "%s is not a JSON credentials file", where)
	}
	known := false
	for _, t := range fileTypes {
		known = known || string(t) == f.Type
	}
	if !known {
		return nil, msaerr.New(msaerr.NotConfigured, variable,
			"%s has credential type %q; expected service_account, authorized_user, external_account or impersonated_service_account",
			where, redact.Echo(serverText(f.Type)))
	}
	c, err := google.CredentialsFromJSONWithTypeAndParams(tokenCtx, data, google.CredentialsType(f.Type),
		google.CredentialsParams{Scopes: []string{scope}})
	if err != nil {
		// The library's messages name fields, never their values.
		return nil, msaerr.New(msaerr.NotConfigured, variable, "cannot use %s: %s", where, serverText(err.Error()))
	}
	id := f.Type
	switch f.Type {
	case string(google.ServiceAccount):
		id = "service account " + f.ClientEmail
	case string(google.AuthorizedUser):
		id = "user credentials (authorized_user, OAuth client " + f.ClientID + ")"
	case string(google.ExternalAccount), string(google.ExternalAccountAuthorizedUser):
		id = "external account (audience " + f.Audience + ")"
	}
	if email := impersonated(f.Impersonation); email != "" {
		id += " impersonating service account " + email
	}
	return &creds{ts: c.TokenSource, project: orDefault(c.ProjectID, f.QuotaProjectID),
		identity: serverText(id + " from " + where), variable: variable}, nil
}

// impersonated is the e-mail address in a service-account impersonation URL
// (.../serviceAccounts/EMAIL:generateAccessToken).
func impersonated(u string) string {
	_, rest, ok := strings.Cut(u, "/serviceAccounts/")
	if !ok {
		return ""
	}
	email, _, _ := strings.Cut(rest, ":")
	if e, err := url.PathUnescape(email); err == nil {
		return e
	}
	return email
}

// metadataSource gets access tokens for the default service account from the
// metadata server, through the metadata package's client (its header, its
// retries) on our HTTP client.
type metadataSource struct {
	c       *metadata.Client
	timeout time.Duration
}

func (m metadataSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	body, err := m.c.GetWithContext(ctx,
		"instance/service-accounts/default/token?"+url.Values{"scopes": {scope}}.Encode())
	if err != nil {
		return nil, err
	}
	var r struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.AccessToken == "" || r.ExpiresIn <= 0 {
		return nil, errors.New("the metadata server's token answer is incomplete")
	}
	return &oauth2.Token{AccessToken: r.AccessToken, TokenType: r.TokenType,
		Expiry: time.Now().Add(time.Duration(r.ExpiresIn) * time.Second)}, nil
}

// toHost sends every request to one host: the metadata package reads
// GCE_METADATA_HOST from the process environment, this makes its requests go
// to the host of the configured environment (or 169.254.169.254) instead.
type toHost struct {
	host string
	base http.RoundTripper
}

func (t toHost) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host, r.Host = t.host, t.host
	return t.base.RoundTrip(r)
}
