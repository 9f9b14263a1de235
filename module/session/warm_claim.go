package session

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// newWarmPool wires the warm pool to the manager. The store keeps the
// pool's records when it implements WarmStore.
func (m *Manager) newWarmPool(store Store) *WarmPool {
	ws, _ := store.(WarmStore)
	return NewWarmPool(WarmDeps{
		Runtime: m.rt, Prober: m.prober, Clock: m.clock, Store: ws,
		Hosts: m.hosts, Events: m.events, Logger: m.logger.Named("warm"),
		ColdInFlight: m.coldInFlight, Queued: m.queueLen, Owned: m.ownsContainer, OnReady: m.wake,
	}, m.opts)
}

// WarmStatus reports each host's warm pool.
func (m *Manager) WarmStatus() []WarmStatus { return m.warm.Status() }

// createWarm is Create's fast path: with nobody queued, a claimed warm
// desktop makes the session ready at once. ok is false when the user
// already has a session or no warm desktop is ready (Create goes on).
func (m *Manager) createWarm(userID, userName string) (Session, bool) {
	m.mu.RLock()
	_, exists := m.sessions[userID]
	idle := len(m.queue) == 0
	m.mu.RUnlock()
	if exists || !idle {
		return Session{}, false
	}
	created := m.now()
	d, ok := m.warm.Claim(nil)
	if !ok {
		return Session{}, false
	}
	m.mu.Lock()
	if _, exists := m.sessions[userID]; exists {
		m.mu.Unlock()
		m.warm.Return(d.ID)
		return Session{}, false
	}
	s := &Session{ID: newID(), User: userID, UserName: userName, CreatedAt: created.UTC()}
	s.enter(Queued, created)
	m.sessions[userID] = s
	delete(m.ended, userID)
	m.takeWarmLocked(s, d, m.now())
	snap := s.snapshot()
	m.mu.Unlock()
	m.warmTaken(s, d, snap)
	return snap, true
}

// claimForHead gives the queue's head a warm desktop if one is ready. It
// reports whether the queue changed (claimed, or the head left meanwhile).
func (m *Manager) claimForHead(head *Session) bool {
	d, ok := m.warm.Claim(nil)
	if !ok {
		return false
	}
	m.mu.Lock()
	if len(m.queue) == 0 || m.queue[0] != head || head.State.Terminal() {
		m.mu.Unlock()
		m.warm.Return(d.ID)
		return true
	}
	m.queue = m.queue[1:]
	m.blocked = false
	now := m.now()
	m.takeWarmLocked(head, d, now)
	snap := head.snapshot()
	m.mu.Unlock()
	metrics.QueueWait(now.Sub(head.CreatedAt))
	if !m.trySpawn("claim "+snap.ID, func() { m.warmTaken(head, d, snap) }) {
		m.warmTaken(head, d, snap)
	}
	return true
}

// takeWarmLocked makes s the owner of the warm desktop: its container,
// address, password and host slot. The session is ready; its timers start
// as a cold one's do (first poll, or the unclaimed grace).
func (m *Manager) takeWarmLocked(s *Session, d WarmDesk, now time.Time) {
	s.Host, s.PubHostname, s.ContainerID = d.Host, d.PubHostname, d.ContainerID
	s.Port, s.VNCPort, s.Password = d.Port, d.VNCPort, d.Password
	s.slotHeld = true // the warm desktop's slot moves to the session
	s.ReadyAt = now.UTC()
	s.enter(Ready, now)
	m.armClaimLocked(s, m.opts.UnclaimedGrace)
}

// warmTaken records the session (before the pool drops its record, so
// that a crash between the two leaves the container owned) and tells.
func (m *Manager) warmTaken(s *Session, d WarmDesk, snap Session) {
	err := m.persist(m.ctx, s)
	m.warm.Claimed(d.ID)
	if err != nil {
		m.logger.Error("save session of a claimed warm desktop", zap.String("user", snap.User), zap.Error(err))
		m.fail(s, fmt.Errorf("%w: %w", errStorage, err))
		return
	}
	metrics.Placed(metrics.PlacedWarm)
	metrics.CreationEnded(metrics.OutcomeReady)
	metrics.Ready(snap.ReadyAt.Sub(snap.CreatedAt), stageDurations(snap.Stages))
	m.events.Emit(events.Event{Type: events.SessionReady, User: snap.User, Host: snap.Host,
		Message: fmt.Sprintf("desktop of %s is ready on %s at once (warm desktop claimed)", display(snap.User, snap.UserName), snap.Host),
		Data:    map[string]any{"session": snap.ID, "container": shortID(snap.ContainerID), "warm": true, "seconds_to_ready": snap.ReadyAt.Sub(snap.CreatedAt).Seconds()}})
}

// coldInFlight counts the sessions being started cold on host.
func (m *Manager) coldInFlight(host string) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, s := range m.sessions {
		if s.Host == host && (s.State == Scheduling || s.State == Starting || s.State == WaitingForDesktop) {
			n++
		}
	}
	return n
}

func (m *Manager) queueLen() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.queue)
}

// ownsContainer reports whether a live session has the container, or an
// ended one is removing it. Claimed warm desktops carry their warm id, not
// their session's, so ownership is by container ID.
func (m *Manager) ownsContainer(id string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.removing[id] {
		return true
	}
	for _, s := range m.sessions {
		if s.ContainerID == id {
			return true
		}
	}
	return false
}

// ownerOf is the live session with the container, if any.
func (m *Manager) ownerOf(id string) *Session {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.sessions {
		if s.ContainerID == id {
			return s
		}
	}
	return nil
}
