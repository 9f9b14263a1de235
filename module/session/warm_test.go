package session_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session/sessiontest"
)

// warmRecords is a WarmStore in memory.
type warmRecords struct {
	mu   sync.Mutex
	recs map[string]session.WarmDesk
}

func (s *warmRecords) SaveWarm(_ context.Context, d session.WarmDesk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[d.ID] = d
	return nil
}

func (s *warmRecords) DeleteWarm(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, id)
	return nil
}

func (s *warmRecords) LoadWarm(context.Context) ([]session.WarmDesk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []session.WarmDesk
	for _, d := range s.recs {
		out = append(out, d)
	}
	return out, nil
}

func (s *warmRecords) byContainer() map[string]session.WarmDesk {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]session.WarmDesk{}
	for _, d := range s.recs {
		out[d.ContainerID] = d
	}
	return out
}

// switchProber answers every readiness probe while on.
type switchProber struct{ off atomic.Bool }

func (p *switchProber) Answers(context.Context, string) bool { return !p.off.Load() }

// warmRig is a pool over fake hosts h1..hN (each warm: N, max 20).
type warmRig struct {
	t       *testing.T
	cluster *sessiontest.Cluster
	orch    *hosts.Orchestrator
	ev      *events.Log
	store   *warmRecords
	prober  *switchProber
	clock   *sessiontest.Clock
	opts    session.Options
	cold    atomic.Int32 // what ColdInFlight answers
	owned   sync.Map     // container IDs "sessions" own (claimed)
	pool    *session.WarmPool
}

func hostConfig(name string, warm int, image string) config.Host {
	return config.Host{Hostname: name, PubHostname: "10.9.0." + name[1:], BindAddress: "10.9.0." + name[1:],
		DockerImage: image, MaxSessions: 20, Warm: warm, Port: 22, DockerSocket: "/var/run/docker.sock"}
}

func newWarmRig(t *testing.T, nhosts, warm int) *warmRig {
	t.Helper()
	r := &warmRig{t: t, cluster: sessiontest.NewCluster(), ev: events.New(500, nil),
		store: &warmRecords{recs: map[string]session.WarmDesk{}}, prober: &switchProber{},
		clock: sessiontest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		opts:  session.Options{Instance: "wt", ReadinessTimeout: 5 * time.Second}}
	r.orch = hosts.New(r.ev, nil)
	var hs []*hosts.Host
	for i := 1; i <= nhosts; i++ {
		hs = append(hs, hosts.NewHost(hostConfig(fmt.Sprintf("h%d", i), warm, "img:1"), nil, "k"))
	}
	r.orch.SetHosts(hs)
	for i, h := range hs {
		r.orch.MarkHealthy(h.Name())
		// The fake numbers containers per host; real IDs are unique
		// across hosts, and the pool and the reaper rely on it.
		rt := r.cluster.Host(h.Name())
		for j := range i * 1000 {
			c, _ := rt.Run(context.Background(), docker.RunSpec{Name: fmt.Sprint("skip", j)})
			_ = rt.Remove(context.Background(), c.ID, 0)
		}
	}
	r.pool = r.newPool()
	return r
}

func (r *warmRig) newPool() *session.WarmPool {
	return session.NewWarmPool(session.WarmDeps{
		Runtime: r.cluster.For, Prober: r.prober, Clock: r.clock, Store: r.store,
		Hosts: r.orch, Events: r.ev,
		ColdInFlight: func(string) int { return int(r.cold.Load()) },
		Owned: func(id string) bool {
			_, ok := r.owned.Load(id)
			return ok
		},
	}, r.opts)
}

func (r *warmRig) start() {
	r.t.Helper()
	if err := r.pool.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { r.pool.Stop(context.Background(), false) })
}

// wait polls cond, kicking the pool and moving its clock, for up to 5 s.
func (r *warmRig) wait(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; pool %+v", what, r.pool.Status())
		}
		r.pool.Kick()
		r.clock.Advance(time.Second)
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *warmRig) status(host string) session.WarmStatus {
	for _, w := range r.pool.Status() {
		if w.Host == host {
			return w
		}
	}
	return session.WarmStatus{Host: host}
}

