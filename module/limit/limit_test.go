package limit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func allow(t *testing.T, l *Limiter, k string) {
	t.Helper()
	if ok, wait := l.Allow(k); !ok {
		t.Fatalf("%s refused (retry after %v), want allowed", k, wait)
	}
}

func TestBurstThenRefusedWithRetryAfter(t *testing.T) {
	c := newClock()
	l := New(3, time.Minute, c.now)
	for range 3 {
		allow(t, l, "7")
	}
	ok, wait := l.Allow("7")
	if ok || wait != time.Minute {
		t.Fatalf("4th action: ok=%v wait=%v, want refused with 1m", ok, wait)
	}
	// Another user is not affected.
	allow(t, l, "8")
	// Part of the way: the wait shrinks, still refused.
	c.add(40 * time.Second)
	if ok, wait := l.Allow("7"); ok || wait != 20*time.Second {
		t.Fatalf("after 40s: ok=%v wait=%v, want refused with 20s", ok, wait)
	}
	c.add(20 * time.Second)
	allow(t, l, "7")
	if ok, _ := l.Allow("7"); ok {
		t.Fatal("one token refilled, two actions allowed")
	}
}

func TestRefillCapsAtBurst(t *testing.T) {
	c := newClock()
	l := New(2, time.Second, c.now)
	allow(t, l, "a")
	c.add(time.Hour)
	allow(t, l, "a")
	allow(t, l, "a")
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("an hour idle gave more than burst")
	}
}

func TestOffAndNil(t *testing.T) {
	var nilL *Limiter
	for _, l := range []*Limiter{nilL, New(0, time.Minute, nil), New(5, 0, nil)} {
		for range 100 {
			if ok, _ := l.Allow("x"); !ok {
				t.Fatalf("%+v: refused while off", l)
			}
		}
	}
}

func TestSetRateLowersBurst(t *testing.T) {
	c := newClock()
	l := New(10, time.Minute, c.now)
	allow(t, l, "u")
	l.SetRate(2, time.Minute)
	allow(t, l, "u") // one used before, one now: the new burst of 2
	if ok, _ := l.Allow("u"); ok {
		t.Fatal("new burst of 2 not applied")
	}
}

func TestPruneForgetsIdleUsers(t *testing.T) {
	c := newClock()
	l := New(2, time.Second, c.now)
	for i := range 1500 {
		allow(t, l, fmt.Sprint(i))
	}
	c.add(time.Minute)
	for i := range 1000 {
		allow(t, l, fmt.Sprint("new", i))
	}
	l.mu.Lock()
	n := len(l.tat)
	l.mu.Unlock()
	if n > 1100 {
		t.Fatalf("%d buckets kept; idle users were not pruned", n)
	}
	// A user still inside their window is kept (and still limited).
	allow(t, l, "busy")
	allow(t, l, "busy")
	for i := range 3000 {
		allow(t, l, fmt.Sprint("x", i))
	}
	if ok, _ := l.Allow("busy"); ok {
		t.Fatal("pruning forgot a user who had used their burst")
	}
}
