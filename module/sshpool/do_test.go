package sshpool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ping runs GET /_ping over a direct-streamlocal channel to socket.
func ping(ctx context.Context, c *ssh.Client, socket string) error {
	conn, err := c.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("open channel to %s: %w", socket, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"); err != nil {
		return fmt.Errorf("send ping: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("read ping answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read ping body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "OK" {
		return fmt.Errorf("ping answered %d %q", resp.StatusCode, body)
	}
	return nil
}

func TestKilledConnectionsUnderWarmPoolCostNoError(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.ChannelsPerConn = 1
	p := New(cfg)
	defer p.Close()
	ctx := context.Background()

	warm(t, p, 5)
	if st := p.Stats(); st.Idle != 5 {
		t.Fatalf("warm pool: %+v", st)
	}
	srv.KillAll()

	var calls atomic.Int64
	err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		calls.Add(1)
		return ping(ctx, c, srv.socket)
	})
	if err != nil {
		t.Fatalf("Do after killing all connections: %v", err)
	}
	st := p.Stats()
	t.Logf("fn calls %d; pool: %+v", calls.Load(), st)
	if calls.Load() > 2 || st.Retried > 1 {
		t.Errorf("fn ran %d times (%d retries); want at most one retry", calls.Load(), st.Retried)
	}
	if st.Discarded < 1 {
		t.Errorf("no dead connection was discarded: %+v", st)
	}
}

func TestDoRetriesExactlyOnceWhenTransportDiesMidOperation(t *testing.T) {
	srv := startTestServer(t)
	p := New(srv.Config(t))
	defer p.Close()
	warm(t, p, 1)

	var calls atomic.Int64
	err := p.Do(context.Background(), func(ctx context.Context, c *ssh.Client) error {
		if calls.Add(1) == 1 {
			srv.KillAll() // the host's sshd dies after checkout, before the operation
			_ = c.Wait()
		}
		return ping(ctx, c, srv.socket)
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if n, st := calls.Load(), p.Stats(); n != 2 || st.Retried != 1 {
		t.Fatalf("fn ran %d times, %d retries; want 2 and 1 (%+v)", n, st.Retried, st)
	}
}

func TestDoRetriesAtMostOnce(t *testing.T) {
	srv := startTestServer(t)
	p := New(srv.Config(t))
	defer p.Close()

	var calls atomic.Int64
	err := p.Do(context.Background(), func(ctx context.Context, c *ssh.Client) error {
		calls.Add(1)
		srv.KillAll()
		_ = c.Wait()
		return ping(ctx, c, srv.socket)
	})
	if err == nil || !IsConnectionError(err) {
		t.Fatalf("Do = %v; want the connection error of the second attempt", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn ran %d times; want 2", n)
	}
}

func TestDoKeepsConnectionOnChannelRefusal(t *testing.T) {
	srv := startTestServer(t)
	p := New(srv.Config(t))
	defer p.Close()

	var calls atomic.Int64
	err := p.Do(context.Background(), func(ctx context.Context, c *ssh.Client) error {
		calls.Add(1)
		return ping(ctx, c, "/nonexistent/docker.sock")
	})
	var openErr *ssh.OpenChannelError
	if !errors.As(err, &openErr) {
		t.Fatalf("Do = %v; want an ssh.OpenChannelError", err)
	}
	if st := p.Stats(); calls.Load() != 1 || st.Discarded != 0 || st.Idle != 1 {
		t.Fatalf("fn ran %d times; pool %+v; want one call and the connection kept", calls.Load(), st)
	}
}

func TestDoKeepsConnectionOnOperationError(t *testing.T) {
	srv := startTestServer(t)
	p := New(srv.Config(t))
	defer p.Close()

	want := errors.New("container exited")
	err := p.Do(context.Background(), func(context.Context, *ssh.Client) error { return want })
	if !errors.Is(err, want) {
		t.Fatalf("Do = %v, want %v", err, want)
	}
	// An EOF from a healthy transport (the forwarded socket's far end hung up)
	// is settled by a keepalive: the connection stays.
	err = p.Do(context.Background(), func(context.Context, *ssh.Client) error { return io.EOF })
	if !errors.Is(err, io.EOF) {
		t.Fatalf("Do = %v, want io.EOF", err)
	}
	if st := p.Stats(); st.Discarded != 0 || st.Retried != 0 || st.Idle != 1 {
		t.Fatalf("pool %+v; want the connection kept and no retry", st)
	}
}

func TestIsConnectionError(t *testing.T) {
	for err, want := range map[error]bool{
		nil:                                    false,
		io.EOF:                                 true,
		fmt.Errorf("open channel: %w", io.EOF): true,
		io.ErrUnexpectedEOF:                    true,
		net.ErrClosed:                          true,
		syscall.ECONNRESET:                     true,
		syscall.EPIPE:                          true,
		&net.OpError{Op: "read", Err: syscall.ETIMEDOUT}:                               true,
		errors.New("ssh: unexpected packet in response to channel open: <nil>"):        true,
		&ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "connect failed"}: false,
		fmt.Errorf("wrapped: %w", &ssh.OpenChannelError{Reason: ssh.Prohibited}):       false,
		errors.New("docker: 500 Internal Server Error: boom"):                          false,
		context.Canceled: false,
	} {
		if got := IsConnectionError(err); got != want {
			t.Errorf("IsConnectionError(%v) = %v; want %v", err, got, want)
		}
	}
}

// Every operation in flight on a client that dies is retried once, on a
// new client that they share.
func TestInFlightOperationsRetriedWhenTheirClientDies(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 2
	cfg.ChannelsPerConn = 4
	p := New(cfg)
	defer p.Close()

	var calls atomic.Int64
	started := make(chan struct{}, 4)
	killed := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			errs <- p.Do(context.Background(), func(ctx context.Context, c *ssh.Client) error {
				if calls.Add(1) <= 4 {
					started <- struct{}{}
					<-killed
					_ = c.Wait()
				}
				return ping(ctx, c, srv.socket)
			})
		}()
	}
	for range 4 {
		<-started
	}
	if st := p.Stats(); st.Open != 1 || st.Channels != 4 {
		t.Fatalf("4 operations in flight: %+v; want all on one client", st)
	}
	srv.KillAll()
	close(killed)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("Do with its client killed under it: %v", err)
		}
	}
	if n, st := calls.Load(), p.Stats(); n != 8 || st.Retried != 4 || st.Dialed != 2 || st.Open != 1 {
		t.Fatalf("fn ran %d times; pool %+v; want 8 runs, 4 retries sharing one new client", n, st)
	}
}
