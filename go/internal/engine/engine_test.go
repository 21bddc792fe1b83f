package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cache"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/header"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/provider"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/secret"
)

// fake is a backend whose secret is the env variable FAKE_<NAME>_SECRET
// (or, once set, override); FAKE_<NAME>_FAIL makes fetches fail,
// FAKE_<NAME>_BLOCK makes them hang until the fetch deadline,
// FAKE_<NAME>_WARN adds a settings warning.
type fake struct {
	name      string
	fetches   atomic.Int64
	instances atomic.Int64
	closed    atomic.Int64
	failNow   atomic.Bool // fail every fetch from now on
	rejectNow atomic.Bool // the backend refuses every fetch from now on (a 403)
	expires   atomic.Pointer[time.Time]
	transport atomic.Pointer[string] // when set, fetches call this URL until their deadline
	plainErr  atomic.Bool            // fail with a message that lacks the provider's name
	override  atomic.Pointer[string]
	hold      atomic.Pointer[chan struct{}] // when set, fetches wait for it to close (or the deadline)
	entered   chan struct{}                 // every fetch announces itself here (when there is room)
	block     chan struct{}
}

type fakeProvider struct {
	f      *fake
	secret string
	fail   bool
	block  bool
}

func (p *fakeProvider) Fetch(ctx context.Context) (secret.Credential, error) {
	p.f.fetches.Add(1)
	select {
	case p.f.entered <- struct{}{}:
	default:
	}
	if h := p.f.hold.Load(); h != nil {
		select {
		case <-*h:
		case <-ctx.Done():
			return secret.Credential{}, fmt.Errorf("backend call: %w", ctx.Err())
		}
	}
	if p.block {
		select {
		case <-p.f.block:
			return secret.Credential{}, errors.New("unblocked")
		case <-ctx.Done():
			return secret.Credential{}, fmt.Errorf("backend call: %w", ctx.Err())
		}
	}
	if u := p.f.transport.Load(); u != nil {
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *u, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		return secret.Credential{}, msaerr.New(msaerr.Backend, config.EnvTimeout, "no answer within the deadline")
	}
	if p.f.rejectNow.Load() {
		return secret.Credential{}, msaerr.New(msaerr.Backend, "FAKE_POLICY", "permission denied (HTTP 403)").Reject()
	}
	if p.f.plainErr.Load() {
		return secret.Credential{}, msaerr.New(msaerr.Backend, "", "permission denied")
	}
	if p.fail || p.f.failNow.Load() {
		return secret.Credential{}, msaerr.New(msaerr.Backend, "", "%s: backend down", p.f.name)
	}
	raw := p.secret
	if o := p.f.override.Load(); o != nil {
		raw = *o
	}
	c, err := secret.Parse([]byte(raw))
	if exp := p.f.expires.Load(); exp != nil {
		c = c.ExpiringBy(*exp)
	}
	return c, err
}

func (p *fakeProvider) Close() { p.f.closed.Add(1) }

func (f *fake) factory(env config.Env, _ *config.Config) (provider.Spec, error) {
	prefix := "FAKE_" + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
	sec := env.Get(prefix + "_SECRET")
	if sec == "" {
		return provider.Spec{}, msaerr.New(msaerr.NotConfigured, prefix+"_SECRET", "%s_SECRET is not set", prefix)
	}
	mode, err := header.ParseMode(prefix+"_MODE", env.Get(prefix+"_MODE"))
	if err != nil {
		return provider.Spec{}, err
	}
	p := &fakeProvider{f: f, secret: sec, fail: env.Get(prefix+"_FAIL") != "", block: env.Get(prefix+"_BLOCK") != ""}
	spec := provider.Spec{Name: f.name, Settings: [4]string{sec, env.Get(prefix + "_FAIL"), env.Get(prefix + "_BLOCK"), env.Get(prefix + "_WARN")},
		Mode: mode, ModeVar: prefix + "_MODE", TTL: time.Minute,
		New: func(context.Context) (provider.Provider, error) {
			if env.Get(prefix+"_NEWFAIL") != "" {
				return nil, msaerr.New(msaerr.NotConfigured, prefix+"_NEWFAIL", "cannot build the client")
			}
			f.instances.Add(1)
			return p, nil
		}}
	if w := env.Get(prefix + "_WARN"); w != "" {
		spec.Warnings = []string{w}
	}
	return spec, nil
}

