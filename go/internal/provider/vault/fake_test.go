package vault

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeVault serves the Vault HTTP endpoints the provider uses, with Vault's
// own status codes and JSON shapes:
//
//	PUT  /v1/auth/<mount>/login            AppRole login
//	PUT  /v1/auth/<certMount>/login        cert login (TLS client certificate)
//	PUT  /v1/auth/token/renew-self         renewal (LifetimeWatcher)
//	GET  /v1/auth/token/lookup-self        token check
//	GET  /v1/sys/internal/ui/mounts/<path> mount and KV version
//	GET  /v1/<mount>/data/<path>           KV v2 read
//	GET  /v1/<mount>/<path>                KV v1 read
type fakeVault struct {
	mu           sync.Mutex
	mounts       map[string]fakeMount      // "secret/" -> engine
	kv           map[string]map[string]any // full API path -> KV v1 data, or KV v2 {"data":..., "metadata":...}
	deny         map[string]bool           // API paths the tokens' policy denies
	tokens       map[string]bool           // valid tokens
	appRoleMount string
	certMount    string // cert auth: login with a TLS client certificate whose CN is certCN
	certCN       string
	certRole     string // when set, a cert login must name it
	roleID       string
	secretID     string
	loginLease   int  // lease_duration of login tokens
	renewable    bool // of login tokens
	renewLease   int  // lease_duration returned by renew-self
	fail         map[string]int
	namespace    string            // when set, every request must carry it
	jwtMounts    map[string]string // kubernetes/jwt auth: mount -> the role it knows
	goodJWTs     map[string]bool   // the JWTs those mounts accept
	jwtsSeen     []string          // the JWT of each kubernetes/jwt login
	awsMount     string            // aws auth (iam type): login bodies are recorded
	awsLogins    []map[string]any
	loginTokens  []string // X-Vault-Token sent with each login

	logins      int
	certLogins  int
	renews      int
	namespaces  []string // X-Vault-Namespace of each request
	tokensSeen  []string // X-Vault-Token of each KV read
	lastTokenID int
}

type fakeMount struct {
	engine  string
	version string
}

func newFakeVault() *fakeVault {
	return &fakeVault{
		mounts:       map[string]fakeMount{"secret/": {"kv", "2"}, "kv1/": {"kv", "1"}, "pki/": {"pki", ""}},
		kv:           map[string]map[string]any{},
		deny:         map[string]bool{},
		tokens:       map[string]bool{"root-token": true},
		appRoleMount: "approle",
		certMount:    "cert",
		certCN:       "client.test",
		roleID:       "role-1",
		secretID:     "secret-id-1",
		fail:         map[string]int{},
	}
}

// putV2 stores a KV v2 secret's latest version.
func (f *fakeVault) putV2(path string, data map[string]any, version int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv["secret/data/"+path] = map[string]any{"data": data, "metadata": map[string]any{
		"created_time": "2026-01-01T00:00:00Z", "deletion_time": "", "destroyed": false, "version": version}}
}

func (f *fakeVault) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range f.tokens {
		if t != "root-token" {
			delete(f.tokens, t)
		}
	}
}

func (f *fakeVault) certCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.certLogins
}

func (f *fakeVault) counts() (logins, renews int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.renews
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(body) // no trailing newline: the client reads the body to its end and reuses the connection
	_, _ = w.Write(b)
}

