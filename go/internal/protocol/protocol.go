// Package protocol is the JSON face of the engine, shared by the C API and any
// other transport. Every function returns a JSON document and never panics:
// a panic becomes an "internal" error reply.
package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/trim"
)

// ABIVersion changes whenever the C API or a reply's shape changes incompatibly.
const ABIVersion = 2

// Version is the library version, set at build time.
var Version = "dev"

// Error is the error part of a reply.
type Error struct {
	Code     msaerr.Code `json:"code"`
	Message  string      `json:"message"`
	Variable string      `json:"variable,omitempty"`
}

// Event is a one-shot message the caller logs once at its level
// ("warning" or "info").
type Event struct {
	Level   string `json:"level"`
	Message string `json:"message"`
}

// Attempt is a provider that did not serve, and why.
type Attempt struct {
	Provider string `json:"provider"`
	Error
}

// HeadersReply is GetAuthHeaders' and MsaHeaders' reply.
type HeadersReply struct {
	OK          bool              `json:"ok"`
	Headers     map[string]string `json:"headers,omitempty"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	Provider    string            `json:"provider,omitempty"`
	MaxAgeMs    int64             `json:"max_age_ms,omitempty"`
	Stale       *Error            `json:"stale,omitempty"`
	Attempts    []Attempt         `json:"attempts,omitempty"`
	Events      []Event           `json:"events,omitempty"`
	*Error
}

// maxAge is how long the caller may reuse a reply: as fresh as the engine
// says, but at most engine.ReleaseEvery, so that a caller that keeps working
// asks again that often, and that call releases what the runtime's background
// work mapped back in since the last release (engine.ReleaseDue).
func maxAge(fresh time.Duration) int64 {
	return min(fresh, engine.ReleaseEvery).Milliseconds()
}

// WithRelease adds "release": [[start, length], ...] to a headers reply (a
// JSON object): ranges of the library's read-only pages the caller drops
// once it has returned (MsaReleaseByCaller). A reply that is not an object
// with members is returned as it is.
func WithRelease(reply []byte, ranges []trim.Range) []byte {
	n := len(reply)
	if len(ranges) == 0 || n < 3 || reply[0] != '{' || reply[n-1] != '}' {
		return reply
	}
	out := make([]byte, 0, n+12+40*len(ranges))
	out = append(out, reply[:n-1]...)
	out = append(out, `,"release":[`...)
	for i, r := range ranges {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '[')
		out = strconv.AppendUint(out, uint64(r.Start), 10)
		out = append(out, ',')
		out = strconv.AppendUint(out, uint64(r.Length), 10)
		out = append(out, ']')
	}
	return append(out, "]}"...)
}

func toError(e *msaerr.Error) *Error {
	if e == nil {
		return nil
	}
	return &Error{Code: e.Code, Message: e.Error(), Variable: e.Variable}
}

// guard turns a panic into an internal-error reply.
func guard(out *[]byte) {
	if r := recover(); r != nil {
		*out = mustJSON(struct {
			OK bool `json:"ok"`
			Error
		}{Error: Error{Code: msaerr.Internal, Message: fmt.Sprintf("internal error: %v", r)}})
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"ok":false,"code":"internal","message":"cannot encode the reply"}`)
	}
	return b
}

// Failure is an "internal" error reply with message (echoed input in it is
// cut to a readable length by the caller).
func Failure(message string) []byte {
	return mustJSON(HeadersReply{Error: &Error{Code: msaerr.Internal, Message: redact.Echo(message)}})
}

// ABI is the reply to the helper's "abi" request.
func ABI() []byte {
	return mustJSON(struct {
		OK  bool `json:"ok"`
		ABI int  `json:"abi"`
	}{true, ABIVersion})
}

// Request is MsaHeaders' request (and the helper's headers op).
type Request struct {
	Target     string `json:"target"`
	Proxy      string `json:"proxy"`
	Reject     string `json:"reject"`
	DeadlineMs int64  `json:"deadline_ms"`
}

// Headers answers GetAuthHeaders(host).
func Headers(e *engine.Engine, host string) (out []byte) {
	return Serve(e, Request{Target: host})
}

