package system

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

var dockerImageLine = regexp.MustCompile(`\t\t\tdocker_image \S+\n`)

// warmCaddyfile is the system's Caddyfile with the first host's image set
// and `warm n` on it (the other hosts keep no pool).
func (s *system) warmCaddyfile(n int, image string) string {
	first := true
	return dockerImageLine.ReplaceAllStringFunc(s.caddyfile(), func(line string) string {
		if !first {
			return line
		}
		first = false
		return fmt.Sprintf("\t\t\tdocker_image %s\n\t\t\twarm %d\n", image, n)
	})
}

func (s *system) hostReq(action, host string) {
	s.t.Helper()
	if code, out, _ := s.req(e2e.AdminUserID, http.MethodPost, "/remote-desktop/admin/api/hosts/"+action, `{"host":"`+host+`"}`, nil); code != http.StatusOK {
		s.t.Fatalf("%s %s: %d %v", action, host, code, out)
	}
}

// A host with warm 2: a create is ready at once on a warm desktop (the
// first status already ready, created→ready under 1 s server side), whose
// desktop answers through the proxy; the pool refills; the reaper (2 s
// interval, 5 s orphan grace) never takes a warm desktop; a new image
// replaces them; draining removes them; and shutdown removes them all.
func TestWarmPoolOnTheBed(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.WaitHostsHealthy(60 * time.Second)
	h1 := s.Bed.Hosts[0]
	if err := s.Caddy.Reload(s.warmCaddyfile(2, s.Bed.TinyImage)); err != nil {
		t.Fatal(err)
	}
	s.WaitWarm([]string{h1.IP}, 2, 2, 0, 60*time.Second)
	warm := s.WarmContainers(h1)
	if len(warm) != 2 {
		t.Fatalf("%d warm containers on %s, want 2", len(warm), h1.IP)
	}

	code, out, _ := s.req(alice, http.MethodPost, "/remote-desktop/api/create", "{}", nil)
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("create: %d %v", code, out)
	}
	sess := s.Status(alice)
	if sess == nil || sess["state"] != "ready" {
		t.Fatalf("first status after a warm create: %v", sess)
	}
	created, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(sess["created_at"]))
	ready, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(sess["ready_at"]))
	if d := ready.Sub(created); created.IsZero() || d < 0 || d >= time.Second {
		t.Fatalf("server-side create→ready %v (created %v, ready %v)", d, sess["created_at"], sess["ready_at"])
	} else {
		t.Logf("warm claim: server-side create→ready %v", d)
	}
	if sess["host"] != h1.IP {
		t.Fatalf("session on %v, want the host with the pool %s", sess["host"], h1.IP)
	}
	code, ws := s.dialWS(alice, fmt.Sprintf("/remote-desktop/vnc/%d/websockify", alice), s.Caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("desktop upgrade: %d", code)
	}
	if p, err := ws.ReadWithin(5 * time.Second); err != nil || !strings.HasPrefix(string(p), "RFB") {
		t.Fatalf("greeting %q %v", p, err)
	}
	ws.Close()

	s.WaitWarm([]string{h1.IP}, 2, 2, 0, 60*time.Second)
	if got := len(s.WarmContainers(h1)); got != 3 {
		t.Fatalf("%d warm-labelled containers on %s, want 3 (2 warm + the claimed one)", got, h1.IP)
	}

	// The reaper (every 2 s, orphan grace 5 s) leaves warm desktops and the
	// claimed one alone.
	before := s.WarmContainers(h1)
	time.Sleep(9 * time.Second)
	if after := s.WarmContainers(h1); len(after) != len(before) {
		t.Fatalf("warm containers changed under the reaper: %v → %v", before, after)
	}
	if n := len(s.EventsSince(0, "orphan_removed", "")); n != 0 {
		t.Fatalf("%d orphan_removed events", n)
	}
	if sess := s.Status(alice); sess["state"] != "ready" {
		t.Fatalf("alice's session after reaping: %v", sess)
	}

	// A new image replaces the warm desktops; alice's stays.
	if err := s.Caddy.Reload(s.warmCaddyfile(2, s.Bed.DesktopImage)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		imgs := s.WarmContainers(h1)
		n := 0
		for id, img := range imgs {
			if _, old := before[id]; !old && strings.HasPrefix(img, strings.Split(s.Bed.DesktopImage, ":")[0]) {
				n++
			}
		}
		if n == 2 && len(imgs) == 3 && s.WarmPools()[h1.IP].Is(2, 2, 0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm desktops not replaced: %v %+v\n%s", imgs, s.WarmPools()[h1.IP], e2e.Tail(s.Caddy.Logs(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(s.EventsSince(0, "warm_replaced", "")) == 0 {
		t.Fatal("no warm_replaced event")
	}
	if snap := s.Snap(alice, 10*time.Second); snap.Host != h1.IP {
		t.Fatalf("alice's session moved: %+v", snap)
	}

	// Draining removes them; the claimed one stays.
	s.hostReq("drain", h1.IP)
	s.WaitWarm([]string{h1.IP}, 0, 0, 0, 60*time.Second)
	got := s.WarmContainers(h1)
	for deadline := time.Now().Add(60 * time.Second); len(got) > 1 && time.Now().Before(deadline); got = s.WarmContainers(h1) {
		time.Sleep(200 * time.Millisecond)
	}
	for id := range got {
		if _, first := warm[id]; !first || len(got) != 1 {
			t.Fatalf("after drain: %v, want only alice's, one of %v", got, warm)
		}
	}
	if len(s.EventsSince(0, "warm_removed", "")) == 0 {
		t.Fatal("no warm_removed event")
	}

	// Shutdown (policy destroy) leaves nothing.
	if err := s.Caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := s.Containers(); n != 0 {
		t.Fatalf("%d containers left after shutdown", n)
	}
}

