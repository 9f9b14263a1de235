package session

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
)

// saves counts Store writes (the timer tests need no host).
type saves struct {
	mu sync.Mutex
	n  int
}

func (s *saves) Save(context.Context, Session) error        { s.mu.Lock(); s.n++; s.mu.Unlock(); return nil }
func (s *saves) Delete(context.Context, string) error       { return nil }
func (s *saves) LoadAll(context.Context) ([]Session, error) { return nil, nil }
func (s *saves) count() int                                 { s.mu.Lock(); defer s.mu.Unlock(); return s.n }

// readySession is a manager with one session of user u1 just marked ready
// (its unclaimed grace armed), and that grace's timer.
func readySession(t *testing.T, grace time.Duration) (*Manager, *saves, *Session, *time.Timer) {
	t.Helper()
	ev := events.New(50, nil)
	st := &saves{}
	m := New(hosts.New(ev, nil), ev, st, Options{UnclaimedGrace: grace}, nil)
	s := &Session{ID: "s1", User: "u1", CreatedAt: time.Now()}
	s.enter(WaitingForDesktop, time.Now())
	m.sessions[s.User] = s
	if err := m.markReady(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	claim := s.claim
	m.mu.Unlock()
	if claim == nil {
		t.Fatal("no unclaimed grace armed at ready")
	}
	return m, st, s, claim
}

// The grace timer is stopped when it has nothing left to do: when the
// session timer starts (first poll), when the session ends, and on
// shutdown. Stop reporting false on an hour-long timer proves it was
// stopped already.
func TestClaimTimerStopped(t *testing.T) {
	for name, do := range map[string]func(*Manager){
		"first poll": func(m *Manager) { _, _, _ = m.Poll(context.Background(), "u1") },
		"destroyed":  func(m *Manager) { _ = m.Destroy(context.Background(), "u1", "") },
		"shutdown":   func(m *Manager) { m.Stop(context.Background(), false) },
	} {
		t.Run(name, func(t *testing.T) {
			m, _, s, claim := readySession(t, time.Hour)
			defer m.Stop(context.Background(), false)
			do(m)
			m.mu.Lock()
			left := s.claim
			m.mu.Unlock()
			if claim.Stop() || left != nil {
				t.Fatal("the unclaimed grace timer is still armed")
			}
		})
	}
}

// A grace that ends after shutdown must not start the timer of a kept
// session nor write its record from the stopped manager (a restart adopts
// the record as it was).
func TestClaimTimerDoesNothingAfterStop(t *testing.T) {
	const grace = 20 * time.Millisecond
	m, st, s, _ := readySession(t, grace)
	m.Stop(context.Background(), false)
	before := st.count()
	time.Sleep(10 * grace)
	m.mu.Lock()
	started := s.TimerStartedAt
	m.mu.Unlock()
	if !started.IsZero() || st.count() != before {
		t.Fatalf("after Stop the grace started the session timer (%v) and wrote %d records", started, st.count()-before)
	}
}

// A ready session adopted after a restart before its owner ever polled gets
// what is left of its grace: abandoned, it still expires.
func TestAdoptedUnclaimedSessionGetsItsGrace(t *testing.T) {
	ev := events.New(50, nil)
	orch := hosts.New(ev, nil)
	orch.SetHosts([]*hosts.Host{hosts.NewHost(config.Host{Hostname: "h1"}, &hosts.LocalEngine{Socket: "/nonexistent/docker.sock"}, "")})
	m := New(orch, ev, &saves{}, Options{UnclaimedGrace: time.Hour}, nil)
	defer m.Stop(context.Background(), false)
	ready := time.Now().Add(-time.Hour + 20*time.Millisecond) // 20 ms of grace left
	m.restore([]Session{{ID: "s1", User: "u1", State: Ready, Host: "h1", ContainerID: "c1", Port: 1, CreatedAt: ready, ReadyAt: ready}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _ := m.Get("u1")
		if !v.TimerStartedAt.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the adopted session's timer never started: abandoned, it would never expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
