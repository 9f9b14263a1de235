package sshpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// dialSlot dials a new client for the slot the caller just took (counted
// in dialing and, with op, in dialingOps) and adds it to the pool; with op,
// the caller's operation is counted on it. While an op caller waits for a
// handshake turn and a client becomes live, the dial carries on in the
// background and dialSlot returns (nil, nil): the caller picks again, and
// runs at once on the live client.
func (p *Pool) dialSlot(ctx context.Context, op bool) (*client, error) {
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		select {
		case p.dials <- struct{}{}:
		case <-changed:
			if !op {
				continue
			}
			p.mu.Lock()
			if p.isClosed {
				p.unslot(op)
				p.mu.Unlock()
				return nil, ErrClosed
			}
			if p.leastLoaded() == nil {
				p.mu.Unlock()
				continue
			}
			p.dialingOps--
			p.dialInBackground()
			p.mu.Unlock()
			return nil, nil
		case <-ctx.Done():
			p.mu.Lock()
			p.unslot(op)
			p.mu.Unlock()
			return nil, fmt.Errorf("wait to dial ssh %s: %w", p.cfg.Addr, ctx.Err())
		case <-p.closed:
			p.mu.Lock()
			p.unslot(op)
			p.mu.Unlock()
			return nil, ErrClosed
		}
		break
	}
	p.mu.Lock()
	p.connecting++
	p.peakOpen = max(p.peakOpen, len(p.clients)+p.connecting)
	p.mu.Unlock()
	sc, err := p.dialClient(ctx)
	<-p.dials
	p.mu.Lock()
	p.connecting--
	if err != nil && p.isClosed {
		p.unslot(op)
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if err != nil {
		p.unslot(op)
		p.mu.Unlock()
		p.dialFailures.Add(1)
		p.log.Warn("ssh dial failed", zap.Error(err))
		return nil, fmt.Errorf("dial ssh %s@%s: %w", p.cfg.User, p.cfg.Addr, err)
	}
	if p.isClosed {
		p.unslot(op)
		p.mu.Unlock()
		_ = sc.Close()
		return nil, ErrClosed
	}
	p.dialing--
	c := newClient(sc, p.now(), func(c *client) { p.discard(c, "transport closed") })
	p.clients = append(p.clients, c)
	if op {
		p.dialingOps--
		p.take(c)
	}
	p.broadcast()
	open := len(p.slots)
	p.mu.Unlock()
	p.dialed.Add(1)
	p.log.Debug("ssh connection established", zap.Int("open", open))
	return c, nil
}

// dialInBackground dials a client for a slot already taken, owned by the
// pool (Close cancels it), so that no operation waits for it while a live
// client can carry it. Called with mu held.
func (p *Pool) dialInBackground() {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		_, _ = p.dialSlot(p.ctx, false)
	}()
}

// unslot gives back the slot of a dial that did not happen or failed, and
// wakes the waiting operations (one of them may dial now). Called with mu
// held.
func (p *Pool) unslot(op bool) {
	p.dialing--
	if op {
		p.dialingOps--
	}
	<-p.slots
	p.broadcast()
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

// dial opens a TCP connection and runs the SSH handshake on it, both bounded
// by timeout and by ctx. The deadline is cleared once the handshake is done:
// from then on the connection's lifetime is the pool's, not ctx's.
func dial(ctx context.Context, cfg *Config, config *ssh.ClientConfig) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()

	addr := cfg.Addr
	tcp, err := cfg.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if !cfg.DisableQuickAck {
		tcp = withQuickAck(tcp)
	}
	deadline, _ := ctx.Deadline()
	if err := tcp.SetDeadline(deadline); err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("set handshake deadline: %w", err)
	}
	// A cancelled ctx interrupts the handshake at once instead of at the deadline.
	stop := context.AfterFunc(ctx, func() { _ = tcp.SetDeadline(time.Unix(1, 0)) })
	sconn, chans, reqs, err := ssh.NewClientConn(tcp, addr, config)
	interrupted := !stop()
	if err != nil {
		_ = tcp.Close()
		if isTimeout(err) {
			// Our deadline is ctx's; the conn may notice it before ctx does.
			ctxErr := ctx.Err()
			if ctxErr == nil {
				ctxErr = context.DeadlineExceeded
			}
			return nil, fmt.Errorf("handshake: %w (%w)", ctxErr, err)
		}
		return nil, err // already says "ssh: handshake failed: ..."
	}
	if interrupted {
		_ = sconn.Close()
		return nil, fmt.Errorf("handshake: %w", ctx.Err())
	}
	if err := tcp.SetDeadline(time.Time{}); err != nil {
		_ = sconn.Close()
		return nil, fmt.Errorf("clear handshake deadline: %w", err)
	}
	return ssh.NewClient(sconn, chans, reqs), nil
}
