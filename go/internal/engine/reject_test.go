package engine

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/cache"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/config"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestFingerprint(t *testing.T) {
	a := Fingerprint(map[string]string{"Authorization": "Bearer x", "X-B": "2"})
	if a != Fingerprint(map[string]string{"x-b": "2", "authorization": "Bearer x"}) || len(a) != 64 {
		t.Fatalf("not stable under order and case: %s", a)
	}
	for _, h := range []map[string]string{
		{"Authorization": "Bearer y", "X-B": "2"}, {"Authorization": "Bearer x"}, {"Authorization": "Bearer x", "X-B": "2", "X-C": ""},
		{"Authorization": "Bearer x\x00x-b", "": "2"},
	} {
		if Fingerprint(h) == a {
			t.Fatalf("%v has the same fingerprint", h)
		}
	}
	e, _, _ := newTestEngine()
	e.SetEnv(vaultOnly("tok"))
	res := e.Headers(context.Background(), tracking)
	if res.Fingerprint != Fingerprint(map[string]string{"Authorization": "Bearer tok"}) {
		t.Fatalf("reply fingerprint %q", res.Fingerprint)
	}
	if res := e.Headers(context.Background(), "https://evil.test"); res.Fingerprint != "" {
		t.Fatal("an error reply has a fingerprint")
	}
}

// Issue 14's first repro, through the engine: a value is held, the backend
// goes down and the stale value is served; a server answers 401 and the
// caller rejects it. The refresh it causes fails, so the old value is still
// served to the rejecting caller (same fingerprint: it does not re-send) and
// to every other caller, without waiting.
func TestRejectDuringOutageKeepsServingStale(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	e.SetEnv(vaultOnly("one"))
	first := e.Headers(context.Background(), tracking)
	want(t, first, config.Vault, "Bearer one")
	recorded(t, rec)
	v.failNow.Store(true)
	clk.advance(61 * time.Second) // past the TTL: the refresh fails
	e.Headers(context.Background(), tracking)
	recorded(t, rec)
	clk.advance(cache.Backoff(1)) // the back-off is over: a reject may refresh
	res := e.Serve(context.Background(), Request{Target: tracking, Reject: first.Fingerprint})
	if n := v.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3 (the reject refreshed once)", n)
	}
	recorded(t, rec)
	want(t, res, config.Vault, "Bearer one")
	if res.Fingerprint != first.Fingerprint || res.Stale == nil {
		t.Fatalf("rejecting caller: %+v", res)
	}
	for range 5 {
		res := e.Headers(context.Background(), tracking)
		want(t, res, config.Vault, "Bearer one")
		if res.Stale == nil {
			t.Fatalf("other caller: %+v", res)
		}
	}
	// During the back-off a reject starts nothing and still gets the value.
	res = e.Serve(context.Background(), Request{Target: tracking, Reject: first.Fingerprint})
	want(t, res, config.Vault, "Bearer one")
	quiet(t, rec)
	if n := v.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches during the back-off", n)
	}
}

// A reject of the current value refreshes it and returns the new one; a
// reject of a value already replaced (an old fingerprint) fetches nothing.
func TestRejectRefreshesOnlyTheCurrentValue(t *testing.T) {
	e, v, _, _, rec := newClocked(t)
	e.SetEnv(vaultOnly("one"))
	old := e.Headers(context.Background(), tracking)
	recorded(t, rec)
	two := "two"
	v.override.Store(&two) // rotated in the backend
	res := e.Serve(context.Background(), Request{Target: tracking, Reject: old.Fingerprint})
	recorded(t, rec)
	want(t, res, config.Vault, "Bearer two")
	if res.Fingerprint == old.Fingerprint || v.fetches.Load() != 2 {
		t.Fatalf("after the reject: %+v, %d fetches", res, v.fetches.Load())
	}
	for _, fp := range []string{old.Fingerprint, "0123", ""} {
		res = e.Serve(context.Background(), Request{Target: tracking, Reject: fp})
		want(t, res, config.Vault, "Bearer two")
	}
	quiet(t, rec)
	if n := v.fetches.Load(); n != 2 {
		t.Fatalf("a reject of an old fingerprint fetched: %d fetches", n)
	}
}