func newTestEngine() (*Engine, *fake, *fake) { return newTestEngineAt(nil) }

func newTestEngineAt(now func() time.Time) (*Engine, *fake, *fake) {
	v := &fake{name: config.Vault, block: make(chan struct{}), entered: make(chan struct{}, 256)}
	a := &fake{name: config.AWSSecretsManager, entered: make(chan struct{}, 256)}
	return NewWith(now, map[string]provider.Factory{config.Vault: v.factory, config.AWSSecretsManager: a.factory}), v, a
}

const tracking = "https://mlflow.corp.com"

func TestNotEnabled(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_TRACKING_URI": tracking})
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || res.Err.Code != msaerr.NotEnabled || res.Err.Variable != "MLFLOW_SECRETS_AUTH_ENABLE" {
		t.Fatalf("res = %+v", res)
	}
}

func TestHostPolicy(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	if res := e.Headers(context.Background(), "https://mlflow.corp.com:443"); res.Err != nil || res.Headers["Authorization"] != "Bearer tok" {
		t.Fatalf("tracking host: %+v", res)
	}
	for _, host := range []string{"https://evil.com", "http://mlflow.corp.com", "mlflow.corp.com.evil.net:443"} {
		res := e.Headers(context.Background(), host)
		if res.Err == nil || res.Err.Code != msaerr.HostNotAllowed || res.Headers != nil {
			t.Errorf("%s: %+v", host, res)
		}
		if !strings.Contains(res.Err.Message, "MLFLOW_SECRETS_ALLOWED_HOSTS") {
			t.Errorf("%s: message does not name the variable: %s", host, res.Err.Message)
		}
	}
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking,
		"MLFLOW_SECRETS_ALLOWED_HOSTS": "*.corp.com"})
	if res := e.Headers(context.Background(), "https://other.corp.com:8080"); res.Err != nil {
		t.Fatalf("allowed by pattern: %+v", res)
	}
	if res := e.Headers(context.Background(), tracking+".evil.net"); res.Err == nil {
		t.Fatal("suffix attack allowed")
	}
	if n := v.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (cache kept across the env change)", n)
	}
}

// trueOf8 runs f on 8 goroutines at once and counts the true answers.
func trueOf8(f func() bool) int32 {
	var wg sync.WaitGroup
	var trues atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if f() {
				trues.Add(1)
			}
		}()
	}
	wg.Wait()
	return trues.Load()
}

func TestTakeFetchedIsTrueOnceAfterEachSuccessfulFetch(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "FAKE_VAULT_FAIL": "1", "MLFLOW_TRACKING_URI": tracking})
	if res := e.Headers(context.Background(), tracking); res.Err == nil {
		t.Fatalf("a failing backend served: %+v", res)
	}
	if e.TakeFetched() {
		t.Fatal("true after a failed fetch")
	}
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	takeAfterCalls := func() int32 {
		return trueOf8(func() bool {
			if res := e.Headers(context.Background(), tracking); res.Err != nil {
				t.Errorf("res = %+v", res)
			}
			return e.TakeFetched()
		})
	}
	if n := takeAfterCalls(); n != 1 || e.TakeFetched() {
		t.Fatalf("true %d times after 8 calls served by one fetch (or again after), want once", n)
	}
	if n := takeAfterCalls(); n != 0 {
		t.Fatalf("true %d times after calls served from the cache, want none", n)
	}
	e.Invalidate()
	if n := takeAfterCalls(); n != 1 {
		t.Fatalf("true %d times after a new fetch, want once", n)
	}
}

