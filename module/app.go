package remotedesktop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/web"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the remote desktop control plane: the SSH pools to the Docker hosts,
// the scheduler, the session table with its timers and reaper, and the event
// log. It runs in the background; the `remote_desktop` HTTP handler serves
// players and admins from it.
//
// Its state outlives config reloads (it is held in a usage pool) and process
// restarts (session records are kept in Caddy's storage and containers carry
// labels), so neither costs a player their desktop.
//
// The hosts and limits come from the seed's hosts.yml (hosts_file), from the
// fields below, or both: fields given here override the file's, and hosts
// given here are added to the file's.
type App struct {
	// Path of the seed's hosts.yml. When the file does not exist, the local
	// Docker engine is used as the only host (the seed's fallback) and a
	// warning says so. Default: hosts.yml in Caddy's working directory.
	HostsFile string `json:"hosts_file,omitempty"`

	// Hosts, container limits and session timers, with the keys of
	// hosts.yml.
	config.File

	// Known-hosts file that SSH host keys are verified against.
	// Default: ~/.ssh/known_hosts.
	KnownHosts string `json:"known_hosts,omitempty"`

	// Private key file for SSH. Default: the SSH agent ($SSH_AUTH_SOCK) and
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa, as OpenSSH does.
	SSHKey string `json:"ssh_key,omitempty"`

	// Accept any SSH host key. Dangerous: anyone on the path to a host can
	// then run containers as you. Logged loudly. Default: false.
	InsecureSkipHostKeyCheck bool `json:"insecure_skip_host_key_check,omitempty"`

	// Most SSH connections open to one host at once. Default: 20.
	MaxConnections int `json:"max_connections,omitempty"`

	// Bound on dialing a host (TCP connect and SSH handshake). Default: 10s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// How often expired sessions and sessions whose container died are
	// reaped. Default: 5m.
	ReaperInterval caddy.Duration `json:"reaper_interval,omitempty"`

	// How long a new desktop may take to answer on /vnc.html. Default: 90s.
	ReadinessTimeout caddy.Duration `json:"readiness_timeout,omitempty"`

	// How often every host is checked (SSH, Docker, image); unhealthy hosts
	// return to rotation when all checks pass. Default: 30s.
	ProbeInterval caddy.Duration `json:"probe_interval,omitempty"`

	// How long a managed container with no session record is left alone
	// before it is removed as an orphan. Default: 2m.
	OrphanGrace caddy.Duration `json:"orphan_grace,omitempty"`

	// How many events the admin log keeps. Default: 500.
	EventLogSize int `json:"event_log_size,omitempty"`

	// How often one player may create or destroy a desktop; beyond it the
	// player gets 429 with Retry-After. Admins are never limited. Default:
	// 10 actions at once, then one more per minute.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// Days the admin audit trail (admin actions, session_viewed) is kept
	// in Caddy's storage. Default: 90.
	AuditRetentionDays int `json:"audit_retention_days,omitempty"`

	// What happens to running sessions when Caddy exits: "keep" (they keep
	// running and are adopted on the next start) or "destroy" (every
	// session is destroyed, as the seed did). Default: keep.
	ShutdownPolicy string `json:"shutdown_policy,omitempty"`

	// Name of this deployment, put on its containers as a label: the reaper
	// only ever touches containers of its own instance, so deployments (or
	// a staging copy) can share hosts. Default: default.
	Instance string `json:"instance,omitempty"`

	// What desktops may reach besides their own proxied websocket: "open"
	// (the internet stays open) or "closed" (nothing). Either way they
	// never reach other desktops, any workspace host, link-local addresses
	// (169.254.0.0/16: cloud metadata), the private ranges 10.0.0.0/8,
	// 172.16.0.0/12, 192.168.0.0/16 and 100.64.0.0/10, or closed_ranges.
	// Enforced by host firewall rules that each host check installs and
	// proves. Default: open.
	Egress string `json:"egress,omitempty"`

	// More IPv4 ranges (CIDR) closed to desktops, e.g. the network of
	// CTFd's database when it has a public address.
	ClosedRanges []string `json:"closed_ranges,omitempty"`

	// IPv4 ranges (CIDR) opened inside the private ranges closed by
	// default, e.g. the CTF's challenge network. The workspace hosts,
	// link-local addresses and closed_ranges stay closed whatever this
	// says, and other desktops stay unreachable.
	OpenRanges []string `json:"open_ranges,omitempty"`

	// What happens to a host whose isolation check fails (rules cannot be
	// installed, e.g. rootless Docker, or a probe got through): "enforce"
	// keeps it out of rotation; "warn" keeps it in rotation with a warning
	// in the event log and on the dashboard. Default: enforce.
	Isolation string `json:"isolation,omitempty"`

	logger   *zap.Logger
	settings config.File
	rt       *runtime
	rtKey    string
	ctx      caddy.Context
	bus      *caddyevents.App
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "remote_desktop",
		New: func() caddy.Module { return new(App) },
	}
}

