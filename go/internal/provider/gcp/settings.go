// Package gcp reads the credential from Google Secret Manager with one REST
// call (GET .../versions/V:access), authenticating with Application Default
// Credentials through golang.org/x/oauth2/google: a key or configuration file
// named by GOOGLE_APPLICATION_CREDENTIALS (service account, authorized user,
// external account for workload identity federation, impersonated service
// account), gcloud's well-known file, or the metadata server (GCE, GKE
// Workload Identity, Cloud Run). Google's gRPC client library is not used: it
// alone would make the shared library 18 MB.
package gcp

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cfgfile"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// The variables this provider reads. Google's own ADC variables are read
// from the same environment snapshot (see adcEnv), not from the process.
const (
	EnvSecretName    = "MLFLOW_GCP_SECRET_NAME"
	EnvProject       = "MLFLOW_GCP_PROJECT"
	EnvSecretVersion = "MLFLOW_GCP_SECRET_VERSION"
	EnvAuthMode      = "MLFLOW_GCP_AUTH_MODE"
	EnvTTL           = "MLFLOW_GCP_TTL_SEC"
	EnvEndpoint      = "MLFLOW_GCP_SECRETMANAGER_ENDPOINT"
	EnvCABundle      = "MLFLOW_GCP_CA_BUNDLE"

	EnvCloudProject = "GOOGLE_CLOUD_PROJECT"
	EnvCredentials  = "GOOGLE_APPLICATION_CREDENTIALS"
	EnvCloudSDK     = "CLOUDSDK_CONFIG"
	EnvMetadataHost = "GCE_METADATA_HOST"
)

// DefaultEndpoint serves global secrets; regional ones are served by
// https://secretmanager.LOCATION.rep.googleapis.com.
const DefaultEndpoint = "https://secretmanager.googleapis.com"

// bounded is a pattern plus a length limit. The limits are not written as
// {m,n} repetitions: Go's regexp expands each into n copies of its class,
// and these few patterns then took half a megabyte of heap in every process
// that loads the library.
type bounded struct {
	re  func() *regexp.Regexp
	max func(s string) int
}

func (b bounded) MatchString(s string) bool { return len(s) <= b.max(s) && b.re().MatchString(s) }

func upTo(n int) func(string) int { return func(string) int { return n } }

var (
	// Secret ids: letters, digits, '-' and '_', up to 255 characters.
	secretIDPattern = bounded{provider.Pattern(`^[A-Za-z0-9_-]+$`), upTo(255)}
	// Project ids (also domain-scoped ones, "example.com:my-project") and numbers, up to 100 characters.
	projectPattern = bounded{provider.Pattern(`^[a-z0-9][a-z0-9.:-]*$`), upTo(100)}
	// Locations such as us-central1 or europe-west4, up to 63 characters.
	locationPattern = bounded{provider.Pattern(`^[a-z][a-z0-9-]*$`), upTo(63)}
	// A version number (up to 19 digits), "latest", or an alias (letters,
	// digits, '-' and '_'; up to 63 characters).
	versionPattern = bounded{provider.Pattern(`^(?:[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]*)$`), func(s string) int {
		if s != "" && s[0] >= '0' && s[0] <= '9' {
			return 19
		}
		return 63
	}}
	// The forms of MLFLOW_GCP_SECRET_NAME that name a resource.
	resourcePattern = provider.Pattern(`^projects/([^/]+)/(?:locations/([^/]+)/)?secrets/([^/]+)(?:/versions/([^/]+))?$`)
)

// adcEnv is every variable Application Default Credentials depend on here.
type adcEnv struct {
	CredentialsFile string // GOOGLE_APPLICATION_CREDENTIALS
	CloudSDKConfig  string // CLOUDSDK_CONFIG: gcloud's configuration folder
	Home            string // HOME (APPDATA on Windows): where gcloud's folder is by default
	MetadataHost    string // GCE_METADATA_HOST
}

// Settings are the Google Secret Manager provider's settings.
type Settings struct {
	Project     string // from the resource name, a variable, or "" (the credentials' project)
	ProjectFrom string // the variable (or resource) that gave Project
	Location    string // "" for a global secret
	Secret      string
	Version     string // "latest", a number or an alias
	VersionFrom string // the variable to blame when the version is missing
	Endpoint    string // base URL without a trailing '/'
	CABundle    string
	Timeout     time.Duration // MLFLOW_SECRETS_TIMEOUT_SEC
	MaxRetries  int           // MLFLOW_SECRETS_MAX_RETRIES
	ADC         adcEnv
}

