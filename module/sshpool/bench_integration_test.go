package sshpool_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// The cost the pool saves: a Docker /_ping over a pooled connection (a
// keepalive round trip on checkout, a new channel, the HTTP exchange)
// against the same over a connection dialed for it (TCP, SSH handshake,
// public key auth, then the same).
//
//	go test -run '^$' -bench Ping -benchtime 3s ./module/sshpool

func BenchmarkPooledPing(b *testing.B) {
	tb := testbed.Load(b)
	p := sshpool.New(tbConfig(b, tb, tb.Host(b, 0)))
	defer p.Close()
	ctx := context.Background()
	if err := p.Do(ctx, dockerPing); err != nil { // warm
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := p.Do(ctx, dockerPing); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFreshConnPing(b *testing.B) {
	tb := testbed.Load(b)
	host := tb.Host(b, 0)
	hk, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User:              host.User,
		Auth:              tb.Auth(b),
		HostKeyCallback:   hk.Callback(),
		HostKeyAlgorithms: hk.Algorithms(host.Addr()),
		Timeout:           10 * time.Second,
	}
	ctx := context.Background()
	for b.Loop() {
		c, err := ssh.Dial("tcp", host.Addr(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		err = dockerPing(ctx, c)
		_ = c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}
