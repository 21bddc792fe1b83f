// Package cache keeps fetched values and refreshes them in the background
// before they expire, so that a caller waits on a backend only when no usable
// value exists.
//
// Lifecycle of one key, with TTL t, fetched at f:
//
//   - before its refresh point the value is served as is. The refresh point
//     is a random moment in [f + t/2, f + 3/4 t] (so that many processes
//     with the same TTL do not all refresh at once), or shortly before the
//     value's own expiry (Fetch.Expires) when that comes first;
//   - from the refresh point (refresh ahead): the value is still served at
//     once, and the first Get after that point starts one background refresh;
//   - when a refresh fails, the value keeps being served (stale once past
//     f + t) and refreshes are retried in the background with capped
//     exponential back-off (Backoff), unless the failure ends the value
//     (Fetch.Ends: the backend refused, the secret was revoked or deleted):
//     then it is dropped at once and the error is returned;
//   - past f + t + MaxStale, or past the value's own expiry, the value is
//     dropped: the next Get waits on a fetch again. A value past its expiry
//     is never served, not even stale.
//
// A key that has never produced a value backs off the same way after a
// failure: during the back-off its last error is returned at once.
// Concurrent callers of a key share one fetch (singleflight). The cache holds
// at most MaxEntries keys; the least recently used is forgotten first.
package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	// ExpiryLead is the most a value with a known expiry is refreshed ahead
	// of it (a quarter of its lifetime when that is shorter).
	ExpiryLead = time.Minute
	// MaxEntries bounds the number of keys held.
	MaxEntries = 4096
	// maxPoll caps how long a caller is told to wait before asking again
	// while a background fetch is running.
	maxPoll = time.Second
)

// ErrPending is returned by Peek when the key has never been fetched: a fetch
// has been started and the caller may Wait for it.
var ErrPending = errors.New("first fetch in progress")

// ErrExpired is returned for a fetched value whose own expiry has already passed.
var ErrExpired = errors.New("the fetched credential has already expired")

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
// in the background, for a random draw r in [0, 1]: from half the TTL (r = 0)
// to three quarters of it (r = 1).
func RefreshAfter(ttl time.Duration, r float64) time.Duration {
	r = min(max(r, 0), 1)
	return ttl/2 + time.Duration(r*float64(ttl/4))
}

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
	key       string
	has       bool // val is usable
	val       V
	fetched   time.Time
	refreshAt time.Time // a background refresh is due from here
	staleAt   time.Time // fetched + TTL
	dropAt    time.Time // the value is not served from here (stale window end or expiry)
	expires   time.Time // the value's own expiry; zero when unknown
	refreshBy time.Time // a soft refresh point (Fetch.RefreshBy); zero when none
	ttl       time.Duration
	jitter    float64   // where in [TTL/2, 3TTL/4] the refresh falls
	failures  int       // consecutive failed fetches
	lastErr   error     // the latest fetch error, nil after a success
	nextTry   time.Time // no new fetch before this after a failure
	inflight  bool
	elem      *list.Element
}

// Cache maps keys to values fetched on demand. The zero value is not usable: use New.
type Cache[V any] struct {
	now     func() time.Time
	rand    func() float64
	limit   int
	mu      sync.Mutex
	entries map[string]*entry[V]
	order   *list.List // most recently used first
	group   singleflight.Group
	stored  func(key string, err error)
}

// OnRecord sets a function called after each fetch's outcome is recorded
// (tests use it to know when a background fetch has completed). Call it
// before the cache is used.
func (c *Cache[V]) OnRecord(fn func(key string, err error)) { c.stored = fn }

// SetRand replaces the random source of the refresh points (a function
// returning values in [0, 1]; tests use a seeded one). Call it before the
// cache is used.
func (c *Cache[V]) SetRand(fn func() float64) { c.rand = fn }

