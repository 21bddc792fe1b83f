// Package hostpolicy decides which hosts may receive credentials.
//
// Patterns are matched case-insensitively against the host without its
// trailing dot. A pattern "*" allows every host. A leading "*." matches one or
// more whole labels ("*.example.com" matches "a.b.example.com" but neither
// "example.com" nor "example.com.evil.net"); any other "*" (and "?", "[...]")
// matches within one label only ("mlflow-*" matches "mlflow-prod", never
// "mlflow-x.evil.net"). A pattern with a port ("host:8443") also requires that
// port; without one, any port matches.
package hostpolicy

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
)

// Target is a request destination: normalised host and port ("" if unknown).
type Target struct {
	Host string
	Port string
}

func (t Target) String() string {
	if t.Port == "" {
		return t.Host
	}
	return net.JoinHostPort(t.Host, t.Port)
}

var defaultPorts = map[string]string{"http": "80", "https": "443"}

// ParseTarget reads "host", "host:port", "[v6]:port" or a URL such as
// "https://host/path" (whose scheme gives the default port).
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, fmt.Errorf("the host is empty")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return Target{}, fmt.Errorf("%q is not a valid URL", s)
		}
		port := u.Port()
		if port == "" {
			port = defaultPorts[strings.ToLower(u.Scheme)]
		}
		return Target{Host: normalize(u.Hostname()), Port: port}, nil
	}
	host, port := splitHostPort(s)
	if host == "" {
		return Target{}, fmt.Errorf("%q has no host name", s)
	}
	return Target{Host: normalize(host), Port: port}, nil
}

// splitHostPort splits an optional port off; a bare IPv6 address has none.
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p
	}
	return strings.Trim(s, "[]"), ""
}

func normalize(host string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
}

type pattern struct {
	text   string
	any    bool     // "*": every host
	multi  bool     // leading "*.": one or more labels before rest
	labels []string // the labels to match (after "*." when multi)
	port   string
	exact  bool // labels are literal (from a tracking URI), not patterns
}

// Policy is a set of patterns; a nil Policy allows nothing.
type Policy struct {
	patterns []pattern
}

// Parse reads a comma-separated list of patterns.
func Parse(list string) (*Policy, error) {
	p := &Policy{}
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		pat, err := parsePattern(raw)
		if err != nil {
			return nil, err
		}
		p.patterns = append(p.patterns, pat)
	}
	if len(p.patterns) == 0 {
		return nil, fmt.Errorf("no host pattern given")
	}
	return p, nil
}

func parsePattern(raw string) (pattern, error) {
	if raw == "*" {
		return pattern{text: raw, any: true}, nil
	}
	if strings.Contains(raw, "://") || strings.ContainsAny(raw, "/@ ") {
		return pattern{}, fmt.Errorf("%q is not a host pattern (give a host such as mlflow.example.com or *.example.com, not a URL)", raw)
	}
	host, port := splitHostPort(raw)
	if port != "" && strings.Trim(port, "0123456789") != "" {
		return pattern{}, fmt.Errorf("%q has an invalid port", raw)
	}
	host = normalize(host)
	pat := pattern{text: raw, port: port}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		pat.multi = true
		host = rest
	}
	pat.labels = strings.Split(host, ".")
	for _, l := range pat.labels {
		if l == "" {
			return pattern{}, fmt.Errorf("%q has an empty label", raw)
		}
		if _, err := path.Match(l, ""); err != nil {
			return pattern{}, fmt.Errorf("%q is not a valid pattern: %v", raw, err)
		}
	}
	return pat, nil
}

// FromURIs allows exactly the host and port of each http(s) URI given; other
// URIs (file:, sqlite:, databricks) allow nothing.
func FromURIs(uris ...string) *Policy {
	p := &Policy{}
	for _, u := range uris {
		lower := strings.ToLower(u)
		if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
			continue
		}
		t, err := ParseTarget(u)
		if err != nil || t.Host == "" || p.hasExact(t) {
			continue
		}
		p.patterns = append(p.patterns, pattern{text: t.String(), labels: strings.Split(t.Host, "."), port: t.Port, exact: true})
	}
	return p
}

func (p *Policy) hasExact(t Target) bool {
	for _, pat := range p.patterns {
		if pat.exact && pat.text == t.String() {
			return true
		}
	}
	return false
}

// Allows reports whether credentials may go to t.
func (p *Policy) Allows(t Target) bool {
	if p == nil {
		return false
	}
	for _, pat := range p.patterns {
		if pat.matches(t) {
			return true
		}
	}
	return false
}

// Empty reports whether the policy allows no host at all.
func (p *Policy) Empty() bool { return p == nil || len(p.patterns) == 0 }

// Patterns returns the patterns as given, for display.
func (p *Policy) Patterns() []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.patterns))
	for i, pat := range p.patterns {
		out[i] = pat.text
	}
	return out
}

func (pat pattern) matches(t Target) bool {
	if pat.any {
		return true
	}
	if pat.port != "" && pat.port != t.Port {
		return false
	}
	host := strings.Split(t.Host, ".")
	if pat.multi {
		if len(host) <= len(pat.labels) {
			return false
		}
		host = host[len(host)-len(pat.labels):]
	} else if len(host) != len(pat.labels) {
		return false
	}
	for i, l := range pat.labels {
		if pat.exact {
			if l != host[i] {
				return false
			}
		} else if ok, _ := path.Match(l, host[i]); !ok {
			return false
		}
	}
	return true
}
