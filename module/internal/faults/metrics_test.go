package faults

import (
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// The host health gauges follow a host whose sshd is stopped and started
// again: remote_desktop_host_healthy{host} goes 1 → 0 → 1, the unhealthy
// health series and the dial failures show it, and the other hosts stay
// healthy. The outage lasts only until the gauge flips (a few seconds:
// probe_interval 2s), since other tests share the test bed.
func TestHostHealthGaugesFollowSSHD(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.WaitEachHealthy(30 * time.Second)
	h := s.Bed.Hosts[2]
	healthy := func(m *e2e.Metrics, host string) float64 {
		v, ok := m.Value("remote_desktop_host_healthy", map[string]string{"host": host})
		if !ok {
			t.Fatalf("no remote_desktop_host_healthy{host=%q} in the scrape", host)
		}
		return v
	}
	waitGauge := func(want float64, within time.Duration) (*e2e.Metrics, time.Duration) {
		start := time.Now()
		for {
			m := e2e.Scrape(t, s.Caddy.AdminAddr)
			if healthy(m, h.IP) == want {
				return m, time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("host_healthy{host=%s} is not %v after %v\n%s", h.IP, want, within, e2e.Tail(s.Caddy.Logs(), 20))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	m0, _ := waitGauge(1, 10*time.Second)
	fails0, _ := m0.Value("remote_desktop_ssh_dial_failures_total", map[string]string{"host": h.IP})

	t.Cleanup(func() { restoreHost(t, s.Bed, h) }) // whatever happens below
	testbed.Exec(t, h, "pkill", "sshd")
	m1, down := waitGauge(0, 30*time.Second)
	testbed.Exec(t, h, "tb-sshd", "start") // at once: the outage is over
	measured(t, "host_healthy flipped to 0 %v after sshd was stopped", down.Round(100*time.Millisecond))
	if v, _ := m1.Value("remote_desktop_host_health", map[string]string{"host": h.IP, "health": "unhealthy"}); v != 1 {
		t.Errorf("host_health{health=unhealthy} = %v, want 1", v)
	}
	if fails, _ := m1.Value("remote_desktop_ssh_dial_failures_total", map[string]string{"host": h.IP}); fails <= fails0 {
		t.Errorf("ssh_dial_failures_total{host=%s} did not grow: %v → %v", h.IP, fails0, fails)
	}
	for _, other := range s.Bed.Hosts[:2] {
		if v := healthy(m1, other.IP); v != 1 {
			t.Errorf("host_healthy{host=%s} = %v while only %s was down", other.IP, v, h.IP)
		}
	}
	_, up := waitGauge(1, 30*time.Second)
	measured(t, "host_healthy back to 1 %v after sshd was started", up.Round(100*time.Millisecond))
}
