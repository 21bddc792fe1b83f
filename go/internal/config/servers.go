package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/hostpolicy"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// EnvServers holds the per-server settings: a JSON object from a host
// pattern to an object of variables that override the base ones for the
// hosts the pattern matches, e.g.
//
//	{"mlflow-staging.corp.com": {"MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/staging"}}
const EnvServers = "MLFLOW_SECRETS_SERVERS"

// Server is one entry of MLFLOW_SECRETS_SERVERS.
type Server struct {
	// Pattern is the host pattern as shown (hostpolicy's display form).
	Pattern string
	// Match is the pattern alone, as a policy of one entry.
	Match *hostpolicy.Policy
	// Overrides are the server's variables, applied on top of the base
	// environment; an empty value unsets the variable for this server.
	Overrides Env
	// Names are the overridden variables in the order given.
	Names []string
}

// String names the server in messages: `server "<pattern>" (MLFLOW_SECRETS_SERVERS)`.
func (s *Server) String() string {
	return "server " + redact.Quote(s.Pattern) + " (" + EnvServers + ")"
}

// processWide are the variables that hold for the whole process, with the
// reason a server cannot set them.
var processWide = map[string]string{
	EnvServers:                      "servers cannot be nested",
	EnvLogLevel:                     "the log level is one per process (the Python logger)",
	EnvTimeout:                      "the time budget of a call is one per process (the caller applies it to every request)",
	EnvTrackingURI:                  "it only sets the default host policy; the server's pattern decides which hosts it serves",
	EnvRegistryURI:                  "it only sets the default host policy; the server's pattern decides which hosts it serves",
	"MLFLOW_TRACKING_AUTH":          "MLflow reads it once per process to choose the plugin",
	"MLFLOW_SECRETS_AUTH_LIBRARY":   "it chooses how the plugin is loaded, once per process",
	"MLFLOW_SECRETS_AUTH_HELPER":    "it chooses how the plugin is loaded, once per process",
	"MLFLOW_SECRETS_AUTH_TRANSPORT": "it chooses how the plugin is loaded, once per process",
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseServers reads MLFLOW_SECRETS_SERVERS, keeping the order of its
// entries (the first pattern that matches a host wins). refuse, when not
// nil, names further variables that cannot be set per server (it returns
// the reason, or "" to accept). Errors name the pattern and the variable at
// fault and never repeat a value. Unset or blank: no servers.
func ParseServers(env Env, refuse func(name string) string) ([]*Server, error) {
	raw := env.Get(EnvServers)
	if raw == "" {
		return nil, nil
	}
	p := serversParser{dec: json.NewDecoder(strings.NewReader(raw)), refuse: refuse}
	servers, err := p.parse()
	if err != nil {
		return nil, msaerr.New(msaerr.NotConfigured, EnvServers, "%s: %s", EnvServers, err.Error())
	}
	return servers, nil
}

type serversParser struct {
	dec    *json.Decoder
	refuse func(string) string
}

const serversShape = `it must be a JSON object from a host pattern to an object of variables, ` +
	`e.g. {"mlflow-staging.corp.com": {"MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/staging"}}`

// token reads the next token; a syntax error shows its offset and the
// decoder's words (which quote at most one character, never a value).
func (p *serversParser) token() (json.Token, error) {
	tok, err := p.dec.Token()
	var syn *json.SyntaxError
	switch {
	case err == nil:
		return tok, nil
	case errors.As(err, &syn):
		return nil, fmt.Errorf("not valid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, errors.New("the JSON ends too early (an object is not closed)")
	}
	return nil, fmt.Errorf("not valid JSON: %s", redact.Echo(err.Error()))
}

func (p *serversParser) parse() ([]*Server, error) {
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New(serversShape)
	}
	var out []*Server
	seen := map[string]bool{}
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		s, err := p.server(tok.(string)) // an object key is always a string
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(s.Pattern)
		if seen[key] {
			return nil, fmt.Errorf("the pattern %s is given twice", redact.Quote(s.Pattern))
		}
		seen[key] = true
		out = append(out, s)
	}
	if _, err := p.token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("there is more after the JSON object; " + serversShape)
	}
	return out, nil
}

func (p *serversParser) server(key string) (*Server, error) {
	if strings.Contains(key, ",") {
		return nil, fmt.Errorf("%s: one host pattern per entry (give each server its own entry)", redact.Quote(key))
	}
	match, err := hostpolicy.Parse(key)
	if err != nil {
		return nil, err // quotes the entry and says what is wrong
	}
	s := &Server{Pattern: match.Patterns()[0], Match: match, Overrides: Env{}}
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%s: the value must be an object of variables (names to strings), not %s", s, kind(tok))
	}
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		name := tok.(string)
		if !varName.MatchString(name) {
			return nil, fmt.Errorf("%s: %s is not a variable name", s, redact.Quote(name))
		}
		if tok, err = p.token(); err != nil {
			return nil, err
		}
		value, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%s: the value of %s must be a string, not %s", s, name, kind(tok))
		}
		if _, dup := s.Overrides[name]; dup {
			return nil, fmt.Errorf("%s: %s is given twice", s, name)
		}
		if why := processWide[name]; why != "" {
			return nil, fmt.Errorf("%s: %s cannot be set per server: %s; set it outside %s", s, name, why, EnvServers)
		}
		if p.refuse != nil {
			if why := p.refuse(name); why != "" {
				return nil, fmt.Errorf("%s: %s cannot be set per server: %s; set it outside %s", s, name, why, EnvServers)
			}
		}
		s.Overrides[name] = value
		s.Names = append(s.Names, name)
	}
	if _, err := p.token(); err != nil { // the closing brace
		return nil, err
	}
	return s, nil
}

// kind names a JSON token's type (never its value).
func kind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case bool:
		return "a boolean (write it in quotes)"
	case float64, json.Number:
		return "a number (write it in quotes)"
	case nil:
		return "null"
	}
	return "a string"
}

// Apply returns the environment of this server: base without
// MLFLOW_SECRETS_SERVERS and without MLFLOW_SECRETS_ALLOWED_HOSTS (the base
// host policy does not apply to a server), with the overrides on top.
func (s *Server) Apply(base Env) Env {
	env := make(Env, len(base)+len(s.Overrides))
	for k, v := range base {
		if k != EnvServers && k != EnvAllowedHosts {
			env[k] = v
		}
	}
	for k, v := range s.Overrides {
		env[k] = v
	}
	return env
}

// ParseServer reads one server's settings exactly as Parse reads the base
// ones, from base with the server's overrides (Apply). Its host policy is
// its pattern (Config.Server), and also its own MLFLOW_SECRETS_ALLOWED_HOSTS
// when it sets one (Config.AllowedHosts; nil otherwise).
func ParseServer(base Env, s *Server) (Env, *Config, error) {
	env := s.Apply(base)
	c, err := Parse(env)
	if err != nil {
		return env, nil, err
	}
	c.Server = s
	if env.Get(EnvAllowedHosts) == "" {
		c.AllowedHosts, c.AllowedFrom = nil, ""
	}
	return env, c, nil
}
