package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// faultsImage is a tag of the tiny image that only this package uses, so
// that removing it from a host (the "image missing" fault) disturbs no other
// test.
const faultsImage = "rd-faults:latest"

// Caddy starts with each host broken a different way (issue 3): no sshd on
// host 1, no dockerd on host 2, no image on host 3. Each is excluded with
// the failing check named; each comes back on its own once repaired,
// without a restart, and then takes a session.
func TestStartupExcludesBrokenHosts(t *testing.T) {
	s := prepareSystem(t, sysConfig{image: faultsImage})
	tb := s.Bed
	h1, h2, h3 := tb.Host(t, 0), tb.Host(t, 1), tb.Host(t, 2)
	t.Cleanup(func() {
		for _, h := range tb.Hosts {
			_, _ = testbed.TryExec(h, "docker", "image", "rm", faultsImage) // only the tag: rd-tiny stays
		}
	})
	for _, h := range tb.Hosts {
		testbed.Exec(t, h, "docker", "tag", tb.TinyImage, faultsImage)
	}
	restored := false
	restoreAll := func() {
		if restored {
			return
		}
		for _, h := range tb.Hosts {
			repairHost(t, tb, h)
			_, _ = testbed.TryExec(h, "docker", "tag", tb.TinyImage, faultsImage)
		}
		waitTestbedHealthy(t)
		restored = true
	}
	t.Cleanup(restoreAll)

	// Break the three hosts while Caddy is not running.
	testbed.Exec(t, h1, "tb-sshd", "stop")
	testbed.Exec(t, h2, "tb-dockerd", "stop")
	testbed.Exec(t, h3, "docker", "image", "rm", faultsImage)

	start := time.Now()
	s.Caddy = e2e.StartCaddy(t, e2e.CaddyOptions{Caddyfile: s.caddyfile()})
	s.CleanupOnEnd()
	t.Cleanup(restoreAll) // before Caddy is stopped

	// Each host is out with the right check failing, and says so in the
	// event log.
	want := map[string]string{h1.IP: "ssh", h2.IP: "docker", h3.IP: "image"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := s.Hosts()
		done := true
		for ip := range want {
			done = done && all[ip].Health == "unhealthy"
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts not all excluded 30 s after start: %+v", all)
		}
		time.Sleep(100 * time.Millisecond)
	}
	measured(t, "startup: all three broken hosts excluded %v after Caddy was started", time.Since(start).Round(time.Millisecond))
	all := s.Hosts()
	for ip, failing := range want {
		h := all[ip]
		// Checks run in order (ssh, docker, image); those after the first
		// failure are "not reached".
		firstFailed := ""
		for _, c := range h.Checks {
			if !c.OK && firstFailed == "" {
				firstFailed = c.Name
			}
		}
		if firstFailed != failing {
			t.Errorf("host %s: first failing check %q, want %q: %+v", ip, firstFailed, failing, h.Checks)
		}
		if !strings.Contains(h.Reason, failing+" check failed") {
			t.Errorf("host %s: reason %q does not name the %s check", ip, h.Reason, failing)
		}
		t.Logf("host %s excluded: %s", ip, h.Reason)
	}
	for ip, failing := range want {
		found := false
		for _, e := range s.EventsSince(0, "host_check", ip) {
			found = found || (e.Level == "error" && strings.Contains(e.Message, failing+" check failed"))
		}
		if !found {
			t.Errorf("no host_check event for %s naming the %s check:\n%s", ip, failing, s.Story(0))
		}
		if len(s.EventsSince(0, "host_unhealthy", ip)) == 0 {
			t.Errorf("no host_unhealthy event for %s", ip)
		}
	}
	for ip, word := range map[string]string{h1.IP: "ssh:", h3.IP: faultsImage} {
		if !strings.Contains(all[ip].Reason, word) {
			t.Errorf("host %s: reason %q does not say %q", ip, all[ip].Reason, word)
		}
	}

	// No host: a create fails cleanly rather than hanging.
	nobody := s.NewUser()
	if a := s.bounded("create with no healthy host", nobody, "POST", "/remote-desktop/api/create", "{}"); a.Code != 202 {
		t.Errorf("create with no healthy host: %d %v", a.Code, a.Body)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		sess := s.Status(nobody)
		if sess != nil && sess["state"] == "failed" {
			if !strings.Contains(fmt.Sprint(sess["error"]), "no healthy workspace host") {
				t.Errorf("failed creation says %q", sess["error"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a create with no healthy host is still %v after 10 s", sess)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Repair the hosts one by one: each returns on its own, and (being the
	// least loaded) takes the next session.
	repairs := []struct {
		host testbed.Host
		fix  []string
	}{
		{h1, []string{"tb-sshd", "start"}},
		{h2, []string{"tb-dockerd", "start"}},
		{h3, []string{"docker", "tag", tb.TinyImage, faultsImage}},
	}
	for _, r := range repairs {
		mark := s.LastEventID()
		testbed.Exec(t, r.host, r.fix...)
		fixed := time.Now()
		ev := s.WaitEvent(mark, "host_recovered", r.host.IP, 30*time.Second)
		measured(t, "startup: %s (%s) back in rotation %v after the repair", r.host.IP, want[r.host.IP], ev.Time.Sub(fixed).Round(time.Millisecond))
		if h := s.Hosts()[r.host.IP]; h.Health != "healthy" {
			t.Fatalf("host %s after host_recovered: %+v", r.host.IP, h)
		}
		u := s.NewUser()
		sess := s.CreateReady(u, 60*time.Second)
		if sess["host"] != r.host.IP {
			t.Errorf("the session after repairing %s went to %v", r.host.IP, sess["host"])
		}
		if a := s.desktop(u); a.Code != 200 {
			t.Errorf("desktop of %d on %s: %d", u, r.host.IP, a.Code)
		}
	}
	t.Logf("event log:\n%s", s.Story(0))
}
