package cache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// counter fetches "v<n>" and counts calls; fail makes it return an error;
// gate, when set, holds each fetch until a value is sent on it.
type counter struct {
	calls atomic.Int64
	fail  atomic.Bool
	gate  chan struct{}
}

func (c *counter) fetch(context.Context) (string, error) {
	n := c.calls.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if c.fail.Load() {
		return "", errors.New("backend down")
	}
	return "v" + strconv.Itoa(int(n)), nil
}

// newTest returns a cache on a fake clock whose recorded fetches are
// reported on the returned channel.
func newTest(t *testing.T) (*Cache[string], *clock, chan error) {
	t.Helper()
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string](clk.now)
	c.SetRand(func() float64 { return 1 }) // refresh at 3/4 of the TTL; TestJitter draws at random
	done := make(chan error, 16)
	c.OnRecord(func(_ string, err error) { done <- err })
	return c, clk, done
}

// background waits until the cache has recorded one background fetch.
func background(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no background fetch was recorded")
		return nil
	}
}

// noFetch asserts that no fetch was recorded since the last check.
func noFetch(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("unexpected fetch recorded (err %v)", err)
	default:
	}
}

const ttl = 8 * time.Second

func fetchOf(src *counter) Fetch[string] {
	return Fetch[string]{TTL: ttl, Timeout: time.Minute, Do: src.fetch}
}

