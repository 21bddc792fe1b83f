package aws

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go/logging"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
)

// fakeSM answers Secrets Manager's GetSecretValue in the AWS JSON 1.1
// protocol: a JSON body, and errors as X-Amzn-ErrorType plus "__type".
type fakeSM struct {
	mu       sync.Mutex
	requests []map[string]string // decoded request bodies
	auth     []string            // Authorization headers
	respond  func(w http.ResponseWriter, in map[string]string)
}

func (f *fakeSM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in map[string]string
	_ = json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	f.requests = append(f.requests, in)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	respond := f.respond
	f.mu.Unlock()
	if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" {
		awsError(w, http.StatusBadRequest, "UnknownOperationException", "unexpected "+r.Header.Get("X-Amz-Target"))
		return
	}
	respond(w, in)
}

func awsJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	b, _ := json.Marshal(body) // no trailing newline: the client reads the body to its end and reuses the connection
	_, _ = w.Write(b)
}

func awsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	awsJSON(w, status, map[string]string{"__type": code, "message": msg})
}

func secretString(v string) func(http.ResponseWriter, map[string]string) {
	return func(w http.ResponseWriter, in map[string]string) {
		awsJSON(w, http.StatusOK, map[string]any{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + in["SecretId"],
			"Name": in["SecretId"], "SecretString": v, "VersionId": "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE", "VersionStages": []string{"AWSCURRENT"}})
	}
}

// start serves f and points the SDK at it with static credentials and no
// shared config, through the process environment the SDK reads.
func start(t *testing.T, f *fakeSM) (*httptest.Server, config.Env) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	env := config.Env{
		"AWS_ACCESS_KEY_ID":                "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY":            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"AWS_REGION":                       "us-east-1",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": srv.URL,
		"AWS_CONFIG_FILE":                  "/nonexistent",
		"AWS_SHARED_CREDENTIALS_FILE":      "/nonexistent",
		"AWS_EC2_METADATA_DISABLED":        "true",
		"AWS_CA_BUNDLE":                    "",
		"AWS_PROFILE":                      "",
		"MLFLOW_AWS_SECRET_ID":             "mlflow/auth",
		"MLFLOW_AWS_MAX_RETRIES":           "0",
	}
	for k, v := range env {
		if strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, v)
		}
	}
	return srv, env
}

func openProvider(t *testing.T, env config.Env) *Provider {
	t.Helper()
	sp, err := Factory(env, &config.Config{Timeout: 5 * time.Second, MaxRetries: 2})
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	p, err := sp.New(context.Background())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p.(*Provider)
}

func TestFetchStringBinaryAndVersions(t *testing.T) {
	f := &fakeSM{respond: secretString(`{"token":"tok-1"}`)}
	_, env := start(t, f)
	c, err := openProvider(t, env).Fetch(context.Background())
	if err != nil || c.Token != "tok-1" {
		t.Fatalf("SecretString: %+v %v", c, err)
	}
	if !strings.HasPrefix(f.auth[0], "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") {
		t.Errorf("request not signed with the static keys: %q", f.auth[0])
	}
	if f.requests[0]["SecretId"] != "mlflow/auth" || f.requests[0]["VersionStage"] != "" || f.requests[0]["VersionId"] != "" {
		t.Errorf("request = %v", f.requests[0])
	}
	// A stage, then a version id, are sent as such.
	env["MLFLOW_AWS_SECRET_VERSION"] = "AWSPREVIOUS"
	if _, err := openProvider(t, env).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	env["MLFLOW_AWS_SECRET_VERSION"] = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"
	if _, err := openProvider(t, env).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.requests[1]["VersionStage"] != "AWSPREVIOUS" || f.requests[2]["VersionId"] != "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111" ||
		f.requests[2]["VersionStage"] != "" {
		t.Errorf("requests = %v", f.requests[1:])
	}
	delete(env, "MLFLOW_AWS_SECRET_VERSION")

	// SecretBinary: base64 on the wire, decoded once by the SDK.
	binary := func(b []byte) func(http.ResponseWriter, map[string]string) {
		return func(w http.ResponseWriter, _ map[string]string) {
			awsJSON(w, http.StatusOK, map[string]any{"Name": "mlflow/auth", "SecretBinary": base64.StdEncoding.EncodeToString(b)})
		}
	}
	f.respond = binary([]byte("alice:pässword"))
	if c, err := openProvider(t, env).Fetch(context.Background()); err != nil || c.Token != "alice:pässword" {
		t.Fatalf("SecretBinary: %+v %v", c, err)
	}
	f.respond = binary([]byte{'t', 'o', 'k', 0xff, 0xfe, 'x'})
	_, err = openProvider(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Code != msaerr.SecretUnusable || e.Variable != EnvSecretID ||
		!strings.Contains(e.Message, "not UTF-8") || strings.Contains(e.Error(), "tok") {
		t.Errorf("non-UTF-8 SecretBinary: %v", err)
	}
	// Neither (RotateSecret without a Lambda leaves a version without a value).
	f.respond = func(w http.ResponseWriter, _ map[string]string) {
		awsJSON(w, http.StatusOK, map[string]any{"Name": "mlflow/auth"})
	}
	if _, err := openProvider(t, env).Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "has no value") {
		t.Errorf("no value: %v", err)
	}
	// Content the secret parser refuses names the secret.
	f.respond = secretString(`{"token": ["not", "a", "string"]}`)
	if _, err := openProvider(t, env).Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "in secret mlflow/auth") {
		t.Errorf("bad content: %v", err)
	}
}

