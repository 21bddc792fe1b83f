// Package engine ties configuration, host policy, providers, cache and header
// building together: given a destination host, it returns the headers to send.
package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cache"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/aws"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/azure"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/vault"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// Factories maps provider names to their settings readers.
var Factories = map[string]provider.Factory{
	config.Vault:             vault.Factory,
	config.AWSSecretsManager: aws.Factory,
	config.AzureKeyVault:     azure.Factory,
}

// sdkPrefixes are the variables the cloud SDKs read from the process
// environment themselves; SetEnv mirrors them there.
var sdkPrefixes = []string{"AWS_", "AZURE_", "IDENTITY_", "MSI_", "IMDS_"}

// callerGrace lets a caller wait a little past the fetch deadline, so that a
// backend that times out is reported with the provider's own words.
const callerGrace = 250 * time.Millisecond

// Attempt records why one provider did not produce the headers.
type Attempt struct {
	Provider string
	Err      *msaerr.Error
}

// Result is the outcome of one Headers call.
type Result struct {
	Headers  map[string]string
	Provider string        // the provider that served
	FreshFor time.Duration // how long the caller may reuse Headers
	Stale    *msaerr.Error // set when Headers come from a value kept past its TTL
	Attempts []Attempt     // earlier providers that failed
	Err      *msaerr.Error // set when no headers can be sent
}

// specEntry is one enabled provider's settings, or why they are unusable.
type specEntry struct {
	name string
	spec provider.Spec
	err  *msaerr.Error
}

// state is everything derived from one environment snapshot.
type state struct {
	cfg   *config.Config
	err   *msaerr.Error // the shared configuration is unusable
	specs []specEntry
}

type instance struct {
	p   provider.Provider
	err *msaerr.Error
}

// Engine is safe for concurrent use.
type Engine struct {
	factories map[string]provider.Factory
	state     atomic.Pointer[state]
	cache     *cache.Cache[secret.Credential]

	mu        sync.Mutex
	instances map[string]*instance // by provider.KeyOf(name, Spec.Settings)
}

// New returns an engine reading time from now (time.Now when nil). Until
// SetEnv is called it uses the process environment.
func New(now func() time.Time) *Engine {
	return NewWith(now, Factories)
}

// NewWith is New with a given set of providers (tests use fakes).
func NewWith(now func() time.Time, factories map[string]provider.Factory) *Engine {
	return &Engine{factories: factories, cache: cache.New[secret.Credential](now), instances: map[string]*instance{}}
}

// SetEnv makes env the configuration from the next call on; nil means the
// process environment. Providers and cached values whose settings did not
// change are kept.
func (e *Engine) SetEnv(env config.Env) {
	if env == nil {
		env = config.ProcessEnv()
	} else {
		config.SyncProcess(env, sdkPrefixes...)
	}
	st := e.build(env)
	e.state.Store(st)
	keep := map[string]bool{}
	for _, s := range st.specs {
		if s.err == nil {
			keep[provider.KeyOf(s.name, s.spec.Settings)] = true
		}
	}
	e.mu.Lock()
	for k, inst := range e.instances {
		if !keep[k] {
			if inst.p != nil {
				inst.p.Close()
			}
			delete(e.instances, k)
		}
	}
	e.mu.Unlock()
	e.cache.Retain(func(k string) bool { return keep[k] })
}

func (e *Engine) build(env config.Env) *state {
	cfg, err := config.Parse(env)
	if err != nil {
		return &state{err: msaerr.As(err)}
	}
	st := &state{cfg: cfg}
	for _, name := range cfg.Providers {
		entry := specEntry{name: name}
		if f := e.factories[name]; f == nil {
			entry.err = msaerr.New(msaerr.NotConfigured, config.EnvEnable, "%s: this provider is not available in this build", name)
		} else if spec, err := f(env, cfg); err != nil {
			entry.err = msaerr.As(err)
		} else {
			entry.spec = spec
		}
		st.specs = append(st.specs, entry)
	}
	return st
}

func (e *Engine) current() *state {
	if st := e.state.Load(); st != nil {
		return st
	}
	e.SetEnv(nil)
	return e.state.Load()
}

