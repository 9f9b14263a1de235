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

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("sshpool: pool is closed")

// Pool holds the SSH clients to one host. Operations share them: each runs
// on the least-loaded live client and opens its own channels there.
//
// Accounting is by slots: a client may be dialed only by whoever first puts
// a token into slots (capacity MaxConns), and the token is taken out only
// when that client is discarded or closed. The number of open or dialing
// clients is therefore never above MaxConns, whatever the concurrency.
type Pool struct {
	cfg      Config
	clientCf *ssh.ClientConfig
	log      *zap.Logger
	now      func() time.Time // the clock; tests replace it

	slots  chan struct{} // one token per open or dialing client
	dials  chan struct{} // one token per handshake in flight
	closed chan struct{} // closed by Close

	ctx    context.Context // background dials; cancelled by Close
	cancel context.CancelFunc
	bg     sync.WaitGroup // background dials

	mu         sync.Mutex // guards everything below, and sends/receives on slots
	isClosed   bool
	clients    []*client     // open clients, oldest first
	changed    chan struct{} // closed (and replaced) when a client is added or a slot freed
	dialing    int           // dials in progress (each holds a slot)
	dialingOps int           // those of them with an operation waiting to run on the client
	waiting    int           // operations waiting for a first client
	channels   int           // operations in flight, over all clients
	connecting int           // TCP connections being set up (dial and handshake)
	peakOpen   int           // most TCP connections ever open or connecting at once
	peakCh     int           // most operations ever in flight at once

	dialed, discarded, retried  atomic.Int64
	probeFailures, dialFailures atomic.Int64
}

// New returns an empty pool for cfg; clients are dialed on demand.
func New(cfg Config) *Pool {
	cfg = cfg.withDefaults()
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		cfg.Addr = net.JoinHostPort(cfg.Addr, "22")
	}
	p := &Pool{
		cfg:     cfg,
		log:     cfg.Logger.With(zap.String("ssh_addr", cfg.Addr), zap.String("ssh_user", cfg.User)),
		slots:   make(chan struct{}, cfg.MaxConns),
		dials:   make(chan struct{}, cfg.MaxDialing),
		closed:  make(chan struct{}),
		changed: make(chan struct{}),
		now:     time.Now,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
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

// acquire returns a live client with one more operation counted on it; the
// caller must release it. It takes the least-loaded live client while that
// one carries fewer than ChannelsPerConn operations, or when no more
// clients are warranted or allowed; it dials a new client when the clients
// open and being dialed cannot carry the operations in flight and waiting
// at ChannelsPerConn each, and a slot is free; it waits only when no client
// is live yet. A client idle for ProbeAfter (any client, if probe) is first
// proven alive with a keepalive. ctx bounds only the waiting and dialing.
func (p *Pool) acquire(ctx context.Context, probe bool) (*client, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("get ssh client for %s: %w", p.cfg.Addr, err)
		}
		p.mu.Lock()
		if p.isClosed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		best := p.leastLoaded()
		if best != nil && best.inflight < p.cfg.ChannelsPerConn {
			if c, err := p.use(ctx, best, probe); c != nil || err != nil { // unlocks
				return c, err
			}
			continue // it was dead: pick again
		}
		// The operations running, dialing (each will run on the client
		// it dials), waiting, and this one.
		demand := p.channels + p.dialingOps + p.waiting + 1
		if demand > (len(p.clients)+p.dialing)*p.cfg.ChannelsPerConn {
			select {
			case p.slots <- struct{}{}:
				p.dialing++
				if best == nil {
					// Nothing to run on meanwhile: dial for ourselves.
					p.dialingOps++
					p.mu.Unlock()
					c, err := p.dialSlot(ctx, true)
					if c != nil || err != nil {
						return c, err
					}
					continue // a client became live while we waited to dial
				}
				// Run now on the least-loaded client; the new one
				// serves the operations after us.
				p.dialInBackground()
			default:
			}
		}
		if best != nil {
			if c, err := p.use(ctx, best, probe); c != nil || err != nil { // unlocks
				return c, err
			}
			continue
		}
		// No live client: the ones being dialed will serve us.
		changed := p.changed
		p.waiting++
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		case <-p.closed:
		}
		p.mu.Lock()
		p.waiting--
		p.mu.Unlock()
	}
}

