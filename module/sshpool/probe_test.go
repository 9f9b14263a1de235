package sshpool

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestCheckoutDiscardsConnectionsThatMissKeepalive(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.KeepaliveTimeout = 100 * time.Millisecond
	p := New(cfg)
	defer p.Close()
	clock := useFakeClock(p)
	warm(t, p, 3)
	clock.Advance(cfg.withDefaults().ProbeAfter)

	// A silent host: the first idle connection's keepalive times out, and
	// its idle siblings are dropped with it instead of costing a timeout each.
	srv.muteKeepalive.Store(true)
	start := time.Now()
	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer p.Put(c, false)
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("Get took %s; want about one KeepaliveTimeout", d)
	}
	if st := p.Stats(); st.ProbeFailures != 1 || st.Discarded != 3 || st.Dialed != 4 || st.Open != 1 {
		t.Fatalf("pool %+v; want the silent connections discarded and a new one dialed", st)
	}
	if err := ping(context.Background(), c.Client(), srv.socket); err != nil {
		t.Fatalf("ping over the replacement: %v", err)
	}
}

func TestRecentlyUsedConnectionIsNotProbed(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.KeepaliveTimeout = 100 * time.Millisecond
	cfg.ProbeAfter = time.Second
	p := New(cfg)
	defer p.Close()
	clock := useFakeClock(p)
	warm(t, p, 1)

	// Keepalives go unanswered from now on: a probe would fail.
	srv.muteKeepalive.Store(true)
	clock.Advance(999 * time.Millisecond)
	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c, false)
	if st := p.Stats(); st.ProbeFailures != 0 || st.Dialed != 1 {
		t.Fatalf("pool %+v; want the connection put back 999ms ago handed out unprobed", st)
	}

	clock.Advance(time.Second)
	c, err = p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c, false)
	if st := p.Stats(); st.ProbeFailures != 1 || st.Dialed != 2 {
		t.Fatalf("pool %+v; want the connection idle for 1s probed, found silent, replaced", st)
	}

	// A transport that closed is caught without a probe.
	clock.Advance(0)
	srv.KillAll()
	waitFor(t, func() bool { return p.Stats().Idle == 1 })
	waitFor(t, func() bool {
		c := <-p.idle
		dead := c.Dead()
		p.idle <- c
		return dead
	})
	srv.muteKeepalive.Store(false)
	c, err = p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c, false)
	if st := p.Stats(); st.ProbeFailures != 2 || st.Dialed != 3 {
		t.Fatalf("pool %+v; want the closed connection discarded", st)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// useFakeClock replaces p's clock with one that moves only when told.
func useFakeClock(p *Pool) *fakeClock {
	c := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p.now = c.Now
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
