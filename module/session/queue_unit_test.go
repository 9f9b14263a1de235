package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// With every host full, creates wait in order with their positions shown;
// a destroy lets the head in.
func TestUnitQueueAtCapacity(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2, maxSessions: 1})
	u.ready("u1")
	u.ready("u2")
	u.create("u3")
	u.create("u4")
	u.until("positions", func() bool { return u.view("u3").QueuePosition == 1 && u.view("u4").QueuePosition == 2 })
	if st := u.view("u4").State; st != session.Queued {
		t.Fatalf("u4 is %s", st)
	}
	for _, v := range u.m.List()[:2] {
		if v.QueuePosition != 0 {
			t.Fatalf("a ready session shows queue position %d", v.QueuePosition)
		}
	}
	if err := u.m.Destroy(context.Background(), "u1", ""); err != nil {
		t.Fatal(err)
	}
	u.waitState("u3", session.Ready)
	u.until("u4 at the head", func() bool { return u.view("u4").QueuePosition == 1 })
	// A queued session destroyed leaves the queue; the next one moves up.
	u.create("u5")
	u.until("u5 second", func() bool { return u.view("u5").QueuePosition == 2 })
	if err := u.m.Destroy(context.Background(), "u4", ""); err != nil {
		t.Fatal(err)
	}
	u.until("u5 at the head", func() bool { return u.view("u5").QueuePosition == 1 })
	if err := u.m.Destroy(context.Background(), "u2", ""); err != nil {
		t.Fatal(err)
	}
	u.waitState("u5", session.Ready)
	u.settled()
	if u.m.Count() != 2 || u.active("h1")+u.active("h2") != 2 {
		t.Fatalf("%d sessions, %d slots", u.m.Count(), u.active("h1")+u.active("h2"))
	}
}

// A rush on one host never has more than docker_concurrency starts in
// flight there; the rest wait visibly queued (state queued, their place in
// the host's line, a session_queued event naming the host), and every one
// becomes ready with the host in rotation.
func TestUnitDockerConcurrencyBounded(t *testing.T) {
	u := newUnit(t, unitConfig{concurrency: 2})
	g := newGate("run")
	u.host("h1").SetHook(g.hook)
	for i := range 6 {
		u.create(fmt.Sprint("u", i))
	}
	queued := func() (n int) {
		for _, v := range u.m.List() {
			if v.State == session.Queued {
				n++
			}
		}
		return n
	}
	// The two holding a slot leave "queued" just after they get it.
	u.until("4 waiting for a start slot", func() bool {
		_, held, waiting, _ := session.LaneStats(u.m, "h1")
		return held == 2 && waiting == 4 && queued() == 4
	})
	positions := map[int]bool{}
	for _, v := range u.m.List() {
		if v.State == session.Queued {
			positions[v.QueuePosition] = true
		}
	}
	if len(positions) != 4 || !positions[1] || !positions[4] {
		t.Fatalf("positions of the waiting sessions: %v", positions)
	}
	hostEvents := func() int {
		n := 0
		for _, e := range u.events.Recent(0) {
			if e.Type == events.SessionQueued && e.Host == "h1" && strings.Contains(e.Message, "waits for a container start on h1") {
				n++
			}
		}
		return n
	}
	u.until("a session_queued event for each in the host's line", func() bool { return hostEvents() == 4 })
	g.release()
	for i := range 6 {
		u.waitState(fmt.Sprint("u", i), session.Ready)
	}
	if n := u.host("h1").MaxInFlightOf("run"); n > 2 {
		t.Fatalf("%d container starts in flight on h1 with docker_concurrency 2", n)
	}
	if !u.hosts.Healthy("h1") {
		t.Fatal("a busy host left rotation")
	}
	for _, v := range u.m.List() {
		if got := states(v); !strings.HasPrefix(got, "queued>scheduling>starting>") {
			t.Fatalf("stages %s", got)
		}
	}
}