// HeadersJSON answers MsaHeaders(request_json).
func HeadersJSON(e *engine.Engine, requestJSON []byte) (out []byte) {
	defer guard(&out)
	var req Request
	if err := json.Unmarshal(requestJSON, &req); err != nil {
		return mustJSON(HeadersReply{Error: &Error{Code: msaerr.Internal,
			Message: `MsaHeaders needs a JSON object {"target": ..., "proxy": ..., "reject": ..., "deadline_ms": ...}`}})
	}
	return Serve(e, req)
}

// Serve answers one headers request.
func Serve(e *engine.Engine, req Request) (out []byte) {
	defer guard(&out)
	var deadline time.Duration
	if req.DeadlineMs > 0 && req.DeadlineMs < int64(time.Hour/time.Millisecond) {
		deadline = time.Duration(req.DeadlineMs) * time.Millisecond
	}
	res := e.Serve(context.Background(), engine.Request{Target: req.Target, Proxy: req.Proxy, Reject: req.Reject, Deadline: deadline})
	reply := HeadersReply{OK: res.Err == nil, Headers: res.Headers, Fingerprint: res.Fingerprint, Provider: res.Provider,
		MaxAgeMs: maxAge(res.FreshFor), Stale: toError(res.Stale), Error: toError(res.Err)}
	for _, a := range res.Attempts {
		reply.Attempts = append(reply.Attempts, Attempt{Provider: a.Provider, Error: *toError(a.Err)})
	}
	for _, ev := range res.Events {
		reply.Events = append(reply.Events, Event{Level: ev.Level, Message: ev.Message})
	}
	return mustJSON(reply)
}

// SettingsReply is MsaSetEnv's reply: what the caller needs from the core's
// configuration (it parses none of it itself).
type SettingsReply struct {
	OK        bool     `json:"ok"`
	TimeoutMs int64    `json:"timeout_ms"`
	LogLevel  string   `json:"log_level"`
	Warnings  []string `json:"warnings"`
	// ProcessEnv names the variables that an enabled provider's SDK would
	// read from the process environment with another value than the one
	// handed over; those providers refuse to run in this process.
	ProcessEnv []string `json:"process_env"`
}

// SetEnv answers MsaSetEnv: envJSON is a JSON object of strings, or empty for
// the process environment.
func SetEnv(e *engine.Engine, envJSON []byte) (out []byte) {
	defer guard(&out)
	var env config.Env
	if len(envJSON) > 0 {
		if err := json.Unmarshal(envJSON, &env); err != nil || env == nil {
			return mustJSON(HeadersReply{Error: &Error{Code: msaerr.Internal,
				Message: "MsaSetEnv needs a JSON object mapping variable names to string values"}})
		}
	}
	e.SetEnv(env)
	return Settings(e)
}

// Settings is SetEnv's reply for the environment e serves now, without
// changing it.
func Settings(e *engine.Engine) (out []byte) {
	defer guard(&out)
	b := e.Settings()
	return mustJSON(SettingsReply{OK: true, TimeoutMs: b.Timeout.Milliseconds(), LogLevel: b.LogLevel, Warnings: b.Warnings,
		ProcessEnv: b.ProcessEnv})
}

// Refusal is an error reply with code and message (no secret in it).
func Refusal(code msaerr.Code, message string) []byte {
	return mustJSON(HeadersReply{Error: &Error{Code: code, Message: message}})
}

type providerInfo struct {
	Name       string      `json:"name"`
	Mode       string      `json:"mode,omitempty"`
	TTLSeconds int         `json:"ttl_seconds,omitempty"`
	Details    [][2]string `json:"details,omitempty"`
	RefreshAt  string      `json:"refresh_at,omitempty"` // RFC 3339, when the held credential is refreshed next
	ExpiresAt  string      `json:"expires_at,omitempty"` // RFC 3339, when the credential itself ends
	Error      *Error      `json:"error,omitempty"`
}

// serverInfo is one MLFLOW_SECRETS_SERVERS entry in MsaInfo's reply.
type serverInfo struct {
	Pattern      string         `json:"pattern"`
	Variables    []string       `json:"variables"` // the names it sets, never the values
	Providers    []providerInfo `json:"providers"`
	HeaderName   string         `json:"header_name,omitempty"`
	AllowedHosts []string       `json:"allowed_hosts,omitempty"` // its own MLFLOW_SECRETS_ALLOWED_HOSTS
	AllowHTTP    bool           `json:"allow_http"`
	Error        *Error         `json:"error,omitempty"`
}

