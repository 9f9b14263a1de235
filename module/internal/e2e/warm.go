package e2e

import (
	"strings"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// LabelWarm marks a warm desktop's container (a claimed one keeps it).
const LabelWarm = "io.ctf-remote-desktop.warm"

// WarmPool is one host's warm pool as the admin hosts API shows it.
type WarmPool struct {
	Host     string `json:"host"`
	Target   int    `json:"target"`
	Ready    int    `json:"ready"`
	Starting int    `json:"starting"`
	Refills  int64  `json:"refills"`
}

// Is reports whether the pool has these target, ready and starting figures.
func (w WarmPool) Is(target, ready, starting int) bool {
	return w.Target == target && w.Ready == ready && w.Starting == starting
}

// WarmPools reads every host's warm pool, by host.
func (s *System) WarmPools() map[string]WarmPool {
	s.t.Helper()
	m := map[string]WarmPool{}
	for _, w := range s.readHosts().Warm {
		m[w.Host] = w
	}
	return m
}

// WaitWarm waits until every one of hosts has the pool figures given.
func (s *System) WaitWarm(hosts []string, target, ready, starting int, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		pools, ok := s.WarmPools(), true
		for _, h := range hosts {
			ok = ok && pools[h].Is(target, ready, starting)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("warm pools %+v after %v, want target %d, ready %d, starting %d on %v\n%s",
				pools, within, target, ready, starting, hosts, Tail(s.Caddy.Logs(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WarmContainers lists this instance's warm-labelled containers on h
// (claimed ones included): full ID → image.
func (s *System) WarmContainers(h testbed.Host) map[string]string {
	s.t.Helper()
	out := testbed.Exec(s.t, h, "docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}}",
		"--filter", "label="+LabelInstance+"="+s.Instance, "--filter", "label="+LabelWarm+"=true")
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}