// The start timeout measures the host's answer from the moment the start
// slot is held, never the time spent waiting for it: a start that waited
// longer than the timeout in line still succeeds; one the host does not
// answer within the timeout fails and counts against the host.
func TestUnitTimeoutStartsWithTheSlot(t *testing.T) {
	u := newUnit(t, unitConfig{concurrency: 1})
	first := newGate("run")
	var mu sync.Mutex
	calls := 0
	second := newGate("run")
	u.host("h1").SetHook(func(ctx context.Context, method string) error {
		if method != "run" {
			return nil
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			return first.hook(ctx, method)
		}
		return second.hook(ctx, method)
	})
	u.create("u1")
	u.create("u2")
	u.until("u2 in line", func() bool { return u.view("u2").QueuePosition == 1 })
	u.clock.Advance(session.RunTimeout - time.Second)
	time.Sleep(5 * time.Millisecond)
	first.release()
	u.waitState("u1", session.Ready)
	u.until("u2 starting", func() bool { return u.view("u2").State == session.Starting })
	// u2 has now been waiting longer than the timeout in all.
	u.clock.Advance(session.RunTimeout - time.Second)
	time.Sleep(5 * time.Millisecond)
	if st := u.view("u2").State; st != session.Starting || !u.hosts.Healthy("h1") {
		t.Fatalf("u2 is %s after waiting in line; host healthy %v", st, u.hosts.Healthy("h1"))
	}
	u.advanceUntil("the start to time out", time.Second, func() bool { return u.view("u2").State.Terminal() })
	v := u.view("u2")
	if v.State != session.Failed || !strings.Contains(v.Error, "no answer within 1m0s") || u.hosts.Healthy("h1") {
		t.Fatalf("u2 %s %q; host healthy %v", v.State, v.Error, u.hosts.Healthy("h1"))
	}
	second.release()
}

// Removals have their own lane: with every start slot held by a slow rush,
// a destroyed session's container is still removed at once.
func TestUnitRemovalsNotStarvedByCreates(t *testing.T) {
	u := newUnit(t, unitConfig{concurrency: 1})
	u.ready("u0")
	g := newGate("run")
	defer g.release()
	u.host("h1").SetHook(g.hook)
	for i := 1; i <= 5; i++ {
		u.create(fmt.Sprint("u", i))
	}
	u.until("the rush in line", func() bool { _, held, waiting, _ := session.LaneStats(u.m, "h1"); return held == 1 && waiting == 4 })
	id := u.view("u0").ContainerID
	if err := u.m.Destroy(context.Background(), "u0", ""); err != nil {
		t.Fatal(err)
	}
	u.until("u0's container gone", func() bool {
		for _, c := range u.host("h1").Containers() {
			if c.ID == id {
				return false
			}
		}
		return true
	})
}

// A lane whose starts near their timeout halves its limit, and grows back
// as they speed up.
func TestUnitLaneAdaptsToStartLatency(t *testing.T) {
	u := newUnit(t, unitConfig{concurrency: 4})
	slow := true
	var mu sync.Mutex
	u.host("h1").SetHook(func(ctx context.Context, method string) error {
		mu.Lock()
		s := slow
		mu.Unlock()
		if method == "run" && s {
			go u.clock.Advance(session.RunTimeout*2/3 - time.Second) // a 39 s start: near its timeout
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	})
	u.ready("u1")
	if limit, _, _, _ := session.LaneStats(u.m, "h1"); limit != 2 {
		t.Fatalf("after a slow start the limit is %d, want 2", limit)
	}
	u.ready("u2")
	if limit, _, _, _ := session.LaneStats(u.m, "h1"); limit != 1 {
		t.Fatalf("after two slow starts the limit is %d, want 1", limit)
	}
	mu.Lock()
	slow = false
	mu.Unlock()
	u.ready("u3")
	u.ready("u4")
	if limit, _, _, _ := session.LaneStats(u.m, "h1"); limit != 3 {
		t.Fatalf("after two fast starts the limit is %d, want 3", limit)
	}
}

// A host that is slow to answer a check of a booting desktop is busy, not
// broken: a few unanswered checks in a row are tolerated, more fail the
// attempt.
func TestUnitInspectFailuresTolerated(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2, notReady: true})
	var mu sync.Mutex
	failing := 2
	busy := func(_ context.Context, method string) error {
		mu.Lock()
		defer mu.Unlock()
		if method == "inspect" && failing > 0 {
			failing--
			return errors.New("timed out")
		}
		return nil
	}
	u.host("h1").SetHook(busy)
	u.host("h2").SetHook(busy)
	u.create("u1")
	v := u.waitState("u1", session.WaitingForDesktop)
	u.advanceUntil("three checks", 500*time.Millisecond, func() bool { return u.host(v.Host).Calls("inspect") >= 3 })
	u.prober.SetReady(v.Addr(), true)
	u.advanceUntil("ready", 100*time.Millisecond, func() bool { return u.view("u1").State == session.Ready })
	if w := u.view("u1"); w.Host != v.Host || !u.hosts.Healthy(v.Host) {
		t.Fatalf("two unanswered checks moved the session (%s → %s) or the host left rotation", v.Host, w.Host)
	}

	mu.Lock()
	failing = 1000
	mu.Unlock()
	u.create("u2")
	v = u.waitState("u2", session.WaitingForDesktop)
	u.advanceUntil("the attempt to fail", 500*time.Millisecond, func() bool { return u.view("u2").Host != v.Host })
	if u.hosts.Healthy(v.Host) {
		t.Fatal("a host that answered no check stayed in rotation")
	}
}