func (r *warmRig) active(host string) int {
	for _, st := range r.orch.Status() {
		if st.Name == host {
			return st.Active
		}
	}
	return -1
}

func (r *warmRig) events(typ string) int {
	n := 0
	for _, e := range r.ev.Recent(500) {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// checkNoOrphan asserts the invariant: every container on the fake hosts
// is the pool's (recorded) or a session's, and every record has its
// container.
func (r *warmRig) checkNoOrphan() {
	r.t.Helper()
	recs := r.store.byContainer()
	for i := 1; ; i++ {
		name := fmt.Sprintf("h%d", i)
		if _, ok := r.orch.Get(name); !ok {
			break
		}
		live := map[string]bool{}
		for _, c := range r.cluster.Host(name).Containers() {
			live[c.ID] = true
			_, claimed := r.owned.Load(c.ID)
			if _, ok := recs[c.ID]; !ok && !claimed {
				r.t.Errorf("orphan on %s: %s %v", name, c.Name, c.Labels)
			}
		}
		for id, d := range recs {
			if d.Host == name && !live[id] {
				r.t.Errorf("record %s on %s has no container", d.ID, name)
			}
		}
	}
}

func (r *warmRig) full(hosts ...string) func() bool {
	return func() bool {
		for _, h := range hosts {
			if w := r.status(h); w.Ready != w.Target || w.Starting != 0 {
				return false
			}
		}
		return true
	}
}

func TestWarmFillAndClaim(t *testing.T) {
	r := newWarmRig(t, 2, 2)
	var hold atomic.Bool // refills on h2 wait while set
	r.cluster.Host("h2").SetHook(func(ctx context.Context, method string) error {
		for method == "run" && hold.Load() && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	r.start()
	r.wait("pools full", r.full("h1", "h2"))
	for _, h := range []string{"h1", "h2"} {
		if got := len(r.cluster.Host(h).Containers()); got != 2 {
			t.Fatalf("%s has %d containers, want 2", h, got)
		}
		if r.active(h) != 2 {
			t.Fatalf("%s: warm desktops hold %d slots, want 2", h, r.active(h))
		}
		for _, c := range r.cluster.Host(h).Containers() {
			if c.Labels[session.LabelWarm] != "true" || c.Labels[session.LabelWarmSpec] == "" || c.Labels[session.LabelUser] != "" {
				t.Fatalf("warm container labels: %v", c.Labels)
			}
		}
	}
	r.checkNoOrphan()

	// Least-loaded placement: h1 carries one more session, so h2 serves.
	hold.Store(true)
	if err := r.orch.AcquireOn("h1"); err != nil {
		t.Fatal(err)
	}
	d, ok := r.pool.Claim(nil)
	if !ok || d.Host != "h2" || d.Password == "" || d.ContainerID == "" || d.Port == 0 {
		t.Fatalf("claim: %v %+v", ok, d)
	}
	if !r.pool.Owns(d.Host, d.ContainerID, map[string]string{}) {
		t.Fatal("a desktop being claimed must stay the pool's until its session has it")
	}
	r.owned.Store(d.ContainerID, true)
	r.pool.Claimed(d.ID)
	if r.pool.Owns(d.Host, d.ContainerID, map[string]string{}) {
		t.Fatal("pool still owns a claimed desktop")
	}
	d2, _ := r.pool.Claim(map[string]bool{"h1": true})
	if d2.Password == d.Password || d2.ContainerID == d.ContainerID {
		t.Fatal("two claims shared a desktop or a password")
	}
	r.owned.Store(d2.ContainerID, true)
	r.pool.Claimed(d2.ID)
	if n := r.events(events.WarmPoolEmpty); n != 1 {
		t.Fatalf("%d warm_pool_empty events after h2 emptied, want 1", n)
	}
	if _, ok := r.pool.Claim(map[string]bool{"h1": true}); ok {
		t.Fatal("claimed from an empty pool")
	}
	if n := r.events(events.WarmPoolEmpty); n != 1 {
		t.Fatalf("%d warm_pool_empty events, want 1 per emptying", n)
	}
	// The claimed slots moved to the sessions; the pool refills beside them.
	hold.Store(false)
	r.wait("h2 refilled", r.full("h2"))
	if got := r.active("h2"); got != 4 {
		t.Fatalf("h2 holds %d slots, want 2 sessions + 2 warm", got)
	}
	r.checkNoOrphan()
}

func TestWarmRefillBounded(t *testing.T) {
	r := newWarmRig(t, 1, 8)
	release := make(chan struct{})
	h := r.cluster.Host("h1")
	h.SetHook(func(ctx context.Context, method string) error {
		if method == "run" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	r.start()
	r.wait("two starts in flight", func() bool { return r.status("h1").Starting == 2 })
	for range 5 {
		r.pool.Kick()
		r.clock.Advance(time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	if st := r.status("h1"); st.Starting != 2 {
		t.Fatalf("%d warm starts in flight, want at most 2", st.Starting)
	}
	close(release)
	r.wait("pool full", r.full("h1"))
	if got := h.MaxInFlightOf("run"); got > 2 {
		t.Fatalf("%d runs in flight at once on h1, want ≤ 2", got)
	}

	// With players' cold starts on the host, one refill at a time.
	r2 := newWarmRig(t, 1, 6)
	r2.cold.Store(1)
	r2.cluster.Host("h1").SetHook(func(ctx context.Context, method string) error {
		if method == "run" {
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	})
	r2.start()
	r2.wait("pool full", r2.full("h1"))
	if got := r2.cluster.Host("h1").MaxInFlightOf("run"); got > 1 {
		t.Fatalf("%d warm runs in flight beside cold starts, want 1", got)
	}
	r.checkNoOrphan()
	r2.checkNoOrphan()
}

// A claim's refill waits the holdoff (its player is connecting on that
// host), then runs; claims in a burst each refill that much later.
func TestWarmRefillWaitsAfterClaim(t *testing.T) {
	r := newWarmRig(t, 1, 3)
	r.start()
	r.wait("pool full", r.full("h1"))
	runs := func() int { return r.cluster.Host("h1").Calls("run") }
	before := runs()
	for range 2 {
		d, ok := r.pool.Claim(nil)
		if !ok {
			t.Fatal("no warm desktop to claim")
		}
		r.owned.Store(d.ContainerID, true)
		r.pool.Claimed(d.ID)
	}
	// Passes within the holdoff start nothing.
	for range 4 {
		r.pool.Kick()
		r.clock.Advance(600 * time.Millisecond)
		time.Sleep(10 * time.Millisecond)
	}
	if got := runs() - before; got != 0 || r.status("h1").Starting != 0 {
		t.Fatalf("%d refills started %v after the claims, want none within %v", got, 2400*time.Millisecond, 3*time.Second)
	}
	r.clock.Advance(time.Second)
	r.wait("pool refilled after the holdoff", r.full("h1"))
	if got := runs() - before; got != 2 {
		t.Fatalf("%d refills, want 2", got)
	}
	r.checkNoOrphan()
}

func TestWarmDrainAndUnhealthyRemove(t *testing.T) {
	r := newWarmRig(t, 2, 2)
	r.start()
	r.wait("pools full", r.full("h1", "h2"))
	if err := r.orch.SetDrained("h1", true); err != nil {
		t.Fatal(err)
	}
	r.wait("h1 emptied", func() bool { return len(r.cluster.Host("h1").Containers()) == 0 && r.active("h1") == 0 })
	if _, ok := r.pool.Claim(map[string]bool{"h2": true}); ok {
		t.Fatal("claimed on a drained host")
	}
	for range 3 { // not refilled while drained
		r.pool.Kick()
		r.clock.Advance(time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(r.cluster.Host("h1").Containers()); n != 0 || r.events(events.WarmRemoved) == 0 {
		t.Fatalf("drained h1: %d containers, %d warm_removed events", n, r.events(events.WarmRemoved))
	}
	_ = r.orch.SetDrained("h1", false)
	r.wait("h1 refilled", r.full("h1"))

	r.orch.MarkUnhealthy("h2", "test")
	r.wait("h2 emptied", func() bool { return len(r.cluster.Host("h2").Containers()) == 0 && r.active("h2") == 0 })
	r.checkNoOrphan()
}

func TestWarmSpecChangeReplaces(t *testing.T) {
	r := newWarmRig(t, 1, 2)
	r.start()
	r.wait("pool full", r.full("h1"))
	old := map[string]bool{}
	for _, c := range r.cluster.Host("h1").Containers() {
		old[c.ID] = true
	}
	// A reload with another image (same connection: the host keeps its state).
	r.orch.SetHosts([]*hosts.Host{hosts.NewHost(hostConfig("h1", 2, "img:2"), nil, "k")})
	replaced := func() bool {
		cs := r.cluster.Host("h1").Containers()
		for _, c := range cs {
			if old[c.ID] || c.Image != "img:2" {
				return false
			}
		}
		return len(cs) == 2 && r.full("h1")()
	}
	r.wait("image replaced", replaced)
	if r.events(events.WarmReplaced) == 0 {
		t.Fatal("no warm_replaced event")
	}
	// New limits replace them too.
	specs := map[string]bool{}
	for _, c := range r.cluster.Host("h1").Containers() {
		specs[c.Labels[session.LabelWarmSpec]] = true
		old[c.ID] = true
	}
	opts := r.opts
	opts.Container.MemoryLimit = "300m"
	r.pool.SetOptions(opts)
	r.wait("limits replaced", func() bool {
		cs := r.cluster.Host("h1").Containers()
		for _, c := range cs {
			if old[c.ID] || specs[c.Labels[session.LabelWarmSpec]] {
				return false
			}
		}
		return len(cs) == 2 && r.full("h1")()
	})
	if got := r.active("h1"); got != 2 {
		t.Fatalf("h1 holds %d slots after replacement, want 2", got)
	}
	r.checkNoOrphan()
}

func TestWarmAdoptAfterRestart(t *testing.T) {
	r := newWarmRig(t, 2, 2)
	r.start()
	r.wait("pools full", r.full("h1", "h2"))
	r.pool.Stop(context.Background(), false)
	before := map[string]bool{}
	for _, h := range []string{"h1", "h2"} {
		for _, c := range r.cluster.Host(h).Containers() {
			before[c.ID] = true
		}
	}
	recs := r.store.byContainer()
	var claimedID, lostID string
	for id, d := range recs {
		switch {
		case d.Host == "h1" && claimedID == "":
			claimedID = id // claimed, its record not yet deleted when Caddy died
		case d.Host == "h2" && lostID == "":
			lostID = id // its container vanished while Caddy was down
		}
	}
	r.owned.Store(claimedID, true)
	_ = r.cluster.Host("h2").Remove(context.Background(), lostID, 0)
	// A warm container made just before a crash, never recorded.
	stray, err := r.cluster.Host("h1").Run(context.Background(), docker.RunSpec{Name: "rd-wt-warm-stray",
		Labels: map[string]string{session.LabelManaged: "true", session.LabelInstance: "wt", session.LabelWarm: "true", session.LabelSession: "stray"}})
	if err != nil {
		t.Fatal(err)
	}

	// A fresh orchestrator, as after a restart: slots counted from records.
	r.orch = hosts.New(r.ev, nil)
	r.orch.SetHosts([]*hosts.Host{hosts.NewHost(hostConfig("h1", 2, "img:1"), nil, "k"), hosts.NewHost(hostConfig("h2", 2, "img:1"), nil, "k")})
	runs := r.cluster.Host("h1").Calls("run") + r.cluster.Host("h2").Calls("run")
	r.pool = r.newPool()
	r.start()
	if r.active("h1") != 2 || r.active("h2") != 2 {
		t.Fatalf("records counted %d and %d slots, want 2 and 2", r.active("h1"), r.active("h2"))
	}
	r.orch.MarkHealthy("h1")
	r.orch.MarkHealthy("h2")
	r.wait("pools full again", r.full("h1", "h2"))
	if _, err := r.cluster.Host("h1").Inspect(context.Background(), stray.ID); !errors.Is(err, docker.ErrNotFound) {
		t.Fatal("a warm container without a record was kept")
	}
	if _, err := r.cluster.Host("h1").Inspect(context.Background(), claimedID); err != nil {
		t.Fatal("a claimed desktop's container was removed at adoption")
	}
	kept := 0
	for _, h := range []string{"h1", "h2"} {
		for _, c := range r.cluster.Host(h).Containers() {
			if before[c.ID] && c.ID != claimedID {
				kept++
			}
		}
	}
	newRuns := r.cluster.Host("h1").Calls("run") + r.cluster.Host("h2").Calls("run") - runs
	// h1: one kept, one made for the claimed one; h2: one kept, one for the lost one.
	if kept != 2 || newRuns != 2 {
		t.Fatalf("adoption kept %d desktops and made %d, want 2 and 2", kept, newRuns)
	}
	if got := r.active("h1"); got != 2 { // the claimed one's slot is its session's (adopted by the manager)
		t.Fatalf("h1 holds %d warm slots, want 2", got)
	}
	r.checkNoOrphan()
}

func TestWarmStopDuringRefill(t *testing.T) {
	for _, destroy := range []bool{false, true} {
		t.Run(fmt.Sprintf("destroy=%t", destroy), func(t *testing.T) {
			r := newWarmRig(t, 1, 4)
			var runs atomic.Int32
			r.cluster.Host("h1").SetHook(func(ctx context.Context, method string) error {
				if method == "run" && runs.Add(1) > 2 {
					<-ctx.Done() // refills in flight when Stop comes
					return ctx.Err()
				}
				return nil
			})
			r.start()
			r.wait("two ready, two starting", func() bool { w := r.status("h1"); return w.Ready == 2 && w.Starting == 2 })
			d, ok := r.pool.Claim(nil) // a claim racing Stop
			if !ok {
				t.Fatal("no claim")
			}
			r.owned.Store(d.ContainerID, true)
			r.pool.Stop(context.Background(), destroy)
			r.pool.Claimed(d.ID)
			if _, ok := r.pool.Claim(nil); ok {
				t.Fatal("claimed from a stopped pool")
			}
			want := 2
			if destroy {
				want = 1
			}
			if n := len(r.cluster.Host("h1").Containers()); n != want {
				t.Fatalf("%d containers after Stop, want %d (the claimed one and, unless destroyed, the ready one)", n, want)
			}
			r.checkNoOrphan()
		})
	}
}

func TestWarmRunFailsLeavesNothing(t *testing.T) {
	r := newWarmRig(t, 1, 2)
	var fail atomic.Bool
	fail.Store(true)
	r.cluster.Host("h1").SetHook(func(ctx context.Context, method string) error {
		if method == "run" && fail.Load() {
			return errors.New("dockerd says no")
		}
		return nil
	})
	r.start()
	r.wait("failed tries", func() bool { return r.cluster.Host("h1").Calls("run") >= 4 })
	if n := len(r.cluster.Host("h1").Containers()); n != 0 || r.active("h1") > 2 {
		t.Fatalf("after failed runs: %d containers, %d slots", n, r.active("h1"))
	}
	// A desktop that never answers is removed too.
	fail.Store(false)
	r.prober.off.Store(true)
	r.opts.ReadinessTimeout = 50 * time.Millisecond
	r.pool.SetOptions(r.opts)
	r.wait("unready removed", func() bool {
		return r.cluster.Host("h1").Calls("remove") >= 2 && len(r.cluster.Host("h1").Containers()) == 0
	})
	r.prober.off.Store(false)
	r.wait("pool full", r.full("h1"))
	if r.active("h1") != 2 {
		t.Fatalf("h1 holds %d slots, want 2", r.active("h1"))
	}
	r.checkNoOrphan()
}