// Players create while Caddy reloads its config: each gets exactly one
// session, on a warm desktop or a cold one, and the pool's books stay
// right: every container is a session's or a warm desktop, none twice.
func TestWarmClaimDuringReload(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.WaitHostsHealthy(60 * time.Second)
	h1 := s.Bed.Hosts[0]
	if err := s.Caddy.Reload(s.warmCaddyfile(3, s.Bed.TinyImage)); err != nil {
		t.Fatal(err)
	}
	s.WaitWarm([]string{h1.IP}, 3, 3, 0, 60*time.Second)
	users := s.players(3)
	for _, u := range users {
		s.Cookie(u) // logged in before the rush: the cookie jar is not shared
	}
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, _ := s.req(u, http.MethodPost, "/remote-desktop/api/create", "{}", nil)
			if code != http.StatusAccepted && code != http.StatusOK {
				t.Errorf("create for %d: %d %v", u, code, out)
			}
		}()
	}
	for i := range 3 {
		s.cfg.extra = fmt.Sprintf("\t\tevent_log_size %d", 600+i) // a real change, so Caddy applies it
		if err := s.Caddy.Reload(s.warmCaddyfile(3, s.Bed.TinyImage)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	ids := map[string]bool{}
	for _, u := range users {
		sess := s.WaitReady(u, 90*time.Second)
		id := fmt.Sprint(sess["id"])
		if ids[id] {
			t.Fatalf("two users share session %s", id)
		}
		ids[id] = true
	}
	s.WaitWarm([]string{h1.IP}, 3, 3, 0, 60*time.Second)
	// Settled: 3 sessions + 3 warm desktops, nothing more.
	time.Sleep(6 * time.Second) // past a reaper pass and the orphan grace
	if n := s.Containers(); n != 6 {
		t.Fatalf("%d containers, want 3 sessions + 3 warm", n)
	}
	for _, u := range users {
		if sess := s.Status(u); sess["state"] != "ready" {
			t.Fatalf("session of %d: %v", u, sess)
		}
	}
	if n := len(s.EventsSince(0, "orphan_removed", "")); n != 0 {
		t.Fatalf("%d orphan_removed events", n)
	}
}
