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
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/gcp"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/vault"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// Factories maps provider names to their settings readers.
var Factories = map[string]provider.Factory{
	config.Vault:             vault.Factory,
	config.AWSSecretsManager: aws.Factory,
	config.AzureKeyVault:     azure.Factory,
	config.GCPSecretManager:  gcp.Factory,
}

// sdkPrefixes are the variables the cloud SDKs read from the process
// environment themselves; SetEnv mirrors them there.
var sdkPrefixes = []string{"AWS_", "AZURE_", "IDENTITY_", "MSI_", "IMDS_"}

// callerGrace lets a caller wait a little past the fetch deadline, so that a
// backend that times out is reported with the provider's own words.
const callerGrace = 250 * time.Millisecond

// maxEvents bounds the events kept for a caller that never collects them.
const maxEvents = 64

// Event levels.
const (
	LevelWarning = "warning"
	LevelInfo    = "info"
)

// Event is a one-shot message for the caller to log exactly once: the start
// of a provider's outage (warning), its recovery (info), a settings warning.
type Event struct {
	Level   string
	Message string
}

// Attempt records why one provider did not produce the headers.
type Attempt struct {
	Provider string
	Err      *msaerr.Error
}

// Result is the outcome of one Headers call.
type Result struct {
	Headers  map[string]string
	Provider string        // the provider that served
	FreshFor time.Duration // how long the caller may reuse Headers before asking again
	Stale    *msaerr.Error // set when Headers come from a value kept past its TTL
	Attempts []Attempt     // earlier providers that failed
	Err      *msaerr.Error // set when no headers can be sent
	// Events are messages raised since the previous call (by any caller),
	// each delivered once: the caller logs them.
	Events []Event
}

// specEntry is one enabled provider's settings, or why they are unusable.
type specEntry struct {
	name  string
	spec  provider.Spec
	key   string // provider.KeyOf(name, spec.Settings)
	fetch cache.Fetch[secret.Credential]
	err   *msaerr.Error
}

// state is everything derived from one environment snapshot.
type state struct {
	cfg   *config.Config
	err   *msaerr.Error // the shared configuration is unusable
	specs []specEntry
}

// Engine is safe for concurrent use.
//
// Each provider's credential is cached under its settings key and refreshed
// in the background before it expires (see package cache): a call waits on a
// backend only when no usable credential is held. Every provider has its own
// deadline (MLFLOW_SECRETS_TIMEOUT_SEC). A provider that failed is not waited
// on again while a later one can serve: it is retried in the background with
// back-off and serves again once it answers.
type Engine struct {
	factories map[string]provider.Factory
	state     atomic.Pointer[state]
	cache     *cache.Cache[secret.Credential]

	mu        sync.Mutex
	instances map[string]provider.Provider // by key, only for live keys
	live      map[string]bool              // keys of the current state
	failing   map[string]bool              // keys whose latest fetch failed
	events    []Event
	hasEvents atomic.Bool
}

// New returns an engine reading time from now (time.Now when nil). Until
// SetEnv is called it uses the process environment.
func New(now func() time.Time) *Engine {
	return NewWith(now, Factories)
}

// NewWith is New with a given set of providers (tests use fakes).
func NewWith(now func() time.Time, factories map[string]provider.Factory) *Engine {
	return &Engine{factories: factories, cache: cache.New[secret.Credential](now),
		instances: map[string]provider.Provider{}, live: map[string]bool{}, failing: map[string]bool{}}
}

// SetEnv makes env the configuration from the next call on; nil means the
// process environment. Providers and cached values whose settings did not
// change are kept; replaced providers are closed (which closes their idle
// connections). The warnings of new settings become events.
func (e *Engine) SetEnv(env config.Env) {
	if env == nil {
		env = config.ProcessEnv()
	} else {
		config.SyncProcess(env, sdkPrefixes...)
	}
	st := e.build(env)
	keep := map[string]bool{}
	for _, s := range st.specs {
		if s.err == nil {
			keep[s.key] = true
		}
	}
	var closing []provider.Provider
	e.mu.Lock()
	e.state.Store(st)
	for _, s := range st.specs {
		if s.err == nil && !e.live[s.key] {
			for _, w := range s.spec.Warnings {
				e.emit(LevelWarning, prefixed(s.name, w))
			}
		}
	}
	e.live = keep
	for k, p := range e.instances {
		if !keep[k] {
			closing = append(closing, p)
			delete(e.instances, k)
		}
	}
	for k := range e.failing {
		if !keep[k] {
			delete(e.failing, k)
		}
	}
	e.mu.Unlock()
	for _, p := range closing {
		p.Close()
	}
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
			entry.err = withName(name, msaerr.As(err))
		} else {
			entry.spec = spec
			entry.key = provider.KeyOf(name, spec.Settings)
			entry.fetch = cache.Fetch[secret.Credential]{TTL: spec.TTL, Timeout: cfg.Timeout,
				Do: e.fetcher(name, entry.key, spec, cfg.Timeout)}
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
	res := e.headers(ctx, host)
	res.Events = e.drain()
	return res
}

