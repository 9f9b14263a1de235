// Package hosts is the seed's HostOrchestrator: the Docker hosts, their
// health, and least-loaded placement of sessions on them. Unlike the seed, an
// unhealthy host is probed again on an interval and returns to rotation on its
// own, and admins can drain a host.
package hosts

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
)

// Health of a host.
type Health string

// Health values.
const (
	Unknown   Health = "unknown" // not checked yet
	Healthy   Health = "healthy"
	Unhealthy Health = "unhealthy"
)

// Errors from Acquire.
var (
	// ErrNoHealthyHost: no host can take a session at all right now.
	ErrNoHealthyHost = errors.New("no healthy workspace host")
	// ErrAtCapacity: healthy hosts exist but all are at max_sessions.
	ErrAtCapacity = errors.New("all workspace hosts are at capacity")
	// ErrUnknownHost: no host by that name.
	ErrUnknownHost = errors.New("unknown workspace host")
)

// Host is one configured Docker host and its state. The state fields are
// guarded by the Orchestrator's lock; Engine never changes. Its settings
// (Config) are replaced by a reload while sessions use the host, so they
// sit behind an atomic pointer: make hosts with NewHost.
type Host struct {
	cfg    atomic.Pointer[config.Host]
	Engine Engine
	// ConnKey identifies how Engine connects (address, user, credentials):
	// on a config reload, a host whose ConnKey is unchanged keeps its
	// engine and its warm connections.
	ConnKey string

	health    Health
	reason    string
	since     time.Time
	lastCheck time.Time
	checks    []Check
	drained   bool
	active    int
	probing   bool // a probe of this host is running (Run)
	disk      diskCache
}

// NewHost makes a host with its settings, engine and connection key.
func NewHost(cfg config.Host, engine Engine, connKey string) *Host {
	h := &Host{Engine: engine, ConnKey: connKey}
	h.cfg.Store(&cfg)
	return h
}

// Config returns the host's current settings. A reload may replace them at
// any time (SetHosts), so an operation takes one snapshot and reads only
// from it, never a mix of two configs.
func (h *Host) Config() config.Host {
	if c := h.cfg.Load(); c != nil {
		return *c
	}
	return config.Host{}
}

// Name is the host's key: its configured hostname (the same in every
// config the host keeps its state across).
func (h *Host) Name() string {
	if c := h.cfg.Load(); c != nil {
		return c.Hostname
	}
	return ""
}

// Status is a host as the admin API shows it.
type Status struct {
	Name        string    `json:"name"`
	PubHostname string    `json:"pub_hostname"`
	Health      Health    `json:"health"`
	Reason      string    `json:"reason,omitempty"`
	Since       time.Time `json:"since"`
	Drained     bool      `json:"drained"`
	Active      int       `json:"active"`
	MaxSessions int       `json:"max_sessions"`
	LastCheck   time.Time `json:"last_check,omitzero"`
	Checks      []Check   `json:"checks,omitempty"`
}

// Orchestrator tracks the hosts. One lock guards all host state: operations
// are short and infrequent. It is never held while calling another
// component (events are emitted after unlocking).
type Orchestrator struct {
	events *events.Log
	logger *zap.Logger
	now    func() time.Time

	mu    sync.Mutex
	hosts []*Host // in configuration order, which breaks load ties
	freed chan struct{}
}

// New makes an orchestrator with no hosts; see SetHosts.
func New(ev *events.Log, logger *zap.Logger) *Orchestrator {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Orchestrator{events: ev, logger: logger, now: time.Now, freed: make(chan struct{})}
}

// SetHosts replaces the host list (start-up and config reload). A host whose
// name and ConnKey are unchanged keeps its state, counts and engine; the
// returned hosts are the ones whose engines are no longer used, for the
// caller to close.
func (o *Orchestrator) SetHosts(next []*Host) (dropped []*Host) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := make(map[string]*Host, len(o.hosts))
	for _, h := range o.hosts {
		old[h.Name()] = h
	}
	out := make([]*Host, 0, len(next))
	for _, n := range next {
		if p, ok := old[n.Name()]; ok && p.ConnKey == n.ConnKey {
			p.cfg.Store(n.cfg.Load()) // same connection; settings like max_sessions may change
			out = append(out, p)
			delete(old, n.Name())
			if n.Engine != p.Engine {
				dropped = append(dropped, n) // the unused new engine
			}
			continue
		}
		if n.health == "" {
			n.health, n.since = Unknown, o.now()
		}
		if p, ok := old[n.Name()]; ok { // same name, new connection: keep the count
			n.active, n.drained = p.active, p.drained
		}
		out = append(out, n)
	}
	for _, h := range old {
		dropped = append(dropped, h)
	}
	o.hosts = out
	o.signalFreedLocked()
	return dropped
}

// Get returns the host with that name.
func (o *Orchestrator) Get(name string) (*Host, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.getLocked(name)
	return h, h != nil
}

func (o *Orchestrator) getLocked(name string) *Host {
	for _, h := range o.hosts {
		if h.Name() == name {
			return h
		}
	}
	return nil
}

// Hosts returns every host, in configuration order.
func (o *Orchestrator) Hosts() []*Host {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*Host(nil), o.hosts...)
}

