package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// A JWT-shaped test token (header {"alg":"none"}); its content is what the
// fake Vault checks.
func testJWT(name string) string {
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+name+`"}`)) + ".c2ln"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func jwtEnv(addr, file string) config.Env {
	return config.Env{"VAULT_ADDR": addr, "MLFLOW_VAULT_JWT_ROLE": "ci", "MLFLOW_VAULT_JWT_PATH": file,
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}
}

func k8sEnv(addr, file string) config.Env {
	return config.Env{"VAULT_ADDR": addr, "MLFLOW_VAULT_K8S_ROLE": "trainer", "MLFLOW_VAULT_K8S_TOKEN_PATH": file,
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}
}

// The token file is read at every Fetch; when its content changes, the next
// Fetch logs in with the new JWT before the old login's token is used, and
// that token is revoked.
func TestWorkloadLoginFollowsTheRotatedFile(t *testing.T) {
	for _, c := range []struct {
		method string
		env    func(addr, file string) config.Env
		mount  string
		role   string
	}{{"jwt", jwtEnv, "jwt", "ci"}, {"kubernetes", k8sEnv, "kubernetes", "trainer"}} {
		t.Run(c.method, func(t *testing.T) {
			f := newFakeVault()
			f.putV2("a", map[string]any{"token": "t"}, 1)
			f.jwtMounts = map[string]string{c.mount: c.role}
			first, second := testJWT("first"), testJWT("second")
			f.goodJWTs = map[string]bool{first: true, second: true}
			srv := f.start(t)
			file := filepath.Join(t.TempDir(), "token")
			writeFile(t, file, first+"\n")
			p := open(t, c.env(srv.URL, file))
			revoked := make(chan string, 1)
			p.revoked = func(tok string) { revoked <- tok }
			mustFetch(t, p)
			mustFetch(t, p) // same file: the login is kept
			f.mu.Lock()
			logins, seen := f.logins, append([]string(nil), f.jwtsSeen...)
			f.mu.Unlock()
			if logins != 1 || len(seen) != 1 || seen[0] != first {
				t.Fatalf("logins %d with %v", logins, seen)
			}
			writeFile(t, file, second)
			mustFetch(t, p)
			f.mu.Lock()
			logins, seen = f.logins, append([]string(nil), f.jwtsSeen...)
			last := f.tokensSeen[len(f.tokensSeen)-1]
			loginTokens := append([]string(nil), f.loginTokens...)
			f.mu.Unlock()
			if logins != 2 || len(seen) != 2 || seen[1] != second || len(loginTokens) != 2 {
				t.Fatalf("after rotation: logins %d with %v", logins, seen)
			}
			if last != "jwt-token-2" {
				t.Errorf("the read after rotation used %q, not the new login's token", last)
			}
			if loginTokens[1] != "" {
				t.Errorf("the old token was sent with the new login: %q", loginTokens[1])
			}
			select {
			case tok := <-revoked:
				if tok != "jwt-token-1" {
					t.Errorf("revoked %q", tok)
				}
			case <-time.After(5 * time.Second):
				t.Error("the replaced token was not revoked")
			}
			f.mu.Lock()
			if f.tokens["jwt-token-1"] {
				t.Error("the replaced token is still valid at the server")
			}
			f.mu.Unlock()
		})
	}
}

