package gcp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"hash/crc32"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func googleErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "status": code}})
}

// payload answers versions:access with data and, unless crc is "", a dataCrc32c.
func payload(data, crc string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := map[string]any{"data": base64.StdEncoding.EncodeToString([]byte(data))}
		if crc != "" {
			p["dataCrc32c"] = crc
		}
		writeJSON(w, http.StatusOK, map[string]any{"name": strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/"), ":access"), "payload": p})
	}
}

func crcOf(s string) string {
	return strconv.FormatUint(uint64(crc32.Checksum([]byte(s), crc32.MakeTable(crc32.Castagnoli))), 10)
}

// fakeSM is Secret Manager's versions:access: it checks the bearer token and
// records the paths asked for.
type fakeSM struct {
	mu      sync.Mutex
	token   string
	paths   []string
	respond http.HandlerFunc
}

func (f *fakeSM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	respond := f.respond
	f.mu.Unlock()
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ":access") {
		googleErr(w, http.StatusNotFound, "NOT_FOUND", "no such method")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		googleErr(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	respond(w, r)
}

func (f *fakeSM) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.paths...)
}

// fakeMetadata is the metadata server: the Metadata-Flavor header is required.
type fakeMetadata struct {
	token, project, email string
	tokens                atomic.Int32
}

func (m *fakeMetadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
		return
	}
	w.Header().Set("Metadata-Flavor", "Google")
	switch r.URL.Path {
	case "/computeMetadata/v1/instance/service-accounts/default/token":
		if r.URL.Query().Get("scopes") != scope {
			http.Error(w, "wrong scopes", http.StatusBadRequest)
			return
		}
		m.tokens.Add(1)
		writeJSON(w, http.StatusOK, map[string]any{"access_token": m.token, "expires_in": 3599, "token_type": "Bearer"})
	case "/computeMetadata/v1/project/project-id":
		if m.project == "" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, m.project)
	case "/computeMetadata/v1/instance/service-accounts/default/email":
		_, _ = io.WriteString(w, m.email)
	default:
		http.NotFound(w, r)
	}
}

func quiet(srv *httptest.Server) *httptest.Server {
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	return srv
}

// startSM serves f over HTTPS and returns the env that reads secret "db"
// from it with the metadata server m, trusting its certificate through
// MLFLOW_GCP_CA_BUNDLE. No gcloud file is found (CLOUDSDK_CONFIG is empty).
func startSM(t *testing.T, f *fakeSM, m *fakeMetadata) config.Env {
	t.Helper()
	srv := quiet(httptest.NewUnstartedServer(f))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := config.Env{EnvSecretName: "db", EnvEndpoint: srv.URL, EnvCABundle: ca, EnvCloudSDK: t.TempDir()}
	if m != nil {
		ms := quiet(httptest.NewServer(m))
		t.Cleanup(ms.Close)
		env[EnvMetadataHost] = strings.TrimPrefix(ms.URL, "http://")
	}
	return env
}