// A release is due once after each fetch, and again only when a minute has
// passed since the last one (the runtime's background work brings pages back
// between fetches); never before the first fetch.
func TestReleaseIsDueAfterAFetchAndAMinuteAfterTheLastRelease(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixNano())
	e, _, _ := newTestEngineAt(func() time.Time { return time.Unix(0, clock.Load()) })
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	advance(2 * ReleaseEvery)
	if e.ReleaseDue() {
		t.Fatal("due before any fetch")
	}
	if res := e.Headers(context.Background(), tracking); res.Err != nil {
		t.Fatalf("res = %+v", res)
	}
	if !e.ReleaseDue() || e.ReleaseDue() {
		t.Fatal("want due once after the fetch")
	}
	advance(ReleaseEvery - time.Nanosecond)
	if e.ReleaseDue() {
		t.Fatal("due again before a minute has passed")
	}
	advance(time.Nanosecond)
	if n := trueOf8(e.ReleaseDue); n != 1 {
		t.Fatalf("due %d times to 8 callers a minute after the last release, want once", n)
	}
	advance(ReleaseEvery / 2)
	if e.ReleaseDue() {
		t.Fatal("the minute counts from the last release")
	}
}

func TestFallbackAndAttempts(t *testing.T) {
	e, v, a := newTestEngine()
	base := config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_AWS_SECRETS_MANAGER_SECRET": `{"username":"u","password":"p"}`, "FAKE_AWS_SECRETS_MANAGER_MODE": "basic"}
	e.SetEnv(base) // vault not configured
	res := e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.AWSSecretsManager || res.Headers["Authorization"] != "Basic dTpw" {
		t.Fatalf("res = %+v", res)
	}
	if len(res.Attempts) != 1 || res.Attempts[0].Provider != config.Vault || res.Attempts[0].Err.Variable != "FAKE_VAULT_SECRET" {
		t.Fatalf("attempts = %+v", res.Attempts)
	}
	env := config.Env{"FAKE_VAULT_SECRET": "tok", "FAKE_VAULT_FAIL": "1"}
	for k, val := range base {
		env[k] = val
	}
	e.SetEnv(env) // vault down
	res = e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.AWSSecretsManager || !strings.Contains(res.Attempts[0].Err.Message, "backend down") {
		t.Fatalf("res = %+v", res)
	}
	env["FAKE_AWS_SECRETS_MANAGER_MODE"] = "bearer" // now aws cannot make a header: user/pass in bearer mode
	e.SetEnv(env)
	res = e.Headers(context.Background(), tracking)
	if res.Err == nil || !strings.HasPrefix(res.Err.Message, "aws-secrets-manager: FAKE_AWS_SECRETS_MANAGER_MODE is bearer") {
		t.Fatalf("res = %+v", res)
	}
	if strings.Contains(res.Err.Message, `"p"`) {
		t.Fatal("secret leaked")
	}
	if v.fetches.Load() == 0 || a.fetches.Load() != 1 {
		t.Errorf("fetches vault=%d aws=%d", v.fetches.Load(), a.fetches.Load())
	}
}

func TestEnvChangeReplacesProvider(t *testing.T) {
	e, v, _ := newTestEngine()
	env := config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "one", "MLFLOW_TRACKING_URI": tracking}
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Headers["Authorization"] != "Bearer one" {
		t.Fatalf("res = %+v", res)
	}
	env["FAKE_VAULT_SECRET"] = "two"
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Headers["Authorization"] != "Bearer two" {
		t.Fatalf("after change: %+v", res)
	}
	if v.instances.Load() != 2 || v.closed.Load() != 1 {
		t.Errorf("instances=%d closed=%d, want 2 and 1", v.instances.Load(), v.closed.Load())
	}
	env["MLFLOW_AUTH_HEADER_NAME"] = "X-Token" // header-only change: no new fetch
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); res.Headers["X-Token"] != "two" || v.fetches.Load() != 2 {
		t.Errorf("header change: %+v, %d fetches", res, v.fetches.Load())
	}
}