// Acquire picks the least-loaded healthy, undrained host with room, not in
// exclude, and counts a session on it. Ties go to the host listed first.
func (o *Orchestrator) Acquire(exclude map[string]bool) (*Host, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var candidates []*Host
	anyUsable := false
	for _, h := range o.hosts {
		if h.health != Healthy || h.drained || exclude[h.Name()] {
			continue
		}
		anyUsable = true
		if max := h.Config().MaxSessions; max > 0 && h.active >= max {
			continue
		}
		candidates = append(candidates, h)
	}
	if len(candidates) == 0 {
		if anyUsable {
			return nil, ErrAtCapacity
		}
		return nil, ErrNoHealthyHost
	}
	sort.SliceStable(candidates, func(i, j int) bool { return candidates[i].active < candidates[j].active })
	h := candidates[0]
	h.active++
	return h, nil
}

// AcquireOn counts a slot on the named host if it is healthy, undrained
// and has room (the warm pool fills a chosen host this way).
func (o *Orchestrator) AcquireOn(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.getLocked(name)
	switch {
	case h == nil:
		return fmt.Errorf("%w: %s", ErrUnknownHost, name)
	case h.health != Healthy || h.drained:
		return ErrNoHealthyHost
	case h.Config().MaxSessions > 0 && h.active >= h.Config().MaxSessions:
		return ErrAtCapacity
	}
	h.active++
	return nil
}

// Adopt counts a session found running on a host (after a restart),
// whatever its health or capacity.
func (o *Orchestrator) Adopt(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if h := o.getLocked(name); h != nil {
		h.active++
	}
}

// Release gives back a session's slot.
func (o *Orchestrator) Release(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if h := o.getLocked(name); h != nil && h.active > 0 {
		h.active--
	}
	o.signalFreedLocked()
}

// Freed returns a channel closed the next time capacity may have appeared
// (a slot released, a host recovered or undrained, hosts reconfigured).
func (o *Orchestrator) Freed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.freed
}

func (o *Orchestrator) signalFreedLocked() {
	close(o.freed)
	o.freed = make(chan struct{})
}

// MarkUnhealthy takes a host out of rotation because an operation on it
// failed; the probe loop brings it back when its checks pass again.
func (o *Orchestrator) MarkUnhealthy(name, reason string) {
	o.setHealth(name, Unhealthy, reason, nil)
}

// MarkHealthy puts a host in rotation without checking it: for hosts whose
// containers run on a fake runtime (the session package's unit tests, see
// package sessiontest), which the real checks cannot reach.
func (o *Orchestrator) MarkHealthy(name string) {
	o.setHealth(name, Healthy, "", nil)
}

// setHealth records a health change and emits host_unhealthy or
// host_recovered on a transition.
func (o *Orchestrator) setHealth(name string, health Health, reason string, checks []Check) {
	o.mu.Lock()
	h := o.getLocked(name)
	if h == nil {
		o.mu.Unlock()
		return
	}
	prev := h.health
	if checks != nil {
		h.checks = checks
		h.lastCheck = o.now()
	}
	if prev != health {
		h.since = o.now()
	}
	h.health, h.reason = health, reason
	if health == Healthy && prev != Healthy {
		o.signalFreedLocked()
	}
	o.mu.Unlock()

	switch {
	case health == Unhealthy && prev != Unhealthy:
		o.events.Emit(events.Event{Type: events.HostUnhealthy, Level: "error", Host: name,
			Message: fmt.Sprintf("host %s left rotation: %s", name, reason)})
	case health == Healthy && prev == Unhealthy:
		o.events.Emit(events.Event{Type: events.HostRecovered, Host: name,
			Message: fmt.Sprintf("host %s passed its checks and is back in rotation", name)})
	}
}

// SetDrained drains (no new sessions; running ones stay) or undrains a host.
func (o *Orchestrator) SetDrained(name string, drained bool) error {
	o.mu.Lock()
	h := o.getLocked(name)
	if h == nil {
		o.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownHost, name)
	}
	changed := h.drained != drained
	h.drained = drained
	if !drained {
		o.signalFreedLocked()
	}
	o.mu.Unlock()
	if changed {
		typ, msg := events.HostDrained, "drained: no new sessions"
		if !drained {
			typ, msg = events.HostUndrained, "undrained: back in rotation"
		}
		o.events.Emit(events.Event{Type: typ, Host: name, Message: fmt.Sprintf("host %s %s", name, msg)})
	}
	return nil
}

// Status reports every host, in configuration order.
func (o *Orchestrator) Status() []Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Status, 0, len(o.hosts))
	for _, h := range o.hosts {
		hc := h.Config()
		out = append(out, Status{
			Name: hc.Hostname, PubHostname: hc.PubHostname, Health: h.health, Reason: h.reason,
			Since: h.since, Drained: h.drained, Active: h.active, MaxSessions: hc.MaxSessions,
			LastCheck: h.lastCheck, Checks: append([]Check(nil), h.checks...),
		})
	}
	return out
}

// Healthy reports whether the named host is in rotation health-wise.
func (o *Orchestrator) Healthy(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.getLocked(name)
	return h != nil && h.health == Healthy
}

// AnyUnchecked reports whether some host has not been checked yet (at
// start-up), in which case "no healthy host" may not be final.
func (o *Orchestrator) AnyUnchecked() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, h := range o.hosts {
		if h.health == Unknown {
			return true
		}
	}
	return false
}
