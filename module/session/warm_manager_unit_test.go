package session_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// warmReady waits (moving the fake clock) until every host's pool holds n
// ready desktops.
func (u *unit) warmReady(n int) {
	u.t.Helper()
	u.advanceUntil("warm pools to fill", 500*time.Millisecond, func() bool {
		st := u.m.WarmStatus()
		if len(st) == 0 {
			return false
		}
		for _, w := range st {
			if w.Ready < n {
				return false
			}
		}
		return true
	})
}

func (u *unit) warmContainers(host string) int {
	n := 0
	for _, c := range u.host(host).Containers() {
		if c.Labels["io.ctf-remote-desktop.warm"] == "true" {
			n++
		}
	}
	return n
}

// TestUnitWarmClaimThroughManager: with warm: 2, a create is ready in the
// same call, on a desktop made before it, on the warm desktop's container
// and slot, with its timers started the seed's way; the pool refills; a
// destroy removes the claimed container; nothing is left over after.
func TestUnitWarmClaimThroughManager(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2, maxSessions: 4, warm: 2})
	u.warmReady(2)
	before := map[string]bool{}
	for _, h := range []string{"h1", "h2"} {
		for _, c := range u.host(h).Containers() {
			before[c.ID] = true
		}
	}

	s := u.create("alice")
	if s.State != session.Ready {
		t.Fatalf("a warm claim should be ready at once, got %s (%s)", s.State, s.Error)
	}
	if !before[s.ContainerID] {
		t.Fatalf("the claim got container %s, not one of the warm desktops made before it", s.ContainerID)
	}
	if s.ContainerID == "" || s.Port == 0 || s.Password == "" {
		t.Fatalf("claimed session lacks container, port or password: %+v", s)
	}
	if !s.TimerStartedAt.IsZero() {
		t.Fatal("the timer must start at the first poll, not at the claim")
	}
	if _, ok := u.record("alice"); !ok {
		t.Fatal("a claimed session must be recorded")
	}
	// The slot moved from the warm desktop to the session: the host counts
	// 2 warm + 1 session once the refill is done.
	u.warmReady(2)
	if a := u.active(s.Host); a != 3 {
		t.Fatalf("host %s counts %d slots, want 3 (2 warm + 1 session)", s.Host, a)
	}
	v, _, err := u.m.Poll(context.Background(), "alice")
	if err != nil || v.TimerStartedAt.IsZero() {
		t.Fatalf("first poll should start the timer: %v %+v", err, v.Session)
	}

	// A second player takes another warm desktop; the first one's is not
	// handed out twice.
	s2 := u.create("bob")
	if s2.State != session.Ready || s2.ContainerID == s.ContainerID {
		t.Fatalf("bob: %s on %s (alice on %s)", s2.State, s2.ContainerID, s.ContainerID)
	}

	if err := u.m.Destroy(context.Background(), "alice", ""); err != nil {
		t.Fatal(err)
	}
	u.until("alice's container to go", func() bool {
		_, err := u.host(s.Host).Inspect(context.Background(), s.ContainerID)
		return err != nil
	})
	// The reaper, even long after, takes neither the warm desktops nor
	// bob's claimed one (its labels still say warm).
	u.clock.Advance(time.Hour)
	u.m.Reap(context.Background())
	if _, err := u.host(s2.Host).Inspect(context.Background(), s2.ContainerID); err != nil {
		t.Fatalf("the reaper removed bob's claimed desktop: %v", err)
	}
	u.warmReady(2)
	for _, h := range []string{"h1", "h2"} {
		if n := u.warmContainers(h); n < 2 {
			t.Fatalf("%s has %d warm containers after the reaper, want ≥ 2", h, n)
		}
	}
	if v := u.view("bob"); v.State != session.Ready {
		t.Fatalf("bob's session: %s (%s)", v.State, v.Error)
	}
}

// TestUnitWarmPoolOffIsColdPath: warm: 0 (the default) makes no warm
// container and a create goes the cold way.
func TestUnitWarmPoolOffIsColdPath(t *testing.T) {
	u := newUnit(t, unitConfig{})
	s := u.create("carol")
	if s.State == session.Ready {
		t.Fatal("without a pool a create cannot be ready at once")
	}
	u.advanceUntil("carol ready", 100*time.Millisecond, func() bool { return u.view("carol").State == session.Ready })
	if n := u.warmContainers("h1"); n != 0 {
		t.Fatalf("%d warm containers with the pool off", n)
	}
}

// TestUnitUnrecordedWarmDesktopRemovedOnce: a warm-labelled container with
// no record (Caddy died between making and recording it) is removed once,
// by the pool's first listing of its host or, after that, by the reaper:
// never by both (that reported it twice).
func TestUnitUnrecordedWarmDesktopRemovedOnce(t *testing.T) {
	for i := range 20 {
		u := newUnit(t, unitConfig{noStart: true, opts: session.Options{OrphanGrace: time.Second, ReaperInterval: time.Hour}})
		old := epoch.Add(-time.Hour).UTC().Format(time.RFC3339)
		stray, err := u.host("h1").Run(context.Background(), dockerSpec(fmt.Sprintf("stray-%d", i), map[string]string{
			session.LabelManaged: "true", session.LabelInstance: instance, session.LabelWarm: "true",
			session.LabelSession: "stray", session.LabelCreated: old}))
		if err != nil {
			t.Fatal(err)
		}
		u.start()
		go u.m.Reap(context.Background()) // races the pool's first listing
		u.advanceUntil("the stray removed", 500*time.Millisecond, func() bool {
			_, err := u.host("h1").Inspect(context.Background(), stray.ID)
			return err != nil
		})
		u.m.Reap(context.Background())
		u.clock.Advance(2 * time.Second)
		time.Sleep(20 * time.Millisecond)
		if n := u.countEvents("", events.WarmRemoved) + u.countEvents("", events.OrphanRemoved); n != 1 {
			t.Fatalf("round %d: the stray was reported removed %d times, want 1", i, n)
		}
		u.m.Stop(context.Background(), false)
	}
}
