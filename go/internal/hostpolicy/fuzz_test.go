package hostpolicy

import (
	"cmp"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// urllib3Split follows urllib3's parse_url (urllib3/util/url.py, v2): the
// scheme, then an authority after "//" that ends at the first of \ / ? #,
// userinfo up to the last '@', and the port after the last ':' outside
// brackets, made of digits only and at most 65535. It returns the host
// (brackets removed) and the port ("" when absent); ok is false where urllib3
// raises or finds no host.
func urllib3Split(s string) (scheme, host, port string, ok bool) {
	if i := strings.Index(s, ":"); i > 0 && isSchemeRE(s[:i]) {
		scheme, s = strings.ToLower(s[:i]), s[i+1:]
	}
	rest, found := strings.CutPrefix(s, "//")
	if !found {
		return "", "", "", false
	}
	authority := rest
	if end := strings.IndexAny(rest, `\/?#`); end >= 0 {
		authority = rest[:end]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		authority = authority[at+1:]
	}
	hostPort := authority
	if strings.HasPrefix(hostPort, "[") {
		end := strings.Index(hostPort, "]")
		if end < 0 {
			return "", "", "", false
		}
		host, hostPort = hostPort[1:end], hostPort[end+1:]
		if hostPort != "" {
			p, ok := strings.CutPrefix(hostPort, ":")
			if !ok {
				return "", "", "", false
			}
			hostPort = p
		}
		port = hostPort
	} else if i := strings.LastIndex(hostPort, ":"); i >= 0 {
		host, port = hostPort[:i], hostPort[i+1:]
		if strings.ContainsAny(host, "[]%:/?#") {
			return "", "", "", false
		}
	} else {
		host = hostPort
	}
	if port != "" {
		if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", "", "", false
		}
		if n := atoi(port); n > 65535 {
			return "", "", "", false
		}
		port = strings.TrimLeft(port, "0")
		if port == "" {
			port = "0"
		}
	}
	if host == "" {
		return "", "", "", false
	}
	return scheme, host, port, true
}

func isSchemeRE(s string) bool { // [a-zA-Z][a-zA-Z0-9+.-]*
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if i == 0 && !letter || !letter && !('0' <= c && c <= '9') && !strings.ContainsRune("+.-", rune(c)) {
			return false
		}
	}
	return s != ""
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// refHost normalises a host found by a reference parser the way ParseTarget
// does; ok is false when it is not a host we would ever accept.
func refHost(h string) (string, bool) {
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		return a.String(), true
	}
	n, err := NormalizeHost(h)
	return n, err == nil
}

