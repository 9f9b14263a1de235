package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// A restart adopts what is running: a ready session keeps its container,
// slot, address and expiry (and expires on time); one whose container
// stopped or vanished ends; one on a host no longer configured is
// forgotten; one still queued is queued again; one whose desktop was
// booting resumes waiting; one never polled gets the rest of its grace.
func TestUnitAdoptionAtStart(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2, noStart: true, opts: session.Options{UnclaimedGrace: 10 * time.Minute}})
	ctx := context.Background()
	run := func(host, sid string) docker.Container {
		c, err := u.host(host).Run(ctx, docker.RunSpec{Name: "rd-" + sid, Ports: []int{session.NoVNCPort},
			Labels: map[string]string{session.LabelManaged: "true", session.LabelInstance: instance, session.LabelSession: sid}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := epoch
	rec := func(user, host, sid string, st session.State, c docker.Container) session.Session {
		r := session.Session{ID: sid, User: user, State: st, Host: host, PubHostname: "192.0.2.1", ContainerID: c.ID,
			Port: c.Ports[session.NoVNCPort], CreatedAt: now.Add(-time.Hour), ReadyAt: now.Add(-50 * time.Minute),
			Stages: []session.Stage{{State: st, At: now.Add(-time.Hour)}}}
		if st == session.Ready {
			r.TimerStartedAt, r.ExpiresAt = now.Add(-50*time.Minute), now.Add(10*time.Minute)
		}
		return r
	}
	running := run("h1", "s-running")
	stopped := run("h1", "s-stopped")
	u.host("h1").Stop(stopped.ID)
	booting := run("h2", "s-booting")
	unpolled := run("h2", "s-unpolled")
	recs := []session.Session{
		rec("running", "h1", "s-running", session.Ready, running),
		rec("stopped", "h1", "s-stopped", session.Ready, stopped),
		rec("missing", "h2", "s-missing", session.Ready, docker.Container{ID: "0123456789abcdef", Ports: map[int]int{session.NoVNCPort: 1}}),
		rec("hostgone", "h9", "s-hostgone", session.Ready, docker.Container{ID: "fedcba9876543210", Ports: map[int]int{session.NoVNCPort: 1}}),
		rec("booting", "h2", "s-booting", session.WaitingForDesktop, booting),
		{ID: "s-queued", User: "queued", State: session.Queued, CreatedAt: now, Stages: []session.Stage{{State: session.Queued, At: now}}},
		{ID: "s-ended", User: "ended", State: session.Expired},
	}
	un := rec("unpolled", "h2", "s-unpolled", session.Ready, unpolled)
	un.TimerStartedAt, un.ExpiresAt, un.ReadyAt = time.Time{}, time.Time{}, now.Add(-9*time.Minute) // a minute of grace left
	recs = append(recs, un)
	for _, r := range recs {
		u.store.recs[r.User] = r
	}
	u.start()
	select {
	case <-u.m.Loaded():
	default:
		t.Fatal("Start returned before the records were loaded")
	}

	u.waitState("stopped", session.Destroyed)
	u.waitState("missing", session.Destroyed)
	u.waitState("booting", session.Ready)
	u.waitState("queued", session.Ready)
	if _, ok := u.m.Get("hostgone"); ok {
		t.Fatal("a session on a host no longer configured was adopted")
	}
	if _, ok := u.record("hostgone"); ok {
		t.Fatal("the record of a session on a host gone is kept")
	}
	if _, ok := u.record("ended"); ok {
		t.Fatal("an ended session's record is kept")
	}
	tg, ok := u.m.Lookup("running")
	if !ok || tg.ContainerID != running.ID || tg.Host != "h1" {
		t.Fatalf("the adopted session is not proxied: %+v", tg)
	}
	if u.countEvents("running", events.SessionAdopted) != 1 {
		t.Fatalf("events %v", u.eventTypes("running"))
	}
	u.settled()
	// running and queued on h1 (queued placed on the least loaded: h1 had
	// one after stopped ended), booting and unpolled on h2.
	if a := u.active("h1") + u.active("h2"); a != 4 {
		t.Fatalf("%d slots counted, want 4", a)
	}
	if len(u.host("h1").Containers()) != 2 {
		t.Fatalf("h1 has %d containers, want running's and queued's", len(u.host("h1").Containers()))
	}

	u.advanceUntil("the unpolled session's timer", 10*time.Second, func() bool { return !u.view("unpolled").TimerStartedAt.IsZero() })
	if got := u.clock.Now().Sub(epoch); got > 70*time.Second {
		t.Fatalf("the adopted unpolled session's timer started %v in, after the rest of its grace", got)
	}
	u.advanceUntil("the adopted session's expiry", 10*time.Second, func() bool { return u.view("running").State == session.Expired })
	if got := u.clock.Now().Sub(epoch); got < 10*time.Minute || got > 11*time.Minute {
		t.Fatalf("adopted session expired %v in, want its stored expiry (10m)", got)
	}
}

// Timers survive a restart: a ready, polled session expires at its stored
// time under the new manager, and is then removed.
func TestUnitTimerAfterRestart(t *testing.T) {
	u := newUnit(t, unitConfig{})
	u.ready("u1")
	if _, _, err := u.m.Poll(context.Background(), "u1"); err != nil {
		t.Fatal(err)
	}
	exp := u.view("u1").ExpiresAt
	u.clock.Advance(30 * time.Minute)
	u.restart()
	u.waitState("u1", session.Ready)
	if v := u.view("u1"); !v.ExpiresAt.Equal(exp) {
		t.Fatalf("expiry %v after restart, was %v", v.ExpiresAt, exp)
	}
	u.advanceUntil("expiry", time.Minute, func() bool { return u.view("u1").State == session.Expired })
	u.settled()
	if len(u.host("h1").Containers()) != 0 {
		t.Fatal("the container of the expired, adopted session is still there")
	}
	if got := u.clock.Now(); got.Before(exp) || got.After(exp.Add(time.Minute)) {
		t.Fatalf("expired at %v, want %v", got, exp)
	}
}