// Many callers rejecting the same value at once cause one fetch: they join
// the refresh running, or find the value already replaced.
func TestConcurrentRejectsOneFetch(t *testing.T) {
	e, v, _ := newTestEngine()
	e.SetEnv(vaultOnly("one"))
	old := e.Headers(context.Background(), tracking)
	two := "two"
	v.override.Store(&two)
	hold := make(chan struct{})
	v.hold.Store(&hold)
	var wg sync.WaitGroup
	results := make(chan Result, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- e.Serve(context.Background(), Request{Target: tracking, Reject: old.Fingerprint})
		}()
	}
	<-v.entered // the first fetch's
	<-v.entered // the reject's refresh is running
	close(hold)
	wg.Wait()
	close(results)
	for res := range results {
		if res.Headers["Authorization"] != "Bearer two" {
			t.Fatalf("a rejecting caller got %+v", res)
		}
	}
	if n := v.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches for 32 concurrent rejects, want 2 (first + one refresh)", n)
	}
}

// A rejection (the backend answered 403) is reported at once, naming the
// provider: the next provider, which would serve, is not used.
func TestRejectionDoesNotFallBack(t *testing.T) {
	e, v, a := newTestEngine()
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_VAULT_SECRET": "from-vault", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws"})
	v.rejectNow.Store(true)
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || res.Headers != nil || !strings.HasPrefix(res.Err.Message, "vault: permission denied (HTTP 403)") ||
		res.Err.Variable != "FAKE_POLICY" || !msaerr.IsRejection(res.Err) {
		t.Fatalf("res = %+v", res)
	}
	if a.fetches.Load() != 0 {
		t.Fatal("the secondary was asked after a rejection")
	}
	// Unavailable (down) is different: the secondary serves.
	v.rejectNow.Store(false)
	v.failNow.Store(true)
	e.Invalidate()
	e2, v2, _ := newTestEngine()
	e2.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager", "MLFLOW_TRACKING_URI": tracking,
		"FAKE_VAULT_SECRET": "from-vault", "FAKE_AWS_SECRETS_MANAGER_SECRET": "from-aws"})
	v2.failNow.Store(true)
	want(t, e2.Headers(context.Background(), tracking), config.AWSSecretsManager, "Bearer from-aws")
}

// A held credential whose refresh is refused (policy revoked: 403; secret
// deleted: 404) stops being served at that refresh, with one clear error;
// a transient failure would have kept it (stale).
func TestRejectedRefreshEndsStaleServing(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	e.SetEnv(vaultOnly("one"))
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer one")
	recorded(t, rec)
	v.rejectNow.Store(true)
	clk.advance(45 * time.Second) // the refresh point: the refresh is refused
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer one")
	recorded(t, rec)
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || res.Headers != nil || !strings.Contains(res.Err.Message, "vault: permission denied (HTTP 403)") || res.Stale != nil {
		t.Fatalf("after the refused refresh: %+v", res)
	}
	if len(res.Events) != 1 || !strings.Contains(res.Events[0].Message, "403") {
		t.Fatalf("events %+v", res.Events)
	}
}

