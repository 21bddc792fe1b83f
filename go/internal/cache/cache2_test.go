package cache

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The refresh points of many values fetched with one TTL are spread over
// [TTL/2, 3/4 TTL]: every one inside the window, and not all equal. The
// spread is measured on the injected clock with a seeded random source.
func TestJitter(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string](clk.now)
	c.SetRand(rand.New(rand.NewPCG(1, 2)).Float64)
	src := &counter{}
	f := fetchOf(src)
	seen := map[time.Duration]bool{}
	lo, hi := ttl/2, ttl-ttl/4
	for i := range 200 {
		r, err := c.Get(context.Background(), "k"+strconv.Itoa(i), f)
		if err != nil {
			t.Fatal(err)
		}
		if r.FreshFor < lo || r.FreshFor > hi {
			t.Fatalf("refresh point %s outside [%s, %s]", r.FreshFor, lo, hi)
		}
		seen[r.FreshFor] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct refresh points among 200: not jittered", len(seen))
	}
	// The background refresh starts at that point, not before.
	r := mustGetKey(t, c, "k0", f)
	clk.advance(r.FreshFor - time.Millisecond)
	if r := mustGetKey(t, c, "k0", f); r.Pending {
		t.Fatal("refresh started before its point")
	}
	clk.advance(time.Millisecond)
	if r := mustGetKey(t, c, "k0", f); !r.Pending {
		t.Fatal("refresh not started at its point")
	}
}

func mustGetKey(t *testing.T, c *Cache[string], key string, f Fetch[string]) Result[string] {
	t.Helper()
	r, err := c.Get(context.Background(), key, f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A value that says when it expires is refreshed shortly before that when
// it comes before the TTL's refresh point, and never served past it, not
// even stale while refreshes fail.
func TestExpiryAwareRefresh(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	var exp time.Time
	f := fetchOf(src)
	f.TTL = time.Hour
	f.Expires = func(string) time.Time { return exp }
	exp = clk.now().Add(40 * time.Second) // lead: a quarter of 40 s = 10 s
	r := mustGet(t, c, f)
	_ = background(t, done)
	if r.FreshFor != 30*time.Second {
		t.Fatalf("FreshFor = %s, want 30s (10 s before the expiry)", r.FreshFor)
	}
	if _, refresh, expires, ok := c.Current("k"); !ok || !expires.Equal(exp) || !refresh.Equal(exp.Add(-10*time.Second)) {
		t.Fatalf("Current: refresh %s expires %s ok %v", refresh, expires, ok)
	}
	src.fail.Store(true)
	clk.advance(30 * time.Second)
	if r := mustGet(t, c, f); r.Value != "v1" || !r.Pending || r.Stale {
		t.Fatalf("at the refresh point: %+v", r)
	}
	if err := background(t, done); err == nil {
		t.Fatal("refresh should fail")
	}
	clk.advance(10*time.Second - time.Millisecond)
	if r := mustGet(t, c, f); r.Value != "v1" || r.FreshFor != time.Millisecond {
		t.Fatalf("just before the expiry: %+v", r)
	}
	clk.advance(time.Millisecond) // expired: never served, although the TTL and stale window are far off
	if r, err := c.Get(context.Background(), "k", f); err == nil || r.Value != "" {
		t.Fatalf("past the expiry: %+v, %v", r, err)
	}
	_ = background(t, done)
	// A long-lived value: the TTL's point comes first.
	exp = clk.now().Add(24 * time.Hour)
	src.fail.Store(false)
	clk.advance(BackoffMax)
	if r := mustGet(t, c, f); r.FreshFor != 45*time.Minute {
		t.Fatalf("long expiry: FreshFor %s, want 45m", r.FreshFor)
	}
	_ = background(t, done)
	// A value already expired when fetched is an error, never served.
	exp = clk.now().Add(-time.Second)
	if n := c.Invalidate(func(string) bool { return true }); n != 1 {
		t.Fatal(n)
	}
	if _, err := c.Get(context.Background(), "k", f); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired on arrival: %v", err)
	}
	_ = background(t, done)
}

var errRefused = errors.New("refused")

// A refresh failure marked by Fetch.Ends drops the held value at once: it is
// not served stale, and the error is returned.
func TestEndsDropsTheValue(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	f.Ends = func(err error) bool { return errors.Is(err, errRefused) }
	refuse := false
	inner := f.Do
	f.Do = func(ctx context.Context) (string, error) {
		v, err := inner(ctx)
		if refuse {
			return "", errRefused
		}
		return v, err
	}
	mustGet(t, c, f)
	_ = background(t, done)
	// A transient failure keeps the value ...
	src.fail.Store(true)
	clk.advance(ttl)
	if r := mustGet(t, c, f); r.Value != "v1" {
		t.Fatal(r)
	}
	_ = background(t, done)
	if r := mustGet(t, c, f); r.Value != "v1" || !r.Stale {
		t.Fatalf("transient: %+v", r)
	}
	// ... a refusal ends it.
	refuse = true
	clk.advance(Backoff(1))
	mustGet(t, c, f)
	if err := background(t, done); !errors.Is(err, errRefused) {
		t.Fatal(err)
	}
	if r, err := c.Get(context.Background(), "k", f); !errors.Is(err, errRefused) || r.Value != "" || c.Has("k") {
		t.Fatalf("after the refusal: %+v, %v", r, err)
	}
}

// Renew refreshes only the value it is asked about, only while it is held,
// joins a running refresh, starts nothing during a back-off, and keeps the
// value when the refresh fails.
func TestRenew(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	is := func(v string) func(string) bool { return func(x string) bool { return x == v } }
	if c.Renew(context.Background(), "k", f, is("v1")) {
		t.Fatal("renewed a key never fetched")
	}
	mustGet(t, c, f)
	_ = background(t, done)
	if c.Renew(context.Background(), "k", f, is("v0")) || src.calls.Load() != 1 {
		t.Fatal("renewed a value no longer held")
	}
	if !c.Renew(context.Background(), "k", f, is("v1")) {
		t.Fatal("did not renew the held value")
	}
	_ = background(t, done)
	if r := mustGet(t, c, f); r.Value != "v2" || src.calls.Load() != 2 {
		t.Fatalf("after renew: %+v", r)
	}
	// A failed renewal keeps the value; during the back-off nothing is fetched.
	src.fail.Store(true)
	if !c.Renew(context.Background(), "k", f, is("v2")) {
		t.Fatal("no renewal")
	}
	_ = background(t, done)
	if r := mustGet(t, c, f); r.Value != "v2" {
		t.Fatalf("failed renewal dropped the value: %+v", r)
	}
	if !c.Renew(context.Background(), "k", f, is("v2")) || src.calls.Load() != 3 {
		t.Fatal("renewed during the back-off")
	}
	// Concurrent renewals of one value share one fetch.
	src.fail.Store(false)
	clk.advance(Backoff(1))
	src.gate = make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() { defer wg.Done(); c.Renew(context.Background(), "k", f, is("v2")) }()
	}
	deadline := time.Now().Add(10 * time.Second) // a failure bound, not a wait: the loop ends as soon as the fetch starts
	for src.calls.Load() < 4 {                   // the first renewal's fetch is held; later ones join it or find v4 and do nothing
		if time.Now().After(deadline) {
			close(src.gate)
			t.Fatal("no renewal started its fetch")
		}
		runtime.Gosched()
	}
	close(src.gate)
	wg.Wait()
	_ = background(t, done)
	if n := src.calls.Load(); n != 4 {
		t.Fatalf("%d fetches, want 4 (one for 16 concurrent renewals)", n)
	}
	// A caller that gives up waiting leaves the fetch running.
	src.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !c.Renew(ctx, "k", f, is("v4")) {
		t.Fatal("no renewal")
	}
	close(src.gate)
	_ = background(t, done)
	if r := mustGet(t, c, f); r.Value != "v5" {
		t.Fatal(r)
	}
}

