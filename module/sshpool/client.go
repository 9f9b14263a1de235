package sshpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// errNoAnswer: a keepalive got no answer in time (as opposed to failing at
// once on a closed or reset transport).
var errNoAnswer = errors.New("no answer")

// client is one pooled SSH connection, shared by every operation that runs
// on it (each opens channels of its own). Its lifetime belongs to the pool.
type client struct {
	ssh  *ssh.Client
	dead chan struct{} // closed when the transport is gone (Client.Wait returned)

	// Guarded by the pool's mu.
	inflight int       // operations running on it now
	lastUsed time.Time // when its last operation ended (or it was dialed)

	// stalled is set when a keepalive went unanswered during an operation
	// and the client was closed for it.
	stalled atomic.Bool

	probeMu sync.Mutex
	probing *probeCall // the keepalive in flight, shared by concurrent probes
}

type probeCall struct {
	done chan struct{}
	err  error
}

// Dead reports whether the transport has already gone away.
func (c *client) Dead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// newClient wraps an established client. gone runs once the transport has
// ended, which the pool guarantees by closing every client it discards or
// holds at Close.
func newClient(sc *ssh.Client, now time.Time, gone func(*client)) *client {
	c := &client{ssh: sc, dead: make(chan struct{}), lastUsed: now}
	go func() {
		_ = sc.Wait()
		close(c.dead)
		gone(c)
	}()
	return c
}

// probe sends keepalive@openssh.com and waits at most timeout for the answer.
// Any answer, including OpenSSH's (false, nil, nil), means the transport is
// alive. Concurrent probes of one client share one keepalive. On timeout the
// client is closed so that everything blocked on it returns; the caller must
// discard it. If ctx ends first, probe returns ctx.Err() and leaves the
// client open: its health is unknown, not bad, and a request's context must
// not close a pooled client.
func (c *client) probe(ctx context.Context, timeout time.Duration) error {
	if c.Dead() {
		return errors.New("connection closed by peer")
	}
	c.probeMu.Lock()
	call := c.probing
	if call == nil {
		call = &probeCall{done: make(chan struct{})}
		c.probing = call
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			c.probeMu.Lock()
			c.probing = nil
			c.probeMu.Unlock()
			call.err = err
			close(call.done)
		}()
	}
	c.probeMu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-call.done:
		if call.err != nil {
			return fmt.Errorf("keepalive: %w", call.err)
		}
		return nil
	case <-t.C:
		_ = c.ssh.Close()
		return fmt.Errorf("keepalive: %w within %s", errNoAnswer, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