// Every caller of a cold credential waits on one fetch. The fake backend
// holds the fetch until all callers have started and either a second fetch
// begins (the failure this catches: without singleflight it comes at once)
// or a grace period passes.
func TestConcurrentCallersOneFetch(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "MLFLOW_TRACKING_URI": tracking})
	hold := make(chan struct{})
	v.hold.Store(&hold)
	const callers = 64
	var arrived, wg sync.WaitGroup
	arrived.Add(callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arrived.Done()
			if res := e.Headers(context.Background(), tracking); res.Err != nil || res.Headers["Authorization"] != "Bearer tok" {
				t.Errorf("res = %+v", res)
			}
		}()
	}
	arrived.Wait()
	<-v.entered // the first fetch is running
	select {
	case <-v.entered: // a second fetch: singleflight is broken
	case <-time.After(200 * time.Millisecond):
	}
	close(hold)
	wg.Wait()
	if n := v.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for %d concurrent callers, want 1", n, callers)
	}
}

func TestTimeoutBoundsTheCall(t *testing.T) {
	e, v, _ := newTestEngine()
	defer close(v.block)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "tok", "FAKE_VAULT_BLOCK": "1",
		"MLFLOW_TRACKING_URI": tracking, "MLFLOW_SECRETS_TIMEOUT_SEC": "1"})
	start := time.Now()
	res := e.Headers(context.Background(), tracking)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %s", took)
	}
	if res.Err == nil || res.Err.Variable != "MLFLOW_SECRETS_TIMEOUT_SEC" {
		t.Fatalf("res = %+v", res)
	}
}

func TestInfoAndDoctor(t *testing.T) {
	e, _, _ := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "FAKE_VAULT_SECRET": "s3cr3t",
		"MLFLOW_TRACKING_URI": tracking})
	info := e.Info()
	if info.Err != nil || len(info.Providers) != 2 || info.Providers[1].Err == nil || info.Providers[0].Mode != "bearer" {
		t.Fatalf("info = %+v", info)
	}
	checks := e.Doctor(context.Background(), "https://evil.com")
	var text strings.Builder
	failed := 0
	for _, c := range checks {
		text.WriteString(c.Name + " " + c.Detail + " ")
		if c.Err != nil {
			failed++
			text.WriteString(c.Err.Error())
		}
	}
	if failed != 2 || strings.Contains(text.String(), "s3cr3t") || !strings.Contains(text.String(), "Bearer <redacted, 6 chars>") {
		t.Fatalf("doctor: %d failed: %s", failed, text.String())
	}
}

