package faults

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// A host that freezes right after one of its SSH connections was used: the
// pool hands that connection out again without a keepalive check (it was
// used less than sshpool's ProbeAfter, 1 s, ago), so the next operation
// meets a transport that never answers. A player's destroy must still
// answer within apiBound, and a creation placed there must move on to
// another host.
func TestFrozenHostRightAfterUse(t *testing.T) {
	s := newSystem(t, sysConfig{})
	h := s.Bed.Host(t, 0)
	t.Cleanup(func() { restoreHost(t, s.Bed, h) })
	s.WaitEachHealthy(30 * time.Second)
	// Checks run at once use (and put back) every idle connection of the
	// host's pool, so that whichever the next operation gets is fresh.
	useThenFreeze := func() {
		t.Helper()
		answers := make(chan e2e.Answer, 4)
		for range cap(answers) {
			go func() {
				answers <- s.Try(e2e.AdminUserID, http.MethodPost, "/remote-desktop/admin/api/hosts/check", fmt.Sprintf(`{"host":%q}`, h.IP))
			}()
		}
		for range cap(answers) {
			if a := <-answers; a.Err != nil || a.Code != http.StatusOK {
				t.Fatalf("check %s: %d %v %v", h.IP, a.Code, a.Err, a.Body)
			}
		}
		pause(t, h)
	}

	// Destroy.
	alice := s.NewUser()
	if sess := s.CreateReady(alice, 60*time.Second); sess["host"] != h.IP {
		t.Fatalf("the first session went to %v, not %s (ties go to the first host)", sess["host"], h.IP)
	}
	useThenFreeze()
	a := s.TryWithin(apiBound+time.Second, alice, http.MethodPost, "/remote-desktop/api/destroy", "{}", nil)
	measured(t, "frozen right after use: destroy answered %d in %v (err %v)", a.Code, a.Took.Round(time.Millisecond), a.Err)
	if a.Err != nil || a.Took >= apiBound || a.Code != http.StatusOK {
		t.Errorf("a player's destroy on a host frozen right after use: %d after %v (%v), want 200 within %v", a.Code, a.Took.Round(time.Millisecond), a.Err, apiBound)
	}
	restoreHost(t, s.Bed, h)
	s.WaitHealth(h.IP, "healthy", 30*time.Second)

	// Create.
	bob := s.NewUser()
	useThenFreeze()
	mark := s.LastEventID()
	start := time.Now()
	s.Create(bob)
	// The creation's operation meets the frozen connection: the pool's
	// watchdog sends a keepalive after KeepaliveTimeout and gives up on it
	// after another (sshpool.Pool.Do), then the creation moves to another
	// host. Give it that, a dial timeout (the probe may dial too) and a
	// few seconds for the new container; it was 63-66 s before the fix.
	want := 2*keepaliveTimeout + dialTimeout + 5*time.Second
	sess, ok := s.TryWaitReady(bob, want)
	took := time.Since(start)
	switch {
	case ok && sess["host"] == h.IP:
		t.Errorf("the session was made ready on the frozen host %s", h.IP)
	case ok:
		measured(t, "frozen right after use: a creation placed there was ready on %v after %v", sess["host"], took.Round(time.Millisecond))
	case sess != nil && sess["state"] == "starting" && sess["host"] == h.IP:
		// Measured: ready elsewhere after 63-66 s, when the attempt's
		// runTimeout (60 s, module/session/create.go) ends it. The host is
		// thawed now instead, to keep this test short.
		knownBug(t, "B1", "a creation placed on a host frozen right after use is still starting there after %v (want ready elsewhere within %v)", took.Round(time.Millisecond), want)
	default:
		t.Errorf("a creation placed on a host frozen right after use: %v after %v:\n%s", sess, took.Round(time.Millisecond), s.Story(mark))
	}
	// The probe loop met a fresh connection too: its check is bounded only
	// by dial_timeout + 20 s.
	if st := s.Hosts()[h.IP]; st.Health == "healthy" {
		knownBug(t, "B1", "host %s still in rotation %v after it froze (want out within %v)", h.IP, time.Since(start).Round(time.Millisecond),
			probeInterval+keepaliveTimeout+dialTimeout+2*time.Second)
	}
	restoreHost(t, s.Bed, h)
	// Once the host thaws, whatever was stuck finishes; nothing is left over.
	s.WaitHealth(h.IP, "healthy", 30*time.Second)
	s.WaitReady(bob, 30*time.Second)
	s.WaitNoOrphans(h, orphanGrace+3*reaperInterval+10*time.Second)
	t.Logf("event log:\n%s", s.Story(0))
}
