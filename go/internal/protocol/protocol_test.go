package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/trim"
)

type panicky struct{}

func (panicky) Fetch(context.Context) (secret.Credential, error) { panic("boom in fetch") }
func (panicky) Close()                                           {}

func TestPanicsBecomeInternalErrors(t *testing.T) {
	factories := map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: 1e9,
				New: func(context.Context) (provider.Provider, error) { return panicky{}, nil }}, nil
		},
		config.AWSSecretsManager: func(config.Env, *config.Config) (provider.Spec, error) { panic("boom in factory") },
	}
	e := engine.NewWith(nil, factories)
	// A fresh map per reply: a reused map would keep "code" from an earlier reply.
	if r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h"}`))); err != nil || r["ok"] != true {
		t.Fatalf("SetEnv: %v %v", r, err)
	}
	if r, err := decode(Headers(e, "https://h")); err != nil || r["ok"] != false || r["code"] != "internal" {
		t.Fatalf("fetch panic: %v %v", r, err)
	}
	r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"aws-secrets-manager"}`)))
	if err != nil || r["ok"] != false || r["code"] != "internal" || !strings.Contains(fmt.Sprint(r["message"]), "boom in factory") {
		t.Fatalf("factory panic: %v %v", r, err)
	}
}

func decode(b []byte) (map[string]any, error) {
	var r map[string]any
	err := json.Unmarshal(b, &r)
	return r, err
}

func TestFailureIsJSONWhateverTheMessage(t *testing.T) {
	for _, msg := range []string{"unknown op \u0001\"\n\x00", "\xff\xfe not UTF-8", strings.Repeat("é", 5000)} {
		r, err := decode(Failure(msg))
		if err != nil || r["ok"] != false || r["code"] != "internal" {
			t.Fatalf("Failure(%q) = %v, %v", msg, r, err)
		}
		if m := fmt.Sprint(r["message"]); len(m) > 1000 {
			t.Fatalf("echo not cut: %d bytes", len(m))
		}
	}
	if r, err := decode(ABI()); err != nil || r["abi"] != float64(ABIVersion) {
		t.Fatalf("ABI: %v %v", r, err)
	}
}

func TestReplies(t *testing.T) {
	e := engine.New(nil)
	if r, err := decode(SetEnv(e, []byte(`not json`))); err != nil || r["ok"] != false {
		t.Fatalf("bad env JSON: %v %v", r, err)
	}
	if r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h:1"}`))); err != nil || r["ok"] != true {
		t.Fatalf("SetEnv: %v %v", r, err)
	}
	if r, err := decode(Headers(e, "https://h:1")); err != nil || r["code"] != "not_configured" || r["variable"] != "VAULT_ADDR" {
		t.Fatalf("unconfigured vault: %v %v", r, err)
	}
	if r, err := decode(Info(e)); err != nil || r["abi"] != float64(ABIVersion) {
		t.Fatalf("info: %v %v", r, err)
	}
}

type staticTok struct{}

func (staticTok) Fetch(context.Context) (secret.Credential, error) {
	return secret.Credential{Token: "tok"}, nil
}
func (staticTok) Close() {}

func TestEventsAreDeliveredOnce(t *testing.T) {
	e := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: 1e12, Warnings: []string{"sent in cleartext"},
				New: func(context.Context) (provider.Provider, error) { return staticTok{}, nil }}, nil
		},
	})
	SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h"}`))
	var first, second struct {
		OK     bool    `json:"ok"`
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(Headers(e, "https://h"), &first); err != nil || !first.OK {
		t.Fatalf("headers: %+v %v", first, err)
	}
	if len(first.Events) != 1 || first.Events[0].Level != "warning" || !strings.Contains(first.Events[0].Message, "sent in cleartext") {
		t.Fatalf("events: %+v", first.Events)
	}
	if err := json.Unmarshal(Headers(e, "https://h"), &second); err != nil || !second.OK || len(second.Events) != 0 {
		t.Fatalf("events repeated: %+v %v", second, err)
	}
}