func errorsBody(msgs ...string) map[string]any { return map[string]any{"errors": msgs} }

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	f.namespaces = append(f.namespaces, r.Header.Get("X-Vault-Namespace"))
	if f.fail[path] > 0 {
		f.fail[path]--
		reply(w, http.StatusInternalServerError, errorsBody("internal error"))
		return
	}
	if f.namespace != "" && r.Header.Get("X-Vault-Namespace") != f.namespace {
		reply(w, http.StatusForbidden, errorsBody("permission denied"))
		return
	}
	token := r.Header.Get("X-Vault-Token")
	switch {
	case strings.HasSuffix(path, "/login") && f.jwtMounts[strings.TrimSuffix(strings.TrimPrefix(path, "auth/"), "/login")] != "":
		var body struct {
			Role string `json:"role"`
			JWT  string `json:"jwt"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.jwtsSeen = append(f.jwtsSeen, body.JWT)
		f.loginTokens = append(f.loginTokens, token)
		if body.Role != f.jwtMounts[strings.TrimSuffix(strings.TrimPrefix(path, "auth/"), "/login")] {
			reply(w, http.StatusBadRequest, errorsBody(fmt.Sprintf("role %q could not be found", body.Role)))
			return
		}
		if !f.goodJWTs[body.JWT] {
			// Quotes the token back, as a careless server might.
			reply(w, http.StatusBadRequest, errorsBody("error validating token: invalid audience (aud) claim in "+body.JWT))
			return
		}
		f.logins++
		f.lastTokenID++
		tok := fmt.Sprintf("jwt-token-%d", f.lastTokenID)
		f.tokens[tok] = true
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "policies": []string{"default"},
			"lease_duration": f.loginLease, "renewable": f.renewable}})
		return
	case f.awsMount != "" && path == "auth/"+f.awsMount+"/login":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.awsLogins = append(f.awsLogins, body)
		if body["role"] != "dev-role" {
			reply(w, http.StatusBadRequest, errorsBody("entry for role dev-role not found"))
			return
		}
		f.logins++
		f.lastTokenID++
		tok := fmt.Sprintf("aws-token-%d", f.lastTokenID)
		f.tokens[tok] = true
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "policies": []string{"default"},
			"lease_duration": f.loginLease, "renewable": f.renewable}})
		return
	case path == "auth/token/revoke-self":
		delete(f.tokens, token)
		w.WriteHeader(http.StatusNoContent)
		return
	case path == "auth/"+f.appRoleMount+"/login" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		var body struct {
			RoleID   string `json:"role_id"`
			SecretID string `json:"secret_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body.RoleID != f.roleID || body.SecretID != f.secretID {
			reply(w, http.StatusBadRequest, errorsBody("invalid role or secret ID"))
			return
		}
		f.logins++
		f.lastTokenID++
		tok := fmt.Sprintf("approle-token-%d", f.lastTokenID)
		f.tokens[tok] = true
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "policies": []string{"default"},
			"lease_duration": f.loginLease, "renewable": f.renewable}})
		return
	case path == "auth/"+f.certMount+"/login" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		var body struct {
			Name string `json:"name"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		// As Vault's cert backend: the certificate comes from the TLS
		// connection; a wrong one, or a role that does not match, is a 400.
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != f.certCN ||
			f.certRole != "" && body.Name != f.certRole {
			reply(w, http.StatusBadRequest, errorsBody("invalid certificate or no client certificate supplied"))
			return
		}
		f.certLogins++
		f.lastTokenID++
		tok := fmt.Sprintf("cert-token-%d", f.lastTokenID)
		f.tokens[tok] = true
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "policies": []string{"default"},
			"lease_duration": f.loginLease, "renewable": f.renewable}})
		return
	case !f.tokens[token]:
		reply(w, http.StatusForbidden, errorsBody("permission denied"))
		return
	case path == "auth/token/renew-self":
		f.renews++
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": token, "policies": []string{"default"},
			"lease_duration": f.renewLease, "renewable": true}})
		return
	case path == "auth/token/lookup-self":
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{"id": "x", "ttl": 0}})
		return
	case strings.HasPrefix(path, "sys/internal/ui/mounts/"):
		rest := strings.TrimPrefix(path, "sys/internal/ui/mounts/")
		m, mount := f.mountOf(rest)
		if mount == "" || f.deny[rest] {
			reply(w, http.StatusForbidden, errorsBody(fmt.Sprintf(
				"preflight capability check returned 403, please ensure client's policies grant access to path %q", rest+"/")))
			return
		}
		opts := map[string]any{}
		if m.version != "" {
			opts["version"] = m.version
		}
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{"path": mount, "type": m.engine, "options": opts}})
		return
	}
	if _, mount := f.mountOf(path); mount == "" {
		reply(w, http.StatusNotFound, errorsBody(fmt.Sprintf("no handler for route %q. route entry not found.", path)))
		return
	}
	if f.deny[path] {
		reply(w, http.StatusForbidden, errorsBody("1 error occurred:\n\t* permission denied\n\n"))
		return
	}
	f.tokensSeen = append(f.tokensSeen, token)
	data, ok := f.kv[path]
	if !ok {
		reply(w, http.StatusNotFound, errorsBody())
		return
	}
	status := http.StatusOK
	if d, isV2 := data["data"]; isV2 && d == nil {
		status = http.StatusNotFound // a deleted or destroyed latest version
	}
	reply(w, status, map[string]any{"data": data})
}

func (f *fakeVault) mountOf(path string) (fakeMount, string) {
	best := ""
	for m := range f.mounts {
		if strings.HasPrefix(path+"/", m) && len(m) > len(best) {
			best = m
		}
	}
	return f.mounts[best], best
}

func (f *fakeVault) start(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

// startTLS serves f over HTTPS with a certificate for vault.test and
// 127.0.0.1, asking for (not requiring) a client certificate, and returns the
// server and the files of its CA and of a client certificate with CN
// client.test.
func (f *fakeVault) startTLS(t *testing.T) (srv *httptest.Server, caFile, clientCert, clientKey string) {
	t.Helper()
	dir := t.TempDir()
	caFile, _, serverCert := selfSigned(t, dir, "vault.test")
	clientCert, clientKey, _ = selfSigned(t, dir, "client.test")
	srv = httptest.NewUnstartedServer(f)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, caFile, clientCert, clientKey
}
