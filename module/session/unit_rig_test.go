package session_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session/sessiontest"
)

// unit is a Manager on fake hosts (package sessiontest): the state
// machine, timers, queue, retries and reaper without the test bed. Hosts
// are h1, h2...; their published address is 192.0.2.N (never dialled: the
// prober is a fake too).
type unit struct {
	t       *testing.T
	clock   *sessiontest.Clock
	cluster *sessiontest.Cluster
	prober  *sessiontest.Prober
	events  *events.Log
	hosts   *hosts.Orchestrator
	store   *memStore
	opts    session.Options
	m       *session.Manager
}

type unitConfig struct {
	hosts       int // default 1
	maxSessions int
	concurrency int // docker_concurrency
	warm        int // warm desktops per host
	opts        session.Options
	records     []session.Session // stored before Start
	notReady    bool              // desktops do not answer until told
	noStart     bool
}

const instance = "unit"

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newUnit(t *testing.T, uc unitConfig) *unit {
	t.Helper()
	if uc.hosts == 0 {
		uc.hosts = 1
	}
	u := &unit{t: t, clock: sessiontest.NewClock(epoch), cluster: sessiontest.NewCluster(),
		prober: &sessiontest.Prober{All: !uc.notReady}, store: newMemStore()}
	u.events = events.New(1000, nil)
	u.hosts = hosts.New(u.events, nil)
	var list []*hosts.Host
	for i := 1; i <= uc.hosts; i++ {
		ip := fmt.Sprintf("192.0.2.%d", i)
		list = append(list, hosts.NewHost(config.Host{Hostname: fmt.Sprintf("h%d", i), PubHostname: ip, BindAddress: ip,
			DockerImage: "rd-tiny", MaxSessions: uc.maxSessions, DockerConcurrency: uc.concurrency, Warm: uc.warm},
			&hosts.LocalEngine{Socket: "/nonexistent/docker.sock"}, ""))
	}
	u.hosts.SetHosts(list)
	for _, h := range list {
		u.hosts.MarkHealthy(h.Name())
	}
	u.opts = uc.opts
	if u.opts.Session.InitialDuration == 0 {
		n := 2
		u.opts.Session = config.SessionDefaults{InitialDuration: 3600, ExtensionDuration: 1200, MaxExtensions: &n}
	}
	u.opts.Instance = instance
	for _, r := range uc.records {
		u.store.recs[r.User] = r
	}
	u.m = u.newManager()
	if !uc.noStart {
		u.start()
	}
	t.Cleanup(func() { u.m.Stop(context.Background(), false) })
	return u
}

func (u *unit) newManager() *session.Manager {
	return session.New(u.hosts, u.events, u.store, u.opts,
		session.Seams{Runtime: u.cluster.For, Prober: u.prober, Clock: u.clock}, zaptest.NewLogger(u.t))
}

func (u *unit) start() {
	u.t.Helper()
	if err := u.m.Start(); err != nil {
		u.t.Fatal(err)
	}
}

// restart stops the manager (keeping containers) and starts a new one on
// the same store, hosts and clock, as a Caddy restart would.
func (u *unit) restart() {
	u.t.Helper()
	u.m.Stop(context.Background(), false)
	for _, st := range u.hosts.Status() { // the new manager recounts from its records
		for range st.Active {
			u.hosts.Release(st.Name)
		}
	}
	u.m = u.newManager()
	u.start()
}

// record is the stored record of user's session.
func (u *unit) record(user string) (session.Session, bool) {
	u.store.mu.Lock()
	defer u.store.mu.Unlock()
	r, ok := u.store.recs[user]
	return r, ok
}

func (u *unit) records() int {
	u.store.mu.Lock()
	defer u.store.mu.Unlock()
	return len(u.store.recs)
}

func (u *unit) host(name string) *sessiontest.Runtime { return u.cluster.Host(name) }

