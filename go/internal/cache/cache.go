// Package cache keeps fetched values for a TTL, with one fetch per key at a
// time, and serves the last good value for a while when a refresh fails.
package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults for failure handling.
const (
	// RetryAfter is the longest wait before a failed refresh is tried again
	// while the stale value is served (shorter when the TTL is shorter).
	RetryAfter = 5 * time.Second
	// MaxStale is how long past its TTL a value may be served while refreshes fail.
	MaxStale = time.Hour
)

// Result is a value and how long the caller may keep using it.
type Result[V any] struct {
	Value    V
	FreshFor time.Duration // how long until the cache will refresh the value
	Stale    bool          // the value is past its TTL because a refresh failed
	Err      error         // with Stale, the refresh error
}

type entry[V any] struct {
	val     V
	fetched time.Time
	retryAt time.Time // while stale: no new fetch before this
	lastErr error
}

// Cache maps keys to values fetched on demand. The zero value is not usable: use New.
type Cache[V any] struct {
	now     func() time.Time
	mu      sync.Mutex
	entries map[string]*entry[V]
	group   singleflight.Group
}

// New returns a cache that reads time from now (time.Now when nil).
func New[V any](now func() time.Time) *Cache[V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[V]{now: now, entries: map[string]*entry[V]{}}
}

// Get returns the value for key, fetching it when missing or older than ttl.
// Concurrent callers of a key share one fetch. The fetch runs with fetchCtx,
// not ctx, so one caller giving up does not fail the others; ctx bounds how
// long this caller waits.
func (c *Cache[V]) Get(ctx context.Context, key string, ttl time.Duration,
	fetchCtx func() (context.Context, context.CancelFunc), fetch func(context.Context) (V, error)) (Result[V], error) {
	if r, ok := c.lookup(key, ttl); ok {
		return r, nil
	}
	ch := c.group.DoChan(key, func() (v any, err error) {
		// DoChan runs this on its own goroutine, where a panic would kill
		// the process: turn it into an error instead.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error while fetching: %v", r)
				c.store(key, ttl, *new(V), err)
			}
		}()
		fctx, cancel := fetchCtx()
		defer cancel()
		val, err := fetch(fctx)
		c.store(key, ttl, val, err)
		return val, err
	})
	select {
	case <-ctx.Done():
		return Result[V]{}, ctx.Err()
	case res := <-ch:
		if res.Err == nil {
			v, _ := res.Val.(V)
			return Result[V]{Value: v, FreshFor: ttl}, nil
		}
		if r, ok := c.stale(key, ttl); ok {
			return r, nil
		}
		return Result[V]{}, res.Err
	}
}

// lookup returns a fresh value, or a stale one whose retry time has not come.
func (c *Cache[V]) lookup(key string, ttl time.Duration) (Result[V], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		return Result[V]{}, false
	}
	now := c.now()
	if expires := e.fetched.Add(ttl); now.Before(expires) {
		return Result[V]{Value: e.val, FreshFor: expires.Sub(now)}, true
	}
	if e.lastErr != nil && now.Before(e.retryAt) && now.Before(e.fetched.Add(ttl+MaxStale)) {
		return Result[V]{Value: e.val, FreshFor: e.retryAt.Sub(now), Stale: true, Err: e.lastErr}, true
	}
	return Result[V]{}, false
}

func (c *Cache[V]) store(key string, ttl time.Duration, v V, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if err == nil {
		c.entries[key] = &entry[V]{val: v, fetched: now}
		return
	}
	if e := c.entries[key]; e != nil {
		e.lastErr = err
		e.retryAt = now.Add(min(ttl, RetryAfter))
	}
}

// stale returns the last good value after a failed refresh, if not too old.
func (c *Cache[V]) stale(key string, ttl time.Duration) (Result[V], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || e.lastErr == nil {
		return Result[V]{}, false
	}
	now := c.now()
	if !now.Before(e.fetched.Add(ttl + MaxStale)) {
		delete(c.entries, key)
		return Result[V]{}, false
	}
	return Result[V]{Value: e.val, FreshFor: max(e.retryAt.Sub(now), 0), Stale: true, Err: e.lastErr}, true
}

// Invalidate forgets key, so the next Get fetches it again.
func (c *Cache[V]) Invalidate(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// Retain forgets every key for which keep returns false.
func (c *Cache[V]) Retain(keep func(key string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if !keep(k) {
			delete(c.entries, k)
		}
	}
}
