// Package provider defines what every secret backend implements. Each backend
// lives in its own folder and reads like the others: settings from the
// environment (Spec), then a Provider that fetches one credential.
package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// Provider fetches the credential from one backend. Safe for concurrent use.
type Provider interface {
	Fetch(ctx context.Context) (secret.Credential, error)
	// Close stops background work (token renewal); Fetch is not called after.
	Close()
}

// Spec is a backend's settings, checked before any connection is made.
type Spec struct {
	Name    string
	Key     string      // equal keys share one Provider and one cache entry
	Mode    header.Mode // bearer or basic
	ModeVar string      // the variable that sets Mode
	TTL     time.Duration
	// Details are non-secret facts for `info` and `doctor` (address, path, auth method).
	Details [][2]string
	New     func() (Provider, error)
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

// Key hashes settings (which may include credentials) into a cache key.
func Key(name string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return name + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}
