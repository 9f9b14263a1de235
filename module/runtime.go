package remotedesktop

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/audit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/limit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/novnc"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// runtimes holds the control plane across config reloads: the new config
// takes its reference before the old one drops its own, so the SSH pools,
// the sessions and the event log are never rebuilt by a reload.
var runtimes = caddy.NewUsagePool()

// runtime is the control plane one Caddy process runs: event log, hosts
// and sessions, plus the probe loop.
type runtime struct {
	logger   *zap.Logger
	events   *events.Log
	hosts    *hosts.Orchestrator
	sessions *session.Manager
	store    storageStore
	novnc    novnc.Cache    // noVNC trees read from desktop images, by image ID
	limiter  *limit.Limiter // per-player creates/destroys
	audit    *audit.Trail   // admin actions, persisted
	proofs   proofs         // isolation proofs per host (isolation.go)

	mu       sync.Mutex
	started  bool
	settings *App // the latest applied config
	prev     *App // the config applied before settings, for revert
	cred     *credentials
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	unbus    func()
}

func newRuntime(a *App, store storageStore) *runtime {
	ev := events.New(a.EventLogSize, a.logger.Named("events"))
	orch := hosts.New(ev, a.logger.Named("hosts"))
	burst, every := a.rate()
	return &runtime{
		limiter:  limit.New(burst, every, nil),
		audit:    audit.New(store.storage, "remote_desktop/audit", a.AuditRetentionDays, a.logger.Named("audit")),
		logger:   a.logger,
		events:   ev,
		hosts:    orch,
		sessions: session.New(orch, ev, store, sessionOptions(a), session.Seams{}, a.logger.Named("sessions")),
		store:    store,
	}
}

func sessionOptions(a *App) session.Options {
	return session.Options{
		Container:        a.settings.ContainerDefaults,
		Session:          a.settings.SessionDefaults,
		ReadinessTimeout: time.Duration(a.ReadinessTimeout),
		ReaperInterval:   time.Duration(a.ReaperInterval),
		OrphanGrace:      time.Duration(a.OrphanGrace),
		Instance:         a.Instance,
	}
}

// apply makes a's settings current and, the first time, starts the
// background work. Called from App.Start, so never during `caddy validate`.
func (r *runtime) apply(a *App) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	cred := r.cred
	if key := credentialsKey(a); cred == nil || cred.key != key {
		var err error
		if cred, err = r.loadCredentials(a); err != nil {
			return err
		}
	}
	next := make([]*hosts.Host, 0, len(a.settings.WorkspaceHosts))
	for _, hc := range a.settings.WorkspaceHosts {
		next = append(next, r.newHost(a, hc, cred))
	}
	for _, h := range r.hosts.SetHosts(next) {
		if err := h.Engine.Close(); err != nil {
			r.logger.Debug("close engine", zap.String("host", h.Name()), zap.Error(err))
		}
	}
	// New credentials change every SSH host's ConnKey, so no engine still
	// uses the old ones.
	if r.cred != nil && r.cred != cred {
		r.cred.Close()
	}
	r.cred = cred
	r.sessions.SetOptions(sessionOptions(a))
	r.limiter.SetRate(a.rate())
	r.audit.SetRetention(a.AuditRetentionDays)
	if r.settings != a {
		r.prev = r.settings
	}
	r.settings = a

	if r.started {
		r.logger.Info("remote desktop configuration applied; sessions kept", zap.Int("hosts", len(next)), zap.Int("sessions", r.sessions.Count()))
		return nil
	}
	if err := r.store.checkWritable(context.Background()); err != nil {
		return err
	}
	if err := r.sessions.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.started = true
	r.unbus = r.events.Listen("caddy events", r.toCaddyEvents)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.probeLoop(ctx)
	}()
	return nil
}

// revert undoes a config that Caddy rejected after its Start ran (another
// app failed to start, or setting up after the start failed): Caddy then
// cleans it up and keeps running the previous config, so the runtime must
// run with that config's settings again, not the rejected ones (whose
// context is dead: no Caddy events, rejected hosts and limits). Called from
// Cleanup; a config that was replaced or is shut down is not current or
// has no live predecessor, and nothing happens.
func (r *runtime) revert(a *App) {
	r.mu.Lock()
	prev, current := r.prev, r.settings == a
	r.mu.Unlock()
	if !current || prev == nil || prev.ctx.Context == nil || prev.ctx.Err() != nil {
		return
	}
	if err := r.apply(prev); err != nil {
		r.logger.Error("configuration rejected; restoring the running remote_desktop settings failed", zap.Error(err))
		return
	}
	r.mu.Lock()
	r.prev = nil // the rejected config is gone
	r.mu.Unlock()
	r.logger.Info("configuration rejected; the running remote_desktop settings were restored")
}