func mustGet(t *testing.T, c *Cache[string], f Fetch[string]) Result[string] {
	t.Helper()
	r, err := c.Get(context.Background(), "k", f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := Backoff(1000); got != BackoffMax {
		t.Errorf("Backoff(1000) = %s", got)
	}
	if got := RefreshAfter(2*time.Second, 1); got != 1500*time.Millisecond {
		t.Errorf("RefreshAfter(2s, 1) = %s", got)
	}
	if got := RefreshAfter(2*time.Second, 0); got != time.Second {
		t.Errorf("RefreshAfter(2s, 0) = %s", got)
	}
	if got := RefreshAfter(2*time.Second, 7); got != 1500*time.Millisecond {
		t.Errorf("RefreshAfter(2s, 7) = %s (not clamped)", got)
	}
}

// The value is refreshed in the background from 3/4 of the TTL on, while the
// callers keep getting the held value without waiting.
func TestRefreshAhead(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	if r := mustGet(t, c, f); r.Value != "v1" || r.FreshFor != 6*time.Second {
		t.Fatalf("first = %+v", r)
	}
	_ = background(t, done)
	clk.advance(5 * time.Second)
	if r := mustGet(t, c, f); r.Value != "v1" || r.FreshFor != time.Second || r.Pending {
		t.Fatalf("before the refresh point = %+v", r)
	}
	noFetch(t, done)
	src.gate = make(chan struct{})
	clk.advance(time.Second) // the refresh point
	// The refresh is held at the gate: Get must still answer at once.
	r := mustGet(t, c, f)
	if r.Value != "v1" || !r.Pending || r.Stale || r.FreshFor != time.Second {
		t.Fatalf("at the refresh point = %+v", r)
	}
	clk.advance(3 * time.Second) // past the TTL while the refresh still runs: not stale, no second fetch
	if r := mustGet(t, c, f); r.Value != "v1" || r.Stale || !r.Pending {
		t.Fatalf("past the TTL during the refresh = %+v", r)
	}
	close(src.gate)
	if err := background(t, done); err != nil {
		t.Fatal(err)
	}
	if r := mustGet(t, c, f); r.Value != "v2" || r.Pending || r.FreshFor != 6*time.Second {
		t.Fatalf("after the refresh = %+v", r)
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

// During an outage the held value is served at once, refreshes are retried in
// the background with capped exponential back-off, and recovery replaces it.
func TestStaleWhileRevalidate(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	mustGet(t, c, f)
	_ = background(t, done)
	src.fail.Store(true)
	clk.advance(6 * time.Second)
	mustGet(t, c, f) // starts the first refresh, which fails
	if err := background(t, done); err == nil {
		t.Fatal("refresh should have failed")
	}
	// Still within the TTL: served, not stale yet; the next try comes after Backoff(1).
	if r := mustGet(t, c, f); r.Value != "v1" || r.Stale || r.FreshFor != time.Second {
		t.Fatalf("after a failed refresh = %+v", r)
	}
	noFetch(t, done)
	tries := 1
	for i := 1; i <= 7; i++ {
		clk.advance(Backoff(i) - time.Millisecond)
		r := mustGet(t, c, f)
		noFetch(t, done) // the back-off has not ended: no fetch
		if r.Value != "v1" || r.FreshFor != time.Millisecond {
			t.Fatalf("try %d, during back-off: %+v", i, r)
		}
		clk.advance(time.Millisecond)
		r = mustGet(t, c, f) // the back-off has ended: one background retry
		if err := background(t, done); err == nil {
			t.Fatal("retry should have failed")
		}
		tries++
		// Stale (with the refresh error) once past the TTL: from the second retry on.
		if wantStale := i >= 2; r.Value != "v1" || r.Stale != wantStale || (wantStale && (r.Err == nil || r.Err.Error() != "backend down")) {
			t.Fatalf("try %d: %+v", i, r)
		}
	}
	if n := src.calls.Load(); n != int64(tries+1) {
		t.Fatalf("%d fetches, want %d", n, tries+1)
	}
	src.fail.Store(false)
	clk.advance(BackoffMax)
	mustGet(t, c, f)
	if err := background(t, done); err != nil {
		t.Fatal(err)
	}
	if r := mustGet(t, c, f); r.Stale || r.Err != nil || r.Value == "v1" || r.FreshFor != 6*time.Second {
		t.Fatalf("after recovery = %+v", r)
	}
}

// Past TTL + MaxStale the held value is dropped and the caller waits on a fetch.
func TestStaleWindowEnds(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	mustGet(t, c, f)
	_ = background(t, done)
	src.fail.Store(true)
	clk.advance(ttl + MaxStale)
	if r, err := c.Get(context.Background(), "k", f); err == nil || r.Value != "" {
		t.Fatalf("past the stale window = %+v, %v", r, err)
	}
	if c.Has("k") {
		t.Fatal("the value past the stale window is still held")
	}
}

// A key that never produced a value backs off like one that did: during the
// back-off its last error comes back at once without asking the backend.
func TestNeverSucceededBacksOff(t *testing.T) {
	c, clk, done := newTest(t)
	src := &counter{}
	src.fail.Store(true)
	f := fetchOf(src)
	if _, err := c.Get(context.Background(), "k", f); err == nil {
		t.Fatal("want an error")
	}
	_ = background(t, done)
	r, err := c.Get(context.Background(), "k", f)
	if err == nil || r.FreshFor != time.Second || src.calls.Load() != 1 {
		t.Fatalf("during back-off: %+v, %v, %d fetches", r, err, src.calls.Load())
	}
	if r, err := c.Peek("k", f); err == nil || errors.Is(err, ErrPending) || r.Pending {
		t.Fatalf("peek during back-off: %+v, %v", r, err)
	}
	noFetch(t, done)
	clk.advance(time.Second)
	src.gate = make(chan struct{})
	r, err = c.Peek("k", f) // starts a background retry, answers at once
	if err == nil || !r.Pending || r.FreshFor <= 0 {
		t.Fatalf("peek after back-off: %+v, %v", r, err)
	}
	close(src.gate)
	_ = background(t, done)
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	src.fail.Store(false)
	clk.advance(Backoff(2))
	if r := mustGet(t, c, f); r.Value != "v3" {
		t.Fatalf("after recovery: %+v", r)
	}
}

func TestPeekStartsFirstFetch(t *testing.T) {
	c, _, done := newTest(t)
	src := &counter{gate: make(chan struct{})}
	f := fetchOf(src)
	if r, err := c.Peek("k", f); !errors.Is(err, ErrPending) || !r.Pending {
		t.Fatalf("peek on a new key: %+v, %v", r, err)
	}
	close(src.gate)
	if r := mustGet(t, c, f); r.Value != "v1" { // joins the running fetch
		t.Fatalf("get = %+v", r)
	}
	_ = background(t, done)
	if r, err := c.Peek("k", f); err != nil || r.Value != "v1" || src.calls.Load() != 1 {
		t.Fatalf("peek after = %+v, %v, %d fetches", r, err, src.calls.Load())
	}
}

// Every caller of a cold key waits on the same fetch. The fetch is held
// until every caller has started and either a second fetch begins (which is
// the failure this test catches: without singleflight it comes at once) or
// a grace period passes.
func TestOneFetchForConcurrentCallers(t *testing.T) {
	c := New[string](nil)
	const callers = 32
	release, second := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	f := Fetch[string]{TTL: time.Minute, Timeout: time.Minute, Do: func(context.Context) (string, error) {
		if calls.Add(1) == 2 {
			close(second)
		}
		<-release
		return "v", nil
	}}
	var arrived, wg sync.WaitGroup
	arrived.Add(callers)
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arrived.Done()
			r, err := c.Get(context.Background(), "k", f)
			if err != nil || r.Value != "v" {
				errs <- errors.Join(err, errors.New("wrong value "+r.Value))
			}
		}()
	}
	arrived.Wait()
	select {
	case <-second:
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d fetches for %d concurrent callers, want 1", n, callers)
	}
}

func TestCallerDeadlineDoesNotStopTheFetch(t *testing.T) {
	c, _, done := newTest(t)
	src := &counter{gate: make(chan struct{})}
	f := fetchOf(src)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r, err := c.Get(ctx, "k", f); !errors.Is(err, context.Canceled) || !r.Pending {
		t.Fatalf("cancelled caller: %+v, %v", r, err)
	}
	close(src.gate)
	if err := background(t, done); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Peek("k", f); err != nil || r.Value != "v1" {
		t.Fatalf("the fetch went on: %+v, %v", r, err)
	}
}

func TestPanicInFetchIsAnError(t *testing.T) {
	c, _, done := newTest(t)
	f := Fetch[string]{TTL: ttl, Timeout: time.Minute, Do: func(context.Context) (string, error) { panic("boom") }}
	if _, err := c.Get(context.Background(), "k", f); err == nil || err.Error() != "internal error while fetching: boom" {
		t.Fatalf("err = %v", err)
	}
	if err := <-done; err == nil {
		t.Fatal("the failure was not recorded")
	}
}

// Invalidate drops every value at once (no minimum age): the next Get
// fetches again instead of serving the dropped value.
func TestInvalidate(t *testing.T) {
	c, _, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	mustGet(t, c, f)
	_ = background(t, done)
	if n := c.Invalidate(func(k string) bool { return k == "other" }); n != 0 {
		t.Fatalf("dropped %d values of another key", n)
	}
	if n := c.Invalidate(func(string) bool { return true }); n != 1 {
		t.Fatalf("a value just fetched was not dropped (%d)", n)
	}
	if r := mustGet(t, c, f); r.Value != "v2" || src.calls.Load() != 2 {
		t.Fatalf("after Invalidate = %+v, %d fetches", r, src.calls.Load())
	}
	_ = background(t, done)
}

func TestRetain(t *testing.T) {
	c, _, done := newTest(t)
	src := &counter{}
	f := fetchOf(src)
	for _, k := range []string{"a", "b"} {
		if _, err := c.Get(context.Background(), k, f); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	c.Retain(func(k string) bool { return k == "a" })
	if r, _ := c.Get(context.Background(), "a", f); r.Value != "v1" || src.calls.Load() != 2 {
		t.Fatal("retained key was fetched again")
	}
	if r, _ := c.Get(context.Background(), "b", f); r.Value != "v3" {
		t.Fatal("dropped key was not fetched again")
	}
	_ = background(t, done)
	// A fetch that completes after its key was dropped is discarded.
	src.gate = make(chan struct{})
	if _, err := c.Peek("c", f); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	c.Retain(func(string) bool { return false })
	close(src.gate)
	_ = background(t, done)
	if c.Has("c") || c.Has("a") {
		t.Fatal("a dropped key holds a value")
	}
}