// Factory reads the settings and returns the provider's Spec.
func Factory(env config.Env, shared *config.Config) (provider.Spec, error) {
	s := Settings{Timeout: shared.Timeout, MaxRetries: shared.MaxRetries, CABundle: env.Get(EnvCABundle),
		ADC: adcEnv{CredentialsFile: env.Get(EnvCredentials), CloudSDKConfig: env.Get(EnvCloudSDK),
			Home: env.Get(homeVar), MetadataHost: env.Get(EnvMetadataHost)}}
	var warnings []string
	if err := s.parseName(env, &warnings); err != nil {
		return provider.Spec{}, err
	}
	if err := s.parseEndpoint(env.Get(EnvEndpoint), shared.AllowHTTP); err != nil {
		return provider.Spec{}, err
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
	details := [][2]string{{"secret", s.resource()}, {"endpoint", redact.URL(s.Endpoint)}, {"credentials", s.ADC.describe()}}
	return provider.Spec{
		Name:     config.GCPSecretManager,
		Settings: s,
		Mode:     mode,
		ModeVar:  EnvAuthMode,
		TTL:      ttl,
		Details:  details,
		Warnings: warnings,
		New:      func(ctx context.Context) (provider.Provider, error) { return newProvider(ctx, s) },
	}, nil
}

// parseName reads the secret's name, project and version.
func (s *Settings) parseName(env config.Env, warnings *[]string) error {
	name := env.Get(EnvSecretName)
	if name == "" {
		return msaerr.New(msaerr.NotConfigured, EnvSecretName,
			"%s is not set: give the secret's id or its resource name (projects/P/secrets/S)", EnvSecretName)
	}
	version := env.Get(EnvSecretVersion)
	s.VersionFrom = EnvSecretName
	if version != "" {
		s.VersionFrom = EnvSecretVersion
	}
	if m := resourcePattern().FindStringSubmatch(name); m != nil {
		s.Project, s.Location, s.Secret, s.ProjectFrom = m[1], m[2], m[3], EnvSecretName
		if m[4] != "" {
			if version != "" && version != m[4] {
				return msaerr.New(msaerr.NotConfigured, EnvSecretVersion,
					"%s=%q contradicts the version in %s (%s); set only one", EnvSecretVersion, redact.Echo(version), EnvSecretName, m[4])
			}
			version, s.VersionFrom = m[4], EnvSecretName
		}
		if p := env.Get(EnvProject, EnvCloudProject); p != "" && p != s.Project {
			*warnings = append(*warnings, fmt.Sprintf("%s names project %s; the project %s from %s or %s is not used",
				EnvSecretName, s.Project, redact.Echo(p), EnvProject, EnvCloudProject))
		}
	} else {
		if strings.Contains(name, "/") {
			return msaerr.New(msaerr.NotConfigured, EnvSecretName,
				"%s=%q is neither a secret id nor a resource name (projects/P/secrets/S[/versions/V] or projects/P/locations/L/secrets/S[/versions/V])",
				EnvSecretName, redact.Echo(name))
		}
		s.Secret = name
		s.Project, s.ProjectFrom = env.Get(EnvProject), EnvProject
		if s.Project == "" {
			s.Project, s.ProjectFrom = env.Get(EnvCloudProject), EnvCloudProject
		}
		if s.Project == "" {
			s.ProjectFrom = ""
		}
	}
	if !secretIDPattern.MatchString(s.Secret) {
		return msaerr.New(msaerr.NotConfigured, EnvSecretName,
			"%s=%q: a secret id has 1 to 255 letters, digits, '-' or '_'", EnvSecretName, redact.Echo(name))
	}
	if s.Project != "" && !projectPattern.MatchString(s.Project) {
		return msaerr.New(msaerr.NotConfigured, s.ProjectFrom, "%s: %q is not a Google Cloud project id or number",
			s.ProjectFrom, redact.Echo(s.Project))
	}
	if s.Location != "" && !locationPattern.MatchString(s.Location) {
		return msaerr.New(msaerr.NotConfigured, EnvSecretName, "%s: %q is not a location (for example us-central1)",
			EnvSecretName, redact.Echo(s.Location))
	}
	s.Version = version
	if s.Version == "" {
		s.Version = "latest"
	}
	if !versionPattern.MatchString(s.Version) {
		return msaerr.New(msaerr.NotConfigured, s.VersionFrom,
			"%s: version %q is not a number, \"latest\" or an alias", s.VersionFrom, redact.Echo(s.Version))
	}
	return nil
}

// parseEndpoint chooses the base URL: the variable's, else the global or
// the regional endpoint. Plain http goes only to loopback, unless allowed.
func (s *Settings) parseEndpoint(raw string, allowHTTP bool) error {
	if raw == "" {
		s.Endpoint = DefaultEndpoint
		if s.Location != "" {
			s.Endpoint = "https://secretmanager." + s.Location + ".rep.googleapis.com"
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return msaerr.New(msaerr.NotConfigured, EnvEndpoint, "%s=%q is not an http(s) base URL (e.g. https://secretmanager.googleapis.com)",
			EnvEndpoint, redact.Echo(redact.URL(raw)))
	}
	if u.User != nil {
		return msaerr.New(msaerr.NotConfigured, EnvEndpoint, "%s=%q must not carry a user name or password",
			EnvEndpoint, redact.Echo(redact.URL(raw)))
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !allowHTTP {
		return msaerr.New(msaerr.NotConfigured, EnvEndpoint,
			"%s=%q is plain http to a host other than loopback: the Google access token would travel in cleartext; use https (or set %s=true)",
			EnvEndpoint, redact.Echo(raw), config.EnvAllowHTTP)
	}
	s.Endpoint = strings.TrimRight(raw, "/")
	return nil
}

// isLoopback reports whether host is localhost, 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resource is the secret version's resource name; the project may still be
// unknown (it then comes from the credentials).
func (s Settings) resource() string {
	return s.resourceIn(orDefault(s.Project, "(project of the credentials)"))
}

func (s Settings) resourceIn(project string) string {
	r := "projects/" + project
	if s.Location != "" {
		r += "/locations/" + s.Location
	}
	return r + "/secrets/" + s.Secret + "/versions/" + s.Version
}

// accessURL is the URL of versions:access for project.
func (s Settings) accessURL(project string) string {
	p := "/v1/projects/" + url.PathEscape(project)
	if s.Location != "" {
		p += "/locations/" + url.PathEscape(s.Location)
	}
	return s.Endpoint + p + "/secrets/" + url.PathEscape(s.Secret) + "/versions/" + url.PathEscape(s.Version) + ":access"
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
