package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
)

// restore puts stored sessions back in the table. Sessions that had a
// container are adopted (their slot counted, their timer re-armed) and
// returned for checking; sessions still queued are queued again.
func (m *Manager) restore(records []Session) (adopted []*Session) {
	now := m.now()
	var gone []Session
	m.mu.Lock()
	for i := range records {
		r := records[i]
		if r.State.Terminal() || r.User == "" {
			gone = append(gone, r)
			continue
		}
		if _, dup := m.sessions[r.User]; dup {
			continue
		}
		s := new(Session)
		*s = r
		if _, ok := m.hosts.Get(s.Host); !ok && s.ContainerID != "" {
			gone = append(gone, r) // its host is no longer configured
			continue
		}
		m.sessions[s.User] = s
		if s.ContainerID == "" { // was queued or scheduling: start over
			s.Host, s.PubHostname = "", ""
			s.enter(Queued, now)
			m.queue = append(m.queue, s)
			continue
		}
		s.slotHeld = true
		if s.State == Ready && !s.ExpiresAt.IsZero() {
			m.armExpiryLocked(s) // fires at once if it expired while Caddy was down
		}
		if s.State == Ready && s.TimerStartedAt.IsZero() {
			// Never polled: what is left of its grace, or it would never
			// expire if abandoned.
			m.armClaimLocked(s, m.opts.UnclaimedGrace-now.Sub(s.ReadyAt))
		}
		adopted = append(adopted, s)
	}
	m.mu.Unlock()

	for _, s := range adopted {
		m.hosts.Adopt(s.Host)
		m.events.Emit(events.Event{Type: events.SessionAdopted, User: s.User, Host: s.Host,
			Message: fmt.Sprintf("session of %s restored from storage (%s)", display(s.User, s.UserName), s.State),
			Data:    map[string]any{"session": s.ID}})
	}
	for _, r := range gone {
		if err := m.store.Delete(m.ctx, r.User); err != nil {
			m.logger.Error("delete stale session record", zap.String("user", r.User), zap.Error(err))
		}
	}
	m.wake()
	return adopted
}

// reconcileAdopted checks each adopted session's container: sessions whose
// container is gone end; sessions that were still starting resume waiting
// for their desktop. Hosts that cannot be reached are left for the reaper.
func (m *Manager) reconcileAdopted(adopted []*Session) {
	for _, s := range adopted {
		m.mu.RLock()
		snap := s.snapshot()
		m.mu.RUnlock()
		h, ok := m.hosts.Get(snap.Host)
		if !ok {
			continue
		}
		c, err := m.inspect(h, snap.ContainerID)
		switch {
		case errors.Is(err, docker.ErrNotFound):
			m.end(m.ctx, s, Destroyed, "its container was gone after a restart")
		case err != nil:
			m.logger.Warn("cannot check adopted session yet", zap.String("user", snap.User), zap.String("host", snap.Host), zap.Error(err))
		case !c.Running:
			m.end(m.ctx, s, Destroyed, "its container had stopped ("+c.State+")")
		case snap.State == Starting || snap.State == WaitingForDesktop:
			ctx, cancel := context.WithCancel(m.ctx)
			m.mu.Lock()
			s.cancel = cancel
			m.mu.Unlock()
			m.spawn("resume "+snap.ID, func() {
				if err := m.waitReady(ctx, h, snap, m.options()); err != nil {
					if ctx.Err() == nil {
						m.fail(s, err)
					}
					return
				}
				_ = m.markReady(ctx, s)
			})
		}
	}
}

func (m *Manager) inspect(h *hosts.Host, id string) (docker.Container, error) {
	ctx, cancel := m.timeout(m.ctx, 30*time.Second)
	defer cancel()
	return m.rt(h).Inspect(ctx, id)
}

func (m *Manager) reapLoop() {
	for {
		interval := m.options().ReaperInterval
		select {
		case <-m.ctx.Done():
			return
		case <-m.clock.After(interval):
			m.Reap(m.ctx)
		}
	}
}

