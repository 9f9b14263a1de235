package sshpool

import (
	"context"
	"net"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Defaults for zero Config fields.
const (
	DefaultMaxConns         = 20
	DefaultDialTimeout      = 10 * time.Second
	DefaultKeepaliveTimeout = 5 * time.Second
	DefaultMaxDialing       = 5
	DefaultProbeAfter       = time.Second
)

// Config describes one host's pool.
type Config struct {
	// Addr is the host's SSH address, host:port. A bare host means port 22.
	Addr string

	// User is the SSH user.
	User string

	// Auth holds the authentication methods, for example from DefaultAuth.
	// x/crypto tries each method type once: put every public key in one
	// method (DefaultAuth does).
	Auth []ssh.AuthMethod

	// HostKeys verifies the host's key. Required: a nil checker makes every
	// dial fail rather than trust an unverified host. See KnownHosts.
	HostKeys HostKeyChecker

	// MaxConns caps the connections open (or being dialed) to this host,
	// under any concurrency. Default: 20.
	MaxConns int

	// MaxDialing caps the handshakes in flight at once. sshd drops new
	// unauthenticated connections at random once 10 are pending
	// (MaxStartups 10:30:100), so a cold pool under a burst must not open
	// all MaxConns at once. Default: 5.
	MaxDialing int

	// DialTimeout bounds the TCP connect and the SSH handshake together.
	// Default: 10s.
	DialTimeout time.Duration

	// KeepaliveTimeout bounds one keepalive@openssh.com round trip, used
	// to validate an idle connection before handing it out. Default: 5s.
	KeepaliveTimeout time.Duration

	// DialContext opens the TCP connection. Default: a net.Dialer. Tests
	// use it to see which connections are the pool's; an operator could
	// route through a proxy.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// ProbeAfter is how long a connection must have been idle before a
	// checkout validates it with a keepalive; one put back sooner was just
	// shown to work and is handed out as is (a transport that closed
	// meanwhile is still caught, at no cost). Measured on the test bed, a
	// keepalive sent right after an operation waits ~40 ms for sshd (Nagle on
	// non-interactive connections against the client's delayed ACK) while the
	// operation itself took ~1 ms. Do covers the rest: it retries once on a
	// connection that turns out dead. Default: 1s; negative: always probe.
	ProbeAfter time.Duration

	// Logger receives dial failures and discards. Default: a no-op logger.
	Logger *zap.Logger
}

// withDefaults returns cfg with its zero fields filled in.
func (cfg Config) withDefaults() Config {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxDialing <= 0 {
		cfg.MaxDialing = DefaultMaxDialing
	}
	if cfg.DialContext == nil {
		var d net.Dialer
		cfg.DialContext = d.DialContext
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if cfg.ProbeAfter == 0 {
		cfg.ProbeAfter = DefaultProbeAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg
}