// A credential that says when it ends is refreshed before that, never
// served past it, and info shows both times.
func TestExpiryAwareRefreshAndInfo(t *testing.T) {
	e, v, _, clk, rec := newClocked(t)
	exp := clk.now().Add(20 * time.Second)
	v.expires.Store(&exp)
	e.SetEnv(vaultOnly("one"))
	res := e.Headers(context.Background(), tracking)
	want(t, res, config.Vault, "Bearer one")
	recorded(t, rec)
	if res.FreshFor != 15*time.Second {
		t.Fatalf("FreshFor %s, want 15s (a quarter of its 20 s life before the expiry)", res.FreshFor)
	}
	info := e.Info()
	if p := info.Providers[0]; !p.Expires.Equal(exp) || !p.RefreshAt.Equal(exp.Add(-5*time.Second)) {
		t.Fatalf("info: refresh %s expires %s", p.RefreshAt, p.Expires)
	}
	v.failNow.Store(true)
	clk.advance(15 * time.Second)
	want(t, e.Headers(context.Background(), tracking), config.Vault, "Bearer one")
	recorded(t, rec)
	clk.advance(5 * time.Second) // expired; the TTL (60 s) is far off
	if res := e.Headers(context.Background(), tracking); res.Err == nil || res.Headers != nil {
		t.Fatalf("served past its expiry: %+v", res)
	}
	// Fetched already expired: a rejection, never served.
	past := clk.now().Add(-time.Second)
	v.expires.Store(&past)
	v.failNow.Store(false)
	clk.advance(cache.BackoffMax)
	res = e.Headers(context.Background(), tracking)
	if res.Err == nil || !strings.Contains(res.Err.Message, "vault: the credential expired at") || !msaerr.IsRejection(res.Err) {
		t.Fatalf("expired on arrival: %+v", res)
	}
}

// A fetch that keeps failing to connect until its deadline reports the
// connection failure as the cause, not a bare timeout blaming
// MLFLOW_SECRETS_TIMEOUT_SEC.
func TestTimeoutKeepsTheTransportCause(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	e, v, _ := newTestEngine()
	u := "http://" + addr + "/v1/secret"
	v.transport.Store(&u)
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "FAKE_VAULT_SECRET": "x", "MLFLOW_TRACKING_URI": tracking,
		"MLFLOW_SECRETS_TIMEOUT_SEC": "1"})
	res := e.Headers(context.Background(), tracking)
	if res.Err == nil || !strings.Contains(res.Err.Message, "connection refused") || res.Err.Variable == config.EnvTimeout ||
		!strings.HasPrefix(res.Err.Message, "vault: ") {
		t.Fatalf("res = %+v", res.Err)
	}
}

// Events beyond the queue's bound are summed up in one warning.
func TestEventOverflowIsOneSummary(t *testing.T) {
	e, _, _ := newTestEngine()
	e.mu.Lock()
	for i := range 5000 {
		e.emit(LevelWarning, fmt.Sprintf("host %d refused", i))
	}
	e.mu.Unlock()
	ev := e.drain()
	if len(ev) != maxEvents+1 || !strings.Contains(ev[maxEvents].Message, fmt.Sprintf("%d more messages", 5000-maxEvents)) {
		t.Fatalf("%d events, last %+v", len(ev), ev[len(ev)-1])
	}
	if e.drain() != nil {
		t.Fatal("drained twice")
	}
}

// Settings carry the budget, the log level and every warning, also when
// the configuration is unusable.
func TestSettingsAndWarnings(t *testing.T) {
	e, _, _ := newTestEngine()
	env := vaultOnly("tok")
	env["FAKE_VAULT_WARN"] = "address is cleartext"
	env["MLFLOW_SECRETS_LOG_LEVEL"] = "loud"
	env["MLFLOW_SECRETS_TIMEOUT_SEC"] = "2.5"
	e.SetEnv(env)
	b := e.Settings()
	if b.Timeout != 2500*time.Millisecond || b.LogLevel != "INFO" || len(b.Warnings) != 2 ||
		!strings.Contains(b.Warnings[0], "MLFLOW_SECRETS_LOG_LEVEL") || b.Warnings[1] != "vault: address is cleartext" {
		t.Fatalf("settings %+v", b)
	}
	if info := e.Info(); len(info.Warnings) != 2 || info.Timeout != b.Timeout {
		t.Fatalf("info %+v", info)
	}
	e.SetEnv(config.Env{"MLFLOW_SECRETS_AUTH_ENABLE": "nope", "MLFLOW_SECRETS_LOG_LEVEL": "debug"})
	if b := e.Settings(); b.LogLevel != "DEBUG" || b.Timeout != config.DefaultTimeout || b.Warnings == nil {
		t.Fatalf("unusable configuration: %+v", b)
	}
	if info := e.Info(); info.Err == nil || info.LogLevel != "DEBUG" {
		t.Fatalf("info %+v", info)
	}
}
