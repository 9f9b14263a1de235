package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
)

// Errors of the session API.
var (
	ErrNoSession     = errors.New("no active session")
	ErrNotReady      = errors.New("session is not ready yet")
	ErrMaxExtensions = errors.New("no extensions left")
	ErrTimerNotSet   = errors.New("the session timer has not started yet")
	ErrStopped       = errors.New("session manager is shutting down")
)

// Options are the settings a config reload may change.
type Options struct {
	Container        config.ContainerDefaults
	Session          config.SessionDefaults
	ReadinessTimeout time.Duration // default 90s
	ReaperInterval   time.Duration // default 5m
	OrphanGrace      time.Duration // default 2m
	// Hosts tried for one session before it fails. Default: 3.
	MaxAttempts int
	// Longest time a ready session waits for its owner's first status poll
	// before its timer starts anyway, so that abandoned desktops expire.
	// Default: 5m.
	UnclaimedGrace time.Duration
	// Docker stop timeout when destroying. Default: 2s (the seed's grace).
	StopTimeout time.Duration
	// Instance labels this deployment's containers; the reaper touches no
	// other. Default: "default".
	Instance string
}

func (o *Options) setDefaults() {
	if o.ReadinessTimeout <= 0 {
		o.ReadinessTimeout = 90 * time.Second
	}
	if o.ReaperInterval <= 0 {
		o.ReaperInterval = 5 * time.Minute
	}
	if o.OrphanGrace <= 0 {
		o.OrphanGrace = 2 * time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.UnclaimedGrace <= 0 {
		o.UnclaimedGrace = 5 * time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 2 * time.Second
	}
	if o.Instance == "" {
		o.Instance = DefaultInstance
	}
}

// Manager owns every session. Its lock guards the session table and the
// queue and is never held across I/O or while calling the orchestrator or
// the event log.
type Manager struct {
	hosts  *hosts.Orchestrator
	events *events.Log
	store  Store
	logger *zap.Logger
	clock  Clock       // every now, timer and timeout of the manager
	rt     RuntimeFunc // each host's containers
	prober Prober      // readiness polls
	work   *work       // Docker work in flight per host
	warm   *WarmPool   // warm desktops to claim (warm: N on hosts)

	ctx      context.Context // the manager's lifetime; creations run under it
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	kick     chan struct{} // wakes the dispatcher
	stopMu   sync.RWMutex  // stopping: no new goroutines once Stop waits for them
	saveMu   sync.Mutex    // orders writes to the Store (see persist)
	stopping bool
	loaded   chan struct{} // closed once records are loaded at Start

	mu       sync.RWMutex
	opts     Options
	sessions map[string]*Session // by user id: the live (non-terminal) ones
	ended    map[string]*Session // by user id: the last ended one, for status
	queue    []*Session          // FIFO of queued sessions
	blocked  bool                // the queue's head is waiting for capacity
	removing map[string]bool     // session ids whose container is being removed
	started  bool
}

// New makes a manager; nothing runs until Start.
func New(h *hosts.Orchestrator, ev *events.Log, store Store, opts Options, seams Seams, logger *zap.Logger) *Manager {
	if logger == nil {
		logger = zap.NewNop()
	}
	opts.setDefaults()
	seams.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		hosts: h, events: ev, store: store, logger: logger,
		clock: seams.Clock, rt: seams.Runtime, prober: seams.Prober, work: newWork(),
		ctx: ctx, cancel: cancel,
		kick:   make(chan struct{}, 1),
		loaded: make(chan struct{}),
		opts:   opts, sessions: map[string]*Session{}, ended: map[string]*Session{}, removing: map[string]bool{},
	}
	m.warm = m.newWarmPool(store)
	return m
}

// SetOptions applies new settings (config reload). Running sessions keep
// their expiry; new timers and extensions use the new durations.
func (m *Manager) SetOptions(opts Options) {
	opts.setDefaults()
	m.mu.Lock()
	m.opts = opts
	m.mu.Unlock()
	m.warm.SetOptions(opts)
}

func (m *Manager) options() Options {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.opts
}

// HelperMaxLife is how long a helper container may live before the reaper
// takes it for a leftover, whatever orphan_grace says: their work is bounded
// well below it (reading noVNC: 60 s).
const HelperMaxLife = 2 * time.Minute

// HelperLabels are the labels of a short-lived container the module makes
// for its own use (reading noVNC out of an image): with them, one left
// behind by a crash is this instance's orphan, removed by the reaper after
// orphan_grace (at least HelperMaxLife) like any container no session owns.
func (m *Manager) HelperLabels() map[string]string {
	return map[string]string{
		LabelHelper:   "true",
		LabelManaged:  "true",
		LabelInstance: m.options().Instance,
		LabelCreated:  m.now().UTC().Format(time.RFC3339),
	}
}

// Loaded is closed once stored sessions have been loaded; requests that
// could create or look up a session wait for it.
func (m *Manager) Loaded() <-chan struct{} { return m.loaded }

// trySpawn runs fn in a goroutine the manager waits for on Stop, unless
// the manager is stopping (then it reports false and the caller runs fn).
func (m *Manager) trySpawn(name string, fn func()) bool {
	m.stopMu.RLock()
	defer m.stopMu.RUnlock()
	if m.stopping {
		return false
	}
	m.spawn(name, fn)
	return true
}

func (m *Manager) spawn(name string, fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				m.logger.Error("session goroutine panicked", zap.String("task", name), zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		fn()
	}()
}

// persist writes s's current state to the Store. Writes are ordered and each
// takes its snapshot under the write lock, so a slower, older write can never
// overwrite a newer one (say, "ready" landing after "timer started"); an
// ended session is not written again (end deletes it under the same lock).
// Records are small and local; one lock for all is plenty.
func (m *Manager) persist(ctx context.Context, s *Session) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.RLock()
	snap := s.snapshot()
	m.mu.RUnlock()
	if snap.State.Terminal() {
		return nil
	}
	return m.store.Save(ctx, snap)
}

// Create starts a session for the user, or returns the one they have: one
// session per user, however many requests race. created says which.
func (m *Manager) Create(userID, userName string) (s Session, created bool, err error) {
	if m.ctx.Err() != nil {
		return Session{}, false, ErrStopped
	}
	if snap, ok := m.createWarm(userID, userName); ok {
		return snap, true, nil
	}
	now := m.now()
	m.mu.Lock()
	if cur, ok := m.sessions[userID]; ok {
		snap := cur.snapshot()
		m.mu.Unlock()
		return snap, false, nil
	}
	sess := &Session{ID: newID(), User: userID, UserName: userName, Password: NewPassword(), CreatedAt: now.UTC()}
	sess.enter(Queued, now)
	m.sessions[userID] = sess
	delete(m.ended, userID)
	pos := len(m.queue) + 1
	snap := sess.snapshot()
	m.mu.Unlock()

	// Queued for the dispatcher only once the event is out, so that
	// session_queued always comes before what happens next.
	m.events.Emit(events.Event{Type: events.SessionQueued, User: userID,
		Message: fmt.Sprintf("session for %s queued (position %d)", display(userID, userName), pos),
		Data:    map[string]any{"session": sess.ID, "position": pos}})
	m.mu.Lock()
	if !sess.State.Terminal() {
		m.queue = append(m.queue, sess)
	}
	m.mu.Unlock()
	m.wake()
	return snap, true, nil
}

func display(id, name string) string {
	if name == "" || name == id {
		return "user " + id
	}
	return fmt.Sprintf("%s (%s)", name, id)
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}
