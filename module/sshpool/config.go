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
	DefaultChannelsPerConn  = 8
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

	// ChannelsPerConn is how many operations one connection carries before
	// the pool dials another (while fewer than MaxConns are open). It is a
	// target, not a cap: at MaxConns, operations share the least-loaded
	// connection however many it carries. Each connection is one sshd
	// process doing the crypto of all its channels on one core and one TCP
	// stream, so spreading a burst over a few connections keeps one slow
	// channel from delaying the others; dialing one per operation would
	// cost a handshake (~40–80 ms on the test bed) each and an sshd
	// process per operation. At 8, the 200-operation burst uses
	// the default 20 connections at ~10 channels each, and a quiet host
	// needs one connection. Default: 8.
	ChannelsPerConn int

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

	// ProbeAfter is how long a connection must have carried no operation
	// before one is run on it only after a keepalive proved it alive; one
	// used more recently was just shown to work (a transport that closed
	// meanwhile is still caught, at no cost). Do covers the rest: it
	// retries once on a connection that turns out dead. Default: 1s;
	// negative: always probe an idle connection.
	ProbeAfter time.Duration

	// DisableQuickAck turns off the immediate ACKs the pool's TCP
	// connections send (see quickAckConn), bringing back the ~40 ms stalls
	// of sshd's Nagle against delayed ACKs. For comparison measurements
	// only.
	DisableQuickAck bool

	// Logger receives dial failures and discards. Default: a no-op logger.
	Logger *zap.Logger
}

// withDefaults returns cfg with its zero fields filled in.
func (cfg Config) withDefaults() Config {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ChannelsPerConn <= 0 {
		cfg.ChannelsPerConn = DefaultChannelsPerConn
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
