package faults

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

func hostIPs(s *system) []string {
	var ips []string
	for _, h := range s.Bed.Hosts {
		ips = append(ips, h.IP)
	}
	return ips
}

// allContainers lists this instance's containers on every host, sorted.
func (s *system) allContainers() []string {
	s.t.Helper()
	var ids []string
	for _, h := range s.Bed.Hosts {
		for id := range s.ContainerSessions(h) {
			ids = append(ids, h.IP+"/"+id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Caddy killed with SIGKILL while each host keeps 2 warm desktops and one
// player has claimed one: after the restart the same containers are
// adopted (no new warm start, no duplicate, no orphan), the pools are full
// again, and a warm container that no record names (as if Caddy died
// between making it and recording it) is removed.
func TestWarmSIGKILLAdopts(t *testing.T) {
	s := prepareSystem(t, sysConfig{policy: "keep", dataDir: t.TempDir()})
	cf := strings.ReplaceAll(s.caddyfile(), "\t\t\tdocker_image "+s.cfg.image+"\n", "\t\t\tdocker_image "+s.cfg.image+"\n\t\t\twarm 2\n")
	s.Start(cf, s.cfg.dataDir)
	s.WaitHostsHealthy(90 * time.Second) // the isolation proof takes up to ~50 s on a loaded bed
	s.WaitWarm(hostIPs(s), 2, 2, 0, 90*time.Second)

	u := s.NewUser()
	s.Create(u)
	if st := s.Status(u); st["state"] != "ready" {
		t.Fatalf("a create with warm desktops ready: %v", st)
	}
	s.WaitWarm(hostIPs(s), 2, 2, 0, 60*time.Second)
	before := s.allContainers()
	if len(before) != 7 {
		t.Fatalf("%d containers, want 6 warm + 1 session: %v", len(before), before)
	}
	session := s.Snap(u, 10*time.Second)

	s.Caddy.Kill()
	h1 := s.Bed.Hosts[0]
	stray := "h13warm-stray-" + s.Instance
	testbed.Exec(t, h1, "docker", "run", "-d", "--name", stray,
		"--label", "io.ctf-remote-desktop.managed=true", "--label", e2e.LabelInstance+"="+s.Instance,
		"--label", "io.ctf-remote-desktop.warm=true", "--label", e2e.LabelSession+"=stray", s.cfg.image)
	t.Cleanup(func() { _, _ = testbed.TryExec(h1, "docker", "rm", "-f", stray) })
	mark := time.Now()
	s.Caddy.Restart()
	s.WaitHostsHealthy(90 * time.Second) // the isolation proof takes up to ~50 s on a loaded bed
	s.WaitWarm(hostIPs(s), 2, 2, 0, 60*time.Second)
	t.Logf("warm pools full again %v after the restart", time.Since(mark).Round(time.Millisecond))
	if got := s.Snap(u, 10*time.Second); got != session {
		t.Errorf("session after the restart: %+v, before: %+v", got, session)
	}
	if a := s.desktop(u); a.Code != http.StatusOK {
		t.Errorf("desktop unreachable after the restart: %d %v", a.Code, a.Err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if out, _ := testbed.TryExec(h1, "docker", "ps", "-aq", "--filter", "name="+stray); strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unrecorded warm container was kept")
		}
	}
	time.Sleep(orphanGrace + 2*reaperInterval) // past the grace, several reaper passes
	if after := s.allContainers(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("containers after the restart:\n%v\nbefore:\n%v", after, before)
	}
	// The unrecorded container goes by the pool's listing (warm_removed) or,
	// if a reaper pass on the host came first, as an orphan: nothing else.
	strayGone := len(s.EventsSince(0, "warm_removed", ""))
	for _, e := range s.EventsSince(0, "orphan_removed", "") {
		if !strings.Contains(e.Message, stray) {
			t.Errorf("an adopted container was removed as an orphan: %+v", e)
		}
		strayGone++
	}
	if strayGone != 1 {
		t.Errorf("%d warm_removed and orphan_removed events, want 1 (the unrecorded container)", strayGone)
	}
}