func TestErrorClasses(t *testing.T) {
	f := &fakeSM{}
	_, env := start(t, f)
	cases := []struct {
		status     int
		errType    string // "" sends a bare status without an error type
		version    string
		code       msaerr.Code
		variable   string
		contains   string
		wantSecret bool // the message names the secret
		rejected   bool // a definite refusal (msaerr.IsRejection), not an unavailable source
	}{
		{400, "ResourceNotFoundException", "", msaerr.Backend, EnvSecretID, "not found", true, true},
		{404, "ResourceNotFoundException", "AWSPENDING", msaerr.Backend, EnvSecretVersion, "stage AWSPENDING", true, true}, // moto: 404
		{400, "AccessDeniedException", "", msaerr.Backend, EnvSecretID, "secretsmanager:GetSecretValue", true, true},
		{400, "UnrecognizedClientException", "", msaerr.Backend, "AWS_ACCESS_KEY_ID", "credentials were rejected", false, true},
		{403, "InvalidSignatureException", "", msaerr.Backend, "AWS_ACCESS_KEY_ID", "credentials were rejected", false, true},
		{400, "ExpiredTokenException", "", msaerr.Backend, "AWS_ACCESS_KEY_ID", "credentials were rejected", false, true},
		{400, "DecryptionFailure", "", msaerr.Backend, EnvSecretID, "KMS", true, true},
		{400, "InvalidRequestException", "", msaerr.Backend, EnvSecretID, "marked for deletion", true, true},
		{400, "InvalidParameterException", "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111", msaerr.NotConfigured, EnvSecretVersion, "rejected the request", true, true},
		{500, "InternalServiceError", "", msaerr.Backend, "", "failed internally", true, false},
		{400, "ThrottlingException", "", msaerr.Backend, EnvMaxRetries, "throttled", true, false},
		{400, "SomethingNewException", "", msaerr.Backend, "", "SomethingNewException", true, true},
		{403, "", "", msaerr.Backend, "AWS_ACCESS_KEY_ID", "HTTP 403", true, true}, // moto with IAM checks, proxies
		{404, "", "", msaerr.Backend, EnvSecretID, "not found (HTTP 404)", true, true},
		{502, "", "", msaerr.Backend, "", "HTTP 502", true, false},
	}
	for _, c := range cases {
		f.respond = func(w http.ResponseWriter, _ map[string]string) {
			if c.errType == "" {
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte("<html>nope</html>"))
				return
			}
			msg := "details of " + c.errType
			if c.errType == "InvalidRequestException" {
				msg = "You can't perform this operation on the secret because it was marked for deletion."
			}
			awsError(w, c.status, c.errType, msg)
		}
		env["MLFLOW_AWS_SECRET_VERSION"] = c.version
		_, err := openProvider(t, env).Fetch(context.Background())
		e := msaerr.As(err)
		if err == nil || e.Code != c.code || e.Variable != c.variable || !strings.Contains(e.Error(), c.contains) ||
			strings.Contains(e.Error(), "mlflow/auth") != c.wantSecret {
			t.Errorf("%d %s: [%s %s] %v", c.status, c.errType, e.Code, e.Variable, err)
		}
		if msaerr.IsRejection(err) != c.rejected {
			t.Errorf("%d %s: IsRejection = %v, want %v", c.status, c.errType, !c.rejected, c.rejected)
		}
		if strings.HasPrefix(e.Error(), "aws-secrets-manager:") {
			t.Errorf("hand-written name prefix: %q", e)
		}
		if strings.Contains(e.Error(), "wJalrXUtnFEMI") {
			t.Errorf("the secret key leaks: %q", e)
		}
	}
}