func (e *Engine) headers(ctx context.Context, host string) Result {
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
	// Pass 1 waits only on a provider never fetched before, and only while
	// no stale value is in hand. A fresh value wins; a provider whose
	// refresh failed but that still has its last good value is passed over
	// for a later provider with a fresh one; a provider that failed is
	// retried in the background, not waited on.
	var res Result
	var stale *Result
	var pending []int
	recheck := time.Duration(-1) // when a provider passed over may serve again
	soon := func(d time.Duration) {
		if recheck < 0 || d < recheck {
			recheck = d
		}
	}
	for i, s := range st.specs {
		if s.err != nil {
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: s.err})
			continue
		}
		cres, err := e.cache.Peek(s.key, s.fetch)
		if errors.Is(err, cache.ErrPending) {
			if stale != nil {
				soon(cres.FreshFor) // fetching in the background; come back soon
				continue
			}
			cres, err = e.wait(ctx, st.cfg, s)
		}
		if err != nil {
			if cres.Pending {
				pending = append(pending, i)
			}
			soon(cres.FreshFor)
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: e.callerErr(st.cfg, s, err)})
			continue
		}
		hdrs, herr := header.Build(cres.Value, s.spec.Mode, s.spec.ModeVar, st.cfg.HeaderName)
		if herr != nil {
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: withName(s.name, msaerr.As(herr))})
			continue
		}
		if cres.Stale {
			if stale == nil {
				stale = &Result{Headers: hdrs, Provider: s.name, FreshFor: cres.FreshFor,
					Stale: msaerr.As(cres.Err), Attempts: slices.Clone(res.Attempts)}
			} else {
				soon(cres.FreshFor)
			}
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: msaerr.As(cres.Err)})
			continue
		}
		res.Headers, res.Provider, res.FreshFor = hdrs, s.name, cres.FreshFor
		if stale != nil {
			soon(stale.FreshFor)
		}
		if recheck >= 0 {
			res.FreshFor = min(res.FreshFor, recheck)
		}
		return res
	}
	if stale != nil {
		if recheck >= 0 {
			stale.FreshFor = min(stale.FreshFor, recheck)
		}
		return *stale
	}
	// Pass 2: nothing usable is held. Wait, in order, on the background
	// retries that are running.
	for _, i := range pending {
		s := st.specs[i]
		cres, err := e.wait(ctx, st.cfg, s)
		if err != nil {
			for j := range res.Attempts {
				if res.Attempts[j].Provider == s.name {
					res.Attempts[j].Err = e.callerErr(st.cfg, s, err) // the retry's own outcome
				}
			}
			continue
		}
		hdrs, herr := header.Build(cres.Value, s.spec.Mode, s.spec.ModeVar, st.cfg.HeaderName)
		if herr != nil || cres.Stale {
			continue
		}
		attempts := slices.DeleteFunc(res.Attempts, func(a Attempt) bool { return a.Provider == s.name })
		return Result{Headers: hdrs, Provider: s.name, FreshFor: cres.FreshFor, Attempts: attempts}
	}
	res.Err = combine(res.Attempts)
	return res
}

// wait gets one provider's credential, waiting on a fetch when none is held,
// within that provider's own deadline.
func (e *Engine) wait(ctx context.Context, cfg *config.Config, s specEntry) (cache.Result[secret.Credential], error) {
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout+callerGrace)
	defer cancel()
	return e.cache.Get(wctx, s.key, s.fetch)
}

// serve gets one provider's credential (waiting when none is held) and
// builds the headers.
func (e *Engine) serve(ctx context.Context, cfg *config.Config, s specEntry) (map[string]string, cache.Result[secret.Credential], *msaerr.Error) {
	if s.err != nil {
		return nil, cache.Result[secret.Credential]{}, s.err
	}
	cres, err := e.wait(ctx, cfg, s)
	if err != nil {
		return nil, cres, e.callerErr(cfg, s, err)
	}
	hdrs, herr := header.Build(cres.Value, s.spec.Mode, s.spec.ModeVar, cfg.HeaderName)
	if herr != nil {
		return nil, cres, withName(s.name, msaerr.As(herr))
	}
	return hdrs, cres, nil
}

