package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// The reaper removes managed containers of this instance that no session
// owns once older than orphan_grace (helpers: HelperMaxLife), leaves other
// instances' alone, and ends sessions whose container exited or vanished.
func TestUnitReaper(t *testing.T) {
	u := newUnit(t, unitConfig{opts: session.Options{OrphanGrace: time.Minute, ReaperInterval: 30 * time.Second}})
	rt := u.host("h1")
	u.ready("live")
	u.ready("exits")
	u.ready("vanishes")
	young := orphan(t, rt, "young", epoch, false)
	old := orphan(t, rt, "old", epoch.Add(-2*time.Minute), false)
	helper := orphan(t, rt, "helper", epoch, true)
	rt.Stop(u.view("exits").ContainerID)
	if err := rt.Remove(context.Background(), u.view("vanishes").ContainerID, 0); err != nil {
		t.Fatal(err)
	}
	// One of another instance: never ours to remove.
	other, err := rt.Run(context.Background(), dockerSpec("other", map[string]string{session.LabelManaged: "true", session.LabelInstance: "someone-else"}))
	if err != nil {
		t.Fatal(err)
	}

	has := func(id string) bool {
		for _, c := range rt.Containers() {
			if c.ID == id {
				return true
			}
		}
		return false
	}
	u.clock.Advance(time.Second) // the reaper leaves a session that became ready this instant
	u.m.Reap(context.Background())
	u.waitState("exits", session.Destroyed)
	u.waitState("vanishes", session.Destroyed)
	u.settled()
	if has(old.ID) || !has(young.ID) || !has(helper.ID) || !has(other.ID) {
		t.Fatalf("after one pass: old %v young %v helper %v other %v", has(old.ID), has(young.ID), has(helper.ID), has(other.ID))
	}
	if !has(u.view("live").ContainerID) || u.view("live").State != session.Ready {
		t.Fatal("the reaper touched a live session")
	}
	if u.countEvents("", events.OrphanRemoved) != 1 {
		t.Fatalf("orphan events: %d", u.countEvents("", events.OrphanRemoved))
	}
	// The reaper's own loop, on the clock: the young orphan goes after its
	// grace, the helper only after HelperMaxLife.
	u.advanceUntil("the young orphan reaped", 30*time.Second, func() bool { return !has(young.ID) })
	if !has(helper.ID) {
		t.Fatal("a helper container was reaped before HelperMaxLife")
	}
	u.advanceUntil("the helper reaped", 30*time.Second, func() bool { return !has(helper.ID) })
	if u.clock.Now().Sub(epoch) < session.HelperMaxLife {
		t.Fatal("helper reaped early")
	}
	if !has(other.ID) {
		t.Fatal("another instance's container was reaped")
	}
}

// A container whose removal is under way (its session just ended) is not
// taken for an orphan, and an unhealthy host is not looked at.
func TestUnitReaperSkipsRemovingAndUnhealthy(t *testing.T) {
	u := newUnit(t, unitConfig{opts: session.Options{OrphanGrace: time.Nanosecond, ReaperInterval: 100 * time.Hour}})
	rt := u.host("h1")
	u.ready("u1")
	g := newGate("remove")
	rt.SetHook(g.hook)
	if err := u.m.Destroy(context.Background(), "u1", ""); err != nil {
		t.Fatal(err)
	}
	u.until("the removal in flight", func() bool { _, _, _, rm := session.LaneStats(u.m, "h1"); return rm == 1 })
	u.clock.Advance(time.Second) // past the orphan grace, within the removal's timeout
	u.m.Reap(context.Background())
	if rt.Calls("remove") != 1 || u.countEvents("", events.OrphanRemoved) != 0 {
		t.Fatalf("the reaper removed a container whose removal was under way (%d removals)", rt.Calls("remove"))
	}
	g.release()
	u.settled()

	o := orphan(t, rt, "o", epoch, false)
	u.hosts.MarkUnhealthy("h1", "test")
	lists := rt.Calls("list")
	u.m.Reap(context.Background())
	if rt.Calls("list") != lists || len(rt.Containers()) != 1 || rt.Containers()[0].ID != o.ID {
		t.Fatal("the reaper looked at an unhealthy host")
	}
	// A host whose listing fails costs nothing.
	u.hosts.MarkHealthy("h1")
	rt.SetHook(func(_ context.Context, m string) error {
		if m == "list" {
			return errors.New("daemon busy")
		}
		return nil
	})
	u.m.Reap(context.Background())
	if got := rt.Containers(); len(got) != 1 {
		t.Fatalf("a failed listing removed something: %+v", got)
	}
}
