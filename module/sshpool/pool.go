package sshpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// ErrClosed is returned by Get and Do after Close.
var ErrClosed = errors.New("sshpool: pool is closed")

// ErrBusy is wrapped (with the context's error) when a caller gave up
// waiting because every connection was open and in use: the host is busy,
// which says nothing against its health.
var ErrBusy = errors.New("every connection is busy")

// Pool holds the SSH connections to one host.
//
// Accounting is by slots: a connection may be dialed only by whoever first
// puts a token into slots (capacity MaxConns), and the token is taken out
// only when that connection is closed. The number of open or dialing
// connections is therefore never above MaxConns, whatever the concurrency;
// there is no check-then-act window to race through.
type Pool struct {
	cfg      Config
	clientCf *ssh.ClientConfig
	log      *zap.Logger
	now      func() time.Time // the clock; tests replace it

	slots  chan struct{} // one token per open or dialing connection
	dials  chan struct{} // one token per handshake in flight
	idle   chan *Conn    // connections ready for Get; never more than MaxConns
	closed chan struct{} // closed by Close

	mu       sync.Mutex // guards isClosed, conns, and sends on idle
	isClosed bool
	conns    map[*Conn]struct{} // every open connection, idle or in use

	inUse, waiting, dialing     atomic.Int64
	dialed, discarded, retried  atomic.Int64
	probeFailures, dialFailures atomic.Int64
}

// New returns an empty pool for cfg; connections are dialed on demand.
func New(cfg Config) *Pool {
	cfg = cfg.withDefaults()
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		cfg.Addr = net.JoinHostPort(cfg.Addr, "22")
	}
	p := &Pool{
		cfg:    cfg,
		log:    cfg.Logger.With(zap.String("ssh_addr", cfg.Addr), zap.String("ssh_user", cfg.User)),
		slots:  make(chan struct{}, cfg.MaxConns),
		dials:  make(chan struct{}, cfg.MaxDialing),
		idle:   make(chan *Conn, cfg.MaxConns),
		closed: make(chan struct{}),
		conns:  make(map[*Conn]struct{}),
		now:    time.Now,
	}
	if cfg.HostKeys != nil {
		p.clientCf = &ssh.ClientConfig{
			User:              cfg.User,
			Auth:              cfg.Auth,
			HostKeyCallback:   cfg.HostKeys.Callback(),
			HostKeyAlgorithms: cfg.HostKeys.Algorithms(cfg.Addr),
		}
	}
	return p
}

// Addr returns the host:port the pool dials.
func (p *Pool) Addr() string { return p.cfg.Addr }

// Get checks out a connection for exclusive use: an idle one if there is one
// (validated with a keepalive round trip if idle for ProbeAfter or more; a
// dead one is discarded and the next tried), else a new one if fewer than MaxConns are open, else the next
// one put back. ctx bounds only the waiting and dialing.
func (p *Pool) Get(ctx context.Context) (*Conn, error) {
	return p.get(ctx, false)
}

// get is Get; probe=true validates every idle connection however recently
// it was used (Do's retry after a lost connection, whose siblings are
// suspect).
func (p *Pool) get(ctx context.Context, probe bool) (*Conn, error) {
	for {
		if p.Closed() {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("get ssh connection to %s: %w", p.cfg.Addr, err)
		}
		idle, slot, err := p.next(ctx)
		if err != nil {
			return nil, err
		}
		var c *Conn
		if slot {
			c, err = p.dialSlot(ctx, probe)
		} else {
			c, err = p.checkout(ctx, idle, probe)
		}
		if c != nil || err != nil {
			return c, err
		}
		// The idle connection was dead, or a connection put back while we
		// waited to dial turned out dead: try again.
	}
}

