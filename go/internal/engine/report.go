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

// ServerInfo describes the settings of one MLFLOW_SECRETS_SERVERS entry.
type ServerInfo struct {
	Pattern   string
	Variables []string // the variables it sets (names only)
	Providers []ProviderInfo
	// HeaderName is the header the plugin sets for this server's hosts.
	HeaderName string
	// AllowedHosts is the server's own MLFLOW_SECRETS_ALLOWED_HOSTS (nil
	// when it sets none: its pattern alone decides).
	AllowedHosts []string
	AllowHTTP    bool
	Err          *msaerr.Error // the server's settings are unusable
}

// Info describes the effective configuration. It holds no secret.
type Info struct {
	Providers    []ProviderInfo
	HeaderName   string
	AllowedHosts []string
	AllowedFrom  string
	// Servers are the MLFLOW_SECRETS_SERVERS entries in order; the base
	// settings above serve the hosts none of them matches.
	Servers []ServerInfo
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
	seen := map[string]bool{}
	for _, ch := range st.chains() {
		for _, s := range ch.specs {
			if s.err == nil && !seen[s.key] {
				seen[s.key] = true
				b.Warnings = append(b.Warnings, specWarnings(ch, s)...)
			}
		}
	}
	b.Warnings = append(b.Warnings, st.notes...)
	b.ProcessEnv = []string{}
	for _, ch := range st.chains() {
		for _, s := range ch.specs {
			for _, k := range s.differ {
				if !slices.Contains(b.ProcessEnv, k) {
					b.ProcessEnv = append(b.ProcessEnv, k)
				}
			}
		}
	}
	slices.Sort(b.ProcessEnv)
	if b.Warnings == nil {
		b.Warnings = []string{}
	}
	return b
}

// specWarnings are a provider's settings warnings, named after the provider
// (and the server, for a server's settings).
func specWarnings(ch *chain, s specEntry) []string {
	out := make([]string, 0, len(s.spec.Warnings))
	for _, w := range s.spec.Warnings {
		w = prefixed(s.name, w)
		if ch.server != nil {
			w = ch.server.String() + ": " + w
		}
		out = append(out, w)
	}
	return out
}

// Info reports the configuration without contacting any backend.
func (e *Engine) Info() Info {
	st := e.current()
	info := Info{Basics: st.settings(), Err: st.base.err}
	if st.base.err == nil {
		info.HeaderName, info.Providers = st.base.cfg.HeaderName, e.providers(&st.base)
		info.AllowedHosts, info.AllowedFrom = st.base.cfg.AllowedHosts.Patterns(), st.base.cfg.AllowedFrom
	}
	for i := range st.servers {
		ch := &st.servers[i]
		si := ServerInfo{Pattern: ch.server.Pattern, Variables: slices.Clone(ch.server.Names), Err: ch.err}
		if ch.err == nil {
			si.HeaderName, si.AllowHTTP, si.Providers = ch.cfg.HeaderName, ch.cfg.AllowHTTP, e.providers(ch)
			si.AllowedHosts = ch.cfg.AllowedHosts.Patterns()
		}
		info.Servers = append(info.Servers, si)
	}
	return info
}

func (e *Engine) providers(ch *chain) []ProviderInfo {
	var out []ProviderInfo
	for _, s := range ch.specs {
		pi := ProviderInfo{Name: s.name, Err: s.err}
		if s.err == nil {
			pi.Mode, pi.TTL, pi.Details = string(s.spec.Mode), s.spec.TTL, s.spec.Details
			_, pi.RefreshAt, pi.Expires, _ = e.cache.Current(s.key)
		}
		out = append(out, pi)
	}
	return out
}

// Check is one step of a diagnosis.
type Check struct {
	Name   string
	Server string // the pattern of the MLFLOW_SECRETS_SERVERS entry checked ("" for the base settings)
	OK     bool
	Detail string
	Err    *msaerr.Error
}

// Doctor checks the configuration, then every enabled provider in turn
// (settings, fetch, header), the same for each server of
// MLFLOW_SECRETS_SERVERS (checks named "server <pattern>: ..."), and, when
// target is given, whether that host may receive credentials and from which
// settings. It reports header values redacted.
func (e *Engine) Doctor(ctx context.Context, target string) []Check {
	st := e.current()
	checks := e.doctor(ctx, &st.base, len(st.servers) > 0)
	for i := range st.servers {
		checks = append(checks, e.doctor(ctx, &st.servers[i], false)...)
	}
	if ch := st.chainFor(target); target != "" && ch.err == nil {
		c := Check{Name: "host policy"}
		if err := checkHost(ch.cfg, target); err != nil {
			c.Err = inServer(ch.server, err)
		} else {
			from := ch.cfg.AllowedFrom
			if ch.server != nil {
				from = ch.server.String()
			}
			c.OK, c.Detail = true, fmt.Sprintf("%s may receive credentials (%s)", redact.Echo(redact.URL(target)), from)
		}
		checks = append(checks, c)
	}
	return checks
}

// doctor checks one chain: its configuration, then each provider. With
// servers, the base settings may enable no provider: then only the servers'
// hosts get credentials.
func (e *Engine) doctor(ctx context.Context, ch *chain, servers bool) []Check {
	var checks []Check
	add := func(c Check) {
		if ch.server != nil {
			c.Name, c.Server = "server "+ch.server.Pattern+": "+c.Name, ch.server.Pattern
		}
		checks = append(checks, c)
	}
	if ch.err != nil {
		add(Check{Name: "configuration", Err: ch.err})
		return checks
	}
	detail := fmt.Sprintf("providers in order: %s; header %s", orNone(ch.cfg.Providers), ch.cfg.HeaderName)
	if ch.server != nil && len(ch.server.Names) > 0 {
		detail = fmt.Sprintf("sets %s; %s", strings.Join(ch.server.Names, ", "), detail)
	} else if ch.server != nil {
		detail = "the base settings; " + detail
	}
	add(Check{Name: "configuration", OK: true, Detail: detail})
	if len(ch.cfg.Providers) == 0 && servers {
		add(Check{Name: "providers", OK: true, Detail: "none: only the hosts of " + config.EnvServers + " get credentials"})
		return checks
	}
	if len(ch.cfg.Providers) == 0 {
		add(Check{Name: "providers", Err: notEnabled()})
		return checks
	}
	for _, s := range ch.specs {
		if s.err != nil {
			add(Check{Name: s.name + " settings", Err: s.err})
			continue
		}
		add(Check{Name: s.name + " settings", OK: true, Detail: details(s)})
		start := time.Now()
		hdrs, cres, err := e.serve(ctx, ch.cfg, s)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			add(Check{Name: s.name + " credential", Err: err})
			continue
		}
		c := Check{Name: s.name + " credential", OK: true, Detail: fmt.Sprintf("fetched in %s; sends %s", took, redacted(hdrs))}
		if cres.Stale {
			c.Detail += "; STALE: " + msaerr.As(cres.Err).Error()
		}
		add(c)
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
