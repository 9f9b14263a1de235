package session_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// A session walks queued → scheduling → starting → waiting_for_desktop →
// ready; its container carries the session's labels; it expires once its
// timer (started by the first poll) is up, and then nothing of it is left.
func TestUnitLifecycle(t *testing.T) {
	u := newUnit(t, unitConfig{notReady: true})
	s := u.create("u1")
	if s.State != session.Queued {
		t.Fatalf("a new session is %s, want queued", s.State)
	}
	v := u.waitState("u1", session.WaitingForDesktop)
	if _, ok := u.m.Lookup("u1"); ok {
		t.Fatal("the proxy finds a session that is not ready")
	}
	list := u.host("h1").Containers()
	if len(list) != 1 || list[0].ID != v.ContainerID || list[0].Labels[session.LabelSession] != v.ID ||
		list[0].Labels[session.LabelInstance] != instance || list[0].Labels[session.LabelUser] != "u1" {
		t.Fatalf("containers on h1: %+v (session %+v)", list, v)
	}
	if rec, ok := u.record("u1"); !ok || rec.ContainerID != v.ContainerID || rec.State != session.WaitingForDesktop {
		t.Fatalf("stored record %+v", rec)
	}
	u.prober.SetReady(v.Addr(), true)
	u.advanceUntil("ready", 100*time.Millisecond, func() bool { return u.view("u1").State == session.Ready })
	u.until("session_ready", func() bool { return u.countEvents("u1", events.SessionReady) == 1 })
	v = u.view("u1")
	if got := states(v); got != "queued>scheduling>starting>waiting_for_desktop>ready" {
		t.Fatalf("stages %s", got)
	}
	if tg, ok := u.m.Lookup("u1"); !ok || tg.Addr != v.Addr() || tg.Host != "h1" {
		t.Fatalf("lookup %+v %v", tg, ok)
	}
	if !v.TimerStartedAt.IsZero() || !session.ClaimArmed(u.m, "u1") {
		t.Fatal("the timer started before the first poll, or no unclaimed grace is armed")
	}

	polled := u.clock.Now()
	pv, ok, err := u.m.Poll(context.Background(), "u1")
	if err != nil || !ok || !pv.TimerStartedAt.Equal(polled) || !pv.ExpiresAt.Equal(polled.Add(time.Hour)) {
		t.Fatalf("first poll: %v %v, timer %v expires %v", ok, err, pv.TimerStartedAt, pv.ExpiresAt)
	}
	if session.ClaimArmed(u.m, "u1") {
		t.Fatal("the unclaimed grace is still armed after the first poll")
	}
	u.clock.Advance(time.Hour - time.Second)
	time.Sleep(5 * time.Millisecond)
	if st := u.view("u1").State; st != session.Ready {
		t.Fatalf("a second before expiry the session is %s", st)
	}
	u.advanceUntil("expiry", time.Second, func() bool { return u.view("u1").State == session.Expired })
	u.settled()
	u.until("session_expired", func() bool { return u.countEvents("u1", events.SessionExpired) > 0 })
	if n := len(u.host("h1").Containers()); n != 0 || u.active("h1") != 0 || u.records() != 0 {
		t.Fatalf("after expiry: %d containers, %d slots, %d records", n, u.active("h1"), u.records())
	}
	want := []string{events.SessionQueued, events.SessionCreated, events.SessionReady, events.SessionTimerStarted, events.SessionExpired}
	if got := u.eventTypes("u1"); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if _, ok := u.m.Lookup("u1"); ok {
		t.Fatal("an expired session is still proxied")
	}
}

// One session per user however many requests race.
func TestUnitOneSessionPerUser(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2})
	ids := make(chan string, 20)
	created := make(chan bool, 20)
	for range 20 {
		go func() {
			s, c, _ := u.m.Create("u1", "")
			ids <- s.ID
			created <- c
		}()
	}
	first, n := "", 0
	for range 20 {
		id := <-ids
		if first == "" {
			first = id
		}
		if id != first {
			t.Fatalf("two sessions for one user: %s and %s", first, id)
		}
		if <-created {
			n++
		}
	}
	u.waitState("u1", session.Ready)
	u.settled()
	if n != 1 || len(u.host("h1").Containers())+len(u.host("h2").Containers()) != 1 {
		t.Fatalf("%d creates reported, containers %d+%d", n, len(u.host("h1").Containers()), len(u.host("h2").Containers()))
	}
}

