// Package events is the admin event log: a bounded ring of recent events and
// a fan-out to live listeners (the SSE feed, Caddy's event bus). It is the
// seed's EventLogger, with the slow-listener case made explicit: a listener
// that cannot keep up never blocks the others: a subscriber is removed (an
// SSE client reconnects and replays), a Listen callback misses events.
package events

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// Event types.
const (
	SessionQueued       = "session_queued"
	SessionCreated      = "session_created"
	SessionReady        = "session_ready"
	SessionExtended     = "session_extended"
	SessionExpired      = "session_expired"
	SessionDestroyed    = "session_destroyed"
	SessionAdopted      = "session_adopted"
	SessionViewed       = "session_viewed"
	CreationFailed      = "creation_failed"
	HostUnhealthy       = "host_unhealthy"
	HostRecovered       = "host_recovered"
	HostCheck           = "host_check"
	HostDrained         = "host_drained"
	HostUndrained       = "host_undrained"
	OrphanRemoved       = "orphan_removed"
	SessionTimerStarted = "session_timer_started"
	// The warm pool: a host's last ready warm desktop was claimed (once per
	// emptying), and warm desktops were replaced (image or limits changed)
	// or removed (host drained or unhealthy, pool shrunk, no record).
	WarmPoolEmpty = "warm_pool_empty"
	WarmReplaced  = "warm_replaced"
	WarmRemoved   = "warm_removed"
)

// Types is every event type.
var Types = []string{SessionQueued, SessionCreated, SessionReady, SessionTimerStarted, SessionExtended,
	SessionExpired, SessionDestroyed, SessionAdopted, SessionViewed, CreationFailed, HostUnhealthy,
	HostRecovered, HostCheck, HostDrained, HostUndrained, OrphanRemoved, WarmPoolEmpty, WarmReplaced, WarmRemoved}

func init() { metrics.EventTypes(Types...) }