// A refused login names the role variable and the file, never the JWT (even
// when the server quotes it), and is a rejection.
func TestWorkloadLoginRefused(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	f.jwtMounts = map[string]string{"jwt": "ci", "kubernetes": "trainer"}
	f.goodJWTs = map[string]bool{}
	srv := f.start(t)
	file := filepath.Join(t.TempDir(), "token")
	bad := testJWT("bad")
	writeFile(t, file, bad)
	for _, c := range []struct {
		env     config.Env
		roleVar string
		fileVar string
	}{{jwtEnv(srv.URL, file), EnvJWTRole, EnvJWTPath}, {k8sEnv(srv.URL, file), EnvK8sRole, EnvK8sTokenPath}} {
		_, err := open(t, c.env).Fetch(context.Background())
		e := msaerr.As(err)
		if err == nil || e.Variable != c.roleVar || !strings.Contains(e.Error(), c.roleVar+"=") ||
			!strings.Contains(e.Error(), c.fileVar+"="+file) || !strings.Contains(e.Error(), "invalid audience") {
			t.Errorf("refused login: [%s] %v", e.Variable, err)
		}
		if strings.Contains(e.Error(), bad) || strings.Contains(e.Error(), "eyJ") {
			t.Errorf("the JWT leaks: %v", err)
		}
		if !msaerr.IsRejection(err) {
			t.Errorf("a refused login is not a rejection: %v", err)
		}
	}
	// An unknown role: named too.
	f.goodJWTs[bad] = true
	env := jwtEnv(srv.URL, file)
	env[EnvJWTRole] = "nobody"
	if e := fetchErr(t, open(t, env)); e.Variable != EnvJWTRole || !strings.Contains(e.Error(), `role "nobody" could not be found`) {
		t.Errorf("unknown role: [%s] %v", e.Variable, e)
	}
	// The method is not enabled at the mount: 404 names the mount variable.
	env = jwtEnv(srv.URL, file)
	env[EnvJWTMount] = "/elsewhere/"
	if e := fetchErr(t, open(t, env)); e.Variable != EnvJWTMount || !strings.Contains(e.Error(), "MLFLOW_VAULT_JWT_MOUNT=elsewhere") {
		t.Errorf("missing mount: [%s] %v", e.Variable, e)
	}
	// An empty or vanished file names the file's variable, and is no
	// rejection (the source is unavailable, not refusing).
	writeFile(t, file, " \n")
	_, err := open(t, jwtEnv(srv.URL, file)).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != EnvJWTPath || !strings.Contains(e.Error(), "is empty") || msaerr.IsRejection(err) {
		t.Errorf("empty file: %v", err)
	}
	p := open(t, jwtEnv(srv.URL, file))
	_ = os.Remove(file)
	_, err = p.Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != EnvJWTPath || msaerr.IsRejection(err) {
		t.Errorf("vanished file: %v", err)
	}
}

