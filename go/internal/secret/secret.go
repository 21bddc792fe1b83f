// Package secret parses the content of a stored secret into a credential.
// Accepted: a JSON object with "token", or "username" and "password" (other
// fields ignored, token wins); or plain text, which is a token (a basic-mode
// token of the form user:pass is split at its first colon by the header
// builder). Values are trimmed. Errors never contain the secret's content.
package secret

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// Credential is what a secret provides: a token, or a username and password.
type Credential struct {
	Token    string
	Username string
	Password string
	// Expires is when the credential itself says it ends (a JWT's exp, Azure's
	// secret exp attribute); zero when unknown. Parse and FromMap set it from a
	// JWT token's "exp" claim; providers add what they know with ExpiringBy.
	// The cache refreshes before the earlier of this and the TTL, and never
	// serves the credential past it.
	Expires time.Time
	// RefreshBy is a soft deadline: the backend's access that read the value
	// ends then (the lease of the Vault login token), so a refresh should
	// happen before it, while that access still works. Unlike Expires it does
	// not end the value: during an outage it is still served stale.
	RefreshBy time.Time
}

// ExpiringBy returns c with Expires set to t when t is known (not zero) and
// earlier than the expiry c already has: a provider that learns another end
// (a lease, an attribute) keeps whichever comes first.
func (c Credential) ExpiringBy(t time.Time) Credential {
	if !t.IsZero() && (c.Expires.IsZero() || t.Before(c.Expires)) {
		c.Expires = t
	}
	return c
}

// maxJWT bounds the size of a token read as a JWT.
const maxJWT = 64 << 10

// TokenExpiry returns the "exp" claim of a token that looks like a JWT (three
// base64url parts, the first two JSON objects, the second with a numeric
// "exp" in seconds since the epoch), or zero. The signature is not checked:
// the time only decides when to fetch the secret again. Nothing of the token
// is ever reported.
func TokenExpiry(token string) time.Time {
	if len(token) > maxJWT || strings.Count(token, ".") != 2 {
		return time.Time{}
	}
	parts := strings.Split(token, ".")
	var header map[string]any
	if decodeSegment(parts[0], &header) != nil || header == nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
	}
	if decodeSegment(parts[1], &claims) != nil || len(claims.Exp) == 0 || claims.Exp[0] < '0' || claims.Exp[0] > '9' {
		return time.Time{} // missing, or not a JSON number
	}
	var exp float64
	if err := json.Unmarshal(claims.Exp, &exp); err != nil || exp <= 0 || exp > 253402300799 || math.IsNaN(exp) { // up to 9999-12-31
		return time.Time{}
	}
	sec, frac := math.Modf(exp)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// withTokenExpiry fills Expires from the token when it is a JWT.
func withTokenExpiry(c Credential) Credential {
	return c.ExpiringBy(TokenExpiry(c.Token))
}

// IsZero reports whether the credential holds nothing.
func (c Credential) IsZero() bool { return c.Token == "" && c.Username == "" && c.Password == "" }

// Parse reads a secret stored as text or bytes.
func Parse(raw []byte) (Credential, error) {
	if !utf8.Valid(raw) {
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "",
			"the secret is not valid UTF-8 text (a binary secret must hold the token or JSON as UTF-8)")
	}
	text := strings.TrimSpace(string(raw))
	if text == "" {
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret is empty")
	}
	if strings.HasPrefix(text, "{") {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber() // keep long numeric tokens exact
		if err := dec.Decode(&m); err != nil || dec.More() {
			return Credential{}, msaerr.New(msaerr.SecretUnusable, "",
				"the secret starts with '{' but is not a valid JSON object")
		}
		return FromMap(m)
	}
	// A JSON string literal ("abc") is taken as its value; anything else as is.
	if strings.HasPrefix(text, `"`) {
		var s string
		if json.Unmarshal([]byte(text), &s) == nil {
			text = strings.TrimSpace(s)
		}
	}
	if text == "" {
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret is empty")
	}
	return withTokenExpiry(Credential{Token: text}), nil
}

// FromMap reads a secret stored as key/value fields (JSON object, Vault KV data).
// Errors name only the expected fields ("token", "username", "password"),
// never the fields the secret has: a field name can itself be sensitive.
func FromMap(m map[string]any) (Credential, error) {
	token, err := field(m, "token")
	if err != nil {
		return Credential{}, err
	}
	if token != "" {
		return withTokenExpiry(Credential{Token: token}), nil
	}
	user, err := field(m, "username")
	if err != nil {
		return Credential{}, err
	}
	pass, err := field(m, "password")
	if err != nil {
		return Credential{}, err
	}
	_, hasUser := m["username"]
	_, hasPass := m["password"]
	switch {
	case user != "" && pass != "":
		return Credential{Username: user, Password: pass}, nil
	case user != "" && hasPass:
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret's \"password\" field is empty")
	case user != "":
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret has a \"username\" but no \"password\" field")
	case pass != "" && hasUser:
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret's \"username\" field is empty")
	case pass != "":
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret has a \"password\" but no \"username\" field")
	}
	if _, ok := m["token"]; ok {
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret's \"token\" field is empty")
	}
	if hasUser || hasPass {
		return Credential{}, msaerr.New(msaerr.SecretUnusable, "", "the secret's \"username\" and \"password\" fields are empty")
	}
	have := "it has no fields"
	if len(m) > 0 {
		have = "it has none of them"
	}
	return Credential{}, msaerr.New(msaerr.SecretUnusable, "",
		"the secret needs a \"token\" field or \"username\" and \"password\" fields; %s", have)
}

// field returns a trimmed string or number field; other JSON types are an error.
func field(m map[string]any, name string) (string, error) {
	switch v := m[name].(type) {
	case nil:
		return "", nil
	case string:
		return strings.TrimSpace(v), nil
	case json.Number:
		return v.String(), nil
	case float64:
		b, _ := json.Marshal(v)
		return string(b), nil
	default:
		return "", msaerr.New(msaerr.SecretUnusable, "", "the secret's %q field must be a string, not %T", name, v)
	}
}
