// Package engine ties configuration, host policy, providers, cache and header
// building together: given a destination host, it returns the headers to send.
package engine

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cache"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/hostpolicy"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/aws"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/azure"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/gcp"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider/vault"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
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
// environment themselves (which the library never writes).
var sdkPrefixes = append([]string{"AWS_"}, azure.SDKPrefixes...)

// fetchMargin is how much shorter than the call budget a fetch's own
// deadline is, so that a fetch started by a call ends (with the provider's
// own words) before that call's budget does.
const fetchMargin = 250 * time.Millisecond

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

// Request is one headers call.
type Request struct {
	// Target is the destination: "host", "host:port", "[v6]:port" or a URL.
	Target string
	// Proxy is the proxy the request will go through for this hop ("" for a
	// direct connection); the cleartext rule applies to that hop too.
	Proxy string
	// Reject is the fingerprint of headers a server answered 401 to ("" for
	// none): the provider whose current value has it is refreshed first.
	Reject string
	// Deadline is the caller's budget for the call; 0 (or more than the
	// core's own budget, MLFLOW_SECRETS_TIMEOUT_SEC) means the core's own.
	Deadline time.Duration
}

// Result is the outcome of one Headers call.
type Result struct {
	Headers map[string]string
	// Fingerprint identifies exactly Headers (see Fingerprint); "" without.
	Fingerprint string
	Provider    string        // the provider that served
	FreshFor    time.Duration // how long the caller may reuse Headers before asking again
	Stale       *msaerr.Error // set when Headers come from a value kept past its TTL
	Attempts    []Attempt     // earlier providers that failed
	Err         *msaerr.Error // set when no headers can be sent
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
	// differ are the variables that refused the provider because its SDK
	// would read another value from the process environment.
	differ []string
}

// chain is one set of settings and its providers in order: the base
// settings, or those of one MLFLOW_SECRETS_SERVERS entry.
type chain struct {
	server *config.Server // nil for the base settings
	cfg    *config.Config
	err    *msaerr.Error // the settings are unusable
	specs  []specEntry
	sig    string // identifies the providers in order (for the sticky one)
}

// state is everything derived from one environment snapshot.
type state struct {
	basics config.Basics // always filled, even when cfg is nil
	base   chain         // for hosts no server pattern matches; its err is also set when MLFLOW_SECRETS_SERVERS is unusable
	// servers in the order of MLFLOW_SECRETS_SERVERS: the first whose
	// pattern matches a host serves it.
	servers []chain
	notes   []string   // warnings about MLFLOW_SECRETS_SERVERS
	process config.Env // the process environment, which some SDKs read themselves
	digest  [32]byte   // of the environment it was built from (EnvDigest)
}

// chains returns the base chain, then the servers'.
func (st *state) chains() []*chain {
	out := make([]*chain, 0, 1+len(st.servers))
	out = append(out, &st.base)
	for i := range st.servers {
		out = append(out, &st.servers[i])
	}
	return out
}

// chainFor returns the settings that serve target: those of the first
// server whose pattern matches its host and port, else the base ones. The
// scheme is not part of the choice: a server whose pattern pins https is
// chosen for an http:// target too, and its host policy then refuses it, so
// a pinned server's host never falls back to the base credentials.
func (st *state) chainFor(target string) *chain {
	if len(st.servers) == 0 {
		return &st.base
	}
	t, err := hostpolicy.ParseTarget(target)
	if err != nil {
		return &st.base // whose policy refuses it the same way
	}
	for i := range st.servers {
		if matchesHost(st.servers[i].server.Match, t) {
			return &st.servers[i]
		}
	}
	return &st.base
}

// matchesHost reports whether a pattern names t's host and port, whatever
// its scheme pin.
func matchesHost(p *hostpolicy.Policy, t hostpolicy.Target) bool {
	for _, scheme := range []string{"https", "http"} {
		t.Scheme = scheme
		if p.Check(t, true) != hostpolicy.NoMatch {
			return true
		}
	}
	return false
}

