package sshpool_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// tbConfig returns a pool config for host, verified against the test bed's
// known_hosts.
func tbConfig(t testing.TB, tb *testbed.Testbed, host testbed.Host) sshpool.Config {
	t.Helper()
	hk, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	return sshpool.Config{
		Addr:        host.Addr(),
		User:        host.User,
		Auth:        tb.Auth(t),
		HostKeys:    hk,
		DialTimeout: 10 * time.Second,
	}
}

func dockerPing(ctx context.Context, c *ssh.Client) error {
	return docker.New(docker.SSHDialer(c, "")).Ping(ctx)
}

// localPorts records the local TCP ports of the connections a pool dials,
// to tell them apart on the host from anyone else's.
type localPorts struct {
	mu    sync.Mutex
	ports map[int]bool
}

func (l *localPorts) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			l.mu.Lock()
			l.ports[c.LocalAddr().(*net.TCPAddr).Port] = true
			l.mu.Unlock()
		}
		return c, err
	}
}

func (l *localPorts) has(port int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ports[port]
}

// 200 operations in flight at once on one host, each holding a channel to
// the Docker socket open: the pool never has more than MaxConns TCP
// connections (its own accounting, and counted from inside the host), and a
// health check run meanwhile answers at once, on a shared client.
func TestIntegrationMaxConnsUnder200ConcurrentDo(t *testing.T) {
	tb := testbed.Load(t)
	host := tb.Host(t, 0)
	ours := &localPorts{ports: map[int]bool{}}
	cfg := tbConfig(t, tb, host)
	cfg.MaxConns = 20
	cfg.DialContext = ours.dialer()
	p := sshpool.New(cfg)
	defer p.Close()

	// Sample the host's established SSH connections every 10 ms from inside
	// the host, while the load runs.
	samples := make(chan string, 1)
	go func() {
		out, _ := testbed.TryExec(host, "sh", "-c",
			`for i in $(seq 400); do ss -Htn state established '( sport = :22 )'; echo --; sleep 0.01; done`)
		samples <- out
	}()
	time.Sleep(300 * time.Millisecond) // let the sampler start

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var failures, holding atomic.Int64
	var firstErr atomic.Value
	release := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
				if err := dockerPing(ctx, c); err != nil {
					return err
				}
				ch, err := c.DialContext(ctx, "unix", "/var/run/docker.sock")
				if err != nil {
					return err
				}
				defer ch.Close()
				holding.Add(1)
				select { // hold the channel: make the load overlap
				case <-release:
				case <-ctx.Done():
				}
				return nil
			})
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	for holding.Load()+failures.Load() < 200 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	loaded := time.Since(start)
	// A health check's Docker round trip while all 200 hold their channels.
	var checks []time.Duration
	for range 5 {
		t0 := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Do(cctx, dockerPing)
		ccancel()
		if err != nil {
			t.Errorf("health check with 200 operations in flight: %v", err)
		}
		checks = append(checks, time.Since(t0))
	}
	during := p.Stats()
	close(release)
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of 200 Do(ping + held channel) failed; first: %v", n, firstErr.Load())
	}
	out := <-samples
	maxOurs, maxAll, nSamples := 0, 0, 0
	for _, sample := range strings.Split(out, "--\n") {
		ourCount, allCount := 0, 0
		for _, line := range strings.Split(strings.TrimSpace(sample), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			allCount++
			peer := f[len(f)-1]
			if i := strings.LastIndex(peer, ":"); i >= 0 {
				if port, err := strconv.Atoi(peer[i+1:]); err == nil && ours.has(port) {
					ourCount++
				}
			}
		}
		nSamples++
		maxOurs, maxAll = max(maxOurs, ourCount), max(maxAll, allCount)
	}
	st := p.Stats()
	slowest := slices.Max(checks)
	t.Logf("200 Do(ping + held channel) all in flight after %s; health checks meanwhile %v; host-side samples %d: max %d of ours established (max %d from anyone); pool during %+v; final %+v",
		loaded.Round(time.Millisecond), checks, nSamples, maxOurs, maxAll, during, st)
	if maxOurs > cfg.MaxConns {
		t.Errorf("host saw %d of our connections at once; MaxConns is %d", maxOurs, cfg.MaxConns)
	}
	if maxOurs < 2 {
		t.Errorf("host saw at most %d of our connections: sampling missed the load", maxOurs)
	}
	if st.PeakOpen > cfg.MaxConns || st.Dialed > int64(cfg.MaxConns) {
		t.Errorf("pool went past MaxConns: peak open %d, dialed %d", st.PeakOpen, st.Dialed)
	}
	if during.Channels < 200 {
		t.Errorf("only %d operations in flight during the checks; want 200", during.Channels)
	}
	if slowest > 2*time.Second {
		t.Errorf("a health check took %s with 200 operations in flight; want ≤ 2s", slowest)
	}
}

