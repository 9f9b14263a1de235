package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// Labels of a warm desktop's container, beside LabelManaged, LabelInstance,
// LabelCreated and LabelSession (the warm desktop's id, kept once claimed:
// labels cannot change, so a claimed one is known by its container ID).
const (
	LabelWarm     = "io.ctf-remote-desktop.warm"
	LabelWarmSpec = "io.ctf-remote-desktop.warm-spec"
)

// warmUser stands in for the owner in a warm container's name.
const warmUser = "warm"

// WarmStatus is one host's pool, for the dashboard and the metrics.
type WarmStatus = metrics.WarmFigure

type warmState int

const (
	warmUnverified warmState = iota // loaded from its record; its host not yet listed
	warmStarting                    // being made, or waiting for its desktop
	warmReady                       // claimable
	warmClaiming                    // handed to a session that is not yet recorded
	warmStale                       // to remove (drained host, old spec, surplus)
	warmRemoving                    // removal under way
)

type warmEntry struct {
	d     WarmDesk
	state warmState
	why   string // for warmStale: the reason given in the event
}

// WarmDeps are what the pool works with. The functions are the manager's
// view of sessions; the pool never calls them while holding its lock.
type WarmDeps struct {
	Runtime RuntimeFunc
	Prober  Prober
	Clock   Clock
	Store   WarmStore
	Hosts   *hosts.Orchestrator
	Events  *events.Log
	Logger  *zap.Logger

	// ColdInFlight is how many sessions are being started cold on host.
	ColdInFlight func(host string) int
	// Queued is how many sessions wait in the queue.
	Queued func() int
	// Owned reports whether a session owns (or is removing) the container.
	Owned func(containerID string) bool
	// OnReady is called when a warm desktop becomes claimable.
	OnReady func()
}

// warmMaxStarting bounds the warm starts in flight on one host: refills
// must never crowd out players' work on the host's dockerd and SSH.
const warmMaxStarting = 2

// warmRefillHoldoff is how long the refill of a claimed desktop waits: its
// player connects in these seconds (noVNC's handshake, the first full frame,
// the first programs started), and a container start on the same host at
// that moment takes the CPU they need. Claims at any rate still refill,
// each this much later.
const warmRefillHoldoff = 3 * time.Second

// warmPassInterval is how often the pool looks at every host even when
// nothing woke it (health and drains are not signalled).
const warmPassInterval = time.Second

// WarmPool keeps, on each host with warm: N, N desktops ready to be
// claimed. Its lock guards the entries and is never held across I/O or
// while calling the orchestrator, the event log or the deps' functions.
type WarmPool struct {
	deps   WarmDeps
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	mu       sync.Mutex
	opts     Options
	desks    map[string]*warmEntry // by warm id
	listed   map[string]bool       // hosts whose containers were matched with the records
	strays   map[string]bool       // container IDs being removed as found without a record
	empty    map[string]bool       // hosts whose warm_pool_empty was sent and not yet refilled
	refills  map[string]int64
	claimed  map[string][]time.Time // per host, claims within warmRefillHoldoff
	started  bool
	stopping bool
}

// NewWarmPool makes a pool; nothing runs until Start.
func NewWarmPool(deps WarmDeps, opts Options) *WarmPool {
	if deps.Logger == nil {
		deps.Logger = zap.NewNop()
	}
	if deps.Clock == nil {
		deps.Clock = RealClock{}
	}
	if deps.Store == nil {
		deps.Store = &memWarmStore{m: map[string]WarmDesk{}}
	}
	for _, f := range []*func(string) int{&deps.ColdInFlight} {
		if *f == nil {
			*f = func(string) int { return 0 }
		}
	}
	if deps.Queued == nil {
		deps.Queued = func() int { return 0 }
	}
	if deps.Owned == nil {
		deps.Owned = func(string) bool { return false }
	}
	if deps.OnReady == nil {
		deps.OnReady = func() {}
	}
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &WarmPool{deps: deps, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), opts: opts,
		desks: map[string]*warmEntry{}, listed: map[string]bool{}, strays: map[string]bool{}, empty: map[string]bool{}, refills: map[string]int64{},
		claimed: map[string][]time.Time{}}
}

// SetOptions applies new settings; desktops made with other limits are
// replaced on the next pass.
func (p *WarmPool) SetOptions(opts Options) {
	opts.setDefaults()
	p.mu.Lock()
	p.opts = opts
	p.mu.Unlock()
	p.Kick()
}

func (p *WarmPool) options() Options {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts
}

// Kick asks for a pass soon.
func (p *WarmPool) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Start loads the records (each counted on its host, as adopted sessions
// are) and starts the refill loop. Containers are matched with records per
// host once the host is healthy.
func (p *WarmPool) Start() error {
	recs, err := p.deps.Store.LoadWarm(p.ctx)
	if err != nil {
		return fmt.Errorf("load warm desktop records: %w", err)
	}
	var adopt []string
	var gone []WarmDesk
	p.mu.Lock()
	p.started = true
	for _, r := range recs {
		if _, ok := p.deps.Hosts.Get(r.Host); !ok || r.ID == "" {
			gone = append(gone, r)
			continue
		}
		p.desks[r.ID] = &warmEntry{d: r, state: warmUnverified}
		adopt = append(adopt, r.Host)
	}
	p.mu.Unlock()
	for _, h := range adopt {
		p.deps.Hosts.Adopt(h)
	}
	for _, r := range gone {
		p.deleteRecord(r.ID)
	}
	p.spawn("warm pool", p.loop)
	return nil
}

// Stop ends the refills. With destroy every warm desktop is removed too
// (within ctx); otherwise they stay and are adopted on the next start.
func (p *WarmPool) Stop(ctx context.Context, destroy bool) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if !destroy {
		return
	}
	p.mu.Lock()
	var all []*warmEntry
	for _, e := range p.desks {
		if e.state != warmClaiming {
			e.state = warmRemoving
			all = append(all, e)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.removeDesk(ctx, e, "")
		}()
	}
	wg.Wait()
}

