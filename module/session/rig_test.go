package session_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// memStore is a Store in memory, for tests that restart a Manager.
type memStore struct {
	mu   sync.Mutex
	recs map[string]session.Session
	fail error
}

func newMemStore() *memStore { return &memStore{recs: map[string]session.Session{}} }

func (s *memStore) Save(_ context.Context, r session.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.recs[r.User] = r
	return nil
}

func (s *memStore) Delete(_ context.Context, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, user)
	return nil
}

func (s *memStore) LoadAll(context.Context) ([]session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]session.Session, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	return out, nil
}

// rig is a Manager on the real test bed's hosts, with its own instance
// label so that it never touches another test's containers.
type rig struct {
	t        *testing.T
	tb       *testbed.Testbed
	instance string
	events   *events.Log
	hosts    *hosts.Orchestrator
	store    *memStore
	m        *session.Manager
	opts     session.Options
}

type rigConfig struct {
	hosts       int // how many test-bed hosts, default 1
	maxSessions int
	desktop     bool // the real desktop image instead of the tiny one
	opts        session.Options
}

var instanceSeq struct {
	sync.Mutex
	n int
}

func newRig(t *testing.T, rc rigConfig) *rig {
	t.Helper()
	tb := testbed.Load(t)
	if rc.hosts == 0 {
		rc.hosts = 1
	}
	image := tb.TinyImage
	if rc.desktop {
		image = tb.DesktopImage
	}
	instanceSeq.Lock()
	instanceSeq.n++
	instance := fmt.Sprintf("t%d-%s", instanceSeq.n, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	instanceSeq.Unlock()
	if len(instance) > 32 {
		instance = instance[:32]
	}
	instance = strings.Trim(strings.ReplaceAll(instance, "_", "-"), "-")

	logger := zaptest.NewLogger(t)
	ev := events.New(500, logger)
	orch := hosts.New(ev, logger)
	checker, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var list []*hosts.Host
	for i := 0; i < rc.hosts; i++ {
		h := tb.Host(t, i)
		pool := sshpool.New(sshpool.Config{Addr: h.Addr(), User: h.User, Auth: tb.Auth(t), HostKeys: checker, DialTimeout: 5 * time.Second})
		list = append(list, hosts.NewHost(
			config.Host{Hostname: h.IP, User: h.User, PubHostname: h.IP, DockerImage: image, Port: 22,
				BindAddress: h.IP, MaxSessions: rc.maxSessions},
			&hosts.SSHEngine{Pool: pool}, h.Addr()))
	}
	orch.SetHosts(list)
	prepare := func(ctx context.Context, _ *hosts.Host, d *docker.Client) ([]hosts.Check, error) {
		return nil, d.EnsureNetwork(ctx, session.SessionNetwork, session.NetworkOptions)
	}
	orch.ProbeAll(context.Background(), 30*time.Second, prepare)
	for _, st := range orch.Status() {
		if st.Health != hosts.Healthy {
			t.Fatalf("test-bed host %s is not healthy: %s", st.Name, st.Reason)
		}
	}

	opts := rc.opts
	if opts.Container.MemoryLimit == "" {
		opts.Container = config.ContainerDefaults{MemoryLimit: "64m", ShmSize: "16m", Resolution: "1280x800", CPULimit: 0.5, PidsLimit: 64}
	}
	if opts.Session.InitialDuration == 0 {
		n := 3
		opts.Session = config.SessionDefaults{InitialDuration: 3600, ExtensionDuration: 1200, MaxExtensions: &n}
	}
	if opts.ReadinessTimeout == 0 {
		opts.ReadinessTimeout = 60 * time.Second
	}
	opts.Instance = instance
	r := &rig{t: t, tb: tb, instance: instance, events: ev, hosts: orch, store: newMemStore(), opts: opts}
	r.m = session.New(orch, ev, r.store, opts, session.Seams{}, logger)
	if err := r.m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.cleanup)
	return r
}

// restart replaces the Manager with a new one on the same store and hosts,
// as a Caddy restart would (the old one stops with the keep policy).
func (r *rig) restart() {
	r.t.Helper()
	r.m.Stop(context.Background(), false)
	for _, h := range r.hosts.Hosts() { // the new manager recounts from its records
		for range r.hosts.Status()[indexOf(r.hosts, h.Name())].Active {
			r.hosts.Release(h.Name())
		}
	}
	r.m = session.New(r.hosts, r.events, r.store, r.opts, session.Seams{}, zaptest.NewLogger(r.t))
	if err := r.m.Start(); err != nil {
		r.t.Fatal(err)
	}
}

func indexOf(o *hosts.Orchestrator, name string) int {
	for i, st := range o.Status() {
		if st.Name == name {
			return i
		}
	}
	return -1
}

func (r *rig) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r.m.Stop(ctx, true)
	for _, h := range r.hosts.Hosts() {
		for _, c := range r.containers(h) {
			_ = h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error { return d.Remove(ctx, c.ID, time.Second) })
		}
		_ = h.Engine.Close()
	}
}

// containers lists this rig's containers on h, running or not.
func (r *rig) containers(h *hosts.Host) []docker.Container {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var list []docker.Container
	err := h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		var err error
		list, err = d.List(ctx, map[string]string{session.LabelInstance: r.instance}, true)
		return err
	})
	if err != nil {
		r.t.Fatalf("list containers on %s: %v", h.Name(), err)
	}
	return list
}

// countByHost counts this rig's running containers per host.
func (r *rig) countByHost() map[string]int {
	out := map[string]int{}
	for _, h := range r.hosts.Hosts() {
		for _, c := range r.containers(h) {
			if c.Running {
				out[h.Name()]++
			}
		}
	}
	return out
}

func (r *rig) waitState(user string, want session.State, timeout time.Duration) session.View {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := r.m.Get(user)
		if ok && v.State == want {
			return v
		}
		if ok && v.State.Terminal() && !want.Terminal() {
			r.t.Fatalf("session of %s ended %s (%s) while waiting for %s", user, v.State, v.Error, want)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("session of %s is %q after %v, want %s (ok=%v, error %q)", user, v.State, timeout, want, ok, v.Error)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventTypes lists the types of the events about user, in order.
func (r *rig) eventTypes(user string) []string {
	var out []string
	for _, e := range r.events.Recent(0) {
		if e.User == user {
			out = append(out, e.Type)
		}
	}
	return out
}
