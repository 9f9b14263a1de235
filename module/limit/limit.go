// Package limit is the per-user rate on actions that cost a Docker host
// work (creating and destroying desktops), with the clock injected so that
// tests control time.
package limit

import (
	"sync"
	"time"
)

// Limiter allows each key Burst actions at once, then one more every
// Every (a token bucket, kept as GCRA: one "theoretical arrival time" per
// key, so no floating point and no timers). A limiter with burst or every
// <= 0 allows everything; so does a nil *Limiter. It is safe for
// concurrent use.
type Limiter struct {
	now func() time.Time

	mu    sync.Mutex
	burst int
	every time.Duration
	tat   map[string]time.Time // when the key's bucket is full again
	mark  int                  // map size after the last prune
}

// New makes a limiter of burst actions refilled one per every. now is the
// clock (time.Now when nil).
func New(burst int, every time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{now: now, tat: map[string]time.Time{}}
	l.SetRate(burst, every)
	return l
}

// SetRate changes the rate (a config reload); users keep what they have
// used, capped at the new burst.
func (l *Limiter) SetRate(burst int, every time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.burst, l.every = burst, every
}

// Allow takes one action for key. When none is left it returns false and
// how long until one is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.burst <= 0 || l.every <= 0 {
		return true, 0
	}
	now := l.now()
	tat := l.tat[key]
	if tat.Before(now) {
		tat = now
	}
	tolerance := time.Duration(l.burst-1) * l.every
	if over := tat.Sub(now) - tolerance; over > 0 {
		return false, over
	}
	l.tat[key] = tat.Add(l.every)
	l.prune(now)
	return true, 0
}

// prune forgets keys whose bucket is full again (they are as new), so the
// map holds only recently active users. It runs when the map has doubled
// since the last prune, which keeps its cost amortized O(1).
func (l *Limiter) prune(now time.Time) {
	if len(l.tat) < 1024 || len(l.tat) < 2*l.mark {
		return
	}
	for k, t := range l.tat {
		if !t.After(now) {
			delete(l.tat, k)
		}
	}
	l.mark = len(l.tat)
}
