// Package hostpolicy decides which destinations may receive credentials.
//
// # Targets
//
// A target is read with one strict grammar (ParseTarget), whatever the entry
// point: "host", "host:port", "[v6]" or "[v6]:port", or an http/https URL.
// Hosts follow RFC 3986 (reg-name, IPv4, IPv6 in brackets), restricted further
// to what a DNS name can be: labels of letters, digits, '-' and '_', at most
// 63 characters each. A name ending in a numeric label must be a dotted-decimal
// IPv4 address (so "127.1" or "0x7f.1", which resolvers read as addresses, are
// refused). Non-ASCII names are compared in their IDNA (punycode) form.
// Anything else - userinfo outside a URL, '/', '#', '?', '\', percent escapes,
// an empty or non-numeric port, spaces, control characters - is refused.
//
// # Patterns
//
// Patterns are matched case-insensitively against the host without its
// trailing dot. A pattern "*" allows every host. A leading "*." matches one or
// more whole labels ("*.example.com" matches "a.b.example.com" but neither
// "example.com" nor "example.com.evil.net"); any other "*" (and "?", "[...]")
// matches within one label only ("mlflow-*" matches "mlflow-prod", never
// "mlflow-x.evil.net"). A pattern with a port ("host:8443") also requires that
// port; without one, any port matches. A pattern may pin the scheme
// ("https://mlflow.corp.com", "https://*.corp.com:8443"); then only that
// scheme matches (a bare host, whose scheme is unknown, matches http only).
//
// # Cleartext
//
// A credential never goes to an http:// target (or a bare host, whose scheme
// the caller did not say) unless the host is loopback (127.0.0.0/8, ::1,
// localhost) or the caller opts in (allowHTTP, from MLFLOW_SECRETS_ALLOW_HTTP).
package hostpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"

	"golang.org/x/net/idna"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// Target is a request destination.
type Target struct {
	Scheme string // "http" or "https"; "" when the caller gave a bare host
	Host   string // lower-case ASCII name (IDNA form), IPv4 or IPv6 (no brackets), no trailing dot
	Port   string // decimal 1-65535; "" if unknown
}

// String shows the target as "scheme://host:port" (scheme and port when known).
func (t Target) String() string {
	h := t.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if t.Port != "" {
		h += ":" + t.Port
	}
	if t.Scheme != "" {
		return t.Scheme + "://" + h
	}
	return h
}

// Loopback reports whether the host is 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z) or localhost.
func (t Target) Loopback() bool {
	if t.Host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(t.Host)
	return err == nil && a.Unmap().IsLoopback()
}

var defaultPorts = map[string]string{"http": "80", "https": "443"}

// ErrSyntax is wrapped by every ParseTarget error.
var ErrSyntax = errors.New("not a host, host:port or http(s) URL")

func targetError(s, why string) error {
	return fmt.Errorf("%s is %w: %s", redact.Quote(s), ErrSyntax, why)
}

// ParseTarget reads "host", "host:port", "[v6]", "[v6]:port" or an http or
// https URL such as "https://host/path" (whose scheme gives the default port;
// URL userinfo is allowed and ignored). Everything else is an error whose text
// quotes the input shortened and with any userinfo hidden.
func ParseTarget(s string) (Target, error) {
	if s == "" {
		return Target{}, targetError(s, "it is empty")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return Target{}, targetError(s, "it contains a space or control character")
		}
	}
	var t Target
	hostport := s
	if i := strings.Index(s, "://"); i >= 0 {
		t.Scheme = strings.ToLower(s[:i])
		if t.Scheme != "http" && t.Scheme != "https" {
			return Target{}, targetError(s, "only http and https URLs are accepted")
		}
		authority := s[i+3:]
		if end := strings.IndexAny(authority, "/?#"); end >= 0 {
			authority = authority[:end]
		}
		if strings.ContainsRune(authority, '\\') {
			return Target{}, targetError(s, "a backslash in the host part")
		}
		hostport = authority
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			if !validUserinfo(authority[:at]) {
				return Target{}, targetError(s, "invalid characters before '@'")
			}
			hostport = authority[at+1:]
		}
	} else if j := strings.IndexAny(s, "@/?#\\"); j >= 0 {
		return Target{}, targetError(s, fmt.Sprintf("%q is not allowed in a host (give an http(s) URL for anything but host:port)", s[j]))
	}
	host, port, err := splitHostPort(hostport, false)
	if err != nil {
		return Target{}, targetError(s, err.Error())
	}
	if port == "" {
		port = defaultPorts[t.Scheme]
	}
	t.Host, t.Port = host, port
	if t.Scheme != "" && !agreesWithNetURL(s, t) {
		return Target{}, targetError(s, "it is not a URL that every parser reads the same way")
	}
	return t, nil
}