// leastLoaded returns the live client with the fewest operations, the
// oldest among equals (so that sequential operations reuse one client), or
// nil. Called with mu held.
func (p *Pool) leastLoaded() *client {
	var best *client
	for _, c := range p.clients {
		if c.Dead() {
			continue // its watcher discards it
		}
		if best == nil || c.inflight < best.inflight {
			best = c
		}
	}
	return best
}

// use counts an operation on c (mu held; use unlocks it), then proves c
// alive if it was idle for ProbeAfter or probe is set. It returns (nil, nil)
// when c turned out dead: the caller tries again.
func (p *Pool) use(ctx context.Context, c *client, probe bool) (*client, error) {
	wasIdle := c.inflight == 0
	idleFor := p.now().Sub(c.lastUsed)
	p.take(c)
	p.mu.Unlock()
	if !probe && (!wasIdle || (p.cfg.ProbeAfter >= 0 && idleFor < p.cfg.ProbeAfter)) {
		return c, nil
	}
	err := c.probe(ctx, p.cfg.KeepaliveTimeout)
	switch {
	case err == nil:
		return c, nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		p.release(c)
		return nil, fmt.Errorf("validate ssh client for %s: %w", p.cfg.Addr, err)
	default:
		p.release(c)
		p.probeFailures.Add(1)
		p.discard(c, "failed keepalive: "+err.Error())
		if errors.Is(err, errNoAnswer) {
			// A silent host or path (no FIN, no RST) has very likely
			// silenced every idle client too: drop them now rather than
			// have each operation wait KeepaliveTimeout per client.
			p.dropIdle("a sibling client missed its keepalive")
		}
		return nil, nil
	}
}

// take counts one more operation on c. Called with mu held.
func (p *Pool) take(c *client) {
	c.inflight++
	p.channels++
	p.peakCh = max(p.peakCh, p.channels)
}

// release ends an operation counted by acquire.
func (p *Pool) release(c *client) {
	p.mu.Lock()
	c.inflight--
	p.channels--
	c.lastUsed = p.now()
	p.mu.Unlock()
}

// dropIdle discards every client that carries no operation right now.
func (p *Pool) dropIdle(reason string) {
	p.mu.Lock()
	var idle []*client
	for _, c := range p.clients {
		if c.inflight == 0 {
			idle = append(idle, c)
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		p.discard(c, reason)
	}
}

// discard closes c and frees its slot; operations still on it fail with
// a connection error (and Do retries them).
func (p *Pool) discard(c *client, reason string) {
	p.mu.Lock()
	tracked := false
	for i, o := range p.clients {
		if o == c {
			p.clients = append(p.clients[:i], p.clients[i+1:]...)
			tracked = true
			break
		}
	}
	if tracked {
		<-p.slots
		p.broadcast()
	}
	open := len(p.slots)
	p.mu.Unlock()
	_ = c.ssh.Close()
	if !tracked {
		return // already discarded, or Close released it
	}
	p.discarded.Add(1)
	p.log.Info("ssh connection discarded", zap.String("reason", reason), zap.Int("open", open))
}

// broadcast wakes every operation waiting for a client. Called with mu held.
func (p *Pool) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
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

// Close closes every client, busy or not, and makes later Do calls fail
// with ErrClosed. Waiting Do calls return ErrClosed at once; running ones
// see their channels fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		return nil
	}
	p.isClosed = true
	close(p.closed)
	p.cancel()
	clients := p.clients
	p.clients = nil
	for range clients {
		<-p.slots
	}
	p.broadcast()
	p.mu.Unlock()

	var errs []error
	for _, c := range clients {
		if err := c.ssh.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	p.bg.Wait() // cancelled: each ends within a moment
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close ssh pool %s: %w", p.cfg.Addr, err)
	}
	return nil
}
