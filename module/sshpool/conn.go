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
	// stalled is set when the watchdog found the connection not answering
	// during an operation and closed it.
	stalled atomic.Bool
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