// agreesWithNetURL reports whether Go's net/url reads URL s as naming the
// same host and port as t: a second parser, so that any disagreement fails
// closed.
func agreesWithNetURL(s string, t Target) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return false
		}
		h = a.String()
	} else if h, err = NormalizeHost(h); err != nil {
		return false
	}
	p := u.Port()
	if p == "" {
		p = defaultPorts[t.Scheme]
	} else if p, err = parsePort(p); err != nil {
		return false
	}
	return h == t.Host && p == t.Port && strings.EqualFold(u.Scheme, t.Scheme)
}

// validUserinfo accepts the characters RFC 3986 allows in userinfo, '%' only
// as a "%XX" escape, and '@' (every common parser splits at the last one).
func validUserinfo(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
		case strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// splitHostPort reads "host", "host:port", "[v6]" or "[v6]:port" and returns
// the normalised host and port. With pattern set, the host may hold the
// wildcard characters "*?[]" (and a bare IPv6 address), which the caller
// checks itself.
func splitHostPort(s string, pattern bool) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("the host is empty")
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("'[' without ']'")
		}
		host, rest := s[1:end], s[end+1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", "", errors.New("the part in brackets is not an IPv6 address")
		}
		if rest != "" {
			if rest[0] != ':' {
				return "", "", errors.New("unexpected characters after ']'")
			}
			if port, err = parsePort(rest[1:]); err != nil {
				return "", "", err
			}
		}
		return a.String(), port, nil
	}
	if strings.Count(s, ":") > 1 {
		if a, err := netip.ParseAddr(s); pattern && err == nil && a.Is6() && a.Zone() == "" {
			return a.String(), "", nil
		}
		return "", "", errors.New("an IPv6 address must be in brackets ([::1]:5000)")
	}
	if h, p, found := strings.Cut(s, ":"); found {
		if port, err = parsePort(p); err != nil {
			return "", "", err
		}
		s = h
	}
	if pattern {
		host, err = normalizePatternHost(s)
	} else {
		host, err = NormalizeHost(s)
	}
	return host, port, err
}

func parsePort(p string) (string, error) {
	if p == "" {
		return "", errors.New("the port after ':' is empty")
	}
	if len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return "", errors.New("the port is not a number from 1 to 65535")
	}
	n, _ := strconv.Atoi(p)
	if n < 1 || n > 65535 {
		return "", errors.New("the port is not a number from 1 to 65535")
	}
	return strconv.Itoa(n), nil
}

// NormalizeHost checks a host name or IPv4 address (no brackets, no port) and
// returns it lower-case, in IDNA form, without a trailing dot.
func NormalizeHost(h string) (string, error) {
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a.String(), nil
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("the host is empty")
	}
	if !isASCII(h) {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil || !isASCII(a) {
			return "", errors.New("the non-ASCII host name is not a valid internationalised domain name")
		}
		h = strings.TrimSuffix(a, ".")
	}
	h = strings.ToLower(h)
	if err := checkLabels(h, false); err != nil {
		return "", err
	}
	return h, nil
}

func checkLabels(h string, pattern bool) error {
	if len(h) > 253 {
		return errors.New("the host name is longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" {
			return errors.New("the host name has an empty label (\"..\" or a leading '.')")
		}
		if len(l) > 63 {
			return errors.New("a label of the host name is longer than 63 characters")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case pattern && strings.IndexByte("*?[]^!", c) >= 0:
			default:
				return fmt.Errorf("%q is not allowed in a host name", c)
			}
		}
	}
	if last := labels[len(labels)-1]; numericLabel(last) {
		return errors.New("the host looks like a numeric address but is not a dotted-decimal IPv4 address")
	}
	return nil
}