func TestFreshFallbackBeatsStale(t *testing.T) {
	e, v, a, clk, rec := newClocked(t)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_VAULT_SECRET": "from-vault", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws"})
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer from-vault")
	recorded(t, rec)
	v.failNow.Store(true) // Vault goes down; its refresh fails
	clk.advance(45 * time.Second)
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer from-vault")
	recorded(t, rec)
	clk.advance(16 * time.Second) // past the TTL: Vault's value is stale
	res := e.Headers(context.Background(), tracking)
	// AWS was never fetched: it is fetched in the background, the stale
	// value is served meanwhile.
	if res.Provider != config.Vault || res.Stale == nil || res.FreshFor != 0 {
		t.Fatalf("vault stale, aws being fetched: %+v", res)
	}
	recorded(t, rec)
	recorded(t, rec)
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.AWSSecretsManager, "Bearer from-aws")
	if len(res.Attempts) != 1 || !strings.Contains(res.Attempts[0].Err.Error(), "vault: backend down") || res.Stale != nil {
		t.Fatalf("attempts = %+v", res.Attempts)
	}
	// AWS now serves, and keeps serving while it answers, even once Vault
	// is back: Vault is not asked again.
	v.failNow.Store(false)
	clk.advance(cache.BackoffMax)
	fetches := v.fetches.Load()
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.AWSSecretsManager, "Bearer from-aws")
	if len(res.Attempts) != 0 || v.fetches.Load() != fetches {
		t.Fatalf("AWS served, Vault asked: %+v, %d vault fetches", res, v.fetches.Load()-fetches)
	}
	// AWS goes down too. Past its TTL its value is stale; Vault, answering
	// again, is retried in the background meanwhile and then serves fresh.
	a.failNow.Store(true)
	clk.advance(15 * time.Second) // AWS's refresh point
	want(t, e.Headers(context.Background(), tracking), config.AWSSecretsManager, "Bearer from-aws")
	if err := recorded(t, rec); err == nil {
		t.Fatal("AWS's refresh should fail")
	}
	clk.advance(16 * time.Second)
	res = e.Headers(context.Background(), tracking)
	if res.Err != nil || res.Provider != config.AWSSecretsManager || res.Stale == nil {
		t.Fatalf("AWS stale, Vault retried: %+v", res)
	}
	recorded(t, rec) // Vault's retry and AWS's
	recorded(t, rec)
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer from-vault")
	if res.Stale != nil || len(res.Attempts) != 1 || res.Attempts[0].Provider != config.AWSSecretsManager {
		t.Fatalf("vault recovered: %+v", res)
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newClocked returns an engine on a fake clock; every fetch outcome the cache
// records is reported on the returned channel.
func newClocked(t *testing.T) (*Engine, *fake, *fake, *testClock, chan error) {
	t.Helper()
	clk := &testClock{t: time.Unix(1000, 0)}
	e, v, a := newTestEngineAt(clk.now)
	e.cache.SetRand(func() float64 { return 1 }) // refresh at 3/4 of the TTL
	rec := make(chan error, 64)
	e.cache.OnRecord(func(_ string, err error) { rec <- err })
	return e, v, a, clk, rec
}

// recorded waits for the next recorded fetch outcome.
func recorded(t *testing.T, rec chan error) error {
	t.Helper()
	select {
	case err := <-rec:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch was recorded")
		return nil
	}
}

func quiet(t *testing.T, rec chan error) {
	t.Helper()
	select {
	case err := <-rec:
		t.Fatalf("unexpected fetch (err %v)", err)
	default:
	}
}

func vaultOnly(secret string) config.Env {
	return config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": secret, "MLFLOW_TRACKING_URI": tracking}
}

func want(t *testing.T, res Result, provider, auth string) {
	t.Helper()
	if res.Err != nil || res.Provider != provider || res.Headers["Authorization"] != auth {
		t.Fatalf("want %s from %s, got %+v", auth, provider, res)
	}
}

// From 3/4 of the TTL on, the credential is refreshed in the background while
// every request is answered from the cache, even when the refresh hangs past
// the TTL.
func TestRefreshAheadNeverWaits(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	e.SetEnv(vaultOnly("one"))
	res := e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer one")
	if res.FreshFor != 45*time.Second {
		t.Errorf("FreshFor = %s, want 45s (the refresh point)", res.FreshFor)
	}
	recorded(t, rec)
	<-v.entered // the first fetch's
	clk.advance(44 * time.Second)
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer one")
	quiet(t, rec)

	hold := make(chan struct{})
	v.hold.Store(&hold)
	two := "two"
	v.override.Store(&two)
	clk.advance(time.Second) // the refresh point
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer one") // answered while the refresh is held
	<-v.entered                              // and the refresh did start
	if res.FreshFor <= 0 || res.FreshFor > time.Second {
		t.Errorf("FreshFor during the refresh = %s, want a short recheck", res.FreshFor)
	}
	clk.advance(20 * time.Second) // past the TTL while the refresh still runs
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer one")
	if res.Stale != nil || v.fetches.Load() != 2 {
		t.Fatalf("past the TTL during the refresh: %+v, %d fetches", res, v.fetches.Load())
	}
	close(hold)
	if err := recorded(t, rec); err != nil {
		t.Fatal(err)
	}
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer two")
	if len(res.Events) != 0 {
		t.Errorf("events = %+v", res.Events)
	}
}

// During an outage the held credential is served at once, retries back off,
// one warning is raised for the whole outage and one info line on recovery.
func TestOutageServesStaleWithOneWarning(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	e.SetEnv(vaultOnly("one"))
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer one")
	recorded(t, rec)
	var events []Event
	v.failNow.Store(true)
	clk.advance(45 * time.Second)
	res := e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer one")
	events = append(events, res.Events...)
	if err := recorded(t, rec); err == nil {
		t.Fatal("the refresh should have failed")
	}
	for i := 1; i <= 6; i++ {
		clk.advance(cache.Backoff(i) - time.Millisecond)
		res = e.Headers(context.Background(), tracking) // back-off not over: no fetch
		events = append(events, res.Events...)
		quiet(t, rec)
		clk.advance(time.Millisecond)
		res = e.Headers(context.Background(), tracking)
		want(t, res, config.Vault, "Bearer one")
		events = append(events, res.Events...)
		if err := recorded(t, rec); err == nil {
			t.Fatal("the retry should have failed")
		}
		if i >= 4 && (res.Stale == nil || !strings.Contains(res.Stale.Message, "vault: backend down")) { // past the TTL
			t.Fatalf("retry %d: stale = %+v", i, res.Stale)
		}
	}
	events = append(events, e.Headers(context.Background(), tracking).Events...)
	if len(events) != 1 || events[0].Level != LevelWarning || !strings.Contains(events[0].Message, "vault: backend down") ||
		!strings.Contains(events[0].Message, "last good credential") {
		t.Fatalf("events during the outage = %+v, want one warning", events)
	}
	if n := v.fetches.Load(); n != 8 {
		t.Fatalf("%d fetches, want 8 (first, refresh, 6 retries)", n)
	}
	v.failNow.Store(false)
	clk.advance(cache.BackoffMax)
	trigger := e.Headers(context.Background(), tracking) // starts the refresh in the background
	if err := recorded(t, rec); err != nil {
		t.Fatal(err)
	}
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer one")
	// The refresh's event goes to the first call that drains after it was queued: the call
	// that started the refresh, when the refresh ends before that call returns, or the next.
	after := append(trigger.Events, res.Events...)
	if res.Stale != nil || len(after) != 1 || after[0].Level != LevelInfo || after[0].Message != "vault: answering again; serving fresh credentials" {
		t.Fatalf("after recovery: %+v (events of the call that started the refresh: %+v)", res, trigger.Events)
	}
}

// A hanging primary that never succeeded does not starve a healthy fallback:
// after the first failure window requests are served by the fallback without
// waiting, and the fallback keeps serving while it answers. When it fails,
// the primary is asked again.
func TestHangingPrimaryHealthyFallback(t *testing.T) {
	e, v, a, clk, rec := newClocked(t)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_VAULT_SECRET": "from-vault", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws", "MLFLOW_SECRETS_TIMEOUT_SEC": "30"})
	v.failNow.Store(true) // the first failure window (failing at once, so the test does not wait)
	res := e.Headers(context.Background(), tracking)
	want(t, res, config.AWSSecretsManager, "Bearer from-aws")
	if len(res.Attempts) != 1 || res.Attempts[0].Provider != config.Vault {
		t.Fatalf("attempts = %+v", res.Attempts)
	}
	recorded(t, rec)
	recorded(t, rec)
	if len(res.Events) != 1 || !strings.Contains(res.Events[0].Message, "vault: backend down; retrying in the background") {
		t.Fatalf("events = %+v", res.Events)
	}
	// From now on Vault hangs: a request that waited on it would wait 30 s.
	hold := make(chan struct{})
	v.hold.Store(&hold)
	v.failNow.Store(false)
	clk.advance(time.Second) // Vault's back-off is over; AWS keeps serving and Vault is not asked
	for range 3 {
		res = e.Headers(context.Background(), tracking)
		want(t, res, config.AWSSecretsManager, "Bearer from-aws")
		if len(res.Attempts) != 0 {
			t.Fatalf("attempts = %+v", res.Attempts)
		}
	}
	if v.fetches.Load() != 1 || a.fetches.Load() != 1 {
		t.Fatalf("fetches vault=%d aws=%d, want 1 and 1", v.fetches.Load(), a.fetches.Load())
	}
	quiet(t, rec)
	// AWS fails past its TTL: Vault is retried in the background (not
	// waited on: AWS's stale value is served meanwhile), then serves.
	a.failNow.Store(true)
	clk.advance(45 * time.Second)
	want(t, e.Headers(context.Background(), tracking), config.AWSSecretsManager, "Bearer from-aws")
	recorded(t, rec)
	clk.advance(16 * time.Second)
	res = e.Headers(context.Background(), tracking)
	if res.Provider != config.AWSSecretsManager || res.Stale == nil {
		t.Fatalf("aws stale: %+v", res)
	}
	<-v.entered // the first fetch's
	<-v.entered // Vault's retry is running (and hanging) while AWS's stale value is served
	close(hold)
	for range 2 {
		recorded(t, rec) // Vault's retry and AWS's
	}
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer from-vault")
}

