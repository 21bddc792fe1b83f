package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// ProviderInfo describes one enabled provider's settings.
type ProviderInfo struct {
	Name    string
	Mode    string
	TTL     time.Duration
	Details [][2]string
	Err     *msaerr.Error // the settings are unusable
	// RefreshAt is when the held credential is refreshed next (the jittered
	// TTL point or shortly before its own expiry); Expires is when the
	// credential itself ends. Each is zero when no credential is held or
	// the time is unknown.
	RefreshAt time.Time
	Expires   time.Time
}

// Info describes the effective configuration. It holds no secret.
type Info struct {
	Providers    []ProviderInfo
	HeaderName   string
	AllowedHosts []string
	AllowedFrom  string
	config.Basics
	Err *msaerr.Error // the shared configuration is unusable
}

// Settings returns the call budget, the log level and every configuration
// and provider warning of the current environment, even when the
// configuration is unusable.
func (e *Engine) Settings() config.Basics {
	return e.current().settings()
}

func (st *state) settings() config.Basics {
	b := st.basics
	b.Warnings = slices.Clone(b.Warnings)
	for _, s := range st.specs {
		if s.err == nil {
			for _, w := range s.spec.Warnings {
				b.Warnings = append(b.Warnings, prefixed(s.name, w))
			}
		}
	}
	if b.Warnings == nil {
		b.Warnings = []string{}
	}
	return b
}

// Info reports the configuration without contacting any backend.
func (e *Engine) Info() Info {
	st := e.current()
	if st.err != nil {
		return Info{Basics: st.settings(), Err: st.err}
	}
	info := Info{HeaderName: st.cfg.HeaderName, Basics: st.settings(),
		AllowedHosts: st.cfg.AllowedHosts.Patterns(), AllowedFrom: st.cfg.AllowedFrom}
	for _, s := range st.specs {
		pi := ProviderInfo{Name: s.name, Err: s.err}
		if s.err == nil {
			pi.Mode, pi.TTL, pi.Details = string(s.spec.Mode), s.spec.TTL, s.spec.Details
			_, pi.RefreshAt, pi.Expires, _ = e.cache.Current(s.key)
		}
		info.Providers = append(info.Providers, pi)
	}
	return info
}

// Check is one step of a diagnosis.
type Check struct {
	Name   string
	OK     bool
	Detail string
	Err    *msaerr.Error
}

// Doctor checks the configuration, then every enabled provider in turn
// (settings, fetch, header), and, when target is given, whether that host may
// receive credentials. It reports header values redacted.
func (e *Engine) Doctor(ctx context.Context, target string) []Check {
	st := e.current()
	if st.err != nil {
		return []Check{{Name: "configuration", Err: st.err}}
	}
	checks := []Check{{Name: "configuration", OK: true,
		Detail: fmt.Sprintf("providers in order: %s; header %s", orNone(st.cfg.Providers), st.cfg.HeaderName)}}
	if len(st.cfg.Providers) == 0 {
		return append(checks, Check{Name: "providers", Err: notEnabled()})
	}
	for _, s := range st.specs {
		if s.err != nil {
			checks = append(checks, Check{Name: s.name + " settings", Err: s.err})
			continue
		}
		checks = append(checks, Check{Name: s.name + " settings", OK: true, Detail: details(s)})
		start := time.Now()
		hdrs, cres, err := e.serve(ctx, st.cfg, s)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			checks = append(checks, Check{Name: s.name + " credential", Err: err})
			continue
		}
		c := Check{Name: s.name + " credential", OK: true, Detail: fmt.Sprintf("fetched in %s; sends %s", took, redacted(hdrs))}
		if cres.Stale {
			c.Detail += "; STALE: " + msaerr.As(cres.Err).Error()
		}
		checks = append(checks, c)
	}
	if target != "" {
		if err := checkHost(st.cfg, target); err != nil {
			checks = append(checks, Check{Name: "host policy", Err: err})
		} else {
			checks = append(checks, Check{Name: "host policy", OK: true,
				Detail: fmt.Sprintf("%s may receive credentials (%s)", redact.Echo(redact.URL(target)), st.cfg.AllowedFrom)})
		}
	}
	return checks
}

func details(s specEntry) string {
	parts := []string{fmt.Sprintf("mode %s", s.spec.Mode), fmt.Sprintf("ttl %s", s.spec.TTL)}
	for _, d := range s.spec.Details {
		parts = append(parts, d[0]+" "+d[1])
	}
	return strings.Join(parts, "; ")
}

// redacted shows header names and the auth scheme, never the credential.
func redacted(h map[string]string) string {
	var out []string
	for name, value := range h {
		scheme, _, found := strings.Cut(value, " ")
		if found && (scheme == "Bearer" || scheme == "Basic") {
			out = append(out, fmt.Sprintf("%s: %s <redacted, %d chars>", name, scheme, len(value)-len(scheme)-1))
		} else {
			out = append(out, fmt.Sprintf("%s: <redacted, %d chars>", name, len(value)))
		}
	}
	return strings.Join(out, ", ")
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "(none)"
	}
	return strings.Join(list, ", ")
}