// TestIntegrationSSHDRestartUnderWarmPool kills every sshd process of a host
// (the listener and each connection's process) and starts sshd again.
func TestIntegrationSSHDRestartUnderWarmPool(t *testing.T) {
	tb := testbed.Load(t)
	host := tb.Host(t, len(tb.Hosts)-1) // the last host: least likely to be busy with other tests
	t.Cleanup(func() { testbed.Exec(t, host, "tb-sshd", "start") })
	cfg := tbConfig(t, tb, host)
	cfg.ChannelsPerConn = 1 // so that warmPool opens as many clients as it holds operations
	p := sshpool.New(cfg)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	warmPool(t, ctx, p, 5)

	t.Run("listener only", func(t *testing.T) {
		// Like `systemctl restart ssh`: open connections survive.
		before := p.Stats()
		testbed.Exec(t, host, "tb-sshd", "stop-listener")
		testbed.Exec(t, host, "tb-sshd", "start")
		if err := p.Do(ctx, dockerPing); err != nil {
			t.Fatalf("Do after restarting the listener: %v", err)
		}
		if st := p.Stats(); st.Discarded != before.Discarded {
			t.Errorf("connections were discarded though they survived: %+v", st)
		}
	})

	t.Run("all sshd killed, idle pool", func(t *testing.T) {
		before := p.Stats()
		testbed.Exec(t, host, "tb-sshd", "stop") // kills every sshd process
		testbed.Exec(t, host, "tb-sshd", "start")
		var calls atomic.Int64
		err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
			calls.Add(1)
			return dockerPing(ctx, c)
		})
		st := p.Stats()
		t.Logf("fn calls %d; pool before %+v after %+v", calls.Load(), before, st)
		if err != nil {
			t.Fatalf("Do after killing sshd: %v", err)
		}
		if calls.Load() > 2 {
			t.Fatalf("fn ran %d times", calls.Load())
		}
		if st.Discarded == before.Discarded {
			t.Errorf("no dead connection discarded")
		}
	})

	t.Run("all sshd killed during the operation", func(t *testing.T) {
		warmPool(t, ctx, p, 1)
		before := p.Stats()
		var calls atomic.Int64
		err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
			if calls.Add(1) == 1 {
				testbed.Exec(t, host, "tb-sshd", "stop")
				testbed.Exec(t, host, "tb-sshd", "start")
			}
			return dockerPing(ctx, c)
		})
		st := p.Stats()
		t.Logf("fn calls %d; pool before %+v after %+v", calls.Load(), before, st)
		if err != nil {
			t.Fatalf("Do with sshd killed under it: %v", err)
		}
		if calls.Load() != 2 || st.Retried != before.Retried+1 {
			t.Fatalf("fn ran %d times, %d retries; want exactly one retry", calls.Load(), st.Retried-before.Retried)
		}
	})
}

// A socket sshd cannot connect to (as when dockerd is down) is an
// operation's failure, not the connection's: no retry, nothing discarded.
func TestIntegrationRefusedChannelKeepsConnection(t *testing.T) {
	tb := testbed.Load(t)
	p := sshpool.New(tbConfig(t, tb, tb.Host(t, 0)))
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var calls atomic.Int64
	err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		calls.Add(1)
		return docker.New(docker.SSHDialer(c, "/run/rdtest-no-such.sock")).Ping(ctx)
	})
	var openErr *ssh.OpenChannelError
	if !errors.As(err, &openErr) {
		t.Fatalf("Do = %v; want an ssh.OpenChannelError", err)
	}
	t.Logf("error: %v", err)
	if st := p.Stats(); calls.Load() != 1 || st.Discarded != 0 || st.Retried != 0 || st.Idle != 1 {
		t.Fatalf("fn ran %d times; pool %+v; want one call and the connection kept", calls.Load(), st)
	}
	if err := p.Do(ctx, dockerPing); err != nil {
		t.Fatalf("Do(ping) on the kept connection: %v", err)
	}
}

// warmPool runs n operations at once, so that a pool with ChannelsPerConn 1
// opens n clients.
func warmPool(t testing.TB, ctx context.Context, p *sshpool.Pool, n int) {
	t.Helper()
	var running sync.WaitGroup
	running.Add(n)
	errs := make(chan error, n)
	for range n {
		go func() {
			errs <- p.Do(ctx, func(context.Context, *ssh.Client) error {
				running.Done()
				running.Wait()
				return nil
			})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("warm pool: %v", err)
		}
	}
	for p.Stats().Dialing > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond) // some were dialed in the background
	}
}

func TestIntegrationHostKeys(t *testing.T) {
	tb := testbed.Load(t)
	host := tb.Host(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	try := func(t *testing.T, knownHosts string) error {
		path := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(path, []byte(knownHosts), 0o600); err != nil {
			t.Fatal(err)
		}
		hk, err := sshpool.KnownHosts(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := tbConfig(t, tb, host)
		cfg.HostKeys = hk
		p := sshpool.New(cfg)
		defer p.Close()
		return p.Do(ctx, dockerPing)
	}

	t.Run("known", func(t *testing.T) {
		data, err := os.ReadFile(tb.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		if err := try(t, string(data)); err != nil {
			t.Fatalf("with the test bed's known_hosts: %v", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		err := try(t, "")
		t.Logf("error: %v", err)
		if !errors.Is(err, sshpool.ErrHostKeyUnknown) {
			t.Fatalf("empty known_hosts: %v; want ErrHostKeyUnknown", err)
		}
	})
	t.Run("changed", func(t *testing.T) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		other, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		err = try(t, fmt.Sprintf("%s %s", host.IP, ssh.MarshalAuthorizedKey(other)))
		t.Logf("error: %v", err)
		if !errors.Is(err, sshpool.ErrHostKeyChanged) {
			t.Fatalf("known_hosts with another key: %v; want ErrHostKeyChanged", err)
		}
	})
}

func TestIntegrationDefaultAuthKeyFile(t *testing.T) {
	tb := testbed.Load(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	key, err := os.ReadFile(tb.SSHKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	auth, closer, err := sshpool.DefaultAuth("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	cfg := tbConfig(t, tb, tb.Host(t, 0))
	cfg.Auth = auth
	p := sshpool.New(cfg)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Do(ctx, dockerPing); err != nil {
		t.Fatalf("Do with ~/.ssh/id_ed25519: %v", err)
	}
}
