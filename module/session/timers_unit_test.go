package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Never polled, a ready session's timer starts after the unclaimed grace,
// so an abandoned desktop still expires.
func TestUnitUnclaimedGrace(t *testing.T) {
	u := newUnit(t, unitConfig{opts: session.Options{UnclaimedGrace: time.Minute}})
	u.ready("u1")
	readyAt := u.clock.Now()
	u.clock.Advance(59 * time.Second)
	time.Sleep(5 * time.Millisecond)
	if !u.view("u1").TimerStartedAt.IsZero() {
		t.Fatal("the timer started before the grace was over")
	}
	u.advanceUntil("the timer", time.Second, func() bool { return !u.view("u1").TimerStartedAt.IsZero() })
	v := u.view("u1")
	if !v.ExpiresAt.Equal(readyAt.Add(time.Minute + time.Hour)) {
		t.Fatalf("expires %v, want an hour after the grace", v.ExpiresAt.Sub(epoch))
	}
	u.until("timer_started event", func() bool { return u.countEvents("u1", events.SessionTimerStarted) == 1 })
	if rec, _ := u.record("u1"); rec.TimerStartedAt.IsZero() {
		t.Fatal("the started timer was not stored")
	}
	if session.ClaimArmed(u.m, "u1") {
		t.Fatal("the grace timer is still armed after it fired")
	}
}

// The grace timer is stopped once it has nothing left to do: the first
// poll, the end of the session, shutdown. A grace that would end after
// shutdown neither starts the timer nor writes the record.
func TestUnitClaimTimerStopped(t *testing.T) {
	for name, do := range map[string]func(*unit){
		"first poll": func(u *unit) { _, _, _ = u.m.Poll(context.Background(), "u1") },
		"destroyed":  func(u *unit) { _ = u.m.Destroy(context.Background(), "u1", "") },
		"shutdown":   func(u *unit) { u.m.Stop(context.Background(), false) },
	} {
		t.Run(name, func(t *testing.T) {
			u := newUnit(t, unitConfig{opts: session.Options{UnclaimedGrace: time.Minute}})
			u.ready("u1")
			if !session.ClaimArmed(u.m, "u1") {
				t.Fatal("no grace armed at ready")
			}
			do(u)
			if session.ClaimArmed(u.m, "u1") {
				t.Fatal("the grace timer is still armed")
			}
			rec, _ := u.record("u1")
			u.clock.Advance(2 * time.Minute)
			time.Sleep(5 * time.Millisecond)
			if name == "shutdown" {
				if now, _ := u.record("u1"); !now.TimerStartedAt.Equal(rec.TimerStartedAt) || u.countEvents("u1", events.SessionTimerStarted) != 0 {
					t.Fatal("after Stop the grace started the timer of a kept session")
				}
			}
		})
	}
}