// numericLabel reports whether a resolver could read l as part of an IPv4
// address (decimal, octal or 0x hexadecimal).
func numericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		return strings.Trim(l[2:], "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}

func normalizePatternHost(h string) (string, error) {
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a.String(), nil
	}
	h = strings.ToLower(h)
	multi := false
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		multi, h = true, rest
		if h == "" || h == "." {
			return "", errors.New("\"*.\" needs a domain after it (*.example.com)")
		}
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("the host is empty")
	}
	if !isASCII(h) {
		labels := strings.Split(h, ".")
		for i, l := range labels {
			if isASCII(l) {
				continue
			}
			if strings.ContainsAny(l, "*?[]") {
				return "", errors.New("a wildcard label must be ASCII")
			}
			a, err := idna.Lookup.ToASCII(l)
			if err != nil || !isASCII(a) || a == "" {
				return "", errors.New("a non-ASCII label is not a valid internationalised domain name")
			}
			labels[i] = strings.ToLower(a)
		}
		h = strings.Join(labels, ".")
	}
	if err := checkLabels(h, true); err != nil {
		return "", err
	}
	for _, l := range strings.Split(h, ".") {
		if _, err := path.Match(l, ""); err != nil {
			return "", fmt.Errorf("the label %q is not a valid pattern", l)
		}
	}
	if multi {
		h = "*." + h
	}
	return h, nil
}

// isIPv4 reports whether a normalised host is an IPv4 literal.
func isIPv4(h string) bool {
	a, err := netip.ParseAddr(h)
	return err == nil && a.Is4()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

type pattern struct {
	text   string // for display (userinfo hidden)
	scheme string // "", "http" or "https"
	any    bool   // "*": every host
	multi  bool   // leading "*.": one or more labels before rest
	labels []string
	port   string
	exact  bool // labels are literal (from a tracking URI), not patterns
	ipv4   bool // made of digits, dots and wildcards: matches IPv4 literals only
}

// Policy is a set of patterns; a nil Policy allows nothing.
type Policy struct {
	patterns []pattern
}

// Parse reads a comma-separated list of patterns. Errors quote the entry at
// fault (shortened) and say what is wrong with it.
func Parse(list string) (*Policy, error) {
	p := &Policy{}
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		pat, err := parsePattern(raw)
		if err != nil {
			return nil, fmt.Errorf("%s is not a host pattern: %v", redact.Quote(raw), err)
		}
		p.patterns = append(p.patterns, pat)
	}
	if len(p.patterns) == 0 {
		return nil, errors.New("no host pattern given")
	}
	return p, nil
}

func parsePattern(raw string) (pattern, error) {
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f {
			return pattern{}, errors.New("it contains a space or control character")
		}
	}
	pat := pattern{text: raw}
	rest := raw
	if i := strings.Index(raw, "://"); i >= 0 {
		pat.scheme = strings.ToLower(raw[:i])
		if pat.scheme != "http" && pat.scheme != "https" {
			return pattern{}, errors.New("only http:// and https:// may be pinned")
		}
		rest = strings.TrimSuffix(raw[i+3:], "/")
	}
	if rest == "*" {
		pat.any = true
		return pat, nil
	}
	if j := strings.IndexAny(rest, "@/?#\\%"); j >= 0 {
		return pattern{}, fmt.Errorf("%q is not allowed (give a host such as mlflow.example.com, *.example.com:8443 or https://mlflow.example.com)", rest[j])
	}
	host, port, err := splitHostPort(rest, true)
	if err != nil {
		return pattern{}, err
	}
	pat.port = port
	if pat.ipv4, err = addressPattern(strings.Split(host, ".")); err != nil {
		return pattern{}, err
	}
	if h, ok := strings.CutPrefix(host, "*."); ok && !pat.ipv4 {
		pat.multi, host = true, h
	}
	pat.labels = strings.Split(host, ".")
	return pat, nil
}