// New returns a cache that reads time from now (time.Now when nil).
func New[V any](now func() time.Time) *Cache[V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[V]{now: now, rand: rand.Float64, limit: MaxEntries, entries: map[string]*entry[V]{}, order: list.New()}
}

// Fetch describes how to fetch one key.
type Fetch[V any] struct {
	TTL time.Duration
	// Timeout bounds each fetch. A fetch runs detached from any caller,
	// so a caller giving up does not fail the others.
	Timeout time.Duration
	Do      func(context.Context) (V, error)
	// Expires, when set, returns when a value itself ends (zero: unknown).
	Expires func(V) time.Time
	// RefreshBy, when set, returns a point a refresh should come before
	// (zero: none); unlike Expires it never ends the value.
	RefreshBy func(V) time.Time
	// Ends, when set, reports whether a fetch error ends the held value at
	// once instead of leaving it to be served stale (a rejection).
	Ends func(error) bool
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
		return c.after(key, f, res)
	}
}

// after answers a caller that waited on a fetch: from the key's entry when
// it still exists, else from the fetch's own outcome.
func (c *Cache[V]) after(key string, f Fetch[V], res singleflight.Result) (Result[V], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		e, now := c.entry(key, f.TTL)
		if e.has && res.Err == nil {
			r := c.serve(key, e, now, f)
			return r, nil
		}
		if res.Err != nil {
			return Result[V]{FreshFor: c.recheck(e, now, f.TTL)}, res.Err
		}
	}
	if res.Err != nil {
		return Result[V]{}, res.Err
	}
	v, _ := res.Val.(V) // the key was dropped meanwhile: this caller still gets the value
	return Result[V]{Value: v}, nil
}

// entry returns key's entry (created when missing, forgetting the least
// recently used key beyond the limit) and the time, dropping a value whose
// stale window or own lifetime has ended. A value fetched under another TTL
// than ttl gets its times from ttl (a TTL changed by the user takes effect at
// once, not after the next fetch). c.mu is held.
func (c *Cache[V]) entry(key string, ttl time.Duration) (*entry[V], time.Time) {
	now := c.now()
	e := c.entries[key]
	if e == nil {
		e = &entry[V]{key: key}
		c.entries[key] = e
		e.elem = c.order.PushFront(e)
		for c.order.Len() > c.limit {
			old := c.order.Remove(c.order.Back()).(*entry[V])
			delete(c.entries, old.key)
		}
	} else {
		c.order.MoveToFront(e.elem)
	}
	if e.has && e.ttl != ttl {
		e.ttl = ttl
		e.retime()
	}
	if e.has && !now.Before(e.dropAt) {
		e.has, e.val = false, *new(V)
	}
	return e, now
}

// retime derives the entry's refresh point, stale point and end from when it
// was fetched, its TTL and jitter, and what the value says of its own end.
func (e *entry[V]) retime() {
	e.refreshAt = e.fetched.Add(RefreshAfter(e.ttl, e.jitter))
	e.staleAt = e.fetched.Add(e.ttl)
	e.dropAt = e.fetched.Add(e.ttl + MaxStale)
	if !e.expires.IsZero() {
		e.refreshAt = minTime(e.refreshAt, ahead(e.fetched, e.expires))
		e.staleAt = minTime(e.staleAt, e.expires)
		e.dropAt = minTime(e.dropAt, e.expires)
	}
	if !e.refreshBy.IsZero() {
		e.refreshAt = minTime(e.refreshAt, ahead(e.fetched, e.refreshBy))
	}
}

// serve returns e's usable value, starting a refresh when one is due. c.mu is held.
func (c *Cache[V]) serve(key string, e *entry[V], now time.Time, f Fetch[V]) Result[V] {
	if now.Before(e.refreshAt) {
		return Result[V]{Value: e.val, FreshFor: e.refreshAt.Sub(now)}
	}
	if !e.inflight && !now.Before(e.nextTry) {
		c.launch(key, e, f)
	}
	r := Result[V]{Value: e.val, FreshFor: c.recheck(e, now, f.TTL), Pending: e.inflight}
	if e.lastErr != nil && !now.Before(e.staleAt) {
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
		d = min(d, max(e.dropAt.Sub(now), 0))
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
				c.store(key, *new(V), err, f)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
		defer cancel()
		val, err := f.Do(ctx)
		return val, c.store(key, val, err, f)
	})
}

