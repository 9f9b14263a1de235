package sshpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// errNoAnswer: a keepalive got no answer in time (as opposed to failing at
// once on a closed or reset transport).
var errNoAnswer = errors.New("no answer")

// Conn is one pooled SSH connection. Between Get and Put it belongs to the
// caller alone; its lifetime belongs to the pool.
type Conn struct {
	client *ssh.Client
	dead   chan struct{} // closed when the transport is gone (Client.Wait returned)

	checkedOut atomic.Bool
	// idleSince is when the connection was last put back healthy. Written
	// before it is sent on the pool's idle channel, read after it is received.
	idleSince time.Time
}

// Client returns the SSH client of the connection.
func (c *Conn) Client() *ssh.Client { return c.client }

// Dead reports whether the transport has already gone away.
func (c *Conn) Dead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// newConn wraps an established client. Its watcher goroutine ends when the
// transport does, which the pool guarantees by closing every client it
// discards or holds at Close.
func newConn(client *ssh.Client) *Conn {
	c := &Conn{client: client, dead: make(chan struct{})}
	go func() {
		_ = client.Wait()
		close(c.dead)
	}()
	return c
}

// probe sends keepalive@openssh.com and waits at most timeout for the answer.
// Any answer, including OpenSSH's (false, nil, nil), means the transport is
// alive. On timeout the client is closed so that the blocked request returns;
// the caller must discard the connection. If ctx ends first, probe returns
// ctx.Err() and leaves the connection open: its health is unknown, not bad,
// and a request's context must not close a pooled connection. The pending
// request then ends with the transport's answer or its death.
func (c *Conn) probe(ctx context.Context, timeout time.Duration) error {
	if c.Dead() {
		return errors.New("connection closed by peer")
	}
	result := make(chan error, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		result <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-result:
		if err != nil {
			return fmt.Errorf("keepalive: %w", err)
		}
		return nil
	case <-t.C:
		_ = c.client.Close()
		return fmt.Errorf("keepalive: %w within %s", errNoAnswer, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
