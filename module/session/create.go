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
	// partitioned) must fail this attempt, not hold the session. Not ended
	// by a destroy, though: a create cut off mid-call may still make the
	// container on the daemon, and nobody would know its ID; let it finish,
	// and the check below removes it.
	rctx, cancel := m.timeout(m.ctx, runTimeout)
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
