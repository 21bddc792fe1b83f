package gcp

import (
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func shared() *config.Config { return &config.Config{Timeout: 5 * time.Second} }

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		env                                config.Env
		project, location, secret, version string
		versionFrom, url                   string
	}{
		{config.Env{EnvSecretName: "db", EnvProject: "p-1"}, "p-1", "", "db", "latest", EnvSecretName,
			DefaultEndpoint + "/v1/projects/p-1/secrets/db/versions/latest:access"},
		{config.Env{EnvSecretName: "db", EnvCloudProject: "p-2", EnvSecretVersion: "7"}, "p-2", "", "db", "7", EnvSecretVersion,
			DefaultEndpoint + "/v1/projects/p-2/secrets/db/versions/7:access"},
		{config.Env{EnvSecretName: "db", EnvProject: "p-1", EnvCloudProject: "p-2", EnvSecretVersion: "prod"}, "p-1", "", "db", "prod", EnvSecretVersion,
			DefaultEndpoint + "/v1/projects/p-1/secrets/db/versions/prod:access"},
		{config.Env{EnvSecretName: "projects/123/secrets/db"}, "123", "", "db", "latest", EnvSecretName,
			DefaultEndpoint + "/v1/projects/123/secrets/db/versions/latest:access"},
		{config.Env{EnvSecretName: "projects/p-3/secrets/db/versions/4"}, "p-3", "", "db", "4", EnvSecretName,
			DefaultEndpoint + "/v1/projects/p-3/secrets/db/versions/4:access"},
		{config.Env{EnvSecretName: "projects/p-3/locations/europe-west4/secrets/db"}, "p-3", "europe-west4", "db", "latest", EnvSecretName,
			"https://secretmanager.europe-west4.rep.googleapis.com/v1/projects/p-3/locations/europe-west4/secrets/db/versions/latest:access"},
		{config.Env{EnvSecretName: "projects/p-3/locations/us-east1/secrets/db/versions/2", EnvSecretVersion: "2"}, "p-3", "us-east1", "db", "2", EnvSecretName,
			"https://secretmanager.us-east1.rep.googleapis.com/v1/projects/p-3/locations/us-east1/secrets/db/versions/2:access"},
		// An endpoint of our own serves regional secrets too.
		{config.Env{EnvSecretName: "projects/p-3/locations/us-east1/secrets/db", EnvEndpoint: "https://sm.internal.example/"}, "p-3", "us-east1", "db", "latest", EnvSecretName,
			"https://sm.internal.example/v1/projects/p-3/locations/us-east1/secrets/db/versions/latest:access"},
		{config.Env{EnvSecretName: "db", EnvEndpoint: "http://127.0.0.1:8085"}, "", "", "db", "latest", EnvSecretName,
			"http://127.0.0.1:8085/v1/projects/P/secrets/db/versions/latest:access"},
	} {
		sp, err := Factory(tc.env, shared())
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		s := sp.Settings.(Settings)
		if s.Project != tc.project || s.Location != tc.location || s.Secret != tc.secret || s.Version != tc.version || s.VersionFrom != tc.versionFrom {
			t.Errorf("%v: got %+v", tc.env, s)
		}
		if got := s.accessURL(orDefault(s.Project, "P")); got != tc.url {
			t.Errorf("%v: URL %s, want %s", tc.env, got, tc.url)
		}
		if sp.Name != config.GCPSecretManager || sp.ModeVar != EnvAuthMode || sp.TTL != 300*time.Second {
			t.Errorf("%v: spec %+v", tc.env, sp)
		}
	}
}

func TestNameWinsOverProjectVariable(t *testing.T) {
	sp, err := Factory(config.Env{EnvSecretName: "projects/a-proj/secrets/db", EnvProject: "b-proj"}, shared())
	if err != nil {
		t.Fatal(err)
	}
	if s := sp.Settings.(Settings); s.Project != "a-proj" || len(sp.Warnings) != 1 || !strings.Contains(sp.Warnings[0], "b-proj") {
		t.Fatalf("project %q, warnings %q", s.Project, sp.Warnings)
	}
}