// Reap is one pass of the reaper: expired sessions end (the expiry timers
// normally do this on time; this is the backstop), sessions whose container
// died end, and managed containers nobody owns are removed once older than
// the orphan grace. Only hosts that are healthy are looked at: a host that
// cannot be asked costs no session. It is idempotent.
func (m *Manager) Reap(ctx context.Context) {
	now := m.now()
	opts := m.options()
	m.mu.RLock()
	var expired []*Session
	byID := make(map[string]*Session, len(m.sessions))
	for _, s := range m.sessions {
		byID[s.ID] = s
		if s.State == Ready && !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt) {
			expired = append(expired, s)
		}
	}
	m.mu.RUnlock()
	for _, s := range expired {
		m.end(ctx, s, Expired, "session time is up")
	}

	for _, h := range m.hosts.Hosts() {
		if !m.hosts.Healthy(h.Name()) {
			continue
		}
		if err := m.reapHost(ctx, h, byID, now, opts); err != nil && ctx.Err() == nil {
			m.logger.Warn("reaper could not list containers", zap.String("host", h.Name()), zap.Error(err))
		}
	}
}

func (m *Manager) reapHost(ctx context.Context, h *hosts.Host, byID map[string]*Session, now time.Time, opts Options) error {
	lctx, cancel := m.timeout(ctx, 30*time.Second)
	list, err := m.rt(h).List(lctx, map[string]string{LabelManaged: "true", LabelInstance: opts.Instance})
	cancel()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range list {
		if m.warm.Owns(h.Name(), c.ID, c.Labels) {
			continue // a warm desktop, nobody's yet
		}
		key := c.Labels[LabelSession]
		s := byID[key]
		if s == nil { // a claimed warm desktop carries its warm id
			if s = m.ownerOf(c.ID); s != nil {
				key = s.ID
			}
		}
		m.mu.RLock()
		if m.removing[key] || m.removing[c.ID] { // its session just ended; removal under way
			m.mu.RUnlock()
			continue
		}
		owned := s != nil && s.Host == h.Name() && (s.ContainerID == c.ID || s.ContainerID == "")
		state := State("")
		if s != nil {
			state = s.State
		}
		m.mu.RUnlock()
		if owned {
			seen[key] = true
			if !c.Running && state == Ready {
				m.end(ctx, s, Destroyed, "its container exited ("+c.State+")")
			}
			continue
		}
		if c.Labels[LabelWarm] == "true" && !m.warm.Listed(h.Name()) {
			continue // the pool matches these with its records first
		}
		created := c.Created
		if t, err := time.Parse(time.RFC3339, c.Labels[LabelCreated]); err == nil {
			created = t
		}
		grace := opts.OrphanGrace
		if c.Labels[LabelHelper] != "" {
			grace = max(grace, HelperMaxLife) // it may be at work right now
		}
		if now.Sub(created) < grace {
			continue // perhaps a creation in flight elsewhere; look again next pass
		}
		// Claimed since the list was made: the pool first, then the
		// sessions (a claim leaves the pool only once its session has it).
		if m.warm.Owns(h.Name(), c.ID, c.Labels) || m.ownsContainer(c.ID) {
			continue
		}
		// Still there? The list may be older than another owner's removal
		// (the pool's of a container without a record): report it once.
		ictx, cancel := m.timeout(ctx, 30*time.Second)
		_, ierr := m.rt(h).Inspect(ictx, c.ID)
		cancel()
		if errors.Is(ierr, docker.ErrNotFound) {
			continue
		}
		m.removeContainer(h, c.ID, opts)
		m.events.Emit(events.Event{Type: events.OrphanRemoved, Level: "warn", Host: h.Name(), User: c.Labels[LabelUser],
			Message: fmt.Sprintf("removed container %s on %s: no session owns it", c.Name, h.Name()),
			Data:    map[string]any{"container": shortID(c.ID), "session": c.Labels[LabelSession]}})
	}
	// Ready sessions on this host whose container is not there at all.
	for id, s := range byID {
		m.mu.RLock()
		gone := s.Host == h.Name() && s.State == Ready && !seen[id] && s.ReadyAt.Before(now)
		m.mu.RUnlock()
		if gone {
			m.end(ctx, s, Destroyed, "its container disappeared")
		}
	}
	return nil
}