// The cache forgets the least recently used keys beyond its limit.
func TestBounded(t *testing.T) {
	c, _, done := newTest(t)
	c.limit = 3
	src := &counter{}
	f := fetchOf(src)
	for _, k := range []string{"a", "b", "c"} {
		mustGetKey(t, c, k, f)
		<-done
	}
	mustGetKey(t, c, "a", f) // a is now the most recently used
	mustGetKey(t, c, "d", f)
	_ = background(t, done)
	if c.Len() != 3 || !c.Has("a") || c.Has("b") || !c.Has("c") || !c.Has("d") {
		t.Fatalf("len %d; a %v b %v c %v d %v", c.Len(), c.Has("a"), c.Has("b"), c.Has("c"), c.Has("d"))
	}
	if New[string](nil).limit != MaxEntries {
		t.Fatal("default limit")
	}
}

// RefreshBy (a Vault login lease, say) moves the refresh ahead of it, but,
// unlike Expires, never ends the value: past it, the value is served stale.
func TestRefreshByIsSoft(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	f.TTL = time.Hour
	by := clk.now().Add(40 * time.Second) // refresh 10 s before it
	f.RefreshBy = func(string) time.Time { return by }
	if r := mustGet(t, c, f); r.FreshFor != 30*time.Second {
		t.Fatalf("FreshFor = %s, want 30s (10 s before RefreshBy)", r.FreshFor)
	}
	_ = background(t, done)
	src.fail.Store(true)
	clk.advance(30 * time.Second)
	if r := mustGet(t, c, f); r.Value != "v1" || !r.Pending {
		t.Fatalf("at the refresh point: %+v", r)
	}
	if err := background(t, done); err == nil {
		t.Fatal("refresh should fail")
	}
	clk.advance(time.Minute) // past RefreshBy, inside the TTL: still served
	r, err := c.Get(context.Background(), "k", f)
	if err != nil || r.Value != "v1" {
		t.Fatalf("past RefreshBy: %+v, %v", r, err)
	}
}

// A TTL changed by the user applies to the value already held: shortened, the
// refresh comes due from when it was fetched, not after the old TTL's refresh.
func TestShortenedTTLAppliesToTheHeldValue(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	f.TTL = time.Hour
	if r := mustGet(t, c, f); r.Value != "v1" || r.FreshFor < 30*time.Minute {
		t.Fatalf("first: %+v", r)
	}
	_ = background(t, done)
	clk.advance(2 * time.Second)
	f.TTL = time.Second // refresh due at most 0.75 s after the fetch: already passed
	if r := mustGet(t, c, f); r.Value != "v1" || !r.Pending {
		t.Fatalf("after the TTL was shortened: %+v (want the held value and a refresh started)", r)
	}
	if err := background(t, done); err != nil {
		t.Fatal(err)
	}
	if r := mustGet(t, c, f); r.Value != "v2" {
		t.Fatalf("after the refresh: %+v", r)
	}
}