// next waits for an idle connection or a free slot, preferring an idle
// connection: it dials only when there is none.
func (p *Pool) next(ctx context.Context) (idle *Conn, slot bool, err error) {
	select {
	case c := <-p.idle:
		return c, false, nil
	default:
	}
	select {
	case p.slots <- struct{}{}:
		return nil, true, nil
	default:
	}
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	select {
	case c := <-p.idle:
		return c, false, nil
	case p.slots <- struct{}{}:
		return nil, true, nil
	case <-ctx.Done():
		return nil, false, fmt.Errorf("wait for ssh connection to %s (%d open): %w: %w", p.cfg.Addr, p.cfg.MaxConns, ErrBusy, ctx.Err())
	case <-p.closed:
		return nil, false, ErrClosed
	}
}

// checkout validates an idle connection. It returns the connection if it is
// alive, (nil, nil) if it was dead and discarded (the caller tries again),
// or an error if ctx ended during the check (the connection stays pooled).
func (p *Pool) checkout(ctx context.Context, c *Conn, probe bool) (*Conn, error) {
	if p.Closed() {
		p.discard(c, "pool closed")
		return nil, ErrClosed
	}
	if c.Dead() {
		p.probeFailures.Add(1)
		p.discard(c, "transport closed while idle")
		return nil, nil
	}
	var err error
	if probe || p.cfg.ProbeAfter < 0 || p.now().Sub(c.idleSince) >= p.cfg.ProbeAfter {
		err = c.probe(ctx, p.cfg.KeepaliveTimeout)
	}
	switch {
	case err == nil:
		c.checkedOut.Store(true)
		p.inUse.Add(1)
		return c, nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		p.putIdle(c)
		return nil, fmt.Errorf("validate ssh connection to %s: %w", p.cfg.Addr, err)
	default:
		p.probeFailures.Add(1)
		p.discard(c, "failed keepalive on checkout: "+err.Error())
		if errors.Is(err, errNoAnswer) {
			// A silent host or path (no FIN, no RST) has very likely
			// silenced every idle connection: drop them all now rather
			// than have each Get wait KeepaliveTimeout per connection.
			p.dropIdle("a sibling connection missed its keepalive")
		}
		return nil, nil
	}
}

// dropIdle discards every connection idle right now.
func (p *Pool) dropIdle(reason string) {
	for {
		select {
		case c := <-p.idle:
			p.discard(c, reason)
		default:
			return
		}
	}
}

// Put returns a connection taken with Get. broken=true (or a connection whose
// transport has died) closes it and frees its slot. Putting a connection
// twice, or nil, is a no-op.
func (p *Pool) Put(c *Conn, broken bool) {
	if c == nil || !c.checkedOut.CompareAndSwap(true, false) {
		return
	}
	p.inUse.Add(-1)
	switch {
	case broken:
		p.discard(c, "reported broken")
	case c.Dead():
		p.discard(c, "transport closed while checked out")
	default:
		c.idleSince = p.now()
		p.putIdle(c)
	}
}

// putIdle makes c available to Get, or closes it if the pool is closed.
func (p *Pool) putIdle(c *Conn) {
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		p.discard(c, "pool closed")
		return
	}
	select {
	case p.idle <- c: // never blocks: at most MaxConns connections exist
		p.mu.Unlock()
	default:
		p.mu.Unlock()
		p.discard(c, "idle list full (accounting bug)")
	}
}

// discard closes c and frees its slot.
func (p *Pool) discard(c *Conn, reason string) {
	p.mu.Lock()
	_, tracked := p.conns[c]
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.client.Close()
	if !tracked {
		return // Close already released it
	}
	<-p.slots
	p.discarded.Add(1)
	p.log.Info("ssh connection discarded", zap.String("reason", reason), zap.Int("open", len(p.slots)))
}

// Closed reports whether Close has been called.
func (p *Pool) Closed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// Close closes every connection, idle or checked out, and makes later Get
// calls fail with ErrClosed. Waiting Get calls return ErrClosed at once.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		return nil
	}
	p.isClosed = true
	close(p.closed)
	conns := p.conns
	p.conns = make(map[*Conn]struct{})
	p.mu.Unlock()

	var errs []error
	for c := range conns {
		if err := c.client.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		<-p.slots
	}
drain:
	for {
		select {
		case <-p.idle:
		default:
			break drain
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close ssh pool %s: %w", p.cfg.Addr, err)
	}
	return nil
}
