package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// stallAt is what counts as a stall: the Nagle/delayed-ACK stall is ~40 ms,
// a pooled operation ~1 ms.
const stallAt = 30 * time.Millisecond

// sshPool returns a pool to host 0 of the bed; tweak adjusts its config.
func (r *rig) sshPool(t *testing.T, tweak func(*sshpool.Config)) (*sshpool.Pool, testbed.Host) {
	host := r.tb.Host(t, 0)
	if err := checkAllowedAddr(host.Addr()); err != nil {
		t.Fatal(err)
	}
	hk, err := sshpool.KnownHosts(r.tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sshpool.Config{Addr: host.Addr(), User: host.User, Auth: r.tb.Auth(t), HostKeys: hk}
	if tweak != nil {
		tweak(&cfg)
	}
	p := sshpool.New(cfg)
	t.Cleanup(func() { _ = p.Close() })
	return p, host
}

// pingOnce is one Docker operation as the Engine runs it: one request, one
// channel, at the API version negotiated before.
func pingOnce(version string) func(context.Context, *ssh.Client) error {
	return func(ctx context.Context, c *ssh.Client) error {
		return docker.New(docker.SSHDialer(c, "")).WithVersion(version).Ping(ctx)
	}
}

// negotiate returns the host's API version through p.
func negotiate(ctx context.Context, t *testing.T, p *sshpool.Pool) string {
	var v string
	err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		n, err := docker.New(docker.SSHDialer(c, "")).Negotiate(ctx)
		v = n.Version
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// benchSSHBackToBack: 2,000 back-to-back pooled GET /_ping with the pool's
// quick ACKs, against 2,000 over a pool with them turned off
// (Config.DisableQuickAck: the pool before the fix), interleaved in blocks
// of 50. Figure: the share of operations that took ≥ 30 ms.
func (r *rig) benchSSHBackToBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	quick, _ := r.sshPool(t, nil)
	plain, _ := r.sshPool(t, func(c *sshpool.Config) { c.DisableQuickAck = true })
	version := negotiate(ctx, t, quick)
	negotiate(ctx, t, plain)
	op := pingOnce(version)
	n := 2000
	if s := os.Getenv("RD_BENCH_SSH_OPS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var q, b []time.Duration
	for len(q) < n {
		for _, side := range []struct {
			p   *sshpool.Pool
			out *[]time.Duration
		}{{quick, &q}, {plain, &b}} {
			for range 50 {
				t0 := time.Now()
				if err := side.p.Do(ctx, op); err != nil {
					t.Fatal(err)
				}
				*side.out = append(*side.out, time.Since(t0))
			}
		}
	}
	// The same with no HTTP exchange: a channel to the Docker socket opened
	// and closed (sshd alone; dockerd's CPU time out of the picture).
	bare := func(ctx context.Context, c *ssh.Client) error {
		ch, err := c.DialContext(ctx, "unix", docker.DefaultSocket)
		if err != nil {
			return err
		}
		return ch.Close()
	}
	var bq, bb []time.Duration
	for len(bq) < n/4 {
		for _, side := range []struct {
			p   *sshpool.Pool
			out *[]time.Duration
		}{{quick, &bq}, {plain, &bb}} {
			for range 50 {
				t0 := time.Now()
				if err := side.p.Do(ctx, bare); err != nil {
					t.Fatal(err)
				}
				*side.out = append(*side.out, time.Since(t0))
			}
		}
	}
	share := func(v []time.Duration) float64 {
		k := 0
		for _, d := range v {
			if d >= stallAt {
				k++
			}
		}
		return 100 * float64(k) / float64(len(v))
	}
	// The delayed-ACK timer's signature: stalls of 40 ms plus the operation.
	band := func(v []time.Duration) int {
		k := 0
		for _, d := range v {
			if d >= 38*time.Millisecond && d < 50*time.Millisecond {
				k++
			}
		}
		return k
	}
	qs, bs := Sorted(q), Sorted(b)
	verdict := "met"
	if share(q) > 1 {
		verdict = "**MISSED**"
	}
	r.add(secSSH, Row{
		Figure:  fmt.Sprintf("SSH: back-to-back pooled operations that took ≥ 30 ms (Docker /_ping, one channel each, n=%d): quick ACK vs without (same run)", len(q)),
		Ratio:   fmt.Sprintf("%.1f%% vs %.1f%%", share(q), share(b)),
		Target:  "≤ 1%",
		Verdict: verdict,
		Context: fmt.Sprintf("with quick ACK P50 %s, P99 %s, max %s, %d in 38–50 ms; without P50 %s, P99 %s, max %s, %d in 38–50 ms; P99 without ÷ with %s; "+
			"a bare channel open + close (n=%d each, no HTTP): ≥ 30 ms %.1f%% vs %.1f%%, P99 %s vs %s",
			Ms(Percentile(qs, 50)), Ms(Percentile(qs, 99)), Ms(qs[len(qs)-1]), band(q), Ms(Percentile(bs, 50)), Ms(Percentile(bs, 99)), Ms(bs[len(bs)-1]), band(b),
			X(Div(Percentile(bs, 99), Percentile(qs, 99))),
			len(bq), share(bq), share(bb), Ms(Percentile(Sorted(bq), 99)), Ms(Percentile(Sorted(bb), 99))),
	})
	t.Logf("ssh back to back: quick %.1f%% ≥30ms (P50 %v P99 %v); plain %.1f%% (P50 %v P99 %v); bare channel quick %.1f%% plain %.1f%%",
		share(q), Percentile(qs, 50), Percentile(qs, 99), share(b), Percentile(bs, 50), Percentile(bs, 99), share(bq), share(bb))
}

// benchSSHBurst: 200 operations at once on one host (each a GET /_ping,
// then 500 ms more in flight, as a container start keeps its channel),
// over pools with different ChannelsPerConn. Figure: the most TCP
// connections open at once, from the pool's own accounting and counted
// inside the host (`ss`, our local ports only), against max_connections.
func (r *rig) benchSSHBurst(t *testing.T) {
	const ops = 200
	var rows []string
	worst, worstHost, maxConns := 0, 0, sshpool.DefaultMaxConns
	for _, perConn := range []int{sshpool.DefaultChannelsPerConn, 1, 32} {
		ours := map[int]bool{}
		var mu sync.Mutex
		p, host := r.sshPool(t, func(c *sshpool.Config) {
			c.ChannelsPerConn = perConn
			c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				conn, err := d.DialContext(ctx, network, addr)
				if err == nil {
					mu.Lock()
					ours[conn.LocalAddr().(*net.TCPAddr).Port] = true
					mu.Unlock()
				}
				return conn, err
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		version := negotiate(ctx, t, p)
		op := pingOnce(version)

		stop := make(chan struct{})
		hostMax := make(chan [2]int, 1)
		go func() { // host-side sampler: a read-only `ss` inside the host
			most, samples := 0, 0
			for {
				out, err := testbed.TryExec(host, "ss", "-Htn", "state", "established", "( sport = :22 )")
				if err == nil {
					mu.Lock()
					n := 0
					for _, line := range strings.Split(out, "\n") {
						f := strings.Fields(line)
						if len(f) < 4 {
							continue
						}
						peer := f[len(f)-1]
						if i := strings.LastIndex(peer, ":"); i >= 0 {
							if port, err := strconv.Atoi(peer[i+1:]); err == nil && ours[port] {
								n++
							}
						}
					}
					mu.Unlock()
					most = max(most, n)
					samples++
				}
				select {
				case <-stop:
					hostMax <- [2]int{most, samples}
					return
				default:
				}
			}
		}()
		lat := make([]time.Duration, ops)
		errs := make(chan error, ops)
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				errs <- p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
					if err := op(ctx, c); err != nil {
						return err
					}
					lat[i] = time.Since(start)
					time.Sleep(500 * time.Millisecond)
					return nil
				})
			}()
		}
		wg.Wait()
		wall := time.Since(t0)
		time.Sleep(300 * time.Millisecond) // a last host sample or two
		close(stop)
		hm := <-hostMax
		cancel()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("ChannelsPerConn %d: %v", perConn, err)
			}
		}
		st := p.Stats()
		s := Sorted(lat)
		worst, worstHost = max(worst, st.PeakOpen), max(worstHost, hm[0])
		rows = append(rows, fmt.Sprintf("ChannelsPerConn %d: all done in %s, request P50 %s P99 %s (queueing included), pool peak %d open/dialing, %d dialed, host saw %d of ours (%d samples)",
			perConn, Ms(wall), Ms(Percentile(s, 50)), Ms(Percentile(s, 99)), st.PeakOpen, st.Dialed, hm[0], hm[1]))
		t.Logf("ssh burst: %s", rows[len(rows)-1])
		_ = p.Close()
	}
	verdict := "met"
	if worst > maxConns || worstHost > maxConns {
		verdict = "**MISSED**"
	}
	r.add(secSSH, Row{
		Figure:  "SSH: 200 concurrent operations on one host: most TCP connections open at once (pool's accounting / counted inside the host)",
		Ratio:   fmt.Sprintf("%d / %d of max_connections %d", worst, worstHost, maxConns),
		Target:  fmt.Sprintf("≤ %d", maxConns),
		Verdict: verdict,
		Context: strings.Join(rows, "; "),
	})
}
