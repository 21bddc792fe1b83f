// Package provider defines what every secret backend implements. Each backend
// lives in its own folder and reads like the others: settings from the
// environment (Spec), then a Provider that fetches one credential.
package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// Provider fetches the credential from one backend. Safe for concurrent use.
type Provider interface {
	Fetch(ctx context.Context) (secret.Credential, error)
	// Close stops background work (token renewal) and closes idle
	// connections; Fetch is not called after.
	Close()
}

// Spec is a backend's settings, checked before any connection is made.
type Spec struct {
	Name string
	// Settings is the backend's complete configuration as one comparable
	// value (a struct of strings, numbers, bools and durations only),
	// including the shared timeout, retries and TLS settings. The engine
	// derives the provider's identity and cache key from the whole value
	// (KeyOf): equal values share one Provider and one cache entry, and any
	// change gives a new Provider.
	Settings any
	Mode     header.Mode // bearer or basic
	ModeVar  string      // the variable that sets Mode
	TTL      time.Duration
	// Details are non-secret facts for `info` and `doctor` (address, path,
	// auth method), with any URL userinfo already redacted.
	Details [][2]string
	// Warnings are non-fatal configuration concerns (for example a Vault
	// address in cleartext http to a host other than loopback), shown by
	// `info` and `doctor` and logged once.
	Warnings []string
	// ProcessEnv names the variables (by prefix) that this backend's SDK
	// reads from the process environment itself, as it was when the library
	// was loaded, instead of from the settings it is handed; the library
	// never writes the process environment. OwnEnv are the exceptions: the
	// provider passes them to the SDK explicitly when they are set.
	ProcessEnv []string
	OwnEnv     []string
	// New builds the Provider for Settings within ctx's deadline. Errors are
	// *msaerr.Error without the provider's name: the engine prefixes it.
	New func(ctx context.Context) (Provider, error)
}

// Factory reads a backend's settings from the environment. It returns a
// *msaerr.Error with code NotConfigured naming the variable when one is
// missing or invalid.
type Factory func(env config.Env, shared *config.Config) (Spec, error)

// ModeAndTTL reads a provider's auth-mode and TTL variables (bearer and 300 s
// when unset; the TTL clamped to 1..86400 s).
func ModeAndTTL(env config.Env, modeVar, ttlVar string) (header.Mode, time.Duration, error) {
	mode, err := header.ParseMode(modeVar, env.Get(modeVar))
	if err != nil {
		return "", 0, err
	}
	ttl, err := env.Seconds(ttlVar, 300, 1, 86400)
	return mode, ttl, err
}

// KeyOf hashes a provider's whole settings value (which may include
// credentials) into its identity and cache key.
func KeyOf(name string, settings any) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%#v", settings)))
	return name + ":" + hex.EncodeToString(h[:16])
}

// Pattern returns expr compiled on its first use. A package-level
// regexp.MustCompile runs in every process that loads the library, at load,
// whichever provider the process uses.
func Pattern(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
