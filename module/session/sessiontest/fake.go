// Package sessiontest has fakes of the session manager's seams (the host
// runtime, the readiness probe, the clock) for unit tests without the bed.
package sessiontest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Cluster is a set of fake hosts' runtimes, by host name.
type Cluster struct {
	mu    sync.Mutex
	hosts map[string]*Runtime
	ids   atomic.Int64 // container IDs, unique across the cluster as Docker's are
}

// NewCluster returns an empty cluster; hosts appear on first use.
func NewCluster() *Cluster { return &Cluster{hosts: map[string]*Runtime{}} }

// Host returns the fake runtime of the named host.
func (c *Cluster) Host(name string) *Runtime {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.hosts[name]
	if !ok {
		r = &Runtime{Name: name, containers: map[string]*docker.Container{}, nextPort: 30000, ids: &c.ids}
		c.hosts[name] = r
	}
	return r
}

// For is a session.RuntimeFunc.
func (c *Cluster) For(h *hosts.Host) session.Runtime { return c.Host(h.Name()) }

// Runtime is one fake host: containers in memory, with hooks to make calls
// slow or fail.
type Runtime struct {
	Name string

	mu         sync.Mutex
	containers map[string]*docker.Container // by ID
	nextPort   int
	ids        *atomic.Int64
	calls      map[string]int
	inFlight   int
	maxFlight  int
	flightBy   map[string]int // in flight, by method
	maxBy      map[string]int

	hook     func(ctx context.Context, method string) error
	finishes bool // a run whose caller gave up still makes its container
}

// SetDaemonFinishes makes a Run whose caller gives up (its context ends
// while the hook holds it) still make the container before returning the
// context's error, as dockerd does with a create it has already received.
func (r *Runtime) SetDaemonFinishes(on bool) {
	r.mu.Lock()
	r.finishes = on
	r.mu.Unlock()
}

// SetHook sets a function that runs at the start of every call with the
// method name ("run", "inspect", "remove", "list"); a non-nil error fails
// the call. It may block (honouring ctx) to model a slow host. Safe while
// the manager runs (its background loops call the runtime too).
func (r *Runtime) SetHook(h func(ctx context.Context, method string) error) {
	r.mu.Lock()
	r.hook = h
	r.mu.Unlock()
}

func (r *Runtime) enter(ctx context.Context, method string) error {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[method]++
	r.inFlight++
	r.maxFlight = max(r.maxFlight, r.inFlight)
	if r.flightBy == nil {
		r.flightBy, r.maxBy = map[string]int{}, map[string]int{}
	}
	r.flightBy[method]++
	r.maxBy[method] = max(r.maxBy[method], r.flightBy[method])
	hook := r.hook
	r.mu.Unlock()
	var err error
	if hook != nil {
		err = hook(ctx, method)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		r.leave(method)
	}
	return err
}

func (r *Runtime) leave(method string) {
	r.mu.Lock()
	r.inFlight--
	r.flightBy[method]--
	r.mu.Unlock()
}

