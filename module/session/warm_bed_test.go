package session_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// withWarm gives the rig's hosts a warm pool of n (a reload that keeps
// their connections).
func (r *rig) withWarm(n int) {
	var next []*hosts.Host
	for _, h := range r.hosts.Hosts() {
		cfg := h.Config()
		cfg.Warm = n
		next = append(next, hosts.NewHost(cfg, h.Engine, h.ConnKey))
	}
	r.hosts.SetHosts(next)
}

func (r *rig) waitWarm(n int, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := r.m.WarmStatus()
		full := len(st) == len(r.hosts.Hosts())
		for _, w := range st {
			full = full && w.Ready == n && w.Starting == 0
		}
		if full {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("warm pools %+v after %v, want %d ready each", st, timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// On a real host: claims racing destroys leave no container behind and
// none doubly owned, and the reaper (orphan grace 1 s, run by hand) knows
// claimed desktops by their container ID although their labels say warm.
func TestWarmClaimsRaceDestroysAndReaper(t *testing.T) {
	r := newRig(t, rigConfig{maxSessions: 20, opts: session.Options{OrphanGrace: time.Second, ReaperInterval: time.Hour}})
	r.withWarm(3)
	r.waitWarm(3, 90*time.Second)
	h := r.hosts.Hosts()[0]

	// Two players keep their sessions; six race a create against a destroy.
	for _, u := range []string{"keep1", "keep2"} {
		v, created, err := r.m.Create(u, u)
		if err != nil || !created || v.State != session.Ready {
			t.Fatalf("warm create for %s: %v %v %+v", u, err, created, v)
		}
	}
	var wg sync.WaitGroup
	for i := range 6 {
		u := fmt.Sprintf("race%d", i)
		wg.Add(2)
		go func() { defer wg.Done(); _, _, _ = r.m.Create(u, u) }()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Millisecond)
			_ = r.m.Destroy(context.Background(), u, "raced")
		}()
	}
	wg.Wait()
	for i := range 6 { // whoever won, end them all
		_ = r.m.Destroy(context.Background(), fmt.Sprintf("race%d", i), "")
	}
	r.waitWarm(3, 120*time.Second)
	time.Sleep(1500 * time.Millisecond) // every container older than the grace
	r.m.Reap(context.Background())

	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, c := range r.containers(h) {
			if c.Running {
				n++
			}
		}
		if n == 5 { // 3 warm + keep1 + keep2
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d containers on the host, want 3 warm + 2 sessions", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, u := range []string{"keep1", "keep2"} {
		if v, ok := r.m.Get(u); !ok || v.State != session.Ready {
			t.Fatalf("session of %s after the reaper: %+v", u, v)
		}
	}
	for _, e := range r.events.Recent(0) {
		if e.Type == events.OrphanRemoved {
			t.Fatalf("the reaper took a container it should know: %s", e.Message)
		}
	}
}
