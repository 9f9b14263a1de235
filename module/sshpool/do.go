package sshpool

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Do runs fn on a live client shared with other operations; fn opens its
// own channels on it (one per Docker request). The client is the
// least-loaded one; Do never waits for another operation to finish, only,
// on a cold pool, for a first client to be dialed.
//
// If fn fails because the SSH transport died under it (io.EOF opening a
// channel, "ssh: unexpected packet", a reset or closed TCP connection), Do
// discards that client and runs fn once more on another live or a fresh
// one, so a restarted sshd or a dropped TCP connection costs one retried
// operation and no error; every operation that was on the dead client
// retries the same way. A channel the server refuses (ssh.OpenChannelError)
// or any other error is returned as is, and the client stays pooled. fn
// must therefore be safe to run twice.
//
// ctx is passed to fn and bounds the wait for a client; it never closes
// the client.
func (p *Pool) Do(ctx context.Context, fn func(ctx context.Context, c *ssh.Client) error) error {
	for attempt := 1; ; attempt++ {
		// The retry probes the client it is offered, however recently
		// used: whatever killed one client (an sshd restart) has likely
		// killed its siblings too, before their transports noticed.
		c, err := p.acquire(ctx, attempt > 1)
		if err != nil {
			return err
		}
		stop := p.watchdog(c)
		err = fn(ctx, c.ssh)
		stop()
		lost := err != nil && p.connectionLost(ctx, c, err)
		p.release(c)
		if !lost {
			return err
		}
		p.discard(c, "connection lost during an operation")
		// A client the watchdog found silent means the host stopped
		// answering: a retry would only wait out a dial timeout too.
		if attempt > 1 || ctx.Err() != nil || c.stalled.Load() {
			return err
		}
		p.retried.Add(1)
		p.log.Info("ssh connection lost during operation; retrying once on another connection", zap.Error(err))
	}
}

// watchdog guards an operation that runs longer than KeepaliveTimeout: it
// sends a keepalive then, and again every KeepaliveTimeout while the
// operation lasts (shared with the client's other operations' watchdogs). A
// client that does not answer (its host froze or was cut off) is closed,
// which fails every blocked channel on it at once, so that Do retries on
// another client instead of waiting for the caller's own, much longer,
// timeout. Fast operations never start a goroutine.
func (p *Pool) watchdog(c *client) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(p.cfg.KeepaliveTimeout, func() {
		if err := c.probe(context.Background(), p.cfg.KeepaliveTimeout); err != nil {
			if c.stalled.CompareAndSwap(false, true) {
				p.log.Warn("ssh connection stopped answering during an operation; closed it", zap.Error(err))
			}
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(p.cfg.KeepaliveTimeout)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// connectionLost reports whether err means c's transport is gone. An error
// that only looks like it (an EOF can also come from the far end of a
// forwarded socket closing) is settled with a keepalive probe.
func (p *Pool) connectionLost(ctx context.Context, c *client, err error) bool {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return c.Dead()
	}
	if c.Dead() {
		return true
	}
	if !IsConnectionError(err) {
		return false
	}
	return c.probe(context.WithoutCancel(ctx), p.cfg.KeepaliveTimeout) != nil
}

// IsConnectionError reports whether err has the shape of a failed SSH
// transport rather than of a failed operation: io.EOF or io.ErrUnexpectedEOF,
// "ssh: unexpected packet", net.ErrClosed, a network operation error, a reset
// or broken pipe. An ssh.OpenChannelError (the server refused one channel,
// for example because the forwarded socket's daemon is down) is not.
func IsConnectionError(err error) bool {
	if err == nil {
		return false
	}
	var openErr *ssh.OpenChannelError
	if errors.As(err, &openErr) {
		return false
	}
	var opErr *net.OpError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED),
		errors.As(err, &opErr):
		return true
	}
	return strings.Contains(err.Error(), "ssh: unexpected packet")
}
