package sshpool

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestDialTimeoutBoundsHandshake(t *testing.T) {
	// A TCP listener that accepts and never speaks SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	}()

	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.Addr = ln.Addr().String()
	cfg.DialTimeout = 200 * time.Millisecond
	p := New(cfg)
	defer p.Close()

	start := time.Now()
	err = p.Do(context.Background(), noop)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do from a silent server = %v; want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("handshake was not bounded by DialTimeout: %s", d)
	}
	if st := p.Stats(); st.Open != 0 || st.DialFailures != 1 {
		t.Fatalf("pool %+v; want the slot freed", st)
	}

	// Cancelling ctx interrupts the handshake too.
	cfg.DialTimeout = time.Minute
	p2 := New(cfg)
	defer p2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := p2.Do(ctx, noop); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do with ctx deadline during handshake = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ctx did not interrupt the handshake: %s", d)
	}
}

func TestDialRetriesOnceWhenCutOff(t *testing.T) {
	// A listener that hangs up on every connection, like sshd dropping a
	// surplus handshake under MaxStartups.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	srv := startTestServer(t)
	var dials atomic.Int64
	cutOffFirst := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if dials.Add(1) == 1 {
			return d.DialContext(ctx, network, ln.Addr().String())
		}
		return d.DialContext(ctx, network, addr)
	}

	cfg := srv.Config(t)
	cfg.DialContext = cutOffFirst
	p := New(cfg)
	defer p.Close()
	err = p.Do(context.Background(), noop)
	if err != nil {
		t.Fatalf("Do with the first dial cut off: %v", err)
	}
	if n, st := dials.Load(), p.Stats(); n != 2 || st.DialFailures != 0 {
		t.Fatalf("%d dials, pool %+v; want one retry and no failure", n, st)
	}

	// Refused authentication is final: no second dial.
	dials.Store(10)
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(newKey(t))}
	p2 := New(cfg)
	defer p2.Close()
	if err := p2.Do(context.Background(), noop); err == nil {
		t.Fatal("Do with an unknown client key succeeded")
	}
	if n := dials.Load(); n != 11 {
		t.Fatalf("%d dials after an authentication failure; want 1", n-10)
	}
}