// addressPattern decides whether a pattern's labels are an IPv4 pattern: every
// label made of digits and wildcards only (10.*.*.*, 192.168.1.*, *.*.*.*,
// four parts). Such a pattern matches IPv4 literals only, never a name
// (10.www.evil.com). One that mixes address-like labels with name labels and
// a wildcard inside (10.*.corp.com) is refused: it is not clear which was
// meant. A leading "*." of a name pattern (*.10.corp.com) is no such mix.
func addressPattern(labels []string) (bool, error) {
	if len(labels) == 1 && strings.Contains(labels[0], ":") {
		return false, nil // IPv6, compared whole
	}
	digits, named, wild := false, false, false
	for i, l := range labels {
		if strings.Trim(l, "0123456789*?[]!^-") != "" {
			named = true
		} else if strings.ContainsAny(l, "0123456789") {
			digits = true
		}
		if strings.ContainsAny(l, "*?[") && (i > 0 || l != "*") {
			wild = true
		}
	}
	switch {
	case !named && len(labels) != 4:
		return false, errors.New("an IPv4 pattern has exactly four parts (10.*.*.*)")
	case !named:
		return true, nil
	case digits && wild:
		return false, errors.New("it mixes IPv4-address parts with name parts; write an IPv4 pattern such as 10.*.*.* or a name pattern such as *.corp.com")
	}
	return false, nil
}

// FromURIs allows exactly the scheme, host and port of each http(s) URI given
// (https://host allows https on port 443 only); other URIs (file:, sqlite:,
// databricks) allow nothing.
func FromURIs(uris ...string) *Policy {
	p := &Policy{}
	for _, u := range uris {
		t, err := ParseTarget(strings.TrimSpace(u))
		if err != nil || t.Scheme == "" || p.hasExact(t) {
			continue
		}
		p.patterns = append(p.patterns, pattern{text: t.String(), scheme: t.Scheme,
			labels: strings.Split(t.Host, "."), port: t.Port, exact: true, ipv4: isIPv4(t.Host)})
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

// Verdict is the outcome of a policy check.
type Verdict int

// The possible verdicts.
const (
	Allowed   Verdict = iota
	NoMatch           // no pattern names the target
	Cleartext         // a pattern names it, but it is http (or a bare host) to a host that is not loopback
)

// Check decides whether credentials may go to t. allowHTTP lifts the
// cleartext rule (MLFLOW_SECRETS_ALLOW_HTTP).
func (p *Policy) Check(t Target, allowHTTP bool) Verdict {
	if p == nil || t.Host == "" {
		return NoMatch
	}
	for _, pat := range p.patterns {
		if pat.matches(t) {
			if t.Scheme != "https" && !allowHTTP && !t.Loopback() {
				return Cleartext
			}
			return Allowed
		}
	}
	return NoMatch
}

// Allows reports whether credentials may go to t without the cleartext opt-in.
func (p *Policy) Allows(t Target) bool { return p.Check(t, false) == Allowed }

// Empty reports whether the policy allows no host at all.
func (p *Policy) Empty() bool { return p == nil || len(p.patterns) == 0 }

// Patterns returns the patterns as given (userinfo hidden, long ones cut), for display.
func (p *Policy) Patterns() []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.patterns))
	for i, pat := range p.patterns {
		out[i] = redact.Echo(redact.URL(pat.text))
	}
	return out
}

func (pat pattern) matches(t Target) bool {
	// A bare host may be reached over http: an http-pinned pattern can match
	// it (the cleartext rule then applies), an https-pinned one never does.
	if pat.scheme != "" && pat.scheme != t.Scheme && !(pat.scheme == "http" && t.Scheme == "") {
		return false
	}
	if pat.any {
		return true
	}
	if pat.port != "" && pat.port != t.Port {
		return false
	}
	if strings.Contains(t.Host, ":") || (len(pat.labels) == 1 && strings.Contains(pat.labels[0], ":")) {
		// IPv6: compared whole, never label by label.
		return !pat.multi && len(pat.labels) == 1 && pat.labels[0] == t.Host
	}
	if pat.ipv4 != isIPv4(t.Host) {
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