// The aws method signs sts:GetCallerIdentity with the SDK's credentials and
// sends what Vault's aws auth method replays to STS.
func TestAWSIAMLogin(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	f.awsMount = "aws"
	srv := f.start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDVAULTLOGIN")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "")
	env := config.Env{"VAULT_ADDR": srv.URL, "MLFLOW_VAULT_AWS_ROLE": "dev-role", "MLFLOW_VAULT_AWS_HEADER_VALUE": "vault.example.com",
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	mustFetch(t, open(t, env))
	if len(f.awsLogins) != 1 {
		t.Fatalf("logins: %v", f.awsLogins)
	}
	body := f.awsLogins[0]
	dec := func(k string) string {
		b, err := base64.StdEncoding.DecodeString(body[k].(string))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return string(b)
	}
	if body["iam_http_request_method"] != "POST" || dec("iam_request_url") != "https://sts.amazonaws.com/" ||
		dec("iam_request_body") != "Action=GetCallerIdentity&Version=2011-06-15" {
		t.Errorf("login body: %v", body)
	}
	var headers http.Header
	if err := json.Unmarshal([]byte(dec("iam_request_headers")), &headers); err != nil {
		t.Fatal(err)
	}
	auth := headers.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDVAULTLOGIN/") || !strings.Contains(auth, "/us-east-1/sts/aws4_request") ||
		!strings.Contains(auth, "x-vault-aws-iam-server-id") || !strings.Contains(auth, "host") ||
		headers.Get("X-Vault-AWS-IAM-Server-ID") != "vault.example.com" || headers.Get("X-Amz-Date") == "" {
		t.Errorf("signed headers: %v", headers)
	}
	if strings.Contains(dec("iam_request_headers"), "wJalrXUtnFEMI") {
		t.Error("the secret key is in the login")
	}
	// Another region signs for its regional endpoint; a refused role is
	// named, and is a rejection.
	env["MLFLOW_VAULT_AWS_REGION"] = "eu-west-1"
	env["MLFLOW_VAULT_AWS_ROLE"] = "other-role"
	_, err := open(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != EnvAWSRole || !msaerr.IsRejection(err) || !strings.Contains(e.Error(), "AWS identity") {
		t.Errorf("refused role: %v", err)
	}
	if u := f.awsLogins[1]["iam_request_url"].(string); u != base64.StdEncoding.EncodeToString([]byte("https://sts.eu-west-1.amazonaws.com/")) {
		t.Errorf("regional endpoint: %s", u)
	}
	// No credentials anywhere: named, and unavailable (not a rejection).
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "")
	_, err = open(t, env).Fetch(context.Background())
	if e := msaerr.As(err); err == nil || e.Variable != "AWS_PROFILE" || msaerr.IsRejection(err) || !strings.Contains(e.Error(), EnvAWSRole) {
		t.Errorf("no credentials: %v", err)
	}
}

// Agent mode: requests go to the agent without any token, nothing logs in or
// renews, and the details say the agent authenticates.
func TestAgentMode(t *testing.T) {
	f := newFakeVault()
	f.putV2("a", map[string]any{"token": "t"}, 1)
	f.tokens[""] = true // the agent adds its own token to a request that has none
	srv := f.start(t)
	t.Setenv("VAULT_TOKEN", "process-env-token") // the Vault API client reads it; never sent
	for _, env := range []config.Env{
		{"VAULT_AGENT_ADDR": srv.URL, "MLFLOW_VAULT_SECRET_PATH": "secret/a"},
		{"BAO_AGENT_ADDR": srv.URL, "MLFLOW_VAULT_SECRET_PATH": "secret/a"},
		{"VAULT_ADDR": srv.URL, "MLFLOW_VAULT_AUTH_METHOD": "agent", "MLFLOW_VAULT_SECRET_PATH": "secret/a"},
		{"VAULT_AGENT_ADDR": srv.URL, "VAULT_ADDR": "https://vault.example.com", "MLFLOW_VAULT_SECRET_PATH": "secret/a"},
	} {
		sp := mustSpec(t, env)
		if m := detail(sp.Details, "auth method"); m != "agent (the agent at "+srv.URL+" authenticates)" {
			t.Errorf("%v: auth method %q", env, m)
		}
		if a := detail(sp.Details, "address"); a != srv.URL {
			t.Errorf("%v: address %q", env, a)
		}
		mustFetch(t, open(t, env))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tok := range f.tokensSeen {
		if tok != "" {
			t.Errorf("a token was sent to the agent: %q", tok)
		}
	}
	if f.logins != 0 || f.renews != 0 {
		t.Errorf("logins %d, renews %d", f.logins, f.renews)
	}
}

func detail(details [][2]string, key string) string {
	for _, d := range details {
		if d[0] == key {
			return d[1]
		}
	}
	return ""
}

func TestMethodSelection(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "jwt")
	writeFile(t, file, testJWT("x"))
	all := config.Env{"VAULT_ADDR": "https://vault.example.com", "MLFLOW_VAULT_SECRET_PATH": "secret/a",
		"VAULT_TOKEN": "s.tok3n-value", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s3cr3t-id",
		"MLFLOW_VAULT_K8S_ROLE": "trainer", "MLFLOW_VAULT_K8S_TOKEN_PATH": file,
		"MLFLOW_VAULT_JWT_ROLE": "ci", "MLFLOW_VAULT_JWT_PATH": file, "MLFLOW_VAULT_AWS_ROLE": "dev-role"}
	// The documented order, and each one chosen by the selector.
	order := []struct{ drop, want string }{
		{"", "token (VAULT_TOKEN)"},
		{"VAULT_TOKEN", "approle (mount approle)"},
		{"VAULT_ROLE_ID VAULT_SECRET_ID", "kubernetes (mount kubernetes, role trainer, token file " + file + ")"},
		{"MLFLOW_VAULT_K8S_ROLE", "jwt (mount jwt, role ci, token file " + file + ")"},
		{"MLFLOW_VAULT_JWT_ROLE MLFLOW_VAULT_JWT_PATH", "aws iam (mount aws, role dev-role, signed for us-east-1)"},
	}
	env := config.Env{}
	for k, v := range all {
		env[k] = v
	}
	for _, o := range order {
		for _, k := range strings.Fields(o.drop) {
			delete(env, k)
		}
		sp := mustSpec(t, env)
		if m := detail(sp.Details, "auth method"); m != o.want {
			t.Errorf("without %s: %q, want %q", o.drop, m, o.want)
		}
	}
	for sel, want := range map[string]string{"approle": "approle", "kubernetes": "kubernetes", "jwt": "jwt (", "aws": "aws iam", "token": "token",
		"AGENT": "agent (the agent at https://vault.example.com authenticates)"} {
		e := config.Env{"MLFLOW_VAULT_AUTH_METHOD": sel}
		for k, v := range all {
			e[k] = v
		}
		sp := mustSpec(t, e)
		if m := detail(sp.Details, "auth method"); !strings.HasPrefix(m, want) {
			t.Errorf("selector %s: %q", sel, m)
		}
		// The other methods' settings are named as unused.
		if sel != "token" && !strings.Contains(strings.Join(sp.Warnings, " "), "the token auth method is also configured and is not used") {
			t.Errorf("selector %s: warnings %q", sel, sp.Warnings)
		}
		for _, w := range sp.Warnings {
			if strings.Contains(w, "s.tok3n-value") || strings.Contains(w, "s3cr3t-id") {
				t.Errorf("a warning leaks a credential: %q", w)
			}
		}
	}
	// A selector naming a method whose settings are missing names the
	// missing variable; an unknown selector names the selector.
	base := config.Env{"VAULT_ADDR": "https://vault.example.com", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}
	for sel, variable := range map[string]string{"token": "VAULT_TOKEN", "approle": "VAULT_ROLE_ID", "cert": "VAULT_CLIENT_CERT",
		"kubernetes": EnvK8sRole, "jwt": EnvJWTRole, "aws": EnvAWSRole, "ldap": EnvAuthMethod} {
		e := config.Env{"MLFLOW_VAULT_AUTH_METHOD": sel}
		for k, v := range base {
			e[k] = v
		}
		_, err := Factory(e, shared)
		if me := msaerr.As(err); err == nil || me.Code != msaerr.NotConfigured || me.Variable != variable || !strings.Contains(me.Error(), variable) {
			t.Errorf("selector %s: %v", sel, err)
		}
	}
	for change, variable := range map[string]string{
		"MLFLOW_VAULT_JWT_ROLE=ci":                                         EnvJWTPath,
		"MLFLOW_VAULT_JWT_PATH=" + file:                                    EnvJWTRole,
		"MLFLOW_VAULT_JWT_ROLE=ci MLFLOW_VAULT_JWT_PATH=/nonexistent/jwt":  EnvJWTPath,
		"MLFLOW_VAULT_K8S_ROLE=trainer MLFLOW_VAULT_K8S_TOKEN_PATH=" + dir: EnvK8sTokenPath,
		"MLFLOW_VAULT_AUTH_METHOD=agent VAULT_ADDR=":                       "VAULT_ADDR",
		"MLFLOW_VAULT_AUTH_METHOD=approle VAULT_SECRET_ID=x":               "VAULT_ROLE_ID",
	} {
		e := config.Env{}
		for k, v := range base {
			e[k] = v
		}
		for _, kv := range strings.Fields(change) {
			k, v, _ := strings.Cut(kv, "=")
			e[k] = v
		}
		_, err := Factory(e, shared)
		if me := msaerr.As(err); err == nil || me.Variable != variable {
			t.Errorf("%s: %v", change, err)
		}
	}
	// The default Kubernetes token path.
	sp := mustSpec(t, config.Env{"VAULT_AGENT_ADDR": "http://127.0.0.1:8100", "MLFLOW_VAULT_SECRET_PATH": "secret/a",
		"MLFLOW_VAULT_AUTH_METHOD": "agent"})
	if s := sp.Settings.(Settings); s.K8sTokenPath != DefaultK8sTokenPath || s.K8sMount != "kubernetes" || s.JWTMount != "jwt" || s.AWSMount != "aws" {
		t.Errorf("defaults: %+v", s)
	}
}

// The agent address follows the family and cleartext rules of VAULT_ADDR.
func TestAgentAddressRules(t *testing.T) {
	_, err := Factory(config.Env{"VAULT_AGENT_ADDR": "http://agent.example.com:8100", "MLFLOW_VAULT_SECRET_PATH": "secret/a"}, shared)
	if e := msaerr.As(err); err == nil || e.Variable != "VAULT_AGENT_ADDR" || !strings.Contains(e.Error(), "MLFLOW_SECRETS_ALLOW_HTTP") {
		t.Errorf("cleartext agent: %v", err)
	}
	_, err = Factory(config.Env{"BAO_AGENT_ADDR": "http://127.0.0.1:8100", "VAULT_NAMESPACE": "team",
		"MLFLOW_VAULT_SECRET_PATH": "secret/a"}, shared)
	if e := msaerr.As(err); err == nil || e.Variable != "VAULT_NAMESPACE" || !strings.Contains(e.Error(), "BAO_AGENT_ADDR") {
		t.Errorf("family mix: %v", err)
	}
	sp := mustSpec(t, config.Env{"BAO_AGENT_ADDR": "http://127.0.0.1:8100", "BAO_NAMESPACE": "team", "MLFLOW_VAULT_SECRET_PATH": "secret/a"})
	if s := sp.Settings.(Settings); s.Vars.Addr != "BAO_AGENT_ADDR" || s.Namespace != "team" || s.Method != methodAgent {
		t.Errorf("BAO agent: %+v", s.Vars)
	}
	// Another method selected: VAULT_AGENT_ADDR is not the address.
	sp = mustSpec(t, config.Env{"VAULT_AGENT_ADDR": "http://127.0.0.1:8100", "VAULT_ADDR": "https://vault.example.com",
		"VAULT_TOKEN": "t", "MLFLOW_VAULT_AUTH_METHOD": "token", "MLFLOW_VAULT_SECRET_PATH": "secret/a"})
	if s := sp.Settings.(Settings); s.Addr != "https://vault.example.com" || s.Method != methodToken {
		t.Errorf("token selected: %+v", s)
	}
}