// Defaults beyond the seed.
const (
	defaultHostsFile        = "hosts.yml"
	defaultMaxConnections   = 20
	defaultDialTimeout      = 10 * time.Second
	defaultReaperInterval   = 300 * time.Second
	defaultReadinessTimeout = 90 * time.Second
	defaultProbeInterval    = 30 * time.Second
	defaultOrphanGrace      = 2 * time.Minute
	defaultEventLogSize     = 500
)

// Provision loads and validates the configuration. It dials nothing and
// starts nothing, so `caddy validate` reports a bad hosts file without
// touching a host.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ctx = ctx
	if bus, err := ctx.App("events"); err == nil {
		a.bus, _ = bus.(*caddyevents.App)
	}
	a.setDefaults()
	settings, err := a.resolve()
	if err != nil {
		return err
	}
	a.settings = settings

	// One control plane per process and storage, shared by every config
	// that uses it (so a reload keeps it; see runtime).
	storage := ctx.Storage()
	a.rtKey = "remote_desktop|" + storageName(storage)
	val, _, err := runtimes.LoadOrNew(a.rtKey, func() (caddy.Destructor, error) {
		return newRuntime(a, storageStore{storage: storage, logger: a.logger.Named("storage")}), nil
	})
	if err != nil {
		return err
	}
	a.rt = val.(*runtime)

	// Into this config's registry (a reload brings a new one); the
	// counters are package-level and the state is the runtime's, so a
	// reload neither resets nor duplicates anything.
	rt := a.rt
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := metrics.Register(reg, func() metrics.Figures {
			return web.Figures(rt.sessions, rt.hosts)
		}); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