// A reply may be reused as long as the engine says, but at most a minute: a
// caller that keeps working asks again that often, and that call releases
// what the runtime brought back since the last release.
func TestMaxAgeIsAtMostTheReleaseInterval(t *testing.T) {
	for _, c := range []struct {
		ttl  time.Duration
		want int64
	}{{time.Hour, engine.ReleaseEvery.Milliseconds()}, {10 * time.Second, 10_000}} {
		e := engine.NewWith(nil, map[string]provider.Factory{
			config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
				return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: c.ttl,
					New: func(context.Context) (provider.Provider, error) { return staticTok{}, nil }}, nil
			},
		})
		SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"https://h"}`))
		var r struct {
			OK       bool  `json:"ok"`
			MaxAgeMs int64 `json:"max_age_ms"`
		}
		if err := json.Unmarshal(Headers(e, "https://h"), &r); err != nil || !r.OK {
			t.Fatalf("headers: %+v %v", r, err)
		}
		// An hour's TTL: the cap. Ten seconds: the engine's own figure, under
		// the TTL (it refreshes ahead, with jitter), untouched by the cap.
		if c.ttl == time.Hour && r.MaxAgeMs != c.want || c.ttl < time.Hour && (r.MaxAgeMs <= 0 || r.MaxAgeMs > c.want) {
			t.Fatalf("TTL %v: max_age_ms %d, want %d at most", c.ttl, r.MaxAgeMs, c.want)
		}
	}
}

func TestContractReplies(t *testing.T) {
	e := engine.NewWith(nil, map[string]provider.Factory{
		config.Vault: func(config.Env, *config.Config) (provider.Spec, error) {
			return provider.Spec{Name: "vault", Settings: "k", Mode: "bearer", TTL: 1e12, Warnings: []string{"VAULT_ADDR is cleartext"},
				New: func(context.Context) (provider.Provider, error) { return staticTok{}, nil }}, nil
		},
	})
	r, err := decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault","MLFLOW_TRACKING_URI":"http://localhost:5000",`+
		`"MLFLOW_SECRETS_TIMEOUT_SEC":"2.5","MLFLOW_SECRETS_LOG_LEVEL":"warn"}`)))
	if err != nil || r["ok"] != true || r["timeout_ms"] != 2500.0 || r["log_level"] != "WARNING" ||
		fmt.Sprint(r["warnings"]) != "[vault: VAULT_ADDR is cleartext]" {
		t.Fatalf("set_env: %v %v", r, err)
	}
	h, err := decode(Headers(e, "http://localhost:5000"))
	fp, _ := h["fingerprint"].(string)
	if err != nil || h["ok"] != true || fp != engine.Fingerprint(map[string]string{"Authorization": "Bearer tok"}) {
		t.Fatalf("headers: %v %v", h, err)
	}
	r, err = decode(HeadersJSON(e, []byte(`{"target":"http://localhost:5000","proxy":"http://proxy.corp:3128"}`)))
	if err != nil || r["ok"] != false || r["code"] != "host_not_allowed" || r["variable"] != "MLFLOW_SECRETS_ALLOW_HTTP" {
		t.Fatalf("proxy: %v %v", r, err)
	}
	r, err = decode(HeadersJSON(e, []byte(`{"target":"http://localhost:5000","proxy":"","reject":"`+fp+`","deadline_ms":500}`)))
	if err != nil || r["ok"] != true || r["fingerprint"] != fp {
		t.Fatalf("reject: %v %v", r, err)
	}
	for _, bad := range []string{`[1]`, `{"target":5}`, `not json`} {
		if r, err := decode(HeadersJSON(e, []byte(bad))); err != nil || r["ok"] != false || r["code"] != "internal" {
			t.Fatalf("%s: %v %v", bad, r, err)
		}
	}
	r, err = decode(Info(e))
	if err != nil || r["timeout_ms"] != 2500.0 || fmt.Sprint(r["warnings"]) != "[vault: VAULT_ADDR is cleartext]" ||
		r["log_level"] != "WARNING" || r["abi"] != 2.0 {
		t.Fatalf("info: %v %v", r, err)
	}
	p := r["providers"].([]any)[0].(map[string]any)
	if _, ok := p["refresh_at"].(string); !ok {
		t.Fatalf("info: no refresh point for a held credential: %v", p)
	}
	r, err = decode(Doctor(e, ""))
	if err != nil || fmt.Sprint(r["warnings"]) != "[vault: VAULT_ADDR is cleartext]" {
		t.Fatalf("doctor: %v %v", r, err)
	}
	r, err = decode(SetEnv(e, []byte(`{"MLFLOW_SECRETS_AUTH_ENABLE":"vault"}`)))
	if err != nil || r["ok"] != true || r["warnings"] == nil || r["timeout_ms"] != 10000.0 || r["log_level"] != "INFO" {
		t.Fatalf("set_env defaults: %v %v", r, err)
	}
}

type constProvider string

func (c constProvider) Fetch(context.Context) (secret.Credential, error) {
	return secret.Parse([]byte(c))
}
func (constProvider) Close() {}

