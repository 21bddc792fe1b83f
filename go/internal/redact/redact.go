// Package redact makes text safe to show: URL userinfo hidden, long echoes cut.
package redact

import (
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxEcho is how many characters of an input are echoed back in a message.
const MaxEcho = 200

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
