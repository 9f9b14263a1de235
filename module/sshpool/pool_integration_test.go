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
			`for i in $(seq 250); do ss -Htn state established '( sport = :22 )'; echo --; sleep 0.01; done`)
		samples <- out
	}()
	time.Sleep(300 * time.Millisecond) // let the sampler start

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var failures atomic.Int64
	var firstErr atomic.Value
	var maxStats sshpool.Stats
	var statsMu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
				st := p.Stats()
				statsMu.Lock()
				maxStats.Open = max(maxStats.Open, st.Open+st.Dialing)
				maxStats.InUse = max(maxStats.InUse, st.InUse)
				statsMu.Unlock()
				if err := dockerPing(ctx, c); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond) // hold the connection: make the load overlap
				return nil
			})
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of 200 Do(ping) failed; first: %v", n, firstErr.Load())
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
	t.Logf("200 Do(ping + 50ms hold) in %s; host-side samples %d: max %d of ours established (max %d from anyone); pool: max open %d, max in use %d; final %+v",
		elapsed.Round(time.Millisecond), nSamples, maxOurs, maxAll, maxStats.Open, maxStats.InUse, st)
	if maxOurs > cfg.MaxConns {
		t.Errorf("host saw %d of our connections at once; MaxConns is %d", maxOurs, cfg.MaxConns)
	}
	if maxOurs < 2 {
		t.Errorf("host saw at most %d of our connections: sampling missed the load", maxOurs)
	}
	if maxStats.Open > cfg.MaxConns || maxStats.InUse > cfg.MaxConns || st.Dialed > int64(cfg.MaxConns) {
		t.Errorf("pool went past MaxConns: max open %d, max in use %d, dialed %d", maxStats.Open, maxStats.InUse, st.Dialed)
	}
}

// TestIntegrationSSHDRestartUnderWarmPool kills every sshd process of a host
// (the listener and each connection's process) and starts sshd again.
func TestIntegrationSSHDRestartUnderWarmPool(t *testing.T) {
	tb := testbed.Load(t)
	host := tb.Host(t, len(tb.Hosts)-1) // the last host: least likely to be busy with other tests
	t.Cleanup(func() { testbed.Exec(t, host, "tb-sshd", "start") })
	p := sshpool.New(tbConfig(t, tb, host))
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

func warmPool(t testing.TB, ctx context.Context, p *sshpool.Pool, n int) {
	t.Helper()
	conns := make([]*sshpool.Conn, 0, n)
	for range n {
		c, err := p.Get(ctx)
		if err != nil {
			t.Fatalf("warm pool: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		p.Put(c, false)
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
