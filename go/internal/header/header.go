// Package header turns a credential into the HTTP headers to send.
package header

import (
	"encoding/base64"
	"strings"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
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

// CanonicalName validates a header name; empty or any spelling of
// "authorization" gives "Authorization".
func CanonicalName(variable, name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || strings.EqualFold(name, Authorization) {
		return Authorization, nil
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return "", msaerr.New(msaerr.NotConfigured, variable, "%s=%q is not a valid HTTP header name", variable, name)
	}
	return name, nil
}

// Build returns the headers for cred. modeVar names the variable that chose mode,
// for error messages.
func Build(cred secret.Credential, mode Mode, modeVar, name string) (map[string]string, error) {
	var value string
	switch mode {
	case Bearer:
		if cred.Token == "" {
			return nil, msaerr.New(msaerr.NotConfigured, modeVar,
				"%s is bearer but the secret holds a username and password; set %s=basic, or store a \"token\" in the secret",
				modeVar, modeVar)
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
		value = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	default:
		return nil, msaerr.New(msaerr.Internal, modeVar, "unknown auth mode %q", mode)
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return nil, msaerr.New(msaerr.SecretUnusable, "", "the secret contains characters not allowed in an HTTP header (such as a line break)")
	}
	return map[string]string{name: value}, nil
}