func TestSettingsErrors(t *testing.T) {
	for _, tc := range []struct {
		env      config.Env
		allow    bool
		variable string
		says     string
	}{
		{config.Env{}, false, EnvSecretName, "is not set"},
		{config.Env{EnvSecretName: "a/b"}, false, EnvSecretName, "neither a secret id"},
		{config.Env{EnvSecretName: "projects/p/secrets/db/versions/1/extra"}, false, EnvSecretName, "neither a secret id"},
		{config.Env{EnvSecretName: "bad name"}, false, EnvSecretName, "1 to 255"},
		{config.Env{EnvSecretName: "db", EnvProject: "Bad Project"}, false, EnvProject, "not a Google Cloud project"},
		{config.Env{EnvSecretName: "db", EnvCloudProject: "x/y"}, false, EnvCloudProject, "not a Google Cloud project"},
		{config.Env{EnvSecretName: "projects/p/locations/US_EAST/secrets/db"}, false, EnvSecretName, "not a location"},
		{config.Env{EnvSecretName: "db", EnvSecretVersion: "0"}, false, EnvSecretVersion, "not a number"},
		{config.Env{EnvSecretName: "db", EnvSecretVersion: "v/1"}, false, EnvSecretVersion, "not a number"},
		{config.Env{EnvSecretName: "projects/p/secrets/db/versions/3", EnvSecretVersion: "4"}, false, EnvSecretVersion, "contradicts"},
		{config.Env{EnvSecretName: "db", EnvEndpoint: "ftp://x"}, false, EnvEndpoint, "not an http(s) base URL"},
		{config.Env{EnvSecretName: "db", EnvEndpoint: "https://x?a=b"}, false, EnvEndpoint, "not an http(s) base URL"},
		{config.Env{EnvSecretName: "db", EnvEndpoint: "https://u:pw@x"}, false, EnvEndpoint, "user name or password"},
		{config.Env{EnvSecretName: "db", EnvEndpoint: "http://sm.corp.example"}, false, EnvEndpoint, "cleartext"},
		{config.Env{EnvSecretName: "db", EnvCABundle: "/no/such/ca.pem"}, false, EnvCABundle, "cannot be used"},
		{config.Env{EnvSecretName: "db", EnvAuthMode: "digest"}, false, EnvAuthMode, ""},
	} {
		sh := shared()
		sh.AllowHTTP = tc.allow
		_, err := Factory(tc.env, sh)
		e := msaerr.As(err)
		if err == nil || e.Code != msaerr.NotConfigured || e.Variable != tc.variable || !strings.Contains(e.Error(), tc.says) {
			t.Errorf("%v: %v (%+v)", tc.env, err, e)
		}
		if strings.Contains(e.Error(), "pw") {
			t.Errorf("%v: the password is echoed: %v", tc.env, err)
		}
	}
	// Cleartext to a host that is not loopback: only when allowed.
	sh := shared()
	sh.AllowHTTP = true
	if _, err := Factory(config.Env{EnvSecretName: "db", EnvEndpoint: "http://sm.corp.example"}, sh); err != nil {
		t.Fatalf("with %s: %v", config.EnvAllowHTTP, err)
	}
	for _, host := range []string{"http://localhost:1", "http://127.0.0.2:1", "http://[::1]:1"} {
		if _, err := Factory(config.Env{EnvSecretName: "db", EnvEndpoint: host}, shared()); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

func TestWellKnownFile(t *testing.T) {
	if got := (adcEnv{CloudSDKConfig: "/cfg", Home: "/home/u"}).wellKnownFile(); got != "/cfg/application_default_credentials.json" {
		t.Errorf("with CLOUDSDK_CONFIG: %s", got)
	}
	if got := (adcEnv{}).wellKnownFile(); got != "" {
		t.Errorf("without HOME: %q", got)
	}
	if d := (adcEnv{CredentialsFile: "/k.json"}).describe(); d != EnvCredentials+"=/k.json" {
		t.Errorf("describe: %s", d)
	}
	if d := (adcEnv{MetadataHost: "m:1"}).describe(); d != "the metadata server at m:1" {
		t.Errorf("describe: %s", d)
	}
}

func TestImpersonated(t *testing.T) {
	u := "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/reader%40p.iam.gserviceaccount.com:generateAccessToken"
	if got := impersonated(u); got != "reader@p.iam.gserviceaccount.com" {
		t.Errorf("impersonated = %q", got)
	}
	if impersonated("") != "" {
		t.Error("no URL, an e-mail")
	}
}