// Headers returns the headers for a request to host ("host", "host:port" or
// a URL), trying the enabled providers in order.
func (e *Engine) Headers(ctx context.Context, host string) Result {
	st := e.current()
	if st.err != nil {
		return Result{Err: st.err}
	}
	if len(st.cfg.Providers) == 0 {
		return Result{Err: notEnabled()}
	}
	if err := checkHost(st.cfg, host); err != nil {
		return Result{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, st.cfg.Timeout+callerGrace)
	defer cancel()
	// A provider whose refresh failed but that still has its last good value
	// is passed over for a later provider with a fresh one; only when none
	// has one is the stale value served.
	var res Result
	var stale *Result
	for _, s := range st.specs {
		hdrs, cres, err := e.serve(ctx, st.cfg, s)
		if err != nil {
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: err})
			continue
		}
		if cres.Stale {
			if stale == nil {
				stale = &Result{Headers: hdrs, Provider: s.name, FreshFor: cres.FreshFor,
					Stale: msaerr.As(cres.Err), Attempts: slices.Clone(res.Attempts)}
			}
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: msaerr.As(cres.Err)})
			continue
		}
		res.Headers, res.Provider, res.FreshFor = hdrs, s.name, cres.FreshFor
		if stale != nil {
			// Ask the failed provider again when its back-off ends.
			res.FreshFor = min(res.FreshFor, stale.FreshFor)
		}
		return res
	}
	if stale != nil {
		return *stale
	}
	res.Err = combine(res.Attempts)
	return res
}

// serve gets one provider's credential (cached) and builds the headers.
func (e *Engine) serve(ctx context.Context, cfg *config.Config, s specEntry) (map[string]string, cache.Result[secret.Credential], *msaerr.Error) {
	var none cache.Result[secret.Credential]
	if s.err != nil {
		return nil, none, s.err
	}
	p, perr := e.provider(s.spec)
	if perr != nil {
		return nil, none, perr
	}
	fetchCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), cfg.Timeout)
	}
	cres, err := e.cache.Get(ctx, provider.KeyOf(s.name, s.spec.Settings), s.spec.TTL, fetchCtx, p.Fetch)
	if err != nil {
		if ctx.Err() != nil || (errors.Is(err, context.DeadlineExceeded) && msaerr.As(err).Code == msaerr.Internal) {
			return nil, none, msaerr.New(msaerr.Backend, config.EnvTimeout,
				"%s: no answer within %s (%s)", s.name, cfg.Timeout, config.EnvTimeout)
		}
		return nil, none, msaerr.As(err)
	}
	hdrs, err := header.Build(cres.Value, s.spec.Mode, s.spec.ModeVar, cfg.HeaderName)
	if err != nil {
		me := msaerr.As(err)
		if !strings.HasPrefix(me.Message, s.name+":") {
			me = &msaerr.Error{Code: me.Code, Variable: me.Variable, Message: s.name + ": " + me.Message, Err: me.Err}
		}
		return nil, none, me
	}
	return hdrs, cres, nil
}

func (e *Engine) provider(spec provider.Spec) (provider.Provider, *msaerr.Error) {
	key := provider.KeyOf(spec.Name, spec.Settings)
	e.mu.Lock()
	defer e.mu.Unlock()
	if inst := e.instances[key]; inst != nil {
		return inst.p, inst.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := spec.New(ctx)
	if err != nil {
		return nil, msaerr.As(err) // not kept: the next call tries again
	}
	e.instances[key] = &instance{p: p}
	return p, nil
}

// combine turns the failures of every provider into one error: the first
// provider's code and variable, and every provider's message.
func combine(attempts []Attempt) *msaerr.Error {
	if len(attempts) == 1 {
		return attempts[0].Err
	}
	msgs := make([]string, len(attempts))
	for i, a := range attempts {
		msgs[i] = a.Err.Error()
	}
	first := attempts[0].Err
	return &msaerr.Error{Code: first.Code, Variable: first.Variable,
		Message: fmt.Sprintf("no provider could supply credentials: %s", strings.Join(msgs, "; "))}
}

// Invalidate forgets every cached credential, so the next call fetches again
// (for example after the server rejected one).
func (e *Engine) Invalidate() {
	e.cache.Retain(func(string) bool { return false })
}
