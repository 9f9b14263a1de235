package session

import (
	"context"
	"sync"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
)

// work bounds the Docker work in flight on each host, as JupyterHub's
// concurrent_spawn_limit bounds spawns: a busy dockerd is busy, not broken,
// and giving it every create of a rush at once only makes each one slow
// enough to time out. Creates and removals have a lane each, so that a rush
// of creates never holds up removals. What does not fit waits its turn in
// FIFO order with a position the player sees; waiting is never a host
// failure and no timeout runs while waiting.
//
// The create lane also adapts to the host, but only to keep starts clear
// of their timeout: a start that takes longer than slowStart (half of
// runTimeout) halves the lane's limit (down to 1), and each one faster than
// fastStart gives one back, up to the configured docker_concurrency. A
// start merely slower at 8 at once than alone is not a reason to cut: on a
// loaded host the daemon's throughput, not its latency, is what a rush
// needs (measured on the test bed: 11 s a start one at a time, 2 s a start
// eight at a time).
//
// Removals mostly wait for a desktop to stop, so their lane allows twice
// docker_concurrency.
type work struct {
	mu    sync.Mutex
	lanes map[laneKey]*lane
}

type laneKind int

const (
	startLane laneKind = iota
	removeLane
)

type laneKey struct {
	host string
	kind laneKind
}

type lane struct {
	max     int // configured ceiling; < 0: no limit
	limit   int // current limit, 1..max
	held    int
	waiting []*waiter // FIFO
}

type waiter struct {
	s     *Session // whose turn it is, for queue positions (nil for removals)
	ready chan struct{}
	given bool // the slot was handed over (guarded by work.mu)
}

// Start latencies that move a create lane's limit: slower than slowStart
// halves it, faster than fastStart gives one back. Both sit inside
// runTimeout, so a host slows us down before a start times out.
const (
	slowStart = runTimeout / 2
	fastStart = runTimeout / 4
)

func newWork() *work { return &work{lanes: map[laneKey]*lane{}} }

// slot is one held place in a lane.
type slot struct {
	w    *work
	key  laneKey
	once sync.Once
}

// acquire waits for a place in the host's lane of that kind, whose limit is
// max (0: the default; -1: none). onWait runs, once and outside any lock,
// when the caller has to wait (with its position). Only ctx ends the wait.
func (w *work) acquire(ctx context.Context, host string, kind laneKind, max int, s *Session, onWait func(pos int)) (*slot, error) {
	return w.enqueue(host, kind, max, s).wait(ctx, onWait)
}

// ticket is a place in a lane's line, taken before waiting for it so that
// the dispatcher's order is the lane's order.
type ticket struct {
	w   *work
	key laneKey
	wt  *waiter // nil: granted at once
}

// enqueue takes a place in the lane: the slot at once if one is free and
// nobody waits, else a place at the end of the line.
func (w *work) enqueue(host string, kind laneKind, max int, s *Session) *ticket {
	key := laneKey{host, kind}
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.laneLocked(key, max)
	if len(l.waiting) == 0 && l.free() {
		l.held++
		return &ticket{w: w, key: key}
	}
	wt := &waiter{s: s, ready: make(chan struct{})}
	l.waiting = append(l.waiting, wt)
	return &ticket{w: w, key: key, wt: wt}
}

// wait waits for the ticket's slot (see acquire).
func (t *ticket) wait(ctx context.Context, onWait func(pos int)) (*slot, error) {
	w, wt := t.w, t.wt
	if wt == nil {
		return &slot{w: w, key: t.key}, nil
	}
	if onWait != nil {
		w.mu.Lock()
		pos := 0
		if !wt.given {
			pos = w.lanes[t.key].positionLocked(wt)
		}
		w.mu.Unlock()
		if pos > 0 {
			onWait(pos)
		}
	}
	select {
	case <-wt.ready:
		return &slot{w: w, key: t.key}, nil
	case <-ctx.Done():
		w.mu.Lock()
		if wt.given { // handed over as we gave up: pass it on
			w.mu.Unlock()
			(&slot{w: w, key: t.key}).release(-1)
			return nil, ctx.Err()
		}
		l := w.lanes[t.key]
		if i := l.positionLocked(wt); i > 0 {
			l.waiting = append(l.waiting[:i-1], l.waiting[i:]...)
		}
		w.mu.Unlock()
		return nil, ctx.Err()
	}
}

// cancel gives up a ticket that will never be waited on.
func (t *ticket) cancel() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sl, err := t.wait(ctx, nil); err == nil {
		sl.release(-1)
	}
}

func (l *lane) positionLocked(wt *waiter) int {
	for i, o := range l.waiting {
		if o == wt {
			return i + 1
		}
	}
	return 0
}

// laneLocked returns the lane, made or updated to max (a reload may change
// docker_concurrency).
func (w *work) laneLocked(key laneKey, max int) *lane {
	if max == 0 {
		max = config.DefaultDockerConcurrency
	}
	if key.kind == removeLane && max > 0 {
		max *= 2
	}
	l, ok := w.lanes[key]
	if !ok {
		l = &lane{max: max, limit: max}
		w.lanes[key] = l
	}
	if l.max != max {
		l.max, l.limit = max, max
	}
	return l
}

func (l *lane) free() bool { return l.max < 0 || l.held < l.limit }

// release gives the place back, with how long the work took when it was a
// container start that the host answered (< 0 otherwise), and hands free
// places to the waiters in order. Releasing twice is a no-op.
// It reports the lane's limit after, and whether this release changed it.
func (sl *slot) release(took time.Duration) (limit int, changed bool) {
	sl.once.Do(func() {
		w := sl.w
		w.mu.Lock()
		defer w.mu.Unlock()
		l := w.lanes[sl.key]
		l.held--
		prev := l.limit
		if sl.key.kind == startLane && took >= 0 && l.max > 0 {
			switch {
			case took > slowStart:
				l.limit = max(1, l.limit/2)
			case took < fastStart && l.limit < l.max:
				l.limit++
			}
		}
		limit, changed = l.limit, l.limit != prev
		for len(l.waiting) > 0 && l.free() {
			wt := l.waiting[0]
			l.waiting = l.waiting[1:]
			l.held++
			wt.given = true
			close(wt.ready)
		}
	})
	return limit, changed
}

// position is s's place in its host's create lane (1 = next), 0 when it
// is not waiting there.
func (w *work) position(s *Session) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lanes[laneKey{s.Host, startLane}]
	if l == nil {
		return 0
	}
	for i, wt := range l.waiting {
		if wt.s == s {
			return i + 1
		}
	}
	return 0
}

// stats reports a lane's current limit and the work held and waiting in it.
func (w *work) stats(host string, kind laneKind) (limit, held, waiting int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lanes[laneKey{host, kind}]
	if l == nil {
		return 0, 0, 0
	}
	return l.limit, l.held, len(l.waiting)
}