// Destroy in every stage: the container (if any) is removed once, the slot
// released, the record deleted, the event sent once; a second Destroy finds
// no session.
func TestUnitDestroyInEachStage(t *testing.T) {
	stages := map[string]func(*unit) (hold *gate){
		"queued": func(u *unit) *gate { // the only slot is taken by u0
			u.ready("u0")
			u.create("u1")
			u.until("u1 queued behind capacity", func() bool { return u.view("u1").QueuePosition == 1 })
			return nil
		},
		"starting": func(u *unit) *gate {
			g := newGate("run")
			u.host("h1").SetHook(g.hook)
			u.create("u1")
			u.until("the run in flight", func() bool { _, held, _, _ := session.LaneStats(u.m, "h1"); return held == 1 })
			return g
		},
		"waiting_for_desktop": func(u *unit) *gate {
			u.prober.SetAll(false)
			u.create("u1")
			u.waitState("u1", session.WaitingForDesktop)
			return nil
		},
		"ready": func(u *unit) *gate { u.ready("u1"); return nil },
	}
	for name, to := range stages {
		t.Run(name, func(t *testing.T) {
			u := newUnit(t, unitConfig{maxSessions: 1})
			g := to(u)
			if err := u.m.Destroy(context.Background(), "u1", "by the player"); err != nil {
				t.Fatal(err)
			}
			if g != nil {
				g.release()
			}
			if err := u.m.Destroy(context.Background(), "u1", ""); !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("second destroy: %v", err)
			}
			u.settled()
			u.until("session_destroyed", func() bool { return u.countEvents("u1", events.SessionDestroyed) > 0 })
			v := u.view("u1")
			if v.State != session.Destroyed || v.Error != "by the player" {
				t.Fatalf("after destroy: %s %q", v.State, v.Error)
			}
			for _, c := range u.host("h1").Containers() {
				if c.Labels[session.LabelSession] == v.ID {
					t.Fatalf("container %s of the destroyed session is still there", c.Name)
				}
			}
			if _, ok := u.record("u1"); ok {
				t.Fatal("the record of the destroyed session is still stored")
			}
			if n := u.countEvents("u1", events.SessionDestroyed); n != 1 {
				t.Fatalf("%d session_destroyed events", n)
			}
			if _, ok := u.m.Get("u0"); ok { // the slot went back: u0 still has its one
				if u.active("h1") != 1 {
					t.Fatalf("h1 counts %d sessions, want u0's", u.active("h1"))
				}
			} else if u.active("h1") != 0 {
				t.Fatalf("h1 counts %d sessions after the destroy", u.active("h1"))
			}
			if name != "starting" && name != "queued" && u.host("h1").Calls("remove") != 1 {
				t.Fatalf("%d removals of one container", u.host("h1").Calls("remove"))
			}
		})
	}
}

// A container that stops while its desktop boots fails the attempt, which
// moves on to the next host and counts against the first.
func TestUnitCrashedDesktopRetriesElsewhere(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2, notReady: true})
	u.create("u1")
	v := u.waitState("u1", session.WaitingForDesktop)
	u.host(v.Host).Stop(v.ContainerID)
	other := map[string]string{"h1": "h2", "h2": "h1"}[v.Host]
	u.advanceUntil("a retry on "+other, 500*time.Millisecond, func() bool {
		w := u.view("u1")
		return w.Host == other && w.State == session.WaitingForDesktop
	})
	w := u.view("u1")
	u.prober.SetReady(w.Addr(), true)
	u.advanceUntil("ready", 100*time.Millisecond, func() bool { return u.view("u1").State == session.Ready })
	if u.hosts.Healthy(v.Host) {
		t.Error("the host whose container stopped is still in rotation")
	}
	u.settled()
	if n := len(u.host(v.Host).Containers()); n != 0 {
		t.Errorf("%d containers of the failed attempt left on %s", n, v.Host)
	}
}

// Failures on every host end the session after MaxAttempts hosts, each
// tried once, each taken out of rotation; its error says why.
func TestUnitMaxAttempts(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 3, opts: session.Options{MaxAttempts: 2}})
	boom := func(_ context.Context, method string) error {
		if method == "run" {
			return errors.New("image not found")
		}
		return nil
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		u.host(h).SetHook(boom)
	}
	u.create("u1")
	v := u.waitState("u1", session.Failed)
	runs := u.host("h1").Calls("run") + u.host("h2").Calls("run") + u.host("h3").Calls("run")
	if runs != 2 || !strings.Contains(v.Error, "image not found") {
		t.Fatalf("%d runs, error %q", runs, v.Error)
	}
	unhealthy := 0
	for _, st := range u.hosts.Status() {
		if st.Health != "healthy" {
			unhealthy++
		}
	}
	u.until("creation_failed", func() bool { return u.countEvents("u1", events.CreationFailed) > 0 })
	if unhealthy != 2 || u.countEvents("u1", events.CreationFailed) != 1 {
		t.Fatalf("%d hosts left rotation, events %v", unhealthy, u.eventTypes("u1"))
	}
}

