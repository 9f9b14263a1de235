package sshpool

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestIdleClientsThatMissKeepaliveAreDiscarded(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.KeepaliveTimeout = 100 * time.Millisecond
	cfg.ChannelsPerConn = 1
	p := New(cfg)
	defer p.Close()
	clock := useFakeClock(p)
	warm(t, p, 3)
	clock.Advance(cfg.withDefaults().ProbeAfter)

	// A silent host: the first idle client's keepalive times out, and its
	// idle siblings are dropped with it instead of costing a timeout each.
	srv.muteKeepalive.Store(true)
	start := time.Now()
	err := p.Do(context.Background(), func(ctx context.Context, c *ssh.Client) error { return ping(ctx, c, srv.socket) })
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("Do took %s; want about one KeepaliveTimeout", d)
	}
	if st := p.Stats(); st.ProbeFailures != 1 || st.Discarded != 3 || st.Dialed != 4 || st.Open != 1 {
		t.Fatalf("pool %+v; want the silent clients discarded and a new one dialed", st)
	}
}

func TestRecentlyUsedClientIsNotProbed(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.KeepaliveTimeout = 100 * time.Millisecond
	cfg.ProbeAfter = time.Second
	p := New(cfg)
	defer p.Close()
	clock := useFakeClock(p)
	if err := p.Do(context.Background(), noop); err != nil {
		t.Fatal(err)
	}

	// Keepalives go unanswered from now on: a probe would fail.
	srv.muteKeepalive.Store(true)
	clock.Advance(999 * time.Millisecond)
	if err := p.Do(context.Background(), noop); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.ProbeFailures != 0 || st.Dialed != 1 {
		t.Fatalf("pool %+v; want the client used 999ms ago used unprobed", st)
	}

	// A client busy with another operation is not probed either: it is in use.
	var h holder
	h.hold(t, p, 1)
	clock.Advance(2 * time.Second)
	if err := p.Do(context.Background(), noop); err != nil {
		t.Fatal(err)
	}
	h.releaseAll()
	if st := p.Stats(); st.ProbeFailures != 0 || st.Dialed != 1 {
		t.Fatalf("pool %+v; want the busy client shared unprobed", st)
	}

	clock.Advance(time.Second)
	if err := p.Do(context.Background(), noop); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.ProbeFailures != 1 || st.Dialed != 2 {
		t.Fatalf("pool %+v; want the client idle for 1s probed, found silent, replaced", st)
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