// One call has one budget, shared by the providers in order: two providers
// that never answer make the call wait once, not once each. Every wait gets
// the same deadline, at most MLFLOW_SECRETS_TIMEOUT_SEC (or the caller's
// deadline when shorter) from the call's start.
func TestOneBudgetPerCall(t *testing.T) {
	e, v, a := newTestEngine()
	defer close(v.block)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_VAULT_SECRET": "v", "FAKE_VAULT_BLOCK": "1", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws",
		"MLFLOW_SECRETS_TIMEOUT_SEC": "3"})
	hold := make(chan struct{})
	defer close(hold)
	a.hold.Store(&hold) // AWS hangs too
	type waited struct {
		name     string
		deadline time.Time
	}
	waits := make(chan waited, 8)
	ctx, cancel := context.WithCancel(context.Background())
	e.onWait = func(name string, d time.Time) {
		waits <- waited{name, d}
		if name == config.Vault {
			cancel() // end the first wait now instead of after 3 s: what matters is the deadline
		}
	}
	start := time.Now()
	res := e.Serve(ctx, Request{Target: tracking})
	first, second := <-waits, <-waits
	if first.name != config.Vault || second.name != config.AWSSecretsManager || !first.deadline.Equal(second.deadline) {
		t.Fatalf("waits %+v and %+v: not one shared deadline", first, second)
	}
	if first.deadline.After(time.Now().Add(3 * time.Second)) {
		t.Fatalf("deadline %s after the budget", first.deadline.Sub(start))
	}
	if res.Err == nil || len(res.Attempts) != 2 {
		t.Fatalf("res = %+v", res)
	}
	for len(waits) > 0 { // pass 2's waits, on the same deadline
		if w := <-waits; !w.deadline.Equal(first.deadline) {
			t.Fatalf("%+v: another deadline", w)
		}
	}
	// The caller's deadline bounds the call when it is shorter.
	e.onWait = func(name string, d time.Time) { waits <- waited{name, d} }
	start = time.Now()
	res = e.Serve(context.Background(), Request{Target: tracking, Deadline: 100 * time.Millisecond})
	took := time.Since(start)
	if took > 2*time.Second {
		t.Fatalf("took %s with a 100 ms deadline", took)
	}
	for range 2 {
		if w := <-waits; w.deadline.After(start.Add(took + 100*time.Millisecond)) {
			t.Fatalf("%s waited until %s, past the caller's deadline", w.name, w.deadline.Sub(start))
		}
	}
	if res.Err == nil || res.Err.Variable != "MLFLOW_SECRETS_TIMEOUT_SEC" {
		t.Fatalf("res = %+v", res)
	}
}