func TestInfoAndDoctorListServers(t *testing.T) {
	const secretValue = "staging-s3cr3t"
	factories := map[string]provider.Factory{
		config.Vault: func(env config.Env, _ *config.Config) (provider.Spec, error) {
			sec := env.Get("FAKE_SECRET")
			return provider.Spec{Name: "vault", Settings: sec, Mode: "bearer", TTL: 1e9,
				Details: [][2]string{{"path", env.Get("FAKE_PATH")}},
				New:     func(context.Context) (provider.Provider, error) { return constProvider(sec), nil }}, nil
		},
	}
	e := engine.NewWith(nil, factories)
	env, _ := json.Marshal(map[string]string{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_SECRET": "base", "FAKE_PATH": "secret/base",
		"MLFLOW_TRACKING_URI": "https://prod.corp.com",
		config.EnvServers: `{"staging.corp.com": {"FAKE_SECRET": "` + secretValue + `", "FAKE_PATH": "secret/staging",
			"MLFLOW_AUTH_HEADER_NAME": "X-Token"}, "qa.corp.com": {"MLFLOW_AUTH_HEADER_NAME": "bad header"}}`})
	if r, err := decode(SetEnv(e, env)); err != nil || r["ok"] != true {
		t.Fatalf("SetEnv: %v %v", r, err)
	}
	raw := Info(e)
	var info struct {
		OK         bool   `json:"ok"`
		HeaderName string `json:"header_name"`
		Servers    []struct {
			Pattern    string         `json:"pattern"`
			Variables  []string       `json:"variables"`
			HeaderName string         `json:"header_name"`
			AllowHTTP  bool           `json:"allow_http"`
			Providers  []providerInfo `json:"providers"`
			Error      *Error         `json:"error"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(raw, &info); err != nil || !info.OK || info.HeaderName != "Authorization" || len(info.Servers) != 2 {
		t.Fatalf("info: %s (%v)", raw, err)
	}
	s := info.Servers[0]
	if s.Pattern != "staging.corp.com" || s.HeaderName != "X-Token" || len(s.Providers) != 1 ||
		fmt.Sprint(s.Providers[0].Details) != "[[path secret/staging]]" || s.Error != nil ||
		fmt.Sprint(s.Variables) != "[FAKE_SECRET FAKE_PATH MLFLOW_AUTH_HEADER_NAME]" {
		t.Errorf("staging: %+v", s)
	}
	if q := info.Servers[1]; q.Error == nil || q.Error.Variable != "MLFLOW_AUTH_HEADER_NAME" || !strings.Contains(q.Error.Message, `server "qa.corp.com"`) {
		t.Errorf("qa: %+v", q)
	}
	if strings.Contains(string(raw), secretValue) {
		t.Errorf("info shows a value: %s", raw)
	}
	var doc struct {
		Checks []check `json:"checks"`
	}
	raw = Doctor(e, "https://staging.corp.com")
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range doc.Checks {
		if c.Name == "server staging.corp.com: vault credential" && c.OK && c.Server == "staging.corp.com" {
			found = true
		}
	}
	if !found || strings.Contains(string(raw), secretValue) {
		t.Errorf("doctor: %s", raw)
	}
	// Through the headers call: each host gets its own server's credential.
	if r, _ := decode(Headers(e, "https://staging.corp.com")); fmt.Sprint(r["headers"]) != "map[X-Token:"+secretValue+"]" {
		t.Errorf("staging headers: %v", r)
	}
	if r, _ := decode(Headers(e, "https://prod.corp.com")); fmt.Sprint(r["headers"]) != "map[Authorization:Bearer base]" {
		t.Errorf("prod headers: %v", r)
	}
}

// The ranges a caller releases ride on the reply as one more member; a reply
// that is not an object with members is left as it is.
func TestWithReleaseAddsTheRangesToTheReply(t *testing.T) {
	reply := Failure("boom")
	got := WithRelease(reply, []trim.Range{{Start: 0x7f0000001000, Length: 0x2000}, {Start: 4096, Length: 4096}})
	var r struct {
		OK      bool        `json:"ok"`
		Code    string      `json:"code"`
		Release [][2]uint64 `json:"release"`
	}
	if err := json.Unmarshal(got, &r); err != nil {
		t.Fatalf("not JSON: %s: %v", got, err)
	}
	if r.OK || r.Code != "internal" || len(r.Release) != 2 || r.Release[0] != [2]uint64{0x7f0000001000, 0x2000} ||
		r.Release[1] != [2]uint64{4096, 4096} {
		t.Fatalf("reply %s", got)
	}
	if out := WithRelease(reply, nil); string(out) != string(reply) {
		t.Fatalf("no ranges: %s, want the reply unchanged", out)
	}
	one := []trim.Range{{Start: 4096, Length: 4096}}
	for _, same := range []string{"{}", "[]", ""} {
		if out := WithRelease([]byte(same), one); string(out) != same {
			t.Fatalf("WithRelease(%q) = %q, want it unchanged", same, out)
		}
	}
}
