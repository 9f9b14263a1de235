package session

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
)

// Poll is the owner's status poll: like Get, and the first poll after the
// desktop is ready starts the session timer (the seed's rule).
func (m *Manager) Poll(ctx context.Context, userID string) (View, bool, error) {
	m.mu.Lock()
	s, ok := m.sessions[userID]
	if ok && s.State == Ready && s.TimerStartedAt.IsZero() {
		m.startTimerLocked(s)
		snap := s.snapshot()
		m.mu.Unlock()
		if err := m.persist(ctx, s); err != nil {
			return View{}, false, fmt.Errorf("save session timer: %w", err)
		}
		m.timerStarted(snap, "first status poll")
	} else {
		m.mu.Unlock()
	}
	v, ok := m.Get(userID)
	return v, ok, nil
}

// startTimerLocked sets the expiry from now and arms the expiry timer.
func (m *Manager) startTimerLocked(s *Session) {
	stopClaimLocked(s)
	now := m.now()
	s.TimerStartedAt = now.UTC()
	s.ExpiresAt = now.Add(time.Duration(m.opts.Session.InitialDuration) * time.Second).UTC()
	m.armExpiryLocked(s)
}

// timerStarted tells the event log (and so the admin dashboard) the
// session's expiry the moment its timer starts.
func (m *Manager) timerStarted(snap Session, why string) {
	m.events.Emit(events.Event{Type: events.SessionTimerStarted, User: snap.User, Host: snap.Host,
		Message: fmt.Sprintf("timer of %s's session started (%s); expires %s", display(snap.User, snap.UserName), why, snap.ExpiresAt.Format(time.RFC3339)),
		Data:    map[string]any{"session": snap.ID, "expires_at": snap.ExpiresAt}})
}

func (m *Manager) armExpiryLocked(s *Session) {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	user, id := s.User, s.ID
	s.expiry = m.clock.AfterFunc(s.ExpiresAt.Sub(m.now()), func() { m.expire(user, id) })
}

// Extend adds one extension to the current expiry. Admins are not bound by
// max_extensions.
func (m *Manager) Extend(ctx context.Context, userID string, byAdmin bool) (View, error) {
	m.mu.Lock()
	s, ok := m.sessions[userID]
	switch {
	case !ok:
		m.mu.Unlock()
		return View{}, ErrNoSession
	case s.State != Ready:
		m.mu.Unlock()
		return View{}, ErrNotReady
	case !byAdmin && s.Extensions >= m.opts.Session.Extensions():
		m.mu.Unlock()
		return View{}, ErrMaxExtensions
	}
	started := s.TimerStartedAt.IsZero()
	if started {
		m.startTimerLocked(s)
	}
	prevExpiry, prevN := s.ExpiresAt, s.Extensions
	s.ExpiresAt = s.ExpiresAt.Add(time.Duration(m.opts.Session.ExtensionDuration) * time.Second)
	s.Extensions++
	m.armExpiryLocked(s)
	snap, max := s.snapshot(), m.opts.Session.Extensions()
	m.mu.Unlock()

	if err := m.persist(ctx, s); err != nil {
		m.mu.Lock()
		if s.ID == snap.ID && s.Extensions == snap.Extensions { // undo: nothing lost, nothing half-done
			s.ExpiresAt, s.Extensions = prevExpiry, prevN
			m.armExpiryLocked(s)
		}
		m.mu.Unlock()
		return View{}, fmt.Errorf("save extended session: %w", err)
	}
	if started {
		m.timerStarted(snap, "extended before the first poll")
	}
	by := ""
	if byAdmin {
		by = " by an admin"
	}
	m.events.Emit(events.Event{Type: events.SessionExtended, User: userID, Host: snap.Host,
		Message: fmt.Sprintf("session of %s extended%s until %s (%d/%d)", display(userID, snap.UserName), by, snap.ExpiresAt.Format(time.RFC3339), snap.Extensions, max),
		Data:    map[string]any{"session": snap.ID, "expires_at": snap.ExpiresAt, "extensions": snap.Extensions, "by_admin": byAdmin}})
	v, _ := m.Get(userID)
	return v, nil
}

// armClaimLocked starts the unclaimed grace of a ready session. Abandoned
// desktops still expire: the timer starts at the first poll, or after the
// grace at the latest. Armed under the lock, so that end and Stop, which
// stop it, cannot miss it.
func (m *Manager) armClaimLocked(s *Session, grace time.Duration) {
	stopClaimLocked(s)
	user, id := s.User, s.ID
	s.claim = m.clock.AfterFunc(grace, func() { m.claimTimeout(user, id) })
}

// stopClaimLocked stops the grace timer once it has nothing left to do (the
// session timer started, the session ended, the manager stopped), so that
// it neither holds the session until it fires nor acts after shutdown.
func stopClaimLocked(s *Session) {
	if s.claim != nil {
		s.claim.Stop()
		s.claim = nil
	}
}

func (m *Manager) claimTimeout(user, id string) {
	m.mu.Lock()
	s, ok := m.sessions[user]
	if m.ctx.Err() != nil || !ok || s.ID != id || s.State != Ready || !s.TimerStartedAt.IsZero() {
		m.mu.Unlock()
		return
	}
	m.startTimerLocked(s)
	snap := s.snapshot()
	m.mu.Unlock()
	if err := m.persist(m.ctx, s); err != nil {
		m.logger.Error("save session timer", zap.String("user", user), zap.Error(err))
	}
	m.timerStarted(snap, "not claimed in time")
}