// A provider that never succeeded backs off too; once its back-off ends and
// nothing else can serve, the caller waits on the retry.
func TestNeverSucceededBacksOff(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	e.SetEnv(vaultOnly("tok"))
	v.failNow.Store(true)
	if res := e.Headers(context.Background(), tracking); res.Err == nil || res.Err.Message != "vault: backend down" {
		t.Fatalf("res = %+v", res)
	}
	recorded(t, rec)
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || v.fetches.Load() != 1 {
		t.Fatalf("during back-off: %+v, %d fetches", res, v.fetches.Load())
	}
	quiet(t, rec)
	v.failNow.Store(false)
	clk.advance(time.Second)
	res = e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer tok")
	if v.fetches.Load() != 2 || len(res.Attempts) != 0 {
		t.Fatalf("after back-off: %+v, %d fetches", res, v.fetches.Load())
	}
}

// Invalidate forgets every credential at once: the next call fetches again
// and waits for it (the dropped value is not served).
func TestInvalidate(t *testing.T) {
	e, v, _, _, rec := newClocked(t)
	e.SetEnv(vaultOnly("one"))
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer one")
	recorded(t, rec)
	two := "two"
	v.override.Store(&two)
	if n := e.Invalidate(); n != 1 {
		t.Fatalf("Invalidate dropped %d, want 1", n)
	}
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer two")
	recorded(t, rec)
	if n := v.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

// Settings warnings are events once per settings change.
func TestSettingsWarningsAreEventsOnce(t *testing.T) {
	e, _, _ := newTestEngine()
	env := vaultOnly("tok")
	env["FAKE_VAULT_WARN"] = "address is cleartext"
	e.SetEnv(env)
	res := e.Headers(context.Background(), tracking)
	if len(res.Events) != 1 || res.Events[0] != (Event{Level: LevelWarning, Message: "vault: address is cleartext"}) {
		t.Fatalf("events = %+v", res.Events)
	}
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); len(res.Events) != 0 {
		t.Fatalf("same settings again: events = %+v", res.Events)
	}
	env["FAKE_VAULT_WARN"] = "vault: another"
	e.SetEnv(env)
	if res := e.Headers(context.Background(), tracking); len(res.Events) != 1 || res.Events[0].Message != "vault: another" {
		t.Fatalf("changed settings: events = %+v", res.Events)
	}
}