// FuzzTarget: a target is allowed only if Go's net/url and a urllib3-style
// split both read it as naming the same host and port, and that host is
// allowed by the policy. A bare host is read as a C caller would send it:
// "http://" + host + "/".
func FuzzTarget(f *testing.F) {
	for _, s := range [][2]string{
		{"127.0.0.1", "127.0.0.1:5000@evil.test"},
		{"127.0.0.1", "127.0.0.1:@evil.test"},
		{"*.corp.test", "evil.test/.corp.test"},
		{"*.corp.test", "evil.test#.corp.test"},
		{"*.corp.test", "evil.test?.corp.test"},
		{"*.corp.test", `evil.test\.corp.test`},
		{"*.corp.test", `https://evil.test\@a.corp.test/`},
		{"https://*.corp.test:8443", "https://a.corp.test:8443/api"},
		{"mlflow.test", "http://mlflow.test:5000"},
		{"*", "http://u:p@[::1]:5000/x"},
		{"bücher.example", "https://BÜCHER.example"},
		{"10.*.*.*", "https://10.www.evil.com"},
		{"192.168.1.*", "192.168.1.com"},
		{"127.0.0.*", "http://127.0.0.evil"},
		{"https://*.*.*.*:8443", "https://a.b.c.d:8443"},
	} {
		f.Add(s[0], s[1], false)
	}
	f.Fuzz(func(t *testing.T, patterns, target string, allowHTTP bool) {
		p, perr := Parse(patterns)
		if perr != nil && len(perr.Error()) > 600 {
			t.Fatalf("Parse error of %d bytes", len(perr.Error()))
		}
		tg, err := ParseTarget(target)
		if err != nil {
			if len(err.Error()) > 600 {
				t.Fatalf("ParseTarget error of %d bytes", len(err.Error()))
			}
			return
		}
		if perr != nil || p.Check(tg, allowHTTP) != Allowed {
			return
		}
		if tg.Scheme != "https" && !allowHTTP && !tg.Loopback() {
			t.Fatalf("cleartext to %s allowed", tg)
		}
		// A pattern made of digits, dots and '*' allows IPv4 literals only.
		if _, err := netip.ParseAddr(tg.Host); err != nil {
			for _, raw := range strings.Split(patterns, ",") {
				if addressOnly(raw) {
					if one, err := Parse(raw); err == nil && one.Check(tg, allowHTTP) == Allowed {
						t.Fatalf("the address pattern %q allowed the name %q", raw, tg.Host)
					}
				}
			}
		}
		full := target
		if tg.Scheme == "" {
			full = "http://" + target + "/"
		}
		// Go's net/url.
		u, err := url.Parse(full)
		if err != nil {
			t.Fatalf("allowed %q, which net/url refuses: %v", target, err)
		}
		gh, ok := refHost(u.Hostname())
		gp := strings.TrimLeft(u.Port(), "0")
		if gp == "" && tg.Scheme != "" {
			gp = defaultPorts[tg.Scheme]
		}
		if !ok || gh != tg.Host || gp != tg.Port || !strings.EqualFold(u.Scheme, cmp.Or(tg.Scheme, "http")) {
			t.Fatalf("allowed %q as %+v; net/url reads host %q port %q", target, tg, u.Hostname(), u.Port())
		}
		// urllib3.
		scheme, host, port, ok := urllib3Split(full)
		if !ok {
			t.Fatalf("allowed %q, where urllib3 finds no host", target)
		}
		uh, ok := refHost(host)
		if !ok || uh != tg.Host || (tg.Port != "" && port != "" && port != tg.Port) {
			t.Fatalf("allowed %q as %+v; urllib3 reads host %q port %q", target, tg, host, port)
		}
		if port == "" {
			port = defaultPorts[scheme]
		}
		if tg.Scheme != "" && (scheme != tg.Scheme || port != tg.Port) {
			t.Fatalf("allowed %q as %+v; urllib3 reads %s://%s:%s", target, tg, scheme, host, port)
		}
		ref := Target{Scheme: tg.Scheme, Host: uh, Port: tg.Port}
		if p.Check(ref, allowHTTP) != Allowed {
			t.Fatalf("allowed %q, but not the host urllib3 reads (%+v)", target, ref)
		}
	})
}

// addressOnly reports whether a pattern's host part (scheme and port removed)
// is made of digits, dots and '*' only, with at least one digit.
func addressOnly(raw string) bool {
	raw = strings.TrimSpace(raw)
	if i := strings.Index(raw, "://"); i >= 0 {
		raw = strings.TrimSuffix(raw[i+3:], "/")
	}
	if i := strings.LastIndex(raw, ":"); i >= 0 {
		raw = raw[:i]
	}
	return strings.Trim(raw, "0123456789.*") == "" && strings.ContainsAny(raw, "0123456789")
}

func TestURLlib3Split(t *testing.T) {
	cases := []struct{ in, host, port string }{
		{"http://127.0.0.1:5000@evil.test/", "evil.test", ""},
		{"http://evil.test#.corp.test/", "evil.test", ""},
		{`http://evil.test\.corp.test/`, "evil.test", ""},
		{"https://u@[::1]:0080/x", "::1", "80"},
		{"https://a:b@c:1/", "c", "1"},
	}
	for _, c := range cases {
		_, h, p, ok := urllib3Split(c.in)
		if !ok || h != c.host || p != c.port {
			t.Errorf("urllib3Split(%q) = %q %q %v", c.in, h, p, ok)
		}
	}
	for _, bad := range []string{"http://h:x/", "http://h:70000/", "h:1", "http://[::1/", "http://[::1]x/", "http:///"} {
		if _, h, p, ok := urllib3Split(bad); ok {
			t.Errorf("urllib3Split(%q) = %q %q", bad, h, p)
		}
	}
}