// ahead is the refresh point for a value that ends (or whose access ends) at
// end: a quarter of its remaining life before, at most ExpiryLead.
func ahead(now, end time.Time) time.Time {
	return end.Add(-min(end.Sub(now)/4, ExpiryLead))
}

// store records a fetch's outcome in key's current entry (none when the key
// was dropped meanwhile) and returns the error the callers get.
func (c *Cache[V]) store(key string, v V, err error, f Fetch[V]) error {
	now := c.now()
	var expires time.Time
	if err == nil && f.Expires != nil {
		if expires = f.Expires(v); !expires.IsZero() && !now.Before(expires) {
			err = ErrExpired
		}
	}
	if c.stored != nil {
		defer func() { c.stored(key, err) }()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Later launches start a new fetch instead of joining this finished one.
	c.group.Forget(key)
	e := c.entries[key]
	if e == nil {
		return err
	}
	e.inflight = false
	if err == nil {
		e.has, e.val, e.fetched, e.expires = true, v, now, expires
		e.failures, e.lastErr, e.nextTry = 0, nil, time.Time{}
		e.ttl, e.jitter, e.refreshBy = f.TTL, c.rand(), time.Time{}
		if f.RefreshBy != nil {
			e.refreshBy = f.RefreshBy(v)
		}
		e.retime()
		return nil
	}
	e.failures++
	e.lastErr = err
	e.nextTry = now.Add(Backoff(e.failures))
	if f.Ends != nil && f.Ends(err) {
		e.has, e.val = false, *new(V) // refused: the held value is not served again
	}
	return err
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Renew refreshes key's value when current(value) holds for the value held
// now, and waits for that refresh up to ctx. A value that current does not
// match (already replaced) is left alone; when a fetch of the key is already
// running, Renew waits for it instead of starting another; during the
// back-off after a failed fetch nothing is started. A failed refresh leaves
// the held value in place (unless the failure ends it, see Fetch.Ends).
// Renew reports whether the held value matched.
func (c *Cache[V]) Renew(ctx context.Context, key string, f Fetch[V], current func(V) bool) bool {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		c.mu.Unlock()
		return false
	}
	e, now := c.entry(key, f.TTL)
	if !e.has || !current(e.val) {
		c.mu.Unlock()
		return false
	}
	if !e.inflight && now.Before(e.nextTry) {
		c.mu.Unlock()
		return true
	}
	ch := c.launch(key, e, f)
	c.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-ch:
	}
	return true
}

// Current returns key's usable value without starting anything, with its
// refresh point and its own expiry (zero when unknown).
func (c *Cache[V]) Current(key string) (v V, refreshAt, expires time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || !e.has || !c.now().Before(e.dropAt) {
		return v, refreshAt, expires, false
	}
	return e.val, e.refreshAt, e.expires, true
}

// Has reports whether key holds a value (possibly stale).
func (c *Cache[V]) Has(key string) bool {
	_, _, _, ok := c.Current(key)
	return ok
}

// Invalidate drops the values of every key for which match returns true, so
// the next Get of such a key waits on a fresh fetch instead of serving the
// dropped value. It returns how many values were dropped. A running fetch is
// not stopped: its value is stored when it completes.
func (c *Cache[V]) Invalidate(match func(key string) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, e := range c.entries {
		if e.has && match(k) {
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
	for k, e := range c.entries {
		if !keep(k) {
			c.order.Remove(e.elem)
			delete(c.entries, k)
		}
	}
}

// Len returns the number of keys held.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