// With every host failing and fewer hosts than attempts, the error says
// there was no other host.
func TestUnitNoOtherHost(t *testing.T) {
	u := newUnit(t, unitConfig{})
	u.host("h1").SetHook(func(_ context.Context, method string) error {
		if method == "run" {
			return errors.New("no space left on device")
		}
		return nil
	})
	u.create("u1")
	if v := u.waitState("u1", session.Failed); !strings.Contains(v.Error, "no other host to try") {
		t.Fatalf("error %q", v.Error)
	}
	// No healthy host at all: a new session fails at once.
	u.create("u2")
	if v := u.waitState("u2", session.Failed); !strings.Contains(v.Error, "no healthy workspace host") {
		t.Fatalf("error %q", v.Error)
	}
}

// A record that cannot be saved fails the creation without blaming the
// host: no retry elsewhere, the host stays in rotation, nothing is left.
func TestUnitStorageFailure(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2})
	u.store.mu.Lock()
	u.store.fail = errors.New("disk full")
	u.store.mu.Unlock()
	u.create("u1")
	v := u.waitState("u1", session.Failed)
	u.settled()
	if !strings.Contains(v.Error, "save session record") || !strings.Contains(v.Error, "disk full") {
		t.Fatalf("error %q", v.Error)
	}
	if !u.hosts.Healthy("h1") || !u.hosts.Healthy("h2") {
		t.Fatal("a storage failure took a host out of rotation")
	}
	if runs := u.host("h1").Calls("run") + u.host("h2").Calls("run"); runs != 1 {
		t.Fatalf("%d runs; a storage failure must not be retried on another host", runs)
	}
	if n := len(u.host("h1").Containers()) + len(u.host("h2").Containers()); n != 0 {
		t.Fatalf("%d containers left", n)
	}
}

// Stop with the destroy policy removes every session's container; with
// keep, containers and records stay for the next start; a stopped manager
// makes nothing.
func TestUnitStop(t *testing.T) {
	u := newUnit(t, unitConfig{hosts: 2})
	u.ready("u1")
	u.ready("u2")
	u.m.Stop(context.Background(), false)
	if u.records() != 2 || len(u.host("h1").Containers())+len(u.host("h2").Containers()) != 2 {
		t.Fatal("stop with keep lost sessions")
	}
	if _, _, err := u.m.Create("u3", ""); !errors.Is(err, session.ErrStopped) {
		t.Fatalf("create after stop: %v", err)
	}

	u2 := newUnit(t, unitConfig{hosts: 2})
	u2.ready("u1")
	u2.ready("u2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u2.m.Stop(ctx, true)
	if n := len(u2.host("h1").Containers()) + len(u2.host("h2").Containers()); n != 0 || u2.records() != 0 {
		t.Fatalf("stop with destroy left %d containers, %d records", n, u2.records())
	}
	if u2.countEvents("u1", events.SessionDestroyed) != 1 {
		t.Fatalf("events %v", u2.eventTypes("u1"))
	}
}

// A destroy while the host is still making the container (the Docker call
// in flight) does not cut that call off, since the daemon may finish it
// anyway and nobody would know the container: the create finishes, sees
// the session ended and removes what it made. No orphan is left for the
// reaper.
func TestUnitDestroyDuringRunLeavesNoContainer(t *testing.T) {
	u := newUnit(t, unitConfig{})
	g := newGate("run")
	u.host("h1").SetHook(g.hook)
	u.host("h1").SetDaemonFinishes(true)
	u.create("u1")
	u.until("the run in flight", func() bool { return u.host("h1").Calls("run") == 1 })
	if err := u.m.Destroy(context.Background(), "u1", ""); err != nil {
		t.Fatal(err)
	}
	g.release()
	u.until("the container made and removed", func() bool {
		return u.host("h1").Calls("remove") >= 1 && len(u.host("h1").Containers()) == 0
	})
	u.settled()
	if n := u.countEvents("", events.OrphanRemoved); n != 0 {
		t.Fatalf("%d orphan_removed", n)
	}
}
