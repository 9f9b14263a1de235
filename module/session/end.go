package session

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// Destroy ends the user's session: the container is stopped and removed,
// the host slot released, the timer and record cleared.
func (m *Manager) Destroy(ctx context.Context, userID, reason string) error {
	m.mu.RLock()
	s, ok := m.sessions[userID]
	m.mu.RUnlock()
	if !ok {
		return ErrNoSession
	}
	m.end(ctx, s, Destroyed, reason)
	return nil
}

// expire is the expiry timer's callback.
func (m *Manager) expire(userID, id string) {
	m.mu.RLock()
	s, ok := m.sessions[userID]
	live := ok && s.ID == id && s.State == Ready && !s.ExpiresAt.IsZero() && !m.now().Before(s.ExpiresAt)
	if ok && s.ID == id && s.State == Ready && !live { // extended meanwhile: re-arm
		m.mu.RUnlock()
		m.mu.Lock()
		if s.ID == id && s.State == Ready && !s.ExpiresAt.IsZero() {
			m.armExpiryLocked(s)
		}
		m.mu.Unlock()
		return
	}
	m.mu.RUnlock()
	if live {
		m.end(m.ctx, s, Expired, "session time is up")
	}
}

func (m *Manager) fail(s *Session, err error) {
	m.end(m.ctx, s, Failed, err.Error())
}

// end moves s to a terminal state and cleans up after it. It is idempotent:
// only the first caller for a session does the work.
func (m *Manager) end(ctx context.Context, s *Session, st State, reason string) {
	m.mu.Lock()
	if s.State.Terminal() {
		m.mu.Unlock()
		return
	}
	prev := s.State
	s.enter(st, m.now())
	s.Error = ""
	if st != Destroyed || reason != "" {
		s.Error = reason
	}
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	stopClaimLocked(s)
	if m.sessions[s.User] == s {
		delete(m.sessions, s.User)
	}
	m.ended[s.User] = s
	for i, q := range m.queue {
		if q == s {
			m.queue = append(m.queue[:i], m.queue[i+1:]...)
			break
		}
	}
	snap := s.snapshot()
	opts := m.opts
	if snap.ContainerID != "" {
		m.removing[snap.ID] = true // still ours: the reaper must not call it an orphan
		m.removing[snap.ContainerID] = true
	}
	m.mu.Unlock()

	// Each step on its own, so that one failing never hides another. The
	// record goes first and at once (a new session of the same user may be
	// saved right after); the container is removed in the background so
	// that a slow or frozen host never holds the caller (the reaper removes
	// it as an orphan if this fails). On shutdown it is removed inline.
	m.saveMu.Lock() // after any write of this session in flight
	if err := m.store.Delete(context.WithoutCancel(ctx), snap.User); err != nil {
		m.logger.Error("delete session record", zap.String("user", snap.User), zap.Error(err))
	}
	m.saveMu.Unlock()
	remove := func() {
		if snap.ContainerID != "" {
			if h, ok := m.hosts.Get(snap.Host); ok {
				m.removeContainer(h, snap.ContainerID, opts)
			}
			m.mu.Lock()
			delete(m.removing, snap.ID)
			delete(m.removing, snap.ContainerID)
			m.mu.Unlock()
		}
		m.releaseSlot(s)
		m.wake()
	}
	if m.ctx.Err() != nil || !m.trySpawn("remove "+snap.ID, remove) {
		remove()
	}

	switch {
	case st == Failed:
		metrics.CreationEnded(metrics.OutcomeFailed)
	case prev != Ready:
		metrics.CreationEnded(metrics.OutcomeCancelled)
	}
	typ, level := events.SessionDestroyed, "info"
	msg := fmt.Sprintf("session of %s destroyed", display(snap.User, snap.UserName))
	switch st {
	case Expired:
		typ, msg = events.SessionExpired, fmt.Sprintf("session of %s expired", display(snap.User, snap.UserName))
	case Failed:
		typ, level, msg = events.CreationFailed, "error", fmt.Sprintf("creation for %s failed: %s", display(snap.User, snap.UserName), reason)
	}
	if st == Destroyed && reason != "" {
		msg += ": " + reason
	}
	m.events.Emit(events.Event{Type: typ, Level: level, User: snap.User, Host: snap.Host, Message: msg,
		Data: map[string]any{"session": snap.ID, "previous_state": string(prev)}})
}

// Start loads the stored sessions, reconciles them with the hosts, and
// starts the dispatcher and the reaper. It returns once the records are
// loaded (a storage error is returned: sessions are never silently kept
// only in memory); container checks continue in the background.
func (m *Manager) Start() error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return nil
	}
	m.started = true
	m.mu.Unlock()

	records, err := m.store.LoadAll(m.ctx)
	if err != nil {
		return fmt.Errorf("load session records: %w", err)
	}
	adopted := m.restore(records)
	if err := m.warm.Start(); err != nil {
		return err
	}
	close(m.loaded)

	m.spawn("dispatcher", m.dispatch)
	m.spawn("reaper", m.reapLoop)
	m.spawn("reconcile", func() { m.reconcileAdopted(adopted) })
	return nil
}

// Stop ends the background work. With destroy (the seed's shutdown
// behaviour) every session is destroyed first, in parallel, within ctx;
// otherwise containers keep running and are adopted on the next start.
func (m *Manager) Stop(ctx context.Context, destroy bool) {
	if destroy {
		m.mu.RLock()
		all := make([]*Session, 0, len(m.sessions))
		for _, s := range m.sessions {
			all = append(all, s)
		}
		m.mu.RUnlock()
		var wg sync.WaitGroup
		for _, s := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.end(ctx, s, Destroyed, "Caddy is shutting down (shutdown_policy destroy)")
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			m.logger.Error("shutdown: not every session was destroyed in time")
		}
	}
	m.warm.Stop(ctx, destroy)
	m.cancel()
	m.stopMu.Lock()
	m.stopping = true
	m.stopMu.Unlock()
	m.mu.Lock()
	for _, s := range m.sessions {
		if s.expiry != nil {
			s.expiry.Stop()
		}
		stopClaimLocked(s) // a stopped manager must not start timers or write records
	}
	m.mu.Unlock()
	m.wg.Wait()
}
