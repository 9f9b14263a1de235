package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// benchSSH is figure 6: one Docker operation (GET /_ping through the
// forwarded socket) over the module's pool against the same over a
// connection dialed for it (what BenchmarkPooledPing and
// BenchmarkFreshConnPing in module/sshpool measure), measured here in
// the same run and interleaved. Pooled operations are timed both back to
// back and after an idle pause longer than the pool's ProbeAfter (1s), when
// a checkout first proves the connection alive with a keepalive.
func (r *rig) benchSSH(t *testing.T) {
	host := r.tb.Host(t, 0)
	hk, err := sshpool.KnownHosts(r.tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	auth := r.tb.Auth(t)
	pool := sshpool.New(sshpool.Config{Addr: host.Addr(), User: host.User, Auth: auth, HostKeys: hk})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One request at the version negotiated once, as the Engine runs its
	// requests: a fresh docker.Client would negotiate first, and /version
	// costs dockerd tens of milliseconds under load (it asks containerd and
	// runc for theirs), which is not what this row compares.
	ping := pingOnce(negotiate(ctx, t, pool))
	pooled := func() (time.Duration, error) {
		t0 := time.Now()
		err := pool.Do(ctx, ping)
		if d := time.Since(t0); d > 5*time.Second {
			t.Logf("a pooled operation took %s (err %v); pool %+v", d, err, pool.Stats())
		}
		return time.Since(t0), err
	}
	cfg := &ssh.ClientConfig{User: host.User, Auth: auth, HostKeyCallback: hk.Callback(),
		HostKeyAlgorithms: hk.Algorithms(host.Addr()), Timeout: 10 * time.Second}
	fresh := func() (time.Duration, error) {
		t0 := time.Now()
		c, err := ssh.Dial("tcp", host.Addr(), cfg)
		if err != nil {
			return 0, err
		}
		err = ping(ctx, c)
		_ = c.Close()
		return time.Since(t0), err
	}
	if err := checkAllowedAddr(host.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := pooled(); err != nil { // warm: dial the pool's connection
		t.Fatal(err)
	}
	var hot, freshT []time.Duration
	// 20 blocks of 10 pooled + 2 fresh, interleaved: 200 and 40 samples.
	for range 20 {
		for range 10 {
			d, err := pooled()
			if err != nil {
				t.Fatal(err)
			}
			hot = append(hot, d)
		}
		for range 2 {
			d, err := fresh()
			if err != nil {
				t.Fatal(err)
			}
			freshT = append(freshT, d)
		}
	}
	// Idle checkouts: 6 samples, each after 1.2s without use.
	var idle []time.Duration
	for range 6 {
		time.Sleep(1200 * time.Millisecond)
		d, err := pooled()
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, d)
	}
	st := pool.Stats()
	slow := 0
	for _, d := range hot {
		if d >= 30*time.Millisecond {
			slow++
		}
	}
	hotM, idleM, freshM := Median(hot), Median(idle), Median(freshT)
	r.add(secSSH, Row{
		Figure: "SSH: fresh connection per operation ÷ pooled operation (Docker /_ping, P50)",
		Ratio:  X(Div(freshM, hotM)) + " (back to back); " + X(Div(freshM, idleM)) + " (pooled after >1s idle)",
		Context: fmt.Sprintf("P50 pooled %s (P95 %s, n=%d), pooled after idle %s (n=%d), fresh %s (P95 %s, n=%d); pool dialed %d connection(s); %d%% of back-to-back pooled operations took ≥ 30 ms",
			Ms(hotM), Ms(Percentile(Sorted(hot), 95)), len(hot), Ms(idleM), len(idle), Ms(freshM), Ms(Percentile(Sorted(freshT), 95)), len(freshT), st.Dialed, 100*slow/len(hot)),
	})
	t.Logf("ssh: hot %v idle %v fresh %v", hotM, idleM, freshM)
	r.benchSSHBackToBack(t)
	r.benchSSHBurst(t)
}
