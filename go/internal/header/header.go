// Package header turns a credential into the HTTP headers to send.
package header

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
	"golang.org/x/net/http/httpguts"
)

// Mode is how a credential is written into the header.
type Mode string

// The two auth modes.
const (
	Bearer Mode = "bearer"
	Basic  Mode = "basic"
)

// Authorization is the default header name.
const Authorization = "Authorization"

// ParseMode reads an auth-mode variable's value; empty means bearer.
func ParseMode(variable, value string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(value))); m {
	case "":
		return Bearer, nil
	case Bearer, Basic:
		return m, nil
	}
	return "", msaerr.New(msaerr.NotConfigured, variable, "%s=%q is not an auth mode; use bearer or basic", variable, value)
}

// forbidden lists header names that would change how a request is framed or
// routed, or that belong to another mechanism (cookies, proxies), in lower case.
// Names starting with "content-" or "proxy-" are refused as well.
var forbidden = map[string]bool{
	"host": true, "transfer-encoding": true, "connection": true, "keep-alive": true,
	"upgrade": true, "te": true, "trailer": true, "cookie": true, "set-cookie": true,
	"expect": true, "http2-settings": true,
}

// CanonicalName validates a header name; empty or any spelling of
// "authorization" gives "Authorization". Hop-by-hop and framing names (Host,
// Content-Length, Transfer-Encoding, Connection, Cookie, Proxy-*, ...) are
// refused: the credential would break or redirect every request.
func CanonicalName(variable, name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || strings.EqualFold(name, Authorization) {
		return Authorization, nil
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return "", msaerr.New(msaerr.NotConfigured, variable,
			"%s=%s is not a valid HTTP header name (letters, digits and !#$%%&'*+-.^_`|~ only)", variable, redact.Quote(name))
	}
	lower := strings.ToLower(name)
	if forbidden[lower] || strings.HasPrefix(lower, "content-") || strings.HasPrefix(lower, "proxy-") {
		return "", msaerr.New(msaerr.NotConfigured, variable,
			"%s=%s cannot carry a credential: it is a connection, framing, cookie or proxy header that HTTP clients and servers interpret themselves; use Authorization or a custom name such as X-Api-Key",
			variable, redact.Quote(name))
	}
	return name, nil
}

// checkText says what is wrong with a credential part, never showing it.
// ascii requires visible ASCII and space only; otherwise valid UTF-8 without
// control characters is enough.
func checkText(what, v string, ascii bool) string {
	if !utf8.ValidString(v) {
		return what + " is not valid UTF-8 text"
	}
	for _, r := range v {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return what + " contains a control character (such as a line break or tab)"
		case r >= 0x80 && ascii:
			return what + " contains non-ASCII characters, which an HTTP header cannot carry unchanged"
		case r == utf8.RuneError:
			return what + " contains the replacement character U+FFFD (it was not valid text)"
		}
	}
	return ""
}

func unusable(format string, args ...any) error {
	return msaerr.New(msaerr.SecretUnusable, "", format, args...)
}

// Build returns the headers for cred. modeVar names the variable that chose mode,
// for error messages. A header value holds visible ASCII and spaces only:
// a bearer token must be ASCII; basic credentials are UTF-8 (RFC 7617) and
// base64-encoded. Errors say what is wrong without showing the value.
func Build(cred secret.Credential, mode Mode, modeVar, name string) (map[string]string, error) {
	var value string
	switch mode {
	case Bearer:
		if cred.Token == "" {
			return nil, msaerr.New(msaerr.NotConfigured, modeVar,
				"%s is bearer but the secret holds a username and password; set %s=basic, or store a \"token\" in the secret",
				modeVar, modeVar)
		}
		if why := checkText("the token", cred.Token, true); why != "" {
			return nil, unusable("%s", why)
		}
		value = cred.Token
		if name == Authorization {
			value = "Bearer " + cred.Token
		}
	case Basic:
		user, pass := cred.Username, cred.Password
		if cred.Token != "" {
			var ok bool
			if user, pass, ok = strings.Cut(cred.Token, ":"); !ok || user == "" {
				return nil, msaerr.New(msaerr.NotConfigured, modeVar,
					"%s is basic but the secret holds a token, not username and password (or \"user:pass\"); set %s=bearer, or store \"username\" and \"password\"",
					modeVar, modeVar)
			}
		}
		switch {
		case user == "":
			return nil, unusable("basic auth needs a username; the secret's username is empty")
		case pass == "":
			return nil, unusable("basic auth needs a password; the secret's password is empty (\"user:\" is not enough)")
		case strings.ContainsRune(user, ':'):
			return nil, unusable("the username contains ':', which basic auth cannot carry (RFC 7617); store \"username\" and \"password\" fields with a username without ':'")
		}
		if why := checkText("the username", user, false); why != "" {
			return nil, unusable("%s", why)
		}
		if why := checkText("the password", pass, false); why != "" {
			return nil, unusable("%s", why)
		}
		value = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	default:
		return nil, msaerr.New(msaerr.Internal, modeVar, "unknown auth mode %q", mode)
	}
	if !ValidValue(value) {
		return nil, unusable("the secret contains characters not allowed in an HTTP header")
	}
	return map[string]string{name: value}, nil
}

// ValidValue reports whether v holds only visible ASCII and spaces.
func ValidValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