func (a *App) setDefaults() {
	repl := caddy.NewReplacer()
	a.HostsFile = repl.ReplaceKnown(a.HostsFile, "")
	a.KnownHosts = repl.ReplaceKnown(a.KnownHosts, "")
	a.SSHKey = repl.ReplaceKnown(a.SSHKey, "")
	if a.KnownHosts == "" {
		if home, err := os.UserHomeDir(); err == nil {
			a.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	if a.MaxConnections == 0 {
		a.MaxConnections = defaultMaxConnections
	}
	setDuration(&a.DialTimeout, defaultDialTimeout)
	setDuration(&a.ReaperInterval, defaultReaperInterval)
	setDuration(&a.ReadinessTimeout, defaultReadinessTimeout)
	setDuration(&a.ProbeInterval, defaultProbeInterval)
	setDuration(&a.OrphanGrace, defaultOrphanGrace)
	if a.EventLogSize == 0 {
		a.EventLogSize = defaultEventLogSize
	}
	if a.ShutdownPolicy == "" {
		a.ShutdownPolicy = "keep"
	}
	a.setAbuseDefaults()
	if a.Instance == "" {
		a.Instance = session.DefaultInstance
	}
	if a.Egress == "" {
		a.Egress = "open"
	}
	if a.Isolation == "" {
		a.Isolation = "enforce"
	}
}

func setDuration(d *caddy.Duration, def time.Duration) {
	if *d == 0 {
		*d = caddy.Duration(def)
	}
}

// resolve merges the hosts file with the inline settings and validates the
// result.
func (a *App) resolve() (config.File, error) {
	repl := caddy.NewReplacer()
	var f config.File
	file := a.HostsFile
	explicit := file != ""
	if !explicit {
		file = defaultHostsFile
	}
	loaded, err := config.Load(file)
	switch {
	case err == nil:
		f = loaded // defaults filled in; inline values override below
	case errors.Is(err, config.ErrNotExist):
		abs, _ := filepath.Abs(file)
		if len(a.WorkspaceHosts) > 0 {
			if explicit {
				a.logger.Warn("hosts file not found: using only the hosts configured inline", zap.String("hosts_file", abs))
			}
		} else {
			a.logger.Warn("hosts file not found: falling back to the local Docker engine as the only workspace host",
				zap.String("hosts_file", abs))
			f = config.LocalhostFallback()
		}
	default:
		return f, err
	}

	for _, h := range a.WorkspaceHosts {
		for _, s := range []*string{&h.Hostname, &h.User, &h.PubHostname, &h.DockerImage, &h.BindAddress} {
			*s = repl.ReplaceKnown(*s, "")
		}
		f.WorkspaceHosts = append(f.WorkspaceHosts, h)
	}
	c, in := &f.ContainerDefaults, a.ContainerDefaults
	override(&c.MemoryLimit, in.MemoryLimit)
	override(&c.ShmSize, in.ShmSize)
	override(&c.Resolution, in.Resolution)
	override(&c.CPULimit, in.CPULimit)
	override(&c.PidsLimit, in.PidsLimit)
	c.PublishVNC = c.PublishVNC || in.PublishVNC
	override(&c.TmpSize, in.TmpSize)
	c.WritableRoot = c.WritableRoot || in.WritableRoot
	s, sin := &f.SessionDefaults, a.SessionDefaults
	override(&s.InitialDuration, sin.InitialDuration)
	override(&s.ExtensionDuration, sin.ExtensionDuration)
	if sin.MaxExtensions != nil {
		s.MaxExtensions = sin.MaxExtensions
	}
	f.SetDefaults()
	if err := f.Validate(); err != nil {
		return f, fmt.Errorf("remote_desktop configuration: %w", err)
	}
	for _, h := range f.WorkspaceHosts {
		if h.BindsByName() {
			a.logger.Info("bind_address not set and pub_hostname is a DNS name: container ports are published "+
				"only on the address pub_hostname resolves to when each container is made (where Caddy dials it); "+
				"set bind_address to choose the address",
				zap.String("host", h.Hostname), zap.String("pub_hostname", h.PubHostname))
		}
	}
	return f, nil
}

func override[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// Validate checks the settings that are not part of hosts.yml.
func (a *App) Validate() error {
	switch a.ShutdownPolicy {
	case "keep", "destroy":
	default:
		return fmt.Errorf("shutdown_policy: %q is neither keep nor destroy", a.ShutdownPolicy)
	}
	if !instanceRE.MatchString(a.Instance) {
		return fmt.Errorf("instance: %q must be 1-32 of a-z, 0-9, '.', '_', '-'", a.Instance)
	}
	if a.Egress != "open" && a.Egress != "closed" {
		return fmt.Errorf("egress: %q is neither open nor closed", a.Egress)
	}
	if a.Isolation != "enforce" && a.Isolation != "warn" {
		return fmt.Errorf("isolation: %q is neither enforce nor warn", a.Isolation)
	}
	if _, err := parseRanges(a.ClosedRanges); err != nil {
		return fmt.Errorf("closed_ranges: %w", err)
	}
	if _, err := parseRanges(a.OpenRanges); err != nil {
		return fmt.Errorf("open_ranges: %w", err)
	}
	if a.MaxConnections < 1 {
		return fmt.Errorf("max_connections: must be at least 1, got %d", a.MaxConnections)
	}
	if a.EventLogSize < 1 {
		return fmt.Errorf("event_log_size: must be at least 1, got %d", a.EventLogSize)
	}
	if err := a.validateAbuse(); err != nil {
		return err
	}
	for name, d := range map[string]caddy.Duration{
		"dial_timeout": a.DialTimeout, "reaper_interval": a.ReaperInterval,
		"readiness_timeout": a.ReadinessTimeout, "probe_interval": a.ProbeInterval,
		"orphan_grace": a.OrphanGrace,
	} {
		if d < 0 {
			return fmt.Errorf("%s: must not be negative, got %v", name, time.Duration(d))
		}
	}
	return nil
}

var instanceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// Start applies this config to the control plane, starting it the first
// time: stored sessions are loaded and reconciled, hosts are checked, the
// reaper runs.
func (a *App) Start() error {
	return a.rt.apply(a)
}

// Stop implements caddy.App. The control plane outlives this config; it is
// stopped in Cleanup once no config uses it.
func (a *App) Stop() error { return nil }

// Cleanup drops this config's reference to the control plane, first giving
// it back the running config's settings if this config was rejected.
func (a *App) Cleanup() error {
	if a.rt != nil {
		a.rt.revert(a)
		_, err := runtimes.Delete(a.rtKey)
		return err
	}
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
