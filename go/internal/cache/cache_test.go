package cache

import (
	"context"
	"errors"
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

func fctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// counter fetches "v<n>" and counts calls; fail makes it return an error.
type counter struct {
	calls atomic.Int64
	fail  atomic.Bool
}

func (c *counter) fetch(context.Context) (string, error) {
	n := c.calls.Add(1)
	if c.fail.Load() {
		return "", errors.New("backend down")
	}
	return "v" + string(rune('0'+n)), nil
}

func TestTTL(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string](clk.now)
	var src counter
	get := func() Result[string] {
		r, err := c.Get(context.Background(), "k", 10*time.Second, fctx, src.fetch)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := get(); r.Value != "v1" || r.FreshFor != 10*time.Second {
		t.Fatalf("first = %+v", r)
	}
	clk.advance(9 * time.Second)
	if r := get(); r.Value != "v1" || r.FreshFor != time.Second || src.calls.Load() != 1 {
		t.Fatalf("within TTL = %+v after %d fetches", r, src.calls.Load())
	}
	clk.advance(time.Second)
	if r := get(); r.Value != "v2" || src.calls.Load() != 2 {
		t.Fatalf("after TTL = %+v after %d fetches", r, src.calls.Load())
	}
	c.Invalidate("k")
	if r := get(); r.Value != "v3" {
		t.Fatalf("after Invalidate = %+v", r)
	}
}

func TestOneFetchForConcurrentCallers(t *testing.T) {
	c := New[string](nil)
	release := make(chan struct{})
	var calls atomic.Int64
	fetch := func(context.Context) (string, error) {
		calls.Add(1)
		<-release
		return "v", nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Get(context.Background(), "k", time.Minute, fctx, fetch)
			if err != nil || r.Value != "v" {
				errs <- errors.Join(err, errors.New("wrong value "+r.Value))
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up on the cold key
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d fetches for 64 concurrent callers, want 1", n)
	}
}

func TestStaleOnFailure(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string](clk.now)
	var src counter
	ttl := 60 * time.Second
	if _, err := c.Get(context.Background(), "k", ttl, fctx, src.fetch); err != nil {
		t.Fatal(err)
	}
	src.fail.Store(true)
	clk.advance(ttl)
	r, err := c.Get(context.Background(), "k", ttl, fctx, src.fetch)
	if err != nil || !r.Stale || r.Value != "v1" || r.Err == nil || r.FreshFor != RetryAfter {
		t.Fatalf("refresh failure = %+v, %v", r, err)
	}
	// Within RetryAfter the backend is not asked again.
	clk.advance(RetryAfter - time.Second)
	if r, _ := c.Get(context.Background(), "k", ttl, fctx, src.fetch); !r.Stale || src.calls.Load() != 2 {
		t.Fatalf("during back-off: %+v after %d fetches", r, src.calls.Load())
	}
	clk.advance(time.Second)
	if _, _ = c.Get(context.Background(), "k", ttl, fctx, src.fetch); src.calls.Load() != 3 {
		t.Fatalf("after back-off: %d fetches, want 3", src.calls.Load())
	}
	// Recovery replaces the stale value.
	src.fail.Store(false)
	clk.advance(RetryAfter)
	if r, _ := c.Get(context.Background(), "k", ttl, fctx, src.fetch); r.Stale || r.Value != "v4" {
		t.Fatalf("after recovery = %+v", r)
	}
	// Past MaxStale the error comes through.
	src.fail.Store(true)
	clk.advance(ttl + MaxStale)
	if r, err := c.Get(context.Background(), "k", ttl, fctx, src.fetch); err == nil {
		t.Fatalf("past MaxStale = %+v, want an error", r)
	}
}

func TestErrorWithoutValueAndCallerDeadline(t *testing.T) {
	c := New[string](nil)
	var src counter
	src.fail.Store(true)
	if _, err := c.Get(context.Background(), "k", time.Minute, fctx, src.fetch); err == nil || err.Error() != "backend down" {
		t.Fatalf("err = %v", err)
	}
	block := make(chan struct{})
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "slow", time.Minute, fctx, func(context.Context) (string, error) { <-block; return "", nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow fetch: err = %v, want deadline exceeded", err)
	}
}

func TestRetain(t *testing.T) {
	c := New[string](nil)
	var src counter
	for _, k := range []string{"a", "b"} {
		if _, err := c.Get(context.Background(), k, time.Minute, fctx, src.fetch); err != nil {
			t.Fatal(err)
		}
	}
	c.Retain(func(k string) bool { return k == "a" })
	_, _ = c.Get(context.Background(), "a", time.Minute, fctx, src.fetch)
	if src.calls.Load() != 2 {
		t.Fatal("retained key was fetched again")
	}
	_, _ = c.Get(context.Background(), "b", time.Minute, fctx, src.fetch)
	if src.calls.Load() != 3 {
		t.Fatal("dropped key was not fetched again")
	}
}