// Event is one entry of the log. Fields never hold secrets.
type Event struct {
	ID      uint64         `json:"id"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Level   string         `json:"level"` // info, warn or error
	Host    string         `json:"host,omitempty"`
	User    string         `json:"user,omitempty"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

// Log is safe for concurrent use.
type Log struct {
	logger *zap.Logger
	now    func() time.Time

	mu     sync.Mutex
	ring   []Event // ring[(start+i)%len] for i < count
	start  int
	count  int
	lastID uint64
	subs   map[*Subscription]struct{}
}

// New makes a log that keeps the last size events (500 when size <= 0).
func New(size int, logger *zap.Logger) *Log {
	if size <= 0 {
		size = 500
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Log{logger: logger, now: time.Now, ring: make([]Event, size), subs: map[*Subscription]struct{}{}}
}

// Emit records e (ID and Time are set here; Level defaults to info), writes
// it to the zap log, and hands it to every listener without waiting for any.
func (l *Log) Emit(e Event) Event {
	if e.Level == "" {
		e.Level = "info"
	}
	l.mu.Lock()
	l.lastID++
	e.ID = l.lastID
	e.Time = l.now().UTC()
	i := (l.start + l.count) % len(l.ring)
	l.ring[i] = e
	if l.count < len(l.ring) {
		l.count++
	} else {
		l.start = (l.start + 1) % len(l.ring)
	}
	var slow, lagging []*Subscription
	for s := range l.subs {
		select {
		case s.ch <- e:
		default:
			if s.lossy {
				s.dropped++
				if now := l.now(); now.Sub(s.reported) >= dropReportEvery {
					s.reported = now
					lagging = append(lagging, s)
				}
				continue
			}
			slow = append(slow, s)
		}
	}
	for _, s := range slow {
		l.removeLocked(s)
	}
	var dropped []uint64
	for _, s := range lagging {
		dropped = append(dropped, s.dropped)
	}
	l.mu.Unlock()

	metrics.Event(e.Type)
	for _, s := range slow {
		l.logger.Warn("event listener removed: it fell behind", zap.String("listener", s.name), zap.Int("buffer", cap(s.ch)))
	}
	for i, s := range lagging {
		l.logger.Warn("event listener fell behind: dropping events for it until it catches up",
			zap.String("listener", s.name), zap.Int("buffer", cap(s.ch)), zap.Uint64("dropped_total", dropped[i]))
	}
	l.log(e)
	return e
}

func (l *Log) log(e Event) {
	lvl := zapcore.InfoLevel
	switch e.Level {
	case "warn":
		lvl = zapcore.WarnLevel
	case "error":
		lvl = zapcore.ErrorLevel
	}
	if ce := l.logger.Check(lvl, e.Message); ce != nil {
		fields := []zap.Field{zap.String("event", e.Type), zap.Uint64("event_id", e.ID)}
		if e.Host != "" {
			fields = append(fields, zap.String("host", e.Host))
		}
		if e.User != "" {
			fields = append(fields, zap.String("user", e.User))
		}
		if len(e.Data) > 0 {
			fields = append(fields, zap.Any("data", e.Data))
		}
		ce.Write(fields...)
	}
}

// Recent returns up to n of the newest events, oldest first (all when n <= 0).
func (l *Log) Recent(n int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sinceLocked(0, n)
}

// Since returns the retained events with an ID greater than id, oldest
// first: what an SSE client that saw id has missed.
func (l *Log) Since(id uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sinceLocked(id, 0)
}

func (l *Log) sinceLocked(id uint64, n int) []Event {
	out := make([]Event, 0, l.count)
	for i := 0; i < l.count; i++ {
		e := l.ring[(l.start+i)%len(l.ring)]
		if e.ID > id {
			out = append(out, e)
		}
	}
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// Subscription is a live listener. Events arrive on C in order; C is closed
// when the subscription is cancelled or removed for falling behind.
type Subscription struct {
	C    <-chan Event
	ch   chan Event
	name string
	log  *Log
	once sync.Once

	// Listen's subscriptions drop events when full instead of being
	// removed; counted and reported under the log's lock.
	lossy    bool
	dropped  uint64
	reported time.Time
}

// dropReportEvery bounds the "dropping events" log lines of one listener.
const dropReportEvery = 10 * time.Second

// Subscribe returns a listener that receives every event emitted from now
// on, together with the retained events after afterID (replay), read under
// the same lock so that nothing is missed or seen twice. buf bounds how far
// the listener may fall behind before it is removed.
func (l *Log) Subscribe(name string, afterID uint64, buf int) (*Subscription, []Event) {
	return l.subscribe(name, afterID, buf, false)
}

func (l *Log) subscribe(name string, afterID uint64, buf int, lossy bool) (*Subscription, []Event) {
	if buf <= 0 {
		buf = 64
	}
	ch := make(chan Event, buf)
	s := &Subscription{C: ch, ch: ch, name: name, log: l, lossy: lossy}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs[s] = struct{}{}
	return s, l.sinceLocked(afterID, 0)
}

// Cancel stops the subscription and closes C. It is safe to call twice.
func (s *Subscription) Cancel() {
	s.log.mu.Lock()
	s.log.removeLocked(s)
	s.log.mu.Unlock()
}

func (l *Log) removeLocked(s *Subscription) {
	if _, ok := l.subs[s]; ok {
		delete(l.subs, s)
		s.once.Do(func() { close(s.ch) })
	}
}

// listenBuffer is how far a Listen callback may fall behind before it
// misses events.
const listenBuffer = 256

// Listeners reports how many subscriptions are live.
func (l *Log) Listeners() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}

// Listen calls fn for every event in its own goroutine until fn returns an
// error or panics (then the listener is removed and that is logged) or stop
// is called. stop waits for the goroutine to end. A listener that falls more
// than its buffer behind misses events (counted and logged) but keeps
// running: it is a bridge (Caddy's event bus) that nothing would restart.
func (l *Log) Listen(name string, fn func(Event) error) (stop func()) {
	s, _ := l.subscribe(name, ^uint64(0), listenBuffer, true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				l.logger.Error("event listener panicked; removed", zap.String("listener", name), zap.Any("panic", r), zap.Stack("stack"))
				s.Cancel()
			}
		}()
		for e := range s.C {
			if err := fn(e); err != nil {
				l.logger.Warn("event listener failed; removed", zap.String("listener", name), zap.Error(err))
				s.Cancel()
				return
			}
		}
	}()
	return func() { s.Cancel(); <-done }
}
