// Package cache keeps fetched values and refreshes them in the background
// before they expire, so that a caller waits on a backend only when no usable
// value exists.
//
// Lifecycle of one key, with TTL t, fetched at f:
//
//   - before f + 3/4 t: the value is served as is;
//   - from f + 3/4 t (refresh ahead): the value is still served at once, and the
//     first Get after that point starts one background refresh;
//   - when a refresh fails, the value keeps being served (stale once past
//     f + t) and refreshes are retried in the background with capped
//     exponential back-off (Backoff);
//   - past f + t + MaxStale the value is dropped: the next Get waits on a
//     fetch again.
//
// A key that has never produced a value backs off the same way after a
// failure: during the back-off its last error is returned at once.
// Concurrent callers of a key share one fetch (singleflight).
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Timing of refreshes and failure handling.
const (
	// MaxStale is how long past its TTL a value may be served while refreshes fail.
	MaxStale = time.Hour
	// BackoffBase is the wait after the first failed fetch; it doubles with
	// each further failure, up to BackoffMax.
	BackoffBase = time.Second
	// BackoffMax caps the wait between two failed fetches.
	BackoffMax = 30 * time.Second
	// MinRefetch is the least age of a value that Invalidate drops: a value
	// fetched more recently is kept, so a server that rejects every
	// credential causes at most one refetch per key per MinRefetch.
	MinRefetch = 5 * time.Second
	// maxPoll caps how long a caller is told to wait before asking again
	// while a background fetch is running.
	maxPoll = time.Second
)

// ErrPending is returned by Peek when the key has never been fetched: a fetch
// has been started and the caller may Wait for it.
var ErrPending = errors.New("first fetch in progress")

// Backoff returns the wait after the given number of consecutive failed
// fetches (1 or more): BackoffBase doubled per further failure, capped at
// BackoffMax.
func Backoff(failures int) time.Duration {
	d := BackoffBase
	for i := 1; i < failures && d < BackoffMax; i++ {
		d *= 2
	}
	return min(d, BackoffMax)
}

// RefreshAfter is the age at which a value with the given TTL is refreshed
// in the background: three quarters of the TTL.
func RefreshAfter(ttl time.Duration) time.Duration { return ttl - ttl/4 }

// Result is a value and how long the caller may keep using it.
type Result[V any] struct {
	Value V
	// FreshFor is how long the caller may keep the value (or the error)
	// before asking again: until the refresh point, the end of a back-off,
	// or shortly while a background fetch runs.
	FreshFor time.Duration
	Stale    bool  // the value is past its TTL because a refresh failed
	Err      error // with Stale, the refresh error
	// Pending says a background fetch of the key is running (with an error
	// from Peek: the caller may Wait for it).
	Pending bool
}

type entry[V any] struct {
	has      bool // val is usable (within TTL + MaxStale of fetched)
	val      V
	fetched  time.Time
	failures int       // consecutive failed fetches
	lastErr  error     // the latest fetch error, nil after a success
	nextTry  time.Time // no new fetch before this after a failure
	inflight bool
}

// Cache maps keys to values fetched on demand. The zero value is not usable: use New.
type Cache[V any] struct {
	now     func() time.Time
	mu      sync.Mutex
	entries map[string]*entry[V]
	group   singleflight.Group
	stored  func(key string, err error)
}

// OnRecord sets a function called after each fetch's outcome is recorded
// (tests use it to know when a background fetch has completed). Call it
// before the cache is used.
func (c *Cache[V]) OnRecord(fn func(key string, err error)) { c.stored = fn }

// New returns a cache that reads time from now (time.Now when nil).
func New[V any](now func() time.Time) *Cache[V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[V]{now: now, entries: map[string]*entry[V]{}}
}

// Fetch describes how to fetch one key.
type Fetch[V any] struct {
	TTL time.Duration
	// Timeout bounds each fetch. A fetch runs detached from any caller,
	// so a caller giving up does not fail the others.
	Timeout time.Duration
	Do      func(context.Context) (V, error)
}

// Peek never waits. It returns the usable value (starting a background
// refresh when one is due), or, without one: ErrPending after starting the
// first fetch of a key never fetched, or the last fetch error (starting a
// background retry when its back-off has ended; Result.Pending then says one
// is running).
func (c *Cache[V]) Peek(key string, f Fetch[V]) (Result[V], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, now := c.entry(key, f.TTL)
	if e.has {
		return c.serve(key, e, now, f), nil
	}
	if !e.inflight && !now.Before(e.nextTry) {
		c.launch(key, e, f)
	}
	if e.lastErr == nil {
		return Result[V]{Pending: true}, ErrPending
	}
	return Result[V]{FreshFor: c.recheck(e, now, f.TTL), Pending: e.inflight}, e.lastErr
}