// until waits (in real time, at most 5 s) for cond; the fake clock does not
// move.
func (u *unit) until(what string, cond func() bool) {
	u.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			u.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// advanceUntil moves the fake clock on by step until cond holds, giving
// the manager's goroutines a moment between steps.
func (u *unit) advanceUntil(what string, step time.Duration, cond func() bool) {
	u.t.Helper()
	// Each step gives the manager's goroutines a few real milliseconds to
	// act on it: on a loaded machine (make test runs packages in parallel,
	// under -race) a goroutine that lags many steps behind would see its
	// deadlines pass on the fake clock before it could act.
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			u.t.Fatalf("timed out waiting for %s (fake clock at %s)", what, u.clock.Now().Sub(epoch))
		}
		u.clock.Advance(step)
		time.Sleep(3 * time.Millisecond)
	}
}

func (u *unit) view(user string) session.View {
	v, _ := u.m.Get(user)
	return v
}

func (u *unit) create(user string) session.Session {
	u.t.Helper()
	s, _, err := u.m.Create(user, "name-"+user)
	if err != nil {
		u.t.Fatal(err)
	}
	return s
}

func (u *unit) waitState(user string, want session.State) session.View {
	u.t.Helper()
	var v session.View
	u.until(fmt.Sprintf("%s to be %s (is %s)", user, want, v.State), func() bool {
		v = u.view(user)
		return v.State == want
	})
	return v
}

// ready creates a session for user and waits until it is ready.
func (u *unit) ready(user string) session.View {
	u.t.Helper()
	u.create(user)
	return u.waitState(user, session.Ready)
}

func (u *unit) active(host string) int {
	for _, st := range u.hosts.Status() {
		if st.Name == host {
			return st.Active
		}
	}
	u.t.Fatalf("no host %s", host)
	return 0
}

// settled waits until no creation or removal is in flight and every host
// slot counts a live session with a host.
func (u *unit) settled() {
	u.t.Helper()
	u.until("the manager to settle", func() bool {
		n := 0
		for _, v := range u.m.List() {
			if v.Host != "" {
				n++
			}
		}
		total := 0
		for _, st := range u.hosts.Status() {
			total += st.Active
			if _, _, _, rm := session.LaneStats(u.m, st.Name); rm > 0 {
				return false
			}
		}
		return total == n
	})
}

func (u *unit) eventTypes(user string) []string {
	var out []string
	for _, e := range u.events.Recent(0) {
		if e.User == user {
			out = append(out, e.Type)
		}
	}
	return out
}

func (u *unit) countEvents(user, typ string) int {
	n := 0
	for _, t := range u.eventTypes(user) {
		if t == typ {
			n++
		}
	}
	return n
}

func states(v session.View) string {
	var out []string
	for _, st := range v.Stages {
		out = append(out, string(st.State))
	}
	return strings.Join(out, ">")
}

// gate is a Hook that holds calls of one method until opened.
type gate struct {
	method string
	open   chan struct{}
}

func newGate(method string) *gate { return &gate{method: method, open: make(chan struct{})} }

func (g *gate) hook(ctx context.Context, method string) error {
	if method != g.method {
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { close(g.open) }

// orphan puts a managed container of this instance that no session owns on
// a fake host, created at the given time.
func orphan(t *testing.T, rt *sessiontest.Runtime, name string, created time.Time, helper bool) docker.Container {
	t.Helper()
	labels := map[string]string{session.LabelManaged: "true", session.LabelInstance: instance,
		session.LabelSession: "gone-" + name, session.LabelCreated: created.UTC().Format(time.RFC3339)}
	if helper {
		labels[session.LabelHelper] = "true"
	}
	c, err := rt.Run(context.Background(), docker.RunSpec{Name: name, Image: "rd-tiny", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dockerSpec(name string, labels map[string]string) docker.RunSpec {
	return docker.RunSpec{Name: name, Image: "rd-tiny", Labels: labels}
}