func TestNetworkErrors(t *testing.T) {
	f := &fakeSM{respond: secretString("x")}
	_, env := start(t, f)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + l.Addr().String()
	_ = l.Close()
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://svc:hunter2pw@"+l.Addr().String())
	_, err = openProvider(t, env).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach Secrets Manager") || strings.Contains(err.Error(), "svc:") ||
		strings.Contains(err.Error(), "hunter2pw") || msaerr.IsRejection(err) {
		t.Errorf("refused: %v", err)
	}
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = openProvider(t, env).Fetch(ctx)
	if e := msaerr.As(err); err == nil || e.Variable != config.EnvTimeout || msaerr.IsRejection(err) {
		t.Errorf("hung endpoint: %v", err)
	}
	// No credentials anywhere.
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", closedURL)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "")
	_, err = openProvider(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != "AWS_PROFILE" || msaerr.IsRejection(err) {
		t.Errorf("no credentials: %v", err)
	}
}

func TestSettingsAreTheIdentity(t *testing.T) {
	env := config.Env{"MLFLOW_AWS_SECRET_ID": "x", "AWS_REGION": "us-east-1", "MLFLOW_SECRETS_MAX_RETRIES": "2"}
	key := func(c *config.Config) string {
		sp, err := Factory(env, c)
		if err != nil {
			t.Fatal(err)
		}
		return provider.KeyOf("aws", sp.Settings)
	}
	base := key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2})
	if base != key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2}) {
		t.Error("equal settings, different keys")
	}
	if base == key(&config.Config{Timeout: 3 * time.Second, MaxRetries: 2}) {
		t.Error("the shared timeout is not part of the identity")
	}
	if base == key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 5}) {
		t.Error("the shared retries are not part of the identity")
	}
	env["AWS_PROFILE"] = "other"
	if base == key(&config.Config{Timeout: 10 * time.Second, MaxRetries: 2}) {
		t.Error("the SDK's variables are not part of the identity")
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	f := &fakeSM{respond: secretString("tok")}
	_, env := start(t, f)
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	sp, err := Factory(env, &config.Config{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := sp.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := pr.(*Provider)
	// The SDK's client dials through the transport that Close closes.
	dials := 0
	dial := p.transport.DialContext
	p.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		return dial(ctx, network, addr)
	}
	for range 3 {
		if _, err := p.Fetch(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if dials == 0 {
		t.Error("the SDK did not use the provider's transport")
	}
	mu.Unlock()
	// The SDK ends each call's context as it returns, so a connection may or
	// may not go back to the idle pool; whatever is left must be closed by
	// Close. The pool is filled in the client's own goroutine: Close until
	// the server has no connection left (Close may be called more than once).
	deadline := time.After(10 * time.Second)
	for {
		p.Close()
		mu.Lock()
		n := len(open)
		mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%d connection(s) still open after Close", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// The SDK's default logger writes to stderr (a closed stderr would kill the
// host process with SIGPIPE); the client must log nowhere.
func TestSDKLogsNowhere(t *testing.T) {
	_, env := start(t, &fakeSM{respond: secretString("tok")})
	opts := openProvider(t, env).client.Options()
	if _, ok := opts.Logger.(logging.Nop); !ok {
		t.Errorf("the Secrets Manager client logs with %T", opts.Logger)
	}
	if opts.ClientLogMode != 0 {
		t.Errorf("client log mode %v", opts.ClientLogMode)
	}
}
