// Package redact makes text safe to show: URL userinfo hidden, long echoes
// cut, text from servers stripped of control characters.
package redact

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxEcho is how many characters of an input are echoed back in a message.
const MaxEcho = 200

// MaxServerText is how many characters of a server's text (an error body or
// message) reach a message.
const MaxServerText = 300

// userinfo matches the userinfo part of URLs inside a text.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@"]*@`)

// Userinfo returns s with the userinfo of every URL inside it replaced by
// "***@" (for error texts that quote URLs, such as net/http's).
func Userinfo(s string) string { return userinfo.ReplaceAllString(s, "${1}***@") }

// ServerText makes text that came from a server (an error body or message, a
// network or TLS error quoting server data) safe for a log line, an
// exception or a terminal: URL userinfo hidden, every run of control
// characters (C0, DEL, C1, and format characters such as the bidi overrides
// U+202E and U+2066..U+2069, zero-width characters, U+FEFF) and of other
// whitespace replaced by one space, invalid UTF-8 dropped, the ends trimmed,
// and the result cut to MaxServerText characters, marking the cut.
func ServerText(s string) string {
	s = Userinfo(s)
	var b strings.Builder
	space := false
	n := 0
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				continue
			}
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) ||
			r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= MaxServerText {
			b.WriteString("…(cut)")
			return b.String()
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// URL returns s with any userinfo ("user:pass@") replaced by "***@". Text that
// does not parse as a URL is returned with everything between "://" and the
// last "@" before the host replaced, so a malformed URL leaks nothing either.
func URL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		r := u.String()
		if i := strings.Index(r, "://"); i >= 0 {
			return r[:i+3] + "***@" + r[i+3:]
		}
		return r
	}
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return s[:i+3] + "***@" + rest[at+1:]
	}
	return s
}

// Echo returns s shortened to MaxEcho characters (marking the cut), for
// quoting user input in an error.
func Echo(s string) string {
	if utf8.RuneCountInString(s) <= MaxEcho {
		return s
	}
	r := []rune(s)
	return string(r[:MaxEcho]) + "…(" + itoa(len(s)) + " bytes)"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// Quote returns s with URL userinfo hidden, as a Go-quoted string (control
// characters escaped) of at most about MaxEcho bytes, marking the cut.
func Quote(s string) string {
	s = URL(s)
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		q := strconv.QuoteRune(r)
		q = q[1 : len(q)-1]
		if r == '"' {
			q = `\"`
		} else if r == '\'' {
			q = "'"
		}
		if b.Len()+len(q) > MaxEcho {
			b.WriteString(`"…(`)
			b.WriteString(itoa(len(s) - i))
			b.WriteString(" more bytes)")
			return b.String()
		}
		b.WriteString(q)
	}
	b.WriteByte('"')
	return b.String()
}
