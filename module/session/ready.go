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
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// waitReady polls noVNC's /vnc.html on the published port every 100 ms (so
// "ready" is seen within ~100 ms of the desktop answering), and every 2 s
// asks Docker whether the container is still running, so a dead host or a
// crashed container fails fast instead of at the timeout.
func (m *Manager) waitReady(ctx context.Context, h *hosts.Host, s Session, opts Options) error {
	deadline := m.clock.After(opts.ReadinessTimeout)
	url := "http://" + s.Addr() + "/vnc.html"
	rt := m.rt(h)
	lastInspect, failures := m.now(), 0
	for {
		if m.prober.Answers(ctx, url) {
			return nil
		}
		if now := m.now(); now.Sub(lastInspect) >= 2*time.Second {
			lastInspect = now
			ictx, cancel := m.timeout(ctx, 10*time.Second)
			c, err := rt.Inspect(ictx, s.ContainerID)
			cancel()
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, docker.ErrNotFound):
				return fmt.Errorf("container on %s was removed before its desktop answered", h.Name())
			case err != nil:
				if failures++; failures >= inspectFailures {
					return fmt.Errorf("check container on %s: %w", h.Name(), err)
				}
			case !c.Running:
				return fmt.Errorf("container on %s stopped before its desktop answered (state %s)", h.Name(), c.State)
			default:
				failures = 0
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("desktop on %s did not answer %s within %v", h.Name(), "/vnc.html", opts.ReadinessTimeout)
		case <-m.clock.After(100 * time.Millisecond):
		}
	}
}

func (m *Manager) markReady(ctx context.Context, s *Session) error {
	m.mu.Lock()
	if s.State.Terminal() {
		m.mu.Unlock()
		return context.Canceled
	}
	now := m.now()
	s.ReadyAt = now.UTC()
	s.enter(Ready, now)
	if s.cancel != nil {
		s.cancel() // the creation context is done with
		s.cancel = nil
	}
	m.armClaimLocked(s, m.opts.UnclaimedGrace)
	user, id := s.User, s.ID
	snap := s.snapshot()
	m.mu.Unlock()

	if err := m.persist(context.WithoutCancel(ctx), s); err != nil {
		m.logger.Error("save ready session", zap.String("user", user), zap.Error(err))
	}
	metrics.CreationEnded(metrics.OutcomeReady)
	metrics.Ready(now.Sub(snap.CreatedAt), stageDurations(snap.Stages))
	m.events.Emit(events.Event{Type: events.SessionReady, User: user, Host: snap.Host,
		Message: fmt.Sprintf("desktop of %s is ready on %s after %s", display(user, snap.UserName), snap.Host, now.Sub(snap.CreatedAt).Round(time.Millisecond)),
		Data:    map[string]any{"session": id, "seconds_to_ready": now.Sub(snap.CreatedAt).Seconds()}})
	return nil
}

// stageDurations sums the time spent in each stage before the last one
// (a retry on another host passes through scheduling and starting again).
func stageDurations(stages []Stage) map[string]time.Duration {
	out := map[string]time.Duration{}
	for i := 0; i+1 < len(stages); i++ {
		out[string(stages[i].State)] += stages[i+1].At.Sub(stages[i].At)
	}
	return out
}