// Run implements session.Runtime.
func (r *Runtime) Run(ctx context.Context, spec docker.RunSpec) (docker.Container, error) {
	gaveUp := r.enter(ctx, "run")
	r.mu.Lock()
	finishes := r.finishes
	r.mu.Unlock()
	if gaveUp != nil && (!finishes || ctx.Err() == nil) {
		return docker.Container{}, fmt.Errorf("run %s on %s: %w", spec.Name, r.Name, gaveUp)
	}
	if gaveUp == nil {
		defer r.leave("run")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containers {
		if c.Name == spec.Name {
			return docker.Container{}, fmt.Errorf("run %s on %s: %w", spec.Name, r.Name, docker.ErrConflict)
		}
	}
	seq := r.ids.Add(1)
	c := &docker.Container{
		ID: fmt.Sprintf("%s%060d", strings.Repeat("f", 4), seq), Name: spec.Name, Image: spec.Image,
		Labels: map[string]string{}, Running: true, State: "running", Created: time.Now(),
		Ports: map[int]int{},
	}
	for k, v := range spec.Labels {
		c.Labels[k] = v
	}
	for _, p := range spec.Ports {
		r.nextPort++
		c.Ports[p] = r.nextPort
	}
	r.containers[c.ID] = c
	if gaveUp != nil { // made, but the caller is no longer there to know
		return docker.Container{}, fmt.Errorf("run %s on %s: %w", spec.Name, r.Name, gaveUp)
	}
	return *c, nil
}

// Inspect implements session.Runtime.
func (r *Runtime) Inspect(ctx context.Context, id string) (docker.Container, error) {
	if err := r.enter(ctx, "inspect"); err != nil {
		return docker.Container{}, err
	}
	defer r.leave("inspect")
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.findLocked(id); c != nil {
		return *c, nil
	}
	return docker.Container{}, fmt.Errorf("inspect %s on %s: %w", id, r.Name, docker.ErrNotFound)
}

func (r *Runtime) findLocked(id string) *docker.Container {
	if c, ok := r.containers[id]; ok {
		return c
	}
	for _, c := range r.containers {
		if c.Name == id || (len(id) >= 12 && strings.HasPrefix(c.ID, id)) {
			return c
		}
	}
	return nil
}

// Remove implements session.Runtime.
func (r *Runtime) Remove(ctx context.Context, id string, _ time.Duration) error {
	if err := r.enter(ctx, "remove"); err != nil {
		return fmt.Errorf("remove %s on %s: %w", id, r.Name, err)
	}
	defer r.leave("remove")
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.findLocked(id); c != nil {
		delete(r.containers, c.ID)
	}
	return nil
}

// List implements session.Runtime.
func (r *Runtime) List(ctx context.Context, labels map[string]string) ([]docker.Container, error) {
	if err := r.enter(ctx, "list"); err != nil {
		return nil, fmt.Errorf("list containers on %s: %w", r.Name, err)
	}
	defer r.leave("list")
	return r.list(labels), nil
}

func (r *Runtime) list(labels map[string]string) []docker.Container {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []docker.Container
next:
	for _, c := range r.containers {
		for k, v := range labels {
			if c.Labels[k] != v {
				continue next
			}
		}
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Containers returns what is on the host now (not a call: no Hook, not
// counted).
func (r *Runtime) Containers() []docker.Container { return r.list(nil) }

// Stop marks a container exited, as if its desktop crashed.
func (r *Runtime) Stop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.findLocked(id); c != nil {
		c.Running, c.State = false, "exited"
	}
}

// Calls reports how many calls of a method were made (not counting Hook
// failures' absence: every call counts).
func (r *Runtime) Calls(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[method]
}

// MaxInFlightOf reports the most calls of one method that were in progress
// at once.
func (r *Runtime) MaxInFlightOf(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxBy[method]
}

// MaxInFlight reports the most calls that were in progress at once.
func (r *Runtime) MaxInFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxFlight
}

// Prober answers readiness probes from a set of addresses marked ready.
type Prober struct {
	mu    sync.Mutex
	ready map[string]bool // host:port
	// All, when true, makes every address answer. Once the prober is in
	// use, change it with SetAll.
	All bool
}

// SetAll makes every address answer (or only those marked ready).
func (p *Prober) SetAll(all bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.All = all
}

// SetReady marks host:port as answering (or not).
func (p *Prober) SetReady(addr string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready == nil {
		p.ready = map[string]bool{}
	}
	p.ready[addr] = ok
}

// Answers implements session.Prober.
func (p *Prober) Answers(_ context.Context, url string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.All {
		return true
	}
	addr := strings.TrimPrefix(url, "http://")
	if i := strings.IndexByte(addr, '/'); i >= 0 {
		addr = addr[:i]
	}
	return p.ready[addr]
}