// Engine is safe for concurrent use.
//
// Each provider's credential is cached under its settings key and refreshed
// in the background before it expires (see package cache): a call waits on a
// backend only when no usable credential is held.
//
// Time: one call has one budget, min(MLFLOW_SECRETS_TIMEOUT_SEC, the
// caller's Request.Deadline), shared by the providers in the order they are
// tried: a provider waited on uses up what the next one can have. A fetch
// itself runs detached from the calls waiting on it (with the same length of
// deadline from its own start), so a call that gives up leaves it running
// for the next call.
//
// Failure classes: the next provider is tried only when one is unavailable
// (not configured, unreachable, timed out, a 5xx). A rejection
// (msaerr.IsRejection: the backend answered 401/403/404, the secret cannot
// make a header, the credential has expired) is reported at once, naming the
// provider, and ends any stale serving of that provider's value. A provider
// that served keeps serving until it fails; a provider that failed is not
// waited on again while another can serve: it is retried in the background
// with back-off.
//
// A 401 from a server rejects one credential (Request.Reject): only the
// provider whose current value has that fingerprint is refreshed, once,
// however many callers reject it; the old value stays as the stale fallback
// if the refresh fails. Invalidate forgets every credential (explicit reset).
type Engine struct {
	factories map[string]provider.Factory
	now       func() time.Time
	state     atomic.Pointer[state]
	cache     *cache.Cache[secret.Credential]
	sticky    sync.Map // chain.sig -> key of the provider that served last in that chain
	onWait    func(provider string, deadline time.Time)
	// process reads the process environment (tests replace it).
	process func() config.Env

	mu        sync.Mutex
	instances map[string]provider.Provider // by key, only for live keys
	live      map[string]bool              // keys of the current state
	failing   map[string]bool              // keys whose latest fetch failed
	causes    map[string]*cause            // the running or latest fetch's transport failure, by key
	events    []Event
	dropped   int // events not queued since the last drain
	hasEvents atomic.Bool

	fetched atomic.Uint64 // fetches that succeeded
	taken   atomic.Uint64 // fetched, as TakeFetched last saw it
	// released: when ReleaseDue last said a release was due (Unix ns; 0: never).
	released atomic.Int64
}

// New returns an engine reading time from now (time.Now when nil). Until
// SetEnv is called it uses the process environment.
func New(now func() time.Time) *Engine {
	return NewWith(now, Factories)
}

// NewWith is New with a given set of providers (tests use fakes).
func NewWith(now func() time.Time, factories map[string]provider.Factory) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{factories: factories, now: now, process: config.ProcessEnv, cache: cache.New[secret.Credential](now),
		instances: map[string]provider.Provider{}, live: map[string]bool{}, failing: map[string]bool{},
		causes: map[string]*cause{}}
}