// Get returns the usable value at once if there is one (starting a
// background refresh when one is due). Without one it waits, up to ctx, for
// the running fetch or starts one, except during the back-off after a
// failure, when it returns the last error at once.
func (c *Cache[V]) Get(ctx context.Context, key string, f Fetch[V]) (Result[V], error) {
	c.mu.Lock()
	e, now := c.entry(key, f.TTL)
	if e.has {
		r := c.serve(key, e, now, f)
		c.mu.Unlock()
		return r, nil
	}
	if !e.inflight && now.Before(e.nextTry) {
		r, err := Result[V]{FreshFor: c.recheck(e, now, f.TTL)}, e.lastErr
		c.mu.Unlock()
		return r, err
	}
	ch := c.launch(key, e, f)
	c.mu.Unlock()
	select {
	case <-ctx.Done():
		return Result[V]{Pending: true}, ctx.Err()
	case res := <-ch:
		if res.Err == nil {
			v, _ := res.Val.(V)
			return Result[V]{Value: v, FreshFor: RefreshAfter(f.TTL)}, nil
		}
		c.mu.Lock()
		e, now := c.entry(key, f.TTL)
		r := Result[V]{FreshFor: c.recheck(e, now, f.TTL)}
		c.mu.Unlock()
		return r, res.Err
	}
}

// entry returns key's entry (created when missing) and the time, dropping a
// value whose stale window has ended. c.mu is held.
func (c *Cache[V]) entry(key string, ttl time.Duration) (*entry[V], time.Time) {
	now := c.now()
	e := c.entries[key]
	if e == nil {
		e = &entry[V]{}
		c.entries[key] = e
	}
	if e.has && !now.Before(e.fetched.Add(ttl+MaxStale)) {
		e.has, e.val = false, *new(V)
	}
	return e, now
}

// serve returns e's usable value, starting a refresh when one is due. c.mu is held.
func (c *Cache[V]) serve(key string, e *entry[V], now time.Time, f Fetch[V]) Result[V] {
	refreshAt := e.fetched.Add(RefreshAfter(f.TTL))
	if now.Before(refreshAt) {
		return Result[V]{Value: e.val, FreshFor: refreshAt.Sub(now)}
	}
	if !e.inflight && !now.Before(e.nextTry) {
		c.launch(key, e, f)
	}
	r := Result[V]{Value: e.val, FreshFor: c.recheck(e, now, f.TTL), Pending: e.inflight}
	if e.lastErr != nil && !now.Before(e.fetched.Add(f.TTL)) {
		r.Stale, r.Err = true, e.lastErr
	}
	return r
}

// recheck is how long a caller may wait before asking again about e. c.mu is held.
func (c *Cache[V]) recheck(e *entry[V], now time.Time, ttl time.Duration) time.Duration {
	var d time.Duration
	if e.inflight {
		d = min(max(ttl/4, 10*time.Millisecond), maxPoll)
	} else {
		d = max(e.nextTry.Sub(now), 0)
	}
	if e.has {
		d = min(d, max(e.fetched.Add(ttl+MaxStale).Sub(now), 0))
	}
	return d
}

// launch starts (or joins) the fetch of key. c.mu is held.
func (c *Cache[V]) launch(key string, e *entry[V], f Fetch[V]) <-chan singleflight.Result {
	e.inflight = true
	return c.group.DoChan(key, func() (v any, err error) {
		// DoChan runs this on its own goroutine, where a panic would kill
		// the process: turn it into an error instead.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error while fetching: %v", r)
				c.store(key, *new(V), err)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
		defer cancel()
		val, err := f.Do(ctx)
		c.store(key, val, err)
		return val, err
	})
}

// store records a fetch's outcome in key's current entry (none when the key
// was dropped meanwhile).
func (c *Cache[V]) store(key string, v V, err error) {
	if c.stored != nil {
		defer c.stored(key, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Later launches start a new fetch instead of joining this finished one.
	c.group.Forget(key)
	e := c.entries[key]
	if e == nil {
		return
	}
	e.inflight = false
	now := c.now()
	if err == nil {
		e.has, e.val, e.fetched = true, v, now
		e.failures, e.lastErr, e.nextTry = 0, nil, time.Time{}
		return
	}
	e.failures++
	e.lastErr = err
	e.nextTry = now.Add(Backoff(e.failures))
}

// Has reports whether key holds a value (possibly stale).
func (c *Cache[V]) Has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	return e != nil && e.has
}

// Invalidate drops the values of every key for which match returns true,
// except values fetched less than MinRefetch ago, so the next Get of such a
// key waits on a fresh fetch instead of serving the dropped value. It
// returns how many values were dropped. A running fetch is not stopped: its
// value is stored when it completes.
func (c *Cache[V]) Invalidate(match func(key string) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	n := 0
	for k, e := range c.entries {
		if e.has && match(k) && now.Sub(e.fetched) >= MinRefetch {
			e.has, e.val = false, *new(V)
			e.failures, e.lastErr, e.nextTry = 0, nil, time.Time{}
			n++
		}
	}
	return n
}

// Retain forgets every key for which keep returns false (a fetch still
// running for such a key is discarded when it completes).
func (c *Cache[V]) Retain(keep func(key string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if !keep(k) {
			delete(c.entries, k)
		}
	}
}