func providerInfos(list []engine.ProviderInfo) []providerInfo {
	out := []providerInfo{}
	for _, p := range list {
		out = append(out, providerInfo{Name: p.Name, Mode: p.Mode,
			TTLSeconds: int(p.TTL.Seconds()), Details: p.Details, RefreshAt: rfc3339(p.RefreshAt),
			ExpiresAt: rfc3339(p.Expires), Error: toError(p.Err)})
	}
	return out
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Info answers MsaInfo.
func Info(e *engine.Engine) (out []byte) {
	defer guard(&out)
	info := e.Info()
	reply := struct {
		OK           bool           `json:"ok"`
		Version      string         `json:"version"`
		ABI          int            `json:"abi"`
		Providers    []providerInfo `json:"providers"`
		HeaderName   string         `json:"header_name,omitempty"`
		LogLevel     string         `json:"log_level"`
		TimeoutMs    int64          `json:"timeout_ms"`
		Warnings     []string       `json:"warnings"`
		AllowedHosts []string       `json:"allowed_hosts"`
		AllowedFrom  string         `json:"allowed_from,omitempty"`
		Servers      []serverInfo   `json:"servers"`
		*Error
	}{OK: info.Err == nil, Version: Version, ABI: ABIVersion, Providers: providerInfos(info.Providers),
		HeaderName: info.HeaderName, LogLevel: info.LogLevel, TimeoutMs: info.Timeout.Milliseconds(),
		Warnings: info.Warnings, AllowedHosts: info.AllowedHosts, AllowedFrom: info.AllowedFrom,
		Servers: []serverInfo{}, Error: toError(info.Err)}
	for _, s := range info.Servers {
		vars := s.Variables
		if vars == nil {
			vars = []string{}
		}
		reply.Servers = append(reply.Servers, serverInfo{Pattern: s.Pattern, Variables: vars,
			Providers: providerInfos(s.Providers), HeaderName: s.HeaderName, AllowedHosts: s.AllowedHosts,
			AllowHTTP: s.AllowHTTP, Error: toError(s.Err)})
	}
	return mustJSON(reply)
}

type check struct {
	Name   string `json:"name"`
	Server string `json:"server,omitempty"` // the MLFLOW_SECRETS_SERVERS pattern it concerns
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Error  *Error `json:"error,omitempty"`
}

// Doctor answers MsaDoctor(url).
func Doctor(e *engine.Engine, target string) (out []byte) {
	defer guard(&out)
	reply := struct {
		OK       bool     `json:"ok"`
		Checks   []check  `json:"checks"`
		Warnings []string `json:"warnings"`
	}{OK: true, Warnings: e.Settings().Warnings}
	for _, c := range e.Doctor(context.Background(), target) {
		reply.OK = reply.OK && c.OK
		reply.Checks = append(reply.Checks, check{Name: c.Name, Server: c.Server, OK: c.OK, Detail: c.Detail, Error: toError(c.Err)})
	}
	return mustJSON(reply)
}

// Warm encodes a reply of each kind with every optional part, and decodes a
// headers request, as the first calls will: encoding/json builds its encoder
// or decoder for a type on that type's first use (serve.Warm).
func Warm() error {
	e := &Error{Code: msaerr.Internal, Message: "m", Variable: "v"}
	for _, v := range []any{
		HeadersReply{OK: true, Headers: map[string]string{"h": "v"}, Fingerprint: "f", Provider: "p", MaxAgeMs: 1,
			Stale: e, Attempts: []Attempt{{Provider: "p", Error: *e}}, Events: []Event{{Level: "info", Message: "m"}}, Error: e},
		SettingsReply{OK: true, Warnings: []string{"w"}, ProcessEnv: []string{"V"}},
	} {
		if _, err := json.Marshal(v); err != nil {
			return err
		}
	}
	var req Request
	return json.Unmarshal([]byte(`{"target":"https://h","proxy":"http://p:1","reject":"f","deadline_ms":1}`), &req)
}