// SetEnv makes env the configuration from the next call on; nil means the
// process environment. Providers and cached values whose settings did not
// change are kept; replaced providers are closed (which closes their idle
// connections). The warnings of new settings become events.
func (e *Engine) SetEnv(env config.Env) {
	if env == nil {
		env = config.ProcessEnv()
	}
	st := e.build(env)
	keep := map[string]bool{}
	for _, ch := range st.chains() {
		for _, s := range ch.specs {
			if s.err == nil {
				keep[s.key] = true
			}
		}
	}
	var closing []provider.Provider
	e.mu.Lock()
	e.state.Store(st)
	warned := map[string]bool{}
	for _, ch := range st.chains() {
		for _, s := range ch.specs {
			if s.err == nil && !e.live[s.key] && !warned[s.key] {
				warned[s.key] = true
				for _, w := range specWarnings(ch, s) {
					e.emit(LevelWarning, w)
				}
			}
		}
	}
	if !maps.Equal(keep, e.live) {
		e.sticky.Clear() // new settings: their order decides again
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
	for k := range e.causes {
		if !keep[k] {
			delete(e.causes, k)
		}
	}
	e.mu.Unlock()
	for _, p := range closing {
		p.Close()
	}
	e.cache.Retain(func(k string) bool { return keep[k] })
}

func (e *Engine) build(env config.Env) *state {
	basics, _ := config.ReadBasics(env) // an invalid budget is reported by Parse
	st := &state{basics: basics, process: e.process(), digest: EnvDigest(env)}
	servers, err := config.ParseServers(env, sharedSDKVariable)
	if err != nil {
		st.base.err = msaerr.As(err) // fail closed: no host is served
		return st
	}
	if cfg, err := config.Parse(env); err != nil {
		st.base.err = msaerr.As(err)
	} else {
		st.base = e.chain(env, cfg, st.process)
	}
	for _, srv := range servers {
		var ch chain
		if senv, cfg, err := config.ParseServer(env, srv); err != nil {
			ch = chain{server: srv, err: inServer(srv, msaerr.As(err))}
		} else {
			ch = e.chain(senv, cfg, st.process)
		}
		st.servers = append(st.servers, ch)
		if len(srv.Names) > 0 && ch.err == nil && st.base.err == nil && ch.sig == st.base.sig &&
			ch.cfg.HeaderName == st.base.cfg.HeaderName && ch.cfg.AllowHTTP == st.base.cfg.AllowHTTP && ch.cfg.AllowedHosts == nil {
			st.notes = append(st.notes, fmt.Sprintf("%s: its variables (%s) change nothing for the enabled providers, "+
				"so it gets the base credentials; check their names", srv, strings.Join(srv.Names, ", ")))
		}
	}
	return st
}

// sdkOwnVariables are the variables with an SDK prefix that our providers
// read from the settings themselves, so that a server may set them.
var sdkOwnVariables = []string{aws.EnvRegion, aws.EnvDefaultRegion, azure.EnvVaultURL}

// sharedSDKVariable refuses, per server, the variables the AWS and Azure
// SDKs read from the process environment: that environment is one for all
// servers, so a server's value would not reach them.
func sharedSDKVariable(name string) string {
	if slices.Contains(sdkOwnVariables, name) {
		return ""
	}
	for _, p := range sdkPrefixes {
		if strings.HasPrefix(name, p) {
			return "the AWS and Azure SDKs read it from the process environment, which all servers share"
		}
	}
	return ""
}

// inServer prefixes an error of a server's settings with the server.
func inServer(srv *config.Server, me *msaerr.Error) *msaerr.Error {
	if me == nil || srv == nil {
		return me
	}
	name := srv.String()
	if strings.HasPrefix(me.Message, name+": ") {
		return me
	}
	return &msaerr.Error{Code: me.Code, Variable: me.Variable, Message: name + ": " + me.Message, Err: me.Err, Rejected: me.Rejected}
}

// chain reads the providers' settings for one configuration. A provider
// whose SDK would read, from the process environment proc, a value other
// than the one in env fails with an error naming the variables.
func (e *Engine) chain(env config.Env, cfg *config.Config, proc config.Env) chain {
	ch := chain{server: cfg.Server, cfg: cfg}
	var sig strings.Builder
	for _, name := range cfg.Providers {
		entry := specEntry{name: name}
		if f := e.factories[name]; f == nil {
			entry.err = msaerr.New(msaerr.NotConfigured, config.EnvEnable, "%s: this provider is not available in this build", name)
		} else if spec, err := f(env, cfg); err != nil {
			entry.err = withName(name, msaerr.As(err))
		} else if differ := processDiff(spec, env, proc); len(differ) > 0 {
			entry.differ = differ
			entry.err = withName(name, msaerr.New(msaerr.NotConfigured, differ[0],
				"%s: not the value in the process environment, which this provider's SDK reads itself (as it was when "+
					"the library loaded: the library never writes it); set %s before the process starts, or hand over "+
					"the process environment (the Python plugin moves the core to a helper process started with the "+
					"current environment by itself)", strings.Join(differ, ", "), pronoun(len(differ))))
		} else {
			entry.spec = spec
			entry.key = provider.KeyOf(name, spec.Settings)
			timeout := cfg.Timeout - min(cfg.Timeout/8, fetchMargin)
			entry.fetch = cache.Fetch[secret.Credential]{TTL: spec.TTL, Timeout: timeout,
				Do:        e.fetcher(name, entry.key, spec, timeout),
				Expires:   func(c secret.Credential) time.Time { return c.Expires },
				RefreshBy: func(c secret.Credential) time.Time { return c.RefreshBy },
				Ends:      msaerr.IsRejection}
		}
		ch.specs = append(ch.specs, entry)
		sig.WriteString(name + "=" + entry.key + ";")
	}
	ch.sig = sig.String()
	return ch
}

// EnvDigest identifies an environment: equal digests, equal environments
// (SHA-256 over the sorted NAME=value pairs, each length-prefixed).
func EnvDigest(env config.Env) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, k := range slices.Sorted(maps.Keys(env)) {
		for _, s := range []string{k, env[k]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(s)))
			h.Write(n[:])
			h.Write([]byte(s))
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Serves is the digest of the environment the engine serves now.
func (e *Engine) Serves() [32]byte { return e.current().digest }

func (e *Engine) current() *state {
	if st := e.state.Load(); st != nil {
		return st
	}
	e.SetEnv(nil)
	return e.state.Load()
}

// Headers returns the headers for a request to host ("host", "host:port" or
// a URL), trying the enabled providers in order: Serve with only a target.
func (e *Engine) Headers(ctx context.Context, host string) Result {
	return e.Serve(ctx, Request{Target: host})
}

// ReleaseEvery is how often, at most, a process that keeps calling has its
// pages released without a fetch (ReleaseDue): the Go runtime's background
// work (an idle connection's close, a forced collection, the exit of a
// goroutine) maps parts of the binary back in between fetches. Replies tell
// callers to ask again within it (protocol: max_age_ms).
const ReleaseEvery = time.Minute

// ReleaseDue reports whether the caller should release this binary's pages
// now (go/internal/trim): once after each fetch that succeeded (TakeFetched),
// and at a call ReleaseEvery or more after the last release, to one caller
// when several ask at once. Before the first fetch nothing is due.
func (e *Engine) ReleaseDue() bool {
	now := e.now().UnixNano()
	if e.TakeFetched() {
		e.released.Store(now)
		return true
	}
	last := e.released.Load()
	return last != 0 && now-last >= int64(ReleaseEvery) && e.released.CompareAndSwap(last, now)
}

// TakeFetched reports whether a fetch has succeeded since it last reported
// true (to one caller, when several ask at once). The C library and the
// helper release the pages a fetch faulted in then (ReleaseDue, serve.Release).
func (e *Engine) TakeFetched() bool {
	n := e.fetched.Load()
	for {
		seen := e.taken.Load()
		if n <= seen {
			return false
		}
		if e.taken.CompareAndSwap(seen, n) {
			return true
		}
	}
}

// Serve answers one headers call.
func (e *Engine) Serve(ctx context.Context, req Request) Result {
	res := e.headers(ctx, req)
	if res.Err == nil && res.Headers != nil {
		res.Fingerprint = Fingerprint(res.Headers)
	}
	res.Events = e.drain()
	return res
}

// Fingerprint identifies a header set exactly: the hex SHA-256 of every
// header, sorted by lower-cased name, as name, NUL, value, NUL (the name
// lower-cased).
func Fingerprint(h map[string]string) string {
	names := make([]string, 0, len(h))
	lower := make(map[string]string, len(h))
	for n := range h {
		l := strings.ToLower(n)
		names = append(names, l)
		lower[l] = h[n]
	}
	slices.Sort(names)
	sum := sha256.New()
	for _, n := range names {
		sum.Write([]byte(n))
		sum.Write([]byte{0})
		sum.Write([]byte(lower[n]))
		sum.Write([]byte{0})
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// Budget is the time one call may take: the core's own budget, or the
// caller's deadline when that is shorter.
func Budget(cfg *config.Config, deadline time.Duration) time.Duration {
	if deadline > 0 && deadline < cfg.Timeout {
		return deadline
	}
	return cfg.Timeout
}

func (e *Engine) headers(ctx context.Context, req Request) Result {
	st := e.current()
	ch := st.chainFor(req.Target)
	if ch.err != nil {
		return Result{Err: ch.err}
	}
	if ch == &st.base && len(st.servers) > 0 && len(ch.cfg.Providers) == 0 {
		// Only the servers enable providers: a host none matches is
		// refused by the base host policy first, like any other.
		if err := checkHop(ch.cfg, req.Target, req.Proxy); err != nil {
			return Result{Err: err}
		}
	}
	res := e.headersFrom(ctx, ch, req)
	res.Err = inServer(ch.server, res.Err)
	return res
}

func (e *Engine) headersFrom(ctx context.Context, ch *chain, req Request) Result {
	if len(ch.cfg.Providers) == 0 {
		return Result{Err: notEnabled()}
	}
	if err := checkHop(ch.cfg, req.Target, req.Proxy); err != nil {
		return Result{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, Budget(ch.cfg, req.Deadline))
	defer cancel()
	if req.Reject != "" {
		e.reject(ctx, ch, req.Reject)
	}
	return e.pick(ctx, ch)
}

// reject refreshes the provider whose current value makes the headers with
// fingerprint fp (see cache.Renew), waiting for it within ctx.
func (e *Engine) reject(ctx context.Context, st *chain, fp string) {
	for _, s := range st.specs {
		if s.err != nil {
			continue
		}
		current := func(c secret.Credential) bool {
			h, err := header.Build(c, s.spec.Mode, s.spec.ModeVar, st.cfg.HeaderName)
			return err == nil && Fingerprint(h) == fp
		}
		if e.cache.Renew(ctx, s.key, s.fetch, current) {
			return
		}
	}
}

// order is the providers in the order they are tried: the one that served
// last first (it keeps serving until it fails), then the others as enabled.
func (e *Engine) order(st *chain) []int {
	idx := make([]int, 0, len(st.specs))
	first := -1
	if k, ok := e.sticky.Load(st.sig); ok {
		first = slices.IndexFunc(st.specs, func(s specEntry) bool { return s.err == nil && s.key == k.(string) })
	}
	if first >= 0 {
		idx = append(idx, first)
	}
	for i := range st.specs {
		if i != first {
			idx = append(idx, i)
		}
	}
	return idx
}

// refused is the result of a rejection: reported at once, naming the provider.
func refused(res Result, err *msaerr.Error) Result {
	return Result{Err: err, Attempts: res.Attempts}
}

// stick makes key the provider tried first in chain ch.
func (e *Engine) stick(ch *chain, key string) {
	if k, ok := e.sticky.Load(ch.sig); !ok || k.(string) != key {
		e.sticky.Store(ch.sig, key)
	}
}

func (e *Engine) pick(ctx context.Context, st *chain) Result {
	// Pass 1 waits only on a provider never fetched before, and only while
	// no stale value is in hand. A fresh value wins; a provider whose
	// refresh failed but that still has its last good value is passed over
	// for a later provider with a fresh one; a provider that is unavailable
	// is retried in the background, not waited on. A rejection ends the call.
	var res Result
	var stale *Result
	var pending []int
	recheck := time.Duration(-1) // when a provider passed over may serve again
	soon := func(d time.Duration) {
		if recheck < 0 || d < recheck {
			recheck = d
		}
	}
	for _, i := range e.order(st) {
		s := st.specs[i]
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
			cres, err = e.wait(ctx, s)
		}
		if err != nil {
			me := e.callerErr(st.cfg, s, err)
			if msaerr.IsRejection(me) {
				return refused(res, me)
			}
			if cres.Pending {
				pending = append(pending, i)
			}
			soon(cres.FreshFor)
			res.Attempts = append(res.Attempts, Attempt{Provider: s.name, Err: me})
			continue
		}
		hdrs, herr := header.Build(cres.Value, s.spec.Mode, s.spec.ModeVar, st.cfg.HeaderName)
		if herr != nil {
			return refused(res, withName(s.name, msaerr.As(herr)))
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
		e.stick(st, s.key)
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
	// retries that are running, within what is left of the budget.
	for _, i := range pending {
		s := st.specs[i]
		cres, err := e.wait(ctx, s)
		if err != nil {
			me := e.callerErr(st.cfg, s, err)
			if msaerr.IsRejection(me) {
				return refused(Result{Attempts: slices.DeleteFunc(res.Attempts, func(a Attempt) bool { return a.Provider == s.name })}, me)
			}
			for j := range res.Attempts {
				if res.Attempts[j].Provider == s.name {
					res.Attempts[j].Err = me // the retry's own outcome
				}
			}
			continue
		}
		hdrs, herr := header.Build(cres.Value, s.spec.Mode, s.spec.ModeVar, st.cfg.HeaderName)
		attempts := slices.DeleteFunc(res.Attempts, func(a Attempt) bool { return a.Provider == s.name })
		if herr != nil {
			return refused(Result{Attempts: attempts}, withName(s.name, msaerr.As(herr)))
		}
		if cres.Stale {
			continue
		}
		e.stick(st, s.key)
		return Result{Headers: hdrs, Provider: s.name, FreshFor: cres.FreshFor, Attempts: attempts}
	}
	res.Err = combine(res.Attempts)
	return res
}

// wait gets one provider's credential, waiting on a fetch when none is held,
// within ctx (the call's budget).
func (e *Engine) wait(ctx context.Context, s specEntry) (cache.Result[secret.Credential], error) {
	if e.onWait != nil {
		d, _ := ctx.Deadline()
		e.onWait(s.name, d)
	}
	return e.cache.Get(ctx, s.key, s.fetch)
}

// serve gets one provider's credential (waiting when none is held, up to
// its own budget) and builds the headers.
func (e *Engine) serve(ctx context.Context, cfg *config.Config, s specEntry) (map[string]string, cache.Result[secret.Credential], *msaerr.Error) {
	if s.err != nil {
		return nil, cache.Result[secret.Credential]{}, s.err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cres, err := e.wait(ctx, s)
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
// the end of the call's budget (with the last transport failure of the
// fetch still running, when there was one).
func (e *Engine) callerErr(cfg *config.Config, s specEntry, err error) *msaerr.Error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		var me *msaerr.Error
		if !errors.As(err, &me) {
			msg := fmt.Sprintf("%s: no answer within the call's budget (%s, %s)", s.name, cfg.Timeout, config.EnvTimeout)
			if c := e.causeOf(s.key).get(); c != "" {
				return msaerr.New(msaerr.Backend, "", "%s; the last attempt failed: %s", msg, c)
			}
			return msaerr.New(msaerr.Backend, config.EnvTimeout, "%s", msg)
		}
	}
	return withName(s.name, msaerr.As(err))
}

// cause keeps the last transport failure (DNS, connect, TLS) seen by one
// fetch, from the HTTP client trace of the fetch's context: when the fetch
// then runs out of time, that failure is its cause, not the deadline.
type cause struct {
	mu   sync.Mutex
	last string
}

func (c *cause) set(err error) {
	if err == nil || c == nil {
		return
	}
	c.mu.Lock()
	c.last = redact.Echo(err.Error())
	c.mu.Unlock()
}

func (c *cause) get() string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *cause) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSDone:          func(i httptrace.DNSDoneInfo) { c.set(i.Err) },
		ConnectDone:      func(_, _ string, err error) { c.set(err) },
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) { c.set(err) },
	}
}

func (e *Engine) causeOf(key string) *cause {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.causes[key]
}

// timedOut reports whether a fetch error is its deadline running out.
func timedOut(ctx context.Context, err error, me *msaerr.Error) bool {
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || me.Variable == config.EnvTimeout
}

// fetcher returns the fetch function of one provider: it builds the Provider
// on first use (outside the engine's lock, within the fetch deadline),
// fetches, names errors after the provider and records outages as events.
// A fetch that runs out of time reports the last transport failure it saw
// as the cause, when there was one; a credential already past its own
// expiry is a rejection.
func (e *Engine) fetcher(name, key string, spec provider.Spec, timeout time.Duration) func(context.Context) (secret.Credential, error) {
	return func(ctx context.Context) (secret.Credential, error) {
		c := &cause{}
		e.mu.Lock()
		if e.live[key] {
			e.causes[key] = c
		}
		e.mu.Unlock()
		ctx = httptrace.WithClientTrace(ctx, c.trace())
		cred, err := e.fetchOnce(ctx, key, spec)
		if err == nil && !cred.Expires.IsZero() && !e.now().Before(cred.Expires) {
			err = msaerr.New(msaerr.SecretUnusable, "", "the credential expired at %s", cred.Expires.UTC().Format(time.RFC3339))
		}
		if err != nil {
			me := msaerr.As(err)
			if timedOut(ctx, err, me) {
				if last := c.get(); last != "" {
					variable := me.Variable
					if variable == config.EnvTimeout {
						variable = ""
					}
					msg := me.Message
					if me.Code == msaerr.Internal {
						msg = fmt.Sprintf("no answer within %s", timeout)
					}
					me = &msaerr.Error{Code: msaerr.Backend, Variable: variable, Rejected: me.Rejected,
						Message: msg + "; the last attempt failed: " + last}
				} else if me.Code == msaerr.Internal {
					me = msaerr.New(msaerr.Backend, config.EnvTimeout, "no answer within %s (%s)", timeout, config.EnvTimeout)
				}
			}
			me = withName(name, me)
			e.note(name, key, me)
			return cred, me
		}
		e.note(name, key, nil)
		e.fetched.Add(1)
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

// emit queues an event; past maxEvents it only counts it. e.mu is held.
func (e *Engine) emit(level, msg string) {
	if len(e.events) < maxEvents {
		e.events = append(e.events, Event{Level: level, Message: msg})
	} else {
		e.dropped++
	}
	e.hasEvents.Store(true)
}

// drain returns and forgets the queued events, with one summary warning for
// those that did not fit.
func (e *Engine) drain() []Event {
	if !e.hasEvents.Load() {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events
	if e.dropped > 0 {
		ev = append(ev, Event{Level: LevelWarning,
			Message: fmt.Sprintf("%d more messages were not shown (more than %d since the last call)", e.dropped, maxEvents)})
	}
	e.events, e.dropped = nil, 0
	e.hasEvents.Store(false)
	return ev
}

// withName prefixes a provider's error message with its name, unless it
// already starts with it.
func withName(name string, me *msaerr.Error) *msaerr.Error {
	if strings.HasPrefix(me.Message, name+": ") {
		return me
	}
	return &msaerr.Error{Code: me.Code, Variable: me.Variable, Message: name + ": " + me.Message, Err: me.Err, Rejected: me.Rejected}
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

// Invalidate forgets every cached credential (an explicit reset): the next
// call fetches again and waits for it; a dropped value is never served
// again. It returns how many credentials were dropped. A 401 from a server
// does not call this: it rejects one credential (Request.Reject).
func (e *Engine) Invalidate() int {
	return e.cache.Invalidate(func(string) bool { return true })
}

// processDiff names, sorted, the variables spec's SDK reads from the process
// environment proc whose value there is not the one in env (unset and empty
// are the same). A variable of spec.OwnEnv that is set in env is passed to the
// SDK explicitly, so it may differ.
func processDiff(spec provider.Spec, env, proc config.Env) []string {
	if len(spec.ProcessEnv) == 0 {
		return nil
	}
	var out []string
	check := func(k string) {
		if env[k] == proc[k] || slices.Contains(out, k) || !hasAnyPrefix(k, spec.ProcessEnv) {
			return
		}
		if slices.Contains(spec.OwnEnv, k) && strings.TrimSpace(env[k]) != "" {
			return
		}
		out = append(out, k)
	}
	for k := range env {
		check(k)
	}
	for k := range proc {
		check(k)
	}
	slices.Sort(out)
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