// The engine names the provider in its errors exactly once, whether or not
// the provider's message already does; a client that cannot be built is an
// error of that provider and is retried later.
func TestErrorsNamedOnce(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	e.SetEnv(vaultOnly("tok"))
	v.plainErr.Store(true)
	if res := e.Headers(context.Background(), tracking); res.Err == nil || res.Err.Error() != "vault: permission denied" {
		t.Fatalf("res = %+v", res)
	}
	recorded(t, rec)
	v.plainErr.Store(false)
	v.failNow.Store(true)
	clk.advance(time.Second)
	if res := e.Headers(context.Background(), tracking); res.Err == nil || res.Err.Error() != "vault: backend down" {
		t.Fatalf("res = %+v", res)
	}
	recorded(t, rec)

	env := vaultOnly("other")
	env["FAKE_VAULT_NEWFAIL"] = "1"
	e.SetEnv(env)
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || res.Err.Error() != "vault: cannot build the client" || res.Err.Variable != "FAKE_VAULT_NEWFAIL" {
		t.Fatalf("res = %+v", res)
	}
}

// A provider built for settings that were replaced while it was being built
// serves that one fetch and is then closed. A caller that was waiting on the
// replaced settings may build one more for them (the cache drops their entry,
// and the singleflight with it); that one is closed after its fetch too. The
// fake's New returns one object per settings, so each build must add exactly
// one close.
func TestProviderOfReplacedSettingsIsClosed(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(vaultOnly("one"))
	hold := make(chan struct{})
	v.hold.Store(&hold)
	done := make(chan Result)
	go func() { done <- e.Headers(context.Background(), tracking) }()
	<-v.entered
	e.SetEnv(vaultOnly("two"))
	close(hold)
	if res := <-done; res.Headers["Authorization"] != "Bearer one" {
		t.Fatalf("res = %+v", res)
	}
	if closed, built := v.closed.Load(), v.instances.Load(); closed < 1 || closed != built {
		t.Fatalf("closed %d times, built %d times: want each built provider closed once", closed, built)
	}
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer two")
}