// Extensions: not before ready; each adds extension_duration to the
// expiry; max_extensions for players, none for admins; the expiry timer
// follows.
func TestUnitExtend(t *testing.T) {
	u := newUnit(t, unitConfig{notReady: true})
	ctx := context.Background()
	if _, err := u.m.Extend(ctx, "nobody", false); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("extend without a session: %v", err)
	}
	u.create("u1")
	u.waitState("u1", session.WaitingForDesktop)
	if _, err := u.m.Extend(ctx, "u1", false); !errors.Is(err, session.ErrNotReady) {
		t.Fatalf("extend before ready: %v", err)
	}
	u.prober.SetAll(true)
	u.advanceUntil("ready", 100*time.Millisecond, func() bool { return u.view("u1").State == session.Ready })

	// Extended before the first poll: the timer starts with the extension.
	start := u.clock.Now()
	v, err := u.m.Extend(ctx, "u1", false)
	if err != nil || !v.TimerStartedAt.Equal(start) || !v.ExpiresAt.Equal(start.Add(time.Hour+20*time.Minute)) || v.Extensions != 1 {
		t.Fatalf("first extension: %v, timer %v, expires %v, n %d", err, v.TimerStartedAt, v.ExpiresAt.Sub(start), v.Extensions)
	}
	if v, err = u.m.Extend(ctx, "u1", false); err != nil || v.Extensions != 2 || v.MaxExtensions != 2 {
		t.Fatalf("second extension: %v %d", err, v.Extensions)
	}
	if _, err = u.m.Extend(ctx, "u1", false); !errors.Is(err, session.ErrMaxExtensions) {
		t.Fatalf("third extension by the player: %v", err)
	}
	if v, err = u.m.Extend(ctx, "u1", true); err != nil || v.Extensions != 3 || !v.ExpiresAt.Equal(start.Add(2*time.Hour)) {
		t.Fatalf("admin extension: %v %d %v", err, v.Extensions, v.ExpiresAt.Sub(start))
	}
	u.until("extension events", func() bool { return u.countEvents("u1", events.SessionExtended) == 3 })

	// The first expiry would have been an hour in: still ready then.
	u.clock.Advance(time.Hour + time.Minute)
	time.Sleep(5 * time.Millisecond)
	if st := u.view("u1").State; st != session.Ready {
		t.Fatalf("expired at the unextended time: %s", st)
	}
	u.advanceUntil("expiry", time.Minute, func() bool { return u.view("u1").State == session.Expired })
	if at := u.view("u1").Stages; at[len(at)-1].At.Before(start.Add(2 * time.Hour)) {
		t.Fatalf("expired at %v, before its extended expiry", at[len(at)-1].At.Sub(start))
	}
}

// An extension that cannot be stored is undone: neither the expiry nor the
// count moves, and the old expiry still ends the session.
func TestUnitExtendUndoneWhenNotStored(t *testing.T) {
	u := newUnit(t, unitConfig{})
	u.ready("u1")
	if _, _, err := u.m.Poll(context.Background(), "u1"); err != nil {
		t.Fatal(err)
	}
	before := u.view("u1")
	u.store.mu.Lock()
	u.store.fail = errors.New("disk full")
	u.store.mu.Unlock()
	if _, err := u.m.Extend(context.Background(), "u1", false); err == nil {
		t.Fatal("an extension that was not stored succeeded")
	}
	after := u.view("u1")
	if !after.ExpiresAt.Equal(before.ExpiresAt) || after.Extensions != before.Extensions {
		t.Fatalf("after a failed extension: expires %v (was %v), %d extensions", after.ExpiresAt, before.ExpiresAt, after.Extensions)
	}
	if u.countEvents("u1", events.SessionExtended) != 0 {
		t.Fatal("a failed extension was announced")
	}
	u.advanceUntil("expiry at the old time", time.Minute, func() bool { return u.view("u1").State == session.Expired })
	if at := u.view("u1").Stages; at[len(at)-1].At.After(before.ExpiresAt.Add(time.Minute)) {
		t.Fatal("the old expiry was not kept")
	}
}

// A first poll whose timer cannot be stored reports the error.
func TestUnitPollNotStored(t *testing.T) {
	u := newUnit(t, unitConfig{})
	u.ready("u1")
	u.store.mu.Lock()
	u.store.fail = errors.New("disk full")
	u.store.mu.Unlock()
	if _, _, err := u.m.Poll(context.Background(), "u1"); err == nil {
		t.Fatal("a timer that was not stored was reported started")
	}
}

// The reaper's backstop ends a session past its expiry even if its timer
// did not (say, the clock jumped).
func TestUnitReaperEndsExpired(t *testing.T) {
	u := newUnit(t, unitConfig{})
	u.ready("u1")
	if _, _, err := u.m.Poll(context.Background(), "u1"); err != nil {
		t.Fatal(err)
	}
	u.clock.Advance(2 * time.Hour) // fires the timer too; Reap must not end it twice
	u.m.Reap(context.Background())
	u.waitState("u1", session.Expired)
	u.settled()
	if n := u.countEvents("u1", events.SessionExpired); n != 1 {
		t.Fatalf("%d session_expired events", n)
	}
}
