package hosts_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// A host check passes, promptly, while 200 operations hold every one of the
// host's (only 4) SSH connections: it shares them instead of waiting for
// one (what used to need the "busy" special case).
func TestIntegrationCheckAnswersUnder200Operations(t *testing.T) {
	tb := testbed.Load(t)
	h := tb.Host(t, 0)
	hk, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	const maxConns = 4
	p := sshpool.New(sshpool.Config{Addr: h.Addr(), User: h.User, Auth: tb.Auth(t), HostKeys: hk, MaxConns: maxConns})
	host := hosts.NewHost(config.Host{Hostname: h.IP, Port: 22, User: h.User, DockerImage: tb.DesktopImage},
		&hosts.SSHEngine{Pool: p}, "")
	defer func() { _ = host.Engine.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	release := make(chan struct{})
	var holding, failed atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := host.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
				if err := d.Ping(ctx); err != nil {
					return err
				}
				holding.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			})
			if err != nil {
				failed.Add(1)
				t.Errorf("operation: %v", err)
			}
		}()
	}
	for holding.Load()+failed.Load() < 200 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	st := p.Stats()
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	start := time.Now()
	checks := hosts.CheckHost(cctx, host, nil)
	took := time.Since(start)
	ccancel()
	close(release)
	wg.Wait()
	t.Logf("check with %d operations in flight on %d connections took %s: %+v", st.Channels, st.Open, took, checks)
	if st.Channels != 200 || st.Open > maxConns {
		t.Fatalf("pool during the check %+v; want 200 operations over at most %d connections", st, maxConns)
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("check %s failed under load: %s", c.Name, c.Detail)
		}
	}
	if took > 10*time.Second {
		t.Errorf("check took %s under load; want ≤ 10s", took)
	}
}