func (p *WarmPool) spawn(name string, fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				p.deps.Logger.Error("warm pool goroutine panicked", zap.String("task", name), zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		fn()
	}()
	return true
}

func (p *WarmPool) loop() {
	for {
		p.pass()
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-p.deps.Clock.After(warmPassInterval):
		}
	}
}

// Claim hands over a ready warm desktop on the least-loaded healthy,
// undrained host not in exclude, marking it claiming: the caller records
// it in a session and then calls Claimed, or Return if it cannot use it.
func (p *WarmPool) Claim(exclude map[string]bool) (WarmDesk, bool) {
	if !p.anyReady() { // the pool off (the default) or empty: the cold path pays nothing
		return WarmDesk{}, false
	}
	status := p.deps.Hosts.Status()
	specs := make(map[string]string, len(status))
	for _, st := range status {
		if st.Health == hosts.Healthy && !st.Drained && !exclude[st.Name] {
			if h, ok := p.deps.Hosts.Get(st.Name); ok {
				specs[st.Name] = warmSpecHash(h.Config(), p.options())
			}
		}
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return WarmDesk{}, false
	}
	// The least-loaded host with a ready desktop of its current spec (one
	// of an old spec is about to be replaced); configuration order breaks
	// ties. Then its oldest ready desktop.
	var best *warmEntry
	bestLoad := 0
	readyOn := map[string]int{}
	for _, e := range p.desks {
		if e.state == warmReady && e.d.Spec == specs[e.d.Host] {
			readyOn[e.d.Host]++
		}
	}
	for _, st := range status {
		if _, ok := specs[st.Name]; !ok || readyOn[st.Name] == 0 || (best != nil && st.Active >= bestLoad) {
			continue
		}
		best, bestLoad = nil, st.Active
		for _, e := range p.desks {
			if e.state == warmReady && e.d.Host == st.Name && e.d.Spec == specs[st.Name] && (best == nil || e.d.CreatedAt.Before(best.d.CreatedAt)) {
				best = e
			}
		}
	}
	if best == nil {
		p.mu.Unlock()
		return WarmDesk{}, false
	}
	best.state = warmClaiming
	host := best.d.Host
	p.claimed[host] = append(p.claimed[host], p.deps.Clock.Now())
	emptied := readyOn[host] == 1 && !p.empty[host]
	if emptied {
		p.empty[host] = true
	}
	d := best.d
	p.mu.Unlock()
	p.Kick()
	if emptied {
		p.deps.Events.Emit(events.Event{Type: events.WarmPoolEmpty, Level: "warn", Host: host,
			Message: fmt.Sprintf("warm pool of %s is empty: new sessions there start cold until it refills", host)})
	}
	return d, true
}

func (p *WarmPool) anyReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.desks {
		if e.state == warmReady {
			return true
		}
	}
	return false
}

// Return puts back a desktop Claim handed out but the caller did not use.
func (p *WarmPool) Return(id string) {
	p.mu.Lock()
	if e, ok := p.desks[id]; ok && e.state == warmClaiming {
		e.state = warmReady
		// No refill is owed for it: the latest claim's holdoff goes.
		if times := p.claimed[e.d.Host]; len(times) > 0 {
			p.claimed[e.d.Host] = times[:len(times)-1]
		}
	}
	p.mu.Unlock()
	p.deps.OnReady()
}

// Claimed forgets a desktop whose session is now recorded: from here on
// the session owns the container and its host slot.
func (p *WarmPool) Claimed(id string) {
	p.mu.Lock()
	delete(p.desks, id)
	p.mu.Unlock()
	p.deleteRecord(id)
}

// Owns reports whether the container on host is one of the pool's (being made,
// ready, being claimed or removed): the reaper leaves those alone.
// Listed reports whether the pool has matched host's warm containers with
// its records. Until then a warm container there is the pool's to judge,
// not the reaper's: both removing the same one would report it twice.
func (p *WarmPool) Listed(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listed[host]
}

func (p *WarmPool) Owns(host, containerID string, labels map[string]string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ownsLocked(host, docker.Container{ID: containerID, Labels: labels})
}

// Status reports each host's pool, in configuration order (every host,
// zeros included, so that the metrics' series do not come and go).
func (p *WarmPool) Status() []WarmStatus {
	list := p.deps.Hosts.Status()
	targets := map[string]int{}
	for _, st := range list {
		if h, ok := p.deps.Hosts.Get(st.Name); ok && st.Health == hosts.Healthy && !st.Drained {
			targets[st.Name] = h.Config().Warm
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	byHost := map[string]*WarmStatus{}
	var out []WarmStatus
	for _, st := range list {
		out = append(out, WarmStatus{Host: st.Name, Target: targets[st.Name], Refills: p.refills[st.Name]})
	}
	for i := range out {
		byHost[out[i].Host] = &out[i]
	}
	for _, e := range p.desks {
		w := byHost[e.d.Host]
		if w == nil {
			continue
		}
		switch e.state {
		case warmReady:
			w.Ready++
		case warmStarting:
			w.Starting++
		}
	}
	return out
}
