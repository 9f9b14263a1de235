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

// dispatch starts queued sessions in order as slots free. It is the only
// goroutine that takes sessions off the queue, which keeps the order FIFO
// without nesting the manager's lock inside the orchestrator's.
func (m *Manager) dispatch() {
	for {
		freed := m.hosts.Freed()
		m.drainQueue()
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
		case <-freed:
		}
	}
}

func (m *Manager) drainQueue() {
	for {
		m.mu.RLock()
		var head *Session
		if len(m.queue) > 0 {
			head = m.queue[0]
		}
		m.mu.RUnlock()
		if head == nil {
			m.setBlocked(false)
			return
		}
		if m.claimForHead(head) {
			continue
		}
		h, err := m.hosts.Acquire(nil)
		if errors.Is(err, hosts.ErrAtCapacity) || (errors.Is(err, hosts.ErrNoHealthyHost) && m.hosts.AnyUnchecked()) {
			m.setBlocked(true)
			return // wait for a slot, or for the first checks to finish
		}
		m.mu.Lock()
		m.blocked = false
		stillHead := len(m.queue) > 0 && m.queue[0] == head && !head.State.Terminal()
		if stillHead {
			m.queue = m.queue[1:]
		}
		if !stillHead { // destroyed while we looked: give the slot back
			m.mu.Unlock()
			if h != nil {
				m.hosts.Release(h.Name())
			}
			continue
		}
		if err != nil {
			m.mu.Unlock()
			m.fail(head, fmt.Errorf("no healthy workspace host is available"))
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		head.cancel = cancel
		head.slotHeld = true
		// Still queued: next comes the host's queue for a Docker start
		// (startOn), and scheduling is entered once that is ours.
		head.Host, head.PubHostname = h.Name(), h.Config().PubHostname
		m.mu.Unlock()
		metrics.Placed(metrics.PlacedCold)
		// The host's line for a Docker start is joined here, so that it
		// keeps the queue's order.
		tk := m.work.enqueue(h.Name(), startLane, h.Config().DockerConcurrency, head)
		if !m.trySpawn("create "+head.ID, func() { m.create(ctx, head, h, tk) }) {
			tk.cancel()
		}
	}
}

// setBlocked records whether the queue is waiting for capacity: only then
// does a queued session have a position worth showing (on an idle cluster
// a new session passes through the queue at once).
func (m *Manager) setBlocked(b bool) {
	m.mu.Lock()
	m.blocked = b
	m.mu.Unlock()
}

// create runs the creation flow on h, moving to the next healthy host when
// a host fails, up to MaxAttempts hosts.
func (m *Manager) create(ctx context.Context, s *Session, h *hosts.Host, tk *ticket) {
	opts := m.options()
	tried := map[string]bool{}
	var lastErr error
	for attempt := 1; ; attempt++ {
		tried[h.Name()] = true
		err := m.startOn(ctx, s, h, tk, opts)
		if err == nil {
			return
		}
		if ctx.Err() != nil { // destroyed or shutting down: Destroy cleans up
			return
		}
		lastErr = err
		if errors.Is(err, errStorage) { // not the host's fault; no other host would do better
			m.releaseSlot(s)
			break
		}
		m.logger.Warn("session creation failed on host", zap.String("host", h.Name()), zap.String("user", s.User), zap.Error(err))
		// A real answer of the host's: our own queues never fail a
		// creation (waiting for a slot has no timeout).
		m.hosts.MarkUnhealthy(h.Name(), "session creation failed: "+err.Error())
		m.releaseSlot(s)
		if attempt >= opts.MaxAttempts {
			break
		}
		next, aerr := m.hosts.Acquire(tried)
		if aerr != nil {
			lastErr = fmt.Errorf("%w; no other host to try (%v)", err, aerr)
			break
		}
		m.mu.Lock()
		if s.State.Terminal() {
			m.mu.Unlock()
			m.hosts.Release(next.Name())
			return
		}
		s.slotHeld = true
		s.Host, s.PubHostname, s.ContainerID, s.Port, s.VNCPort = next.Name(), next.Config().PubHostname, "", 0, 0
		m.mu.Unlock()
		h = next
		tk = m.work.enqueue(h.Name(), startLane, h.Config().DockerConcurrency, s)
	}
	m.fail(s, lastErr)
}

// errStorage marks a creation that failed because its record could not be
// saved.
var errStorage = errors.New("save session record")

// runTimeout bounds making and starting one container, from the moment
// the host's Docker slot is ours.
const runTimeout = 60 * time.Second

// startOn makes the container on h and waits for its desktop. On failure
// it removes what it made; each cleanup step is guarded on its own so that
// the returned error is the root cause.
func (m *Manager) startOn(ctx context.Context, s *Session, h *hosts.Host, tk *ticket, opts Options) error {
	// One snapshot of the host's settings for the whole attempt: a reload
	// may replace them meanwhile, and the container, its published address
	// and the address the proxy dials must come from the same config.
	hc := h.Config()
	// Wait for a Docker start slot of the host, visibly queued.
	sl, err := tk.wait(ctx, func(pos int) { m.queuedForHost(s, h.Name(), pos) })
	if err != nil {
		return err // only ctx ends the wait: destroyed or shutting down
	}
	// A DNS pub_hostname without bind_address: publish on what it resolves
	// to now, the address the proxy will dial (see config.Host.BindAddress).
	bind, err := hc.Bind(ctx, nil)
	if err != nil {
		sl.release(-1)
		return fmt.Errorf("start container on %s: %w", h.Name(), err)
	}
	m.mu.Lock()
	if s.State.Terminal() {
		m.mu.Unlock()
		sl.release(-1)
		return context.Canceled
	}
	now := m.now()
	first := !s.passed(Scheduling)
	s.enter(Scheduling, now)
	s.enter(Starting, now)
	s.PubHostname = hc.PubHostname
	spec := containerSpec(s, hc, opts.Container, opts.Instance, now)
	waited := now.Sub(s.CreatedAt)
	m.mu.Unlock()
	if first {
		metrics.QueueWait(waited)
	}
	spec.BindAddress = bind

	// Bounded once the slot is ours: a host that freezes mid-call (paused,
	// partitioned) must fail this attempt, not hold the session.
	rctx, cancel := m.timeout(ctx, runTimeout)
	began := m.now()
	c, err := m.run(rctx, m.rt(h), spec, s.ID)
	cancel()
	took := m.now().Sub(began)
	if err != nil {
		took = -1 // a failure says nothing about how fast the host starts
	}
	if limit, changed := sl.release(took); changed {
		m.logger.Info("container starts on this host are slow; fewer at once until they speed up, or more again",
			zap.String("host", h.Name()), zap.Duration("took", took), zap.Int("at_once", limit))
	}
	if err != nil {
		if ctx.Err() == nil && context.Cause(rctx) == context.DeadlineExceeded {
			err = fmt.Errorf("%w (no answer within %v)", err, runTimeout)
		}
		return fmt.Errorf("start container on %s: %w", h.Name(), err)
	}
	port := c.Ports[NoVNCPort]
	if port == 0 {
		m.removeContainer(h, c.ID, opts)
		return fmt.Errorf("start container on %s: port %d was not published", h.Name(), NoVNCPort)
	}

	m.mu.Lock()
	if s.State.Terminal() {
		m.mu.Unlock()
		m.removeContainer(h, c.ID, opts)
		return context.Canceled
	}
	s.ContainerID, s.Port, s.VNCPort = c.ID, port, c.Ports[VNCPort]
	s.enter(WaitingForDesktop, m.now())
	snap := s.snapshot()
	m.mu.Unlock()
	if err := m.persist(ctx, s); err != nil {
		m.removeContainer(h, c.ID, opts)
		return fmt.Errorf("%w: %w", errStorage, err) // storage is not optional: fail loudly
	}
	m.events.Emit(events.Event{Type: events.SessionCreated, User: s.User, Host: h.Name(),
		Message: fmt.Sprintf("container for %s started on %s", display(s.User, s.UserName), h.Name()),
		Data:    map[string]any{"session": s.ID, "container": shortID(c.ID)}})

	if err := m.waitReady(ctx, h, snap, opts); err != nil {
		// Ended meanwhile: end removes the container, once. Shutting down
		// with the keep policy: the next start adopts it.
		if ctx.Err() == nil {
			m.removeContainer(h, c.ID, opts)
		}
		return err
	}
	return m.markReady(ctx, s)
}

// run creates and starts the container. A name conflict with a container
// of this very session (the SSH pool retries an operation whose connection
// died, and the first try may have made it) is resolved by making it again.
func (m *Manager) run(ctx context.Context, rt Runtime, spec docker.RunSpec, sessionID string) (docker.Container, error) {
	c, err := rt.Run(ctx, spec)
	if errors.Is(err, docker.ErrConflict) {
		if prev, ierr := rt.Inspect(ctx, spec.Name); ierr == nil && prev.Labels[LabelSession] == sessionID {
			if err = rt.Remove(ctx, prev.ID, time.Second); err == nil {
				c, err = rt.Run(ctx, spec)
			}
		}
	}
	return c, err
}

// queuedForHost shows that s waits for its host's Docker start slot: the
// session is queued again (the player sees its position) and the event
// log says why.
func (m *Manager) queuedForHost(s *Session, host string, pos int) {
	m.mu.Lock()
	if s.State.Terminal() {
		m.mu.Unlock()
		return
	}
	if s.State != Queued {
		s.enter(Queued, m.now()) // a retry on another host
	}
	m.mu.Unlock()
	m.events.Emit(events.Event{Type: events.SessionQueued, User: s.User, Host: host,
		Message: fmt.Sprintf("session for %s waits for a container start on %s (position %d)", display(s.User, s.UserName), host, pos),
		Data:    map[string]any{"session": s.ID, "position": pos, "host": host}})
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// inspectFailures is how many checks of a starting container in a row may
// go unanswered before the attempt fails: one slow answer from a busy host
// is not a dead host.
const inspectFailures = 3

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

// releaseSlot gives back the session's host slot exactly once.
func (m *Manager) releaseSlot(s *Session) {
	m.mu.Lock()
	held, host := s.slotHeld, s.Host
	s.slotHeld = false
	m.mu.Unlock()
	if held {
		m.hosts.Release(host)
	}
}

// removeContainer removes a container through the host's removal lane,
// which creates never hold up (see work).
func (m *Manager) removeContainer(h *hosts.Host, id string, opts Options) {
	if id == "" {
		return
	}
	ctx := m.ctxForCleanup()
	sl, err := m.work.acquire(ctx, h.Name(), removeLane, h.Config().DockerConcurrency, nil, nil)
	if err == nil {
		rctx, cancel := m.timeout(ctx, opts.StopTimeout+30*time.Second)
		err = m.rt(h).Remove(rctx, id, opts.StopTimeout)
		cancel()
		sl.release(-1)
	}
	if err != nil {
		// The reaper removes it as an orphan once the host answers again.
		m.logger.Warn("remove container", zap.String("host", h.Name()), zap.String("container", shortID(id)), zap.Error(err))
	}
}

// ctxForCleanup is not cancelled by shutdown: cleanup must still run then.
func (m *Manager) ctxForCleanup() context.Context { return context.WithoutCancel(m.ctx) }
