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

// dialSlot dials a new connection for the slot the caller just took. While
// it waits for a handshake turn, a connection put back is taken instead.
// Like checkout it returns (nil, nil) when the caller should try again.
func (p *Pool) dialSlot(ctx context.Context, probe bool) (*Conn, error) {
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
			return p.checkout(ctx, c, probe)
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
