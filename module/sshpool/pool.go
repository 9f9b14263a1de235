package sshpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// ErrClosed is returned by Get and Do after Close.
var ErrClosed = errors.New("sshpool: pool is closed")

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

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Open          int   // connections open now (idle + in use)
	Idle          int   // open and ready for Get
	InUse         int   // checked out
	Dialing       int   // being dialed now (they hold a slot too)
	Waiting       int   // Get calls waiting for a connection
	Dialed        int64 // connections ever established
	DialFailures  int64 // dials that failed
	Discarded     int64 // connections closed because broken, dead or failing the keepalive
	ProbeFailures int64 // idle connections found dead on checkout
	Retried       int64 // Do calls that retried on a fresh connection
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
	for {
		if p.Closed() {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("get ssh connection to %s: %w", p.cfg.Addr, err)
		}
		// Prefer an idle connection; dial only when there is none.
		select {
		case c := <-p.idle:
			if c, err := p.checkout(ctx, c); c != nil || err != nil {
				return c, err
			}
			continue
		default:
		}
		select {
		case p.slots <- struct{}{}:
			if c, err := p.dialSlot(ctx); c != nil || err != nil {
				return c, err
			}
			continue
		default:
		}
		p.waiting.Add(1)
		select {
		case c := <-p.idle:
			p.waiting.Add(-1)
			if c, err := p.checkout(ctx, c); c != nil || err != nil {
				return c, err
			}
		case p.slots <- struct{}{}:
			p.waiting.Add(-1)
			if c, err := p.dialSlot(ctx); c != nil || err != nil {
				return c, err
			}
		case <-ctx.Done():
			p.waiting.Add(-1)
			return nil, fmt.Errorf("wait for ssh connection to %s (%d open): %w", p.cfg.Addr, p.cfg.MaxConns, ctx.Err())
		case <-p.closed:
			p.waiting.Add(-1)
			return nil, ErrClosed
		}
	}
}

// checkout validates an idle connection. It returns the connection if it is
// alive, (nil, nil) if it was dead and discarded (the caller tries again),
// or an error if ctx ended during the check (the connection stays pooled).
func (p *Pool) checkout(ctx context.Context, c *Conn) (*Conn, error) {
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
	if p.cfg.ProbeAfter < 0 || p.now().Sub(c.idleSince) >= p.cfg.ProbeAfter {
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

// dialSlot dials a new connection for the slot the caller just took. While
// it waits for a handshake turn, a connection put back is taken instead.
// Like checkout it returns (nil, nil) when the caller should try again.
func (p *Pool) dialSlot(ctx context.Context) (*Conn, error) {
	select {
	case p.dials <- struct{}{}:
	default:
		p.waiting.Add(1)
		select {
		case p.dials <- struct{}{}:
			p.waiting.Add(-1)
		case c := <-p.idle:
			p.waiting.Add(-1)
			<-p.slots
			return p.checkout(ctx, c)
		case <-ctx.Done():
			p.waiting.Add(-1)
			<-p.slots
			return nil, fmt.Errorf("wait to dial ssh %s: %w", p.cfg.Addr, ctx.Err())
		case <-p.closed:
			p.waiting.Add(-1)
			<-p.slots
			return nil, ErrClosed
		}
	}
	p.dialing.Add(1)
	client, err := p.dialClient(ctx)
	p.dialing.Add(-1)
	<-p.dials
	if err != nil {
		<-p.slots
		p.dialFailures.Add(1)
		p.log.Warn("ssh dial failed", zap.Error(err))
		return nil, fmt.Errorf("dial ssh %s@%s: %w", p.cfg.User, p.cfg.Addr, err)
	}
	c := newConn(client)
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		_ = client.Close()
		<-p.slots
		return nil, ErrClosed
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	p.dialed.Add(1)
	c.checkedOut.Store(true)
	p.inUse.Add(1)
	p.log.Debug("ssh connection established", zap.Int("open", len(p.slots)))
	return c, nil
}

// dialClient dials once more, after a short pause, if the first attempt was
// cut off by the host (reset, EOF, refused): what sshd does to surplus
// handshakes under MaxStartups pressure, or while it restarts. A timeout,
// a host key or an authentication failure is final.
func (p *Pool) dialClient(ctx context.Context) (*ssh.Client, error) {
	if p.clientCf == nil {
		return nil, errors.New("no host key checker configured (Config.HostKeys is nil)")
	}
	client, err := dial(ctx, &p.cfg, p.clientCf)
	if err == nil || !IsConnectionError(err) || isTimeout(err) || ctx.Err() != nil {
		return client, err
	}
	pause := 50*time.Millisecond + rand.N(100*time.Millisecond)
	p.log.Info("ssh dial cut off; retrying once", zap.Duration("after", pause), zap.Error(err))
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, err
	}
	return dial(ctx, &p.cfg, p.clientCf)
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

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	open := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Open:          open,
		Idle:          len(p.idle),
		InUse:         int(p.inUse.Load()),
		Dialing:       int(p.dialing.Load()),
		Waiting:       int(p.waiting.Load()),
		Dialed:        p.dialed.Load(),
		DialFailures:  p.dialFailures.Load(),
		Discarded:     p.discarded.Load(),
		ProbeFailures: p.probeFailures.Load(),
		Retried:       p.retried.Load(),
	}
}
