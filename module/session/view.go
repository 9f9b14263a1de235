package session

import (
	"sort"
	"time"
)

// QueuePosition is 1 for the head of a queue, 0 when not queued: either
// the place in the queue for a host slot (when that queue is waiting for
// capacity; otherwise the session is about to be placed), or the place in
// its host's queue for a Docker start (see work).
func (m *Manager) queuePositionLocked(s *Session) int {
	if m.blocked {
		for i, q := range m.queue {
			if q == s {
				return i + 1
			}
		}
	}
	if s.slotHeld && s.State != Ready && !s.State.Terminal() {
		return m.work.position(s)
	}
	return 0
}

// View is a session as the API shows it: the record plus derived fields.
type View struct {
	Session
	QueuePosition    int `json:"queue_position"`
	MaxExtensions    int `json:"max_extensions"`
	ExtensionSeconds int `json:"extension_seconds"`
}

func (m *Manager) viewLocked(s *Session) View {
	return View{Session: s.snapshot(), QueuePosition: m.queuePositionLocked(s),
		MaxExtensions: m.opts.Session.Extensions(), ExtensionSeconds: m.opts.Session.ExtensionDuration}
}

// Get returns the user's session: the live one, else the last ended one
// (so a player sees why it ended), with its queue position.
func (m *Manager) Get(userID string) (View, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[userID]
	if !ok {
		s, ok = m.ended[userID]
	}
	if !ok {
		return View{}, false
	}
	return m.viewLocked(s), true
}

// List returns every live session, oldest first.
func (m *Manager) List() []View {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]View, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, m.viewLocked(s))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].User < out[j].User
	})
	return out
}

// Target is where the proxy sends a user's desktop traffic.
type Target struct {
	SessionID   string
	Addr        string // pub_hostname:port of noVNC
	ExpiresAt   time.Time
	Host        string // workspace host name
	ContainerID string
}

// Lookup is the proxy's hot path: the user's ready session's address.
func (m *Manager) Lookup(userID string) (Target, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[userID]
	if !ok || s.State != Ready {
		return Target{}, false
	}
	if !s.ExpiresAt.IsZero() && !m.now().Before(s.ExpiresAt) {
		return Target{}, false
	}
	return Target{SessionID: s.ID, Addr: s.Addr(), ExpiresAt: s.ExpiresAt, Host: s.Host, ContainerID: s.ContainerID}, true
}

// Count reports the live sessions.
func (m *Manager) Count() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.sessions)
}
