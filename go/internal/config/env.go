// Package config turns an environment snapshot into the plugin's settings.
// Every error names the variable to change and never repeats a secret value.
package config

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

// Env is a snapshot of environment variables.
type Env map[string]string

// ProcessEnv returns the environment the process started with.
func ProcessEnv() Env {
	env := Env{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// Get returns the trimmed value of the first of names that is set and not blank.
func (e Env) Get(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(e[n]); v != "" {
			return v
		}
	}
	return ""
}

// Bool parses a switch: 1/true/yes/on and 0/false/no/off (any case); unset is false.
func (e Env) Bool(name string) (bool, error) {
	switch strings.ToLower(e.Get(name)) {
	case "", "0", "false", "no", "off":
		return false, nil
	case "1", "true", "yes", "on":
		return true, nil
	}
	return false, msaerr.New(msaerr.NotConfigured, name,
		"%s=%q is not a switch; use one of 1, true, yes, on, 0, false, no, off", name, e.Get(name))
}

// Int parses a whole number, returning def when unset and clamping to [lo, hi].
func (e Env) Int(name string, def, lo, hi int) (int, error) {
	v := e.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, msaerr.New(msaerr.NotConfigured, name, "%s=%q is not a whole number", name, v)
	}
	return min(max(n, lo), hi), nil
}

// Seconds parses a whole number of seconds, clamped to [lo, hi].
func (e Env) Seconds(name string, def, lo, hi int) (time.Duration, error) {
	n, err := e.Int(name, def, lo, hi)
	return time.Duration(n) * time.Second, err
}

// WithPrefix returns "NAME=value" for every variable whose name starts with
// one of prefixes, sorted, for use in cache keys.
func (e Env) WithPrefix(prefixes ...string) []string {
	var out []string
	for k, v := range e {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out = append(out, k+"="+v)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// List splits a comma-separated value into trimmed, non-empty items.
func (e Env) List(name string) []string {
	var out []string
	for _, item := range strings.Split(e[name], ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