// callerErr describes a failure seen by a caller: the fetch's own error, or
// the caller's deadline.
func (e *Engine) callerErr(cfg *config.Config, s specEntry, err error) *msaerr.Error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		var me *msaerr.Error
		if !errors.As(err, &me) {
			return msaerr.New(msaerr.Backend, config.EnvTimeout,
				"%s: no answer within %s (%s)", s.name, cfg.Timeout, config.EnvTimeout)
		}
	}
	return withName(s.name, msaerr.As(err))
}

// fetcher returns the fetch function of one provider: it builds the Provider
// on first use (outside the engine's lock, within the fetch deadline),
// fetches, names errors after the provider and records outages as events.
func (e *Engine) fetcher(name, key string, spec provider.Spec, timeout time.Duration) func(context.Context) (secret.Credential, error) {
	return func(ctx context.Context) (secret.Credential, error) {
		cred, err := e.fetchOnce(ctx, key, spec)
		if err != nil {
			me := msaerr.As(err)
			if me.Code == msaerr.Internal && (errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil) {
				me = msaerr.New(msaerr.Backend, config.EnvTimeout, "no answer within %s (%s)", timeout, config.EnvTimeout)
			}
			me = withName(name, me)
			e.note(name, key, me)
			return cred, me
		}
		e.note(name, key, nil)
		return cred, nil
	}
}

func (e *Engine) fetchOnce(ctx context.Context, key string, spec provider.Spec) (secret.Credential, error) {
	p, closeAfter, err := e.instance(ctx, key, spec)
	if err != nil {
		return secret.Credential{}, err
	}
	if closeAfter {
		defer p.Close()
	}
	return p.Fetch(ctx)
}

// instance returns the Provider for key, building it outside the lock when
// missing. One fetch per key runs at a time (the cache's singleflight), so a
// Provider is built once; one built for settings replaced meanwhile is used
// for this fetch only, then closed.
func (e *Engine) instance(ctx context.Context, key string, spec provider.Spec) (provider.Provider, bool, error) {
	e.mu.Lock()
	p := e.instances[key]
	e.mu.Unlock()
	if p != nil {
		return p, false, nil
	}
	p, err := spec.New(ctx)
	if err != nil {
		return nil, false, err // not kept: the next fetch tries again
	}
	e.mu.Lock()
	cur, live := e.instances[key], e.live[key]
	if cur == nil && live {
		e.instances[key] = p
	}
	e.mu.Unlock()
	switch {
	case cur != nil:
		p.Close()
		return cur, false, nil
	case !live:
		return p, true, nil
	}
	return p, false, nil
}

// note turns a fetch outcome into events: one warning when a provider starts
// failing, one info line when it answers again.
func (e *Engine) note(name, key string, err *msaerr.Error) {
	held := err != nil && e.cache.Has(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.live[key] {
		return
	}
	switch {
	case err != nil && !e.failing[key]:
		e.failing[key] = true
		if held {
			e.emit(LevelWarning, fmt.Sprintf("%s; serving the last good credential from %s (for up to %s past its TTL) and retrying in the background",
				err.Error(), name, cache.MaxStale))
		} else {
			e.emit(LevelWarning, fmt.Sprintf("%s; retrying in the background", err.Error()))
		}
	case err == nil && e.failing[key]:
		delete(e.failing, key)
		e.emit(LevelInfo, name+": answering again; serving fresh credentials")
	}
}

// emit queues an event. e.mu is held.
func (e *Engine) emit(level, msg string) {
	if len(e.events) < maxEvents {
		e.events = append(e.events, Event{Level: level, Message: msg})
		e.hasEvents.Store(true)
	}
}

// drain returns and forgets the queued events.
func (e *Engine) drain() []Event {
	if !e.hasEvents.Load() {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events
	e.events = nil
	e.hasEvents.Store(false)
	return ev
}

// withName prefixes a provider's error message with its name, unless it
// already starts with it.
func withName(name string, me *msaerr.Error) *msaerr.Error {
	if strings.HasPrefix(me.Message, name+": ") {
		return me
	}
	return &msaerr.Error{Code: me.Code, Variable: me.Variable, Message: name + ": " + me.Message, Err: me.Err}
}

func prefixed(name, msg string) string {
	if strings.HasPrefix(msg, name+": ") {
		return msg
	}
	return name + ": " + msg
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

// Invalidate drops every cached credential fetched at least
// cache.MinRefetch (5 s) ago, so the next call fetches it again and waits
// for it (the dropped value is never served again). A credential fetched
// more recently is kept: a server that rejects every credential causes at
// most one refetch per credential per 5 s. It returns how many credentials
// were dropped.
func (e *Engine) Invalidate() int {
	return e.cache.Invalidate(func(string) bool { return true })
}