// probeLoop checks every host at once at start (each result in the event
// log), then each host every probe_interval of the current config.
func (r *runtime) probeLoop(ctx context.Context) {
	r.hosts.ProbeAll(ctx, r.probeTimeout(), r.prepare(false))
	interval := func() time.Duration {
		r.mu.Lock()
		defer r.mu.Unlock()
		return time.Duration(r.settings.ProbeInterval)
	}
	r.hosts.Run(ctx, interval, r.probeTimeout(), r.prepare(false))
}

func (r *runtime) probeTimeout() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.settings.DialTimeout) + 20*time.Second
}

// toCaddyEvents mirrors the event log onto Caddy's event bus (event names
// as in the log: session_ready, host_unhealthy...; origin: this app), for
// hooks written as Caddy event handlers (the seed's "custom session
// lifecycle hooks").
func (r *runtime) toCaddyEvents(e events.Event) error {
	r.mu.Lock()
	a := r.settings
	r.mu.Unlock()
	if a == nil || a.bus == nil || a.ctx.Err() != nil {
		return nil
	}
	name := e.Type
	if !a.bus.ShouldEmit(name) {
		return nil
	}
	data := map[string]any{"id": e.ID, "type": e.Type, "message": e.Message, "host": e.Host, "user": e.User}
	for k, v := range e.Data {
		data[k] = v
	}
	a.bus.Emit(a.ctx, name, data)
	return nil
}

// credentials are the SSH identity and the known_hosts checker, loaded once
// and shared by every host's pool.
type credentials struct {
	key     string
	auth    []ssh.AuthMethod
	closer  io.Closer
	checker sshpool.HostKeyChecker
}

func (c *credentials) Close() {
	if c.closer != nil {
		_ = c.closer.Close()
	}
}

func credentialsKey(a *App) string {
	return fmt.Sprintf("key=%s|known_hosts=%s|insecure=%t", a.SSHKey, a.KnownHosts, a.InsecureSkipHostKeyCheck)
}

// loadCredentials reads the SSH identity (agent, key files) and known_hosts.
// They are only needed when some host is reached over SSH.
func (r *runtime) loadCredentials(a *App) (*credentials, error) {
	c := &credentials{key: credentialsKey(a)}
	needSSH := false
	for _, h := range a.settings.WorkspaceHosts {
		needSSH = needSSH || !h.IsLocal()
	}
	if !needSSH {
		return c, nil
	}
	auth, closer, err := sshpool.DefaultAuth(a.SSHKey, r.logger)
	if err != nil {
		return nil, fmt.Errorf("ssh authentication: %w", err)
	}
	c.auth, c.closer = auth, closer
	if a.InsecureSkipHostKeyCheck {
		r.logger.Error("insecure_skip_host_key_check is on: SSH host keys are NOT verified; anyone on the path to a host can impersonate it and run containers as you")
		c.checker = sshpool.InsecureIgnoreHostKeys()
		return c, nil
	}
	if c.checker, err = sshpool.KnownHosts(a.KnownHosts); err != nil {
		c.Close()
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	return c, nil
}

func (r *runtime) newHost(a *App, hc config.Host, cred *credentials) *hosts.Host {
	if hc.IsLocal() {
		return hosts.NewHost(hc, &hosts.LocalEngine{Socket: hc.DockerSocket}, "local|"+hc.DockerSocket)
	}
	addr := net.JoinHostPort(hc.Hostname, strconv.Itoa(hc.Port))
	pool := sshpool.New(sshpool.Config{
		Addr:        addr,
		User:        hc.User,
		Auth:        cred.auth,
		HostKeys:    cred.checker,
		MaxConns:    a.MaxConnections,
		DialTimeout: time.Duration(a.DialTimeout),
		Logger:      r.logger.Named("ssh").With(zap.String("host", hc.Hostname)),
	})
	key := fmt.Sprintf("%s@%s|%s|max=%d|dial=%v|socket=%s", hc.User, addr, cred.key, a.MaxConnections, a.DialTimeout, hc.DockerSocket)
	return hosts.NewHost(hc, &hosts.SSHEngine{Pool: pool, Host: hc.Hostname, Socket: hc.DockerSocket}, key)
}

// Destruct runs when the last config using the runtime is gone (Caddy is
// exiting, or the app was removed from the config): background work stops,
// and with shutdown_policy destroy every session is destroyed first.
func (r *runtime) Destruct() error {
	r.mu.Lock()
	started, settings := r.started, r.settings
	r.mu.Unlock()
	if started && settings != nil && settings.ShutdownPolicy == "destroy" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r.sessions.Stop(ctx, true)
		cancel()
	} else {
		r.sessions.Stop(context.Background(), false)
	}
	if r.cancel != nil {
		r.cancel()
	}
	if r.unbus != nil {
		r.unbus()
	}
	r.wg.Wait()
	for _, h := range r.hosts.Hosts() {
		_ = h.Engine.Close()
	}
	if r.cred != nil {
		r.cred.Close()
	}
	return nil
}

var _ caddy.Destructor = (*runtime)(nil)