func open(t *testing.T, env config.Env) *Provider {
	t.Helper()
	p, err := build(env)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func build(env config.Env) (*Provider, error) {
	sp, err := Factory(env, &config.Config{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	p, err := sp.New(context.Background())
	if err != nil {
		return nil, err
	}
	return p.(*Provider), nil
}

func fetchErr(t *testing.T, p provider.Provider) *msaerr.Error {
	t.Helper()
	c, err := p.Fetch(context.Background())
	if err == nil {
		t.Fatalf("Fetch gave a credential %+v, want an error", c)
	}
	return msaerr.As(err)
}

func TestMetadataServerAndCRC(t *testing.T) {
	f := &fakeSM{token: "meta-token"}
	m := &fakeMetadata{token: "meta-token", project: "meta-proj", email: "sa@meta-proj.iam.gserviceaccount.com"}
	env := startSM(t, f, m)
	p := open(t, env)
	defer p.Close()

	f.respond = payload(`{"token":"tok-1"}`, crcOf(`{"token":"tok-1"}`))
	c, err := p.Fetch(context.Background())
	if err != nil || c != (secret.Credential{Token: "tok-1"}) {
		t.Fatalf("with a right CRC: %+v, %v", c, err)
	}
	// The project came from the metadata server.
	if got := f.seen(); got[0] != "/v1/projects/meta-proj/secrets/db/versions/latest:access" {
		t.Fatalf("path %v", got)
	}
	// No dataCrc32c: nothing to check.
	f.respond = payload(`{"username":"u","password":"p"}`, "")
	if c, err := p.Fetch(context.Background()); err != nil || c.Username != "u" || c.Password != "p" || !c.Expires.IsZero() {
		t.Fatalf("without a CRC: %+v, %v", c, err)
	}
	// A wrong CRC is an error, never a credential, and not a rejection.
	f.respond = payload("tok-2", crcOf("tok-3"))
	e := fetchErr(t, p)
	if e.Code != msaerr.Backend || msaerr.IsRejection(e) || !strings.Contains(e.Error(), "CRC32C") || strings.Contains(e.Error(), "tok-2") {
		t.Fatalf("CRC mismatch: %+v", e)
	}
	// A CRC as a JSON number is read too; one that is not a number is refused.
	f.respond = func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"payload":{"data":"`+base64.StdEncoding.EncodeToString([]byte("tok-4"))+`","dataCrc32c":`+crcOf("tok-4")+`}}`)
	}
	if c, err := p.Fetch(context.Background()); err != nil || c.Token != "tok-4" {
		t.Fatalf("numeric CRC: %+v, %v", c, err)
	}
	f.respond = payload("tok-5", "0x12")
	if e := fetchErr(t, p); !strings.Contains(e.Error(), "not a CRC32C") {
		t.Fatalf("bad CRC: %v", e)
	}
	// One token for all these calls: it is reused until it expires.
	if n := m.tokens.Load(); n != 1 {
		t.Fatalf("%d metadata token requests", n)
	}
}

func TestErrorMapping(t *testing.T) {
	f := &fakeSM{token: "meta-token"}
	m := &fakeMetadata{token: "meta-token", email: "runner@p.iam.gserviceaccount.com"}
	env := startSM(t, f, m)
	env[EnvProject] = "p"
	env[EnvSecretVersion] = "3"
	p := open(t, env)
	defer p.Close()
	const res = "projects/p/secrets/db/versions/3"
	for _, tc := range []struct {
		status    int
		code, msg string
		errCode   msaerr.Code
		variable  string
		rejected  bool
		says      []string
	}{
		{404, "NOT_FOUND", "Secret [projects/p/secrets/db] not found or has no versions.", msaerr.Backend, EnvSecretVersion, true,
			[]string{res, "not found"}},
		{403, "PERMISSION_DENIED", "Permission 'secretmanager.versions.access' denied for resource '" + res + "' (or it may not exist).",
			msaerr.Backend, "", true, []string{res, "access denied", "metadata server default account (runner@p.iam.gserviceaccount.com)"}},
		{400, "FAILED_PRECONDITION", "Secret Version [" + res + "] is in DISABLED state.", msaerr.SecretUnusable, EnvSecretVersion, true,
			[]string{res, "is disabled"}},
		{400, "FAILED_PRECONDITION", "Secret Version [" + res + "] is in DESTROYED state.", msaerr.SecretUnusable, EnvSecretVersion, true,
			[]string{res, "is destroyed"}},
		{400, "INVALID_ARGUMENT", "bad version", msaerr.NotConfigured, EnvSecretVersion, true, []string{res, "rejected the request"}},
		{429, "RESOURCE_EXHAUSTED", "quota", msaerr.Backend, config.EnvMaxRetries, false, []string{"throttled"}},
		{503, "UNAVAILABLE", "try again\x1b[2J\nforged: line", msaerr.Backend, "", false, []string{"HTTP 503 UNAVAILABLE: try again"}},
	} {
		f.respond = func(w http.ResponseWriter, r *http.Request) { googleErr(w, tc.status, tc.code, tc.msg) }
		e := fetchErr(t, p)
		if e.Code != tc.errCode || e.Variable != tc.variable || msaerr.IsRejection(e) != tc.rejected {
			t.Errorf("%d %s: %+v (rejection %v)", tc.status, tc.code, e, msaerr.IsRejection(e))
		}
		for _, s := range tc.says {
			if !strings.Contains(e.Error(), s) {
				t.Errorf("%d %s: %q does not say %q", tc.status, tc.code, e.Error(), s)
			}
		}
		if strings.Contains(e.Error(), "meta-token") || strings.ContainsAny(e.Error(), "\x1b\n") {
			t.Errorf("%d %s: %q", tc.status, tc.code, e.Error())
		}
	}
	// A token the API does not accept.
	f.token = "other"
	if e := fetchErr(t, p); !msaerr.IsRejection(e) || !strings.Contains(e.Error(), "did not accept the access token of metadata server default account") {
		t.Errorf("401: %+v", e)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var got atomic.Int32
	target := quiet(httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		payload("stolen", "")(w, r)
	})))
	defer target.Close()
	f := &fakeSM{token: "meta-token"}
	f.respond = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}
	env := startSM(t, f, &fakeMetadata{token: "meta-token", project: "p"})
	p := open(t, env)
	defer p.Close()
	e := fetchErr(t, p)
	if got.Load() != 0 || e.Variable != EnvEndpoint || !strings.Contains(e.Error(), "redirect") {
		t.Fatalf("target got %d requests; error %+v", got.Load(), e)
	}
}

func TestRegionalSecretPath(t *testing.T) {
	f := &fakeSM{token: "meta-token", respond: payload("regional-token", crcOf("regional-token"))}
	env := startSM(t, f, &fakeMetadata{token: "meta-token"})
	env[EnvSecretName] = "projects/rp/locations/europe-west4/secrets/db/versions/2"
	p := open(t, env)
	defer p.Close()
	if c, err := p.Fetch(context.Background()); err != nil || c.Token != "regional-token" {
		t.Fatalf("%+v %v", c, err)
	}
	if got := f.seen(); len(got) != 1 || got[0] != "/v1/projects/rp/locations/europe-west4/secrets/db/versions/2:access" {
		t.Fatalf("paths %v", got)
	}
}

// fakeOAuth is Google's OAuth token endpoint for service-account keys: it
// verifies the RS256 JWT assertion with the key's public half.
type fakeOAuth struct {
	pub      *rsa.PublicKey
	token    string
	status   int
	requests atomic.Int32
}

func (o *fakeOAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	if o.status != 0 {
		writeJSON(w, o.status, map[string]any{"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
		return
	}
	_ = r.ParseForm()
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || len(parts) != 3 {
		writeJSON(w, 400, map[string]any{"error": "invalid_request"})
		return
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(o.pub, crypto.SHA256, sum[:], sig) != nil {
		writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
		return
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
	}
	_ = json.Unmarshal(claims, &c)
	if c.Iss != "reader@key-proj.iam.gserviceaccount.com" || c.Scope != scope || c.Aud != "http://"+r.Host+r.URL.Path {
		writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "bad claims"})
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": o.token, "expires_in": 3600, "token_type": "Bearer"})
}

// serviceAccountKey writes a key file whose token_uri is tokenURI.
func serviceAccountKey(t *testing.T, tokenURI string) (string, *rsa.PublicKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "key-proj", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "reader@key-proj.iam.gserviceaccount.com", "client_id": "1", "token_uri": tokenURI,
	})
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, &key.PublicKey
}

func TestServiceAccountKey(t *testing.T) {
	o := &fakeOAuth{token: "sa-token"}
	oauth := quiet(httptest.NewServer(o))
	defer oauth.Close()
	f := &fakeSM{token: "sa-token", respond: payload("from-sa", crcOf("from-sa"))}
	env := startSM(t, f, nil)
	var path string
	path, o.pub = serviceAccountKey(t, oauth.URL+"/token")
	env[EnvCredentials] = path
	p := open(t, env)
	defer p.Close()
	if c, err := p.Fetch(context.Background()); err != nil || c.Token != "from-sa" {
		t.Fatalf("%+v %v", c, err)
	}
	// The key's project is used when no variable names one.
	if got := f.seen()[0]; got != "/v1/projects/key-proj/secrets/db/versions/latest:access" {
		t.Fatalf("path %s", got)
	}
	// PERMISSION_DENIED names the service account and the key file variable.
	f.respond = func(w http.ResponseWriter, r *http.Request) { googleErr(w, 403, "PERMISSION_DENIED", "denied") }
	e := fetchErr(t, p)
	if e.Variable != EnvCredentials || !strings.Contains(e.Error(), "service account reader@key-proj.iam.gserviceaccount.com") ||
		strings.Contains(e.Error(), "sa-token") {
		t.Fatalf("403: %+v", e)
	}
	// The token endpoint refuses the key: a rejection naming the file.
	o.status = 400
	p2 := open(t, env)
	defer p2.Close()
	if e := fetchErr(t, p2); !msaerr.IsRejection(e) || e.Variable != EnvCredentials || !strings.Contains(e.Error(), "invalid_grant") {
		t.Fatalf("refused key: %+v", e)
	}
	// A token endpoint that fails is a plain (retryable) failure.
	o.status = 503
	p3 := open(t, env)
	defer p3.Close()
	if e := fetchErr(t, p3); msaerr.IsRejection(e) || e.Code != msaerr.Backend {
		t.Fatalf("failing token endpoint: %+v", e)
	}
}

func TestTokenRedirectIsNotFollowed(t *testing.T) {
	var got atomic.Int32
	thief := quiet(httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		writeJSON(w, 200, map[string]any{"access_token": "x", "expires_in": 3600})
	})))
	defer thief.Close()
	redirector := quiet(httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, thief.URL+"/token", http.StatusTemporaryRedirect)
	})))
	defer redirector.Close()
	f := &fakeSM{token: "x", respond: payload("v", "")}
	env := startSM(t, f, nil)
	env[EnvCredentials], _ = serviceAccountKey(t, redirector.URL+"/token")
	p := open(t, env)
	defer p.Close()
	fetchErr(t, p)
	if got.Load() != 0 || len(f.seen()) != 0 {
		t.Fatalf("the redirect was followed: %d token requests at its target, %d secret reads", got.Load(), len(f.seen()))
	}
}

func TestGcloudFileAuthorizedUser(t *testing.T) {
	var form atomic.Value
	oauth := quiet(httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		form.Store(r.PostForm.Encode())
		if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != "refresh-1" {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant"})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": "user-token", "expires_in": 3600, "token_type": "Bearer"})
	})))
	defer oauth.Close()
	f := &fakeSM{token: "user-token", respond: payload("from-user", "")}
	env := startSM(t, f, nil)
	env[EnvProject] = "user-proj"
	b, _ := json.Marshal(map[string]string{"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
		"client_secret": "csecret", "refresh_token": "refresh-1", "token_uri": oauth.URL + "/token"})
	if err := os.WriteFile(filepath.Join(env[EnvCloudSDK], "application_default_credentials.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := open(t, env)
	defer p.Close()
	if c, err := p.Fetch(context.Background()); err != nil || c.Token != "from-user" {
		t.Fatalf("%+v %v (token request %v)", c, err, form.Load())
	}
	if p.creds.variable != EnvCloudSDK || !strings.Contains(p.creds.identity, "authorized_user") {
		t.Fatalf("creds %+v", p.creds)
	}
}

func TestCredentialFileErrors(t *testing.T) {
	env := startSM(t, &fakeSM{}, nil)
	dir := t.TempDir()
	for _, tc := range []struct{ content, says string }{
		{`not json`, "not a JSON credentials file"},
		{`{"installed":{"client_id":"x"}}`, `credential type ""`},
		{`{"type":"external_account"}`, "cannot use"},
	} {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		env[EnvCredentials] = path
		_, err := build(env)
		if e := msaerr.As(err); err == nil || e.Code != msaerr.NotConfigured || e.Variable != EnvCredentials || !strings.Contains(e.Error(), tc.says) {
			t.Errorf("%s: %v", tc.content, err)
		}
	}
	// A key that does not parse fails at the first token, naming the file.
	path := filepath.Join(dir, "bad-key.json")
	if err := os.WriteFile(path, []byte(`{"type":"service_account","private_key":"secret-key-bytes","client_email":"a@b"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env[EnvCredentials], env[EnvProject] = path, "p"
	p, err := build(env)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if e := fetchErr(t, p); e.Variable != EnvCredentials || !strings.Contains(e.Error(), "service account a@b") || strings.Contains(e.Error(), "secret-key-bytes") {
		t.Errorf("bad key: %+v", e)
	}
	env[EnvCredentials] = filepath.Join(dir, "missing.json")
	if _, err := build(env); msaerr.As(err).Variable != EnvCredentials {
		t.Errorf("missing file: %v", err)
	}
}

func TestNoCredentialsSaysWhatWasTried(t *testing.T) {
	// Nothing listens at the metadata address, and no gcloud file exists.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := defaultMetadataHost
	defaultMetadataHost = l.Addr().String()
	l.Close()
	t.Cleanup(func() { defaultMetadataHost = old })
	env := startSM(t, &fakeSM{}, nil)
	_, err = build(env)
	e := msaerr.As(err)
	for _, s := range []string{"no Google credentials found", EnvCredentials + " is not set", "gcloud's file", "no metadata server answered"} {
		if !strings.Contains(e.Error(), s) {
			t.Errorf("%q does not say %q", e.Error(), s)
		}
	}
	if e.Code != msaerr.NotConfigured || e.Variable != EnvCredentials {
		t.Errorf("%+v", e)
	}
}

func TestNoProject(t *testing.T) {
	env := startSM(t, &fakeSM{}, &fakeMetadata{token: "t"}) // the metadata server names no project
	_, err := build(env)
	if e := msaerr.As(err); e.Variable != EnvProject || !strings.Contains(e.Error(), "no Google Cloud project") {
		t.Fatalf("%v", err)
	}
}

func TestUnreachableAndBadAnswers(t *testing.T) {
	f := &fakeSM{token: "t"}
	env := startSM(t, f, &fakeMetadata{token: "t", project: "p"})
	p := open(t, env)
	defer p.Close()
	for _, tc := range []struct{ body, says string }{
		{`{}`, "not a Secret Manager payload"},
		{`{"payload":{"data":"%%%"}}`, "not base64"},
		{`{"payload":{"data":""}}`, "empty"},
	} {
		f.respond = func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, tc.body) }
		if e := fetchErr(t, p); !strings.Contains(e.Error(), tc.says) {
			t.Errorf("%s: %v", tc.body, e)
		}
	}
	// Nothing listens at the endpoint: unavailable, not a rejection.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	env[EnvEndpoint] = "https://" + addr
	p2 := open(t, env)
	defer p2.Close()
	if e := fetchErr(t, p2); msaerr.IsRejection(e) || e.Variable != EnvEndpoint || !strings.Contains(e.Error(), "cannot reach") {
		t.Errorf("unreachable: %+v", e)
	}
	// The endpoint's certificate is not trusted without the CA bundle.
	delete(env, EnvCABundle)
	env[EnvEndpoint] = startSM(t, f, nil)[EnvEndpoint]
	p3 := open(t, env)
	defer p3.Close()
	if e := fetchErr(t, p3); !strings.Contains(e.Error(), "certificate") {
		t.Errorf("untrusted: %+v", e)
	}
}
