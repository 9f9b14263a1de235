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
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
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

type warmFigure struct{ target, ready, starting int }

// warm reads the admin API's pool figures of host.
func (s *system) warm(host string) warmFigure {
	s.t.Helper()
	code, out, _ := s.req(e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/hosts", "", nil)
	if code != http.StatusOK {
		s.t.Fatalf("admin hosts: %d %v", code, out)
	}
	data, _ := out["data"].(map[string]any)
	list, _ := data["warm"].([]any)
	for _, w := range list {
		m, _ := w.(map[string]any)
		if m["host"] == host {
			n := func(k string) int { f, _ := m[k].(float64); return int(f) }
			return warmFigure{n("target"), n("ready"), n("starting")}
		}
	}
	return warmFigure{}
}

func (s *system) waitWarm(host string, want warmFigure, limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := s.warm(host)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("warm pool of %s is %+v after %v, want %+v\n%s", host, got, limit, want, tail(s.caddy.Logs(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// warmContainers lists this instance's warm-labelled containers on h:
// ID → image.
func (s *system) warmContainers(h testbed.Host) map[string]string {
	s.t.Helper()
	out := testbed.Exec(s.t, h, "docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}}",
		"--filter", "label=io.ctf-remote-desktop.instance="+s.instance, "--filter", "label=io.ctf-remote-desktop.warm=true")
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

func (s *system) eventCount(typ string) int {
	s.t.Helper()
	_, out, _ := s.req(e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/events/recent?limit=1000", "", nil)
	data, _ := out["data"].(map[string]any)
	list, _ := data["events"].([]any)
	n := 0
	for _, e := range list {
		if m, _ := e.(map[string]any); m["type"] == typ {
			n++
		}
	}
	return n
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
	s.waitHostsHealthy(60 * time.Second)
	h1 := s.tb.Hosts[0]
	if err := s.caddy.Reload(s.warmCaddyfile(2, s.tb.TinyImage)); err != nil {
		t.Fatal(err)
	}
	s.waitWarm(h1.IP, warmFigure{2, 2, 0}, 60*time.Second)
	warm := s.warmContainers(h1)
	if len(warm) != 2 {
		t.Fatalf("%d warm containers on %s, want 2", len(warm), h1.IP)
	}

	code, out, _ := s.req(alice, http.MethodPost, "/remote-desktop/api/create", "{}", nil)
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("create: %d %v", code, out)
	}
	sess := s.status(alice)
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
	code, ws := s.dialWS(alice, fmt.Sprintf("/remote-desktop/vnc/%d/websockify", alice), s.caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("desktop upgrade: %d", code)
	}
	if p, err := ws.readFrame(5 * time.Second); err != nil || !strings.HasPrefix(string(p), "RFB") {
		t.Fatalf("greeting %q %v", p, err)
	}
	ws.Close()

	s.waitWarm(h1.IP, warmFigure{2, 2, 0}, 60*time.Second)
	if got := len(s.warmContainers(h1)); got != 3 {
		t.Fatalf("%d warm-labelled containers on %s, want 3 (2 warm + the claimed one)", got, h1.IP)
	}

	// The reaper (every 2 s, orphan grace 5 s) leaves warm desktops and the
	// claimed one alone.
	before := s.warmContainers(h1)
	time.Sleep(9 * time.Second)
	if after := s.warmContainers(h1); len(after) != len(before) {
		t.Fatalf("warm containers changed under the reaper: %v → %v", before, after)
	}
	if n := s.eventCount("orphan_removed"); n != 0 {
		t.Fatalf("%d orphan_removed events", n)
	}
	if sess := s.status(alice); sess["state"] != "ready" {
		t.Fatalf("alice's session after reaping: %v", sess)
	}

	// A new image replaces the warm desktops; alice's stays.
	if err := s.caddy.Reload(s.warmCaddyfile(2, s.tb.DesktopImage)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		imgs := s.warmContainers(h1)
		n := 0
		for id, img := range imgs {
			if _, old := before[id]; !old && strings.HasPrefix(img, strings.Split(s.tb.DesktopImage, ":")[0]) {
				n++
			}
		}
		if n == 2 && len(imgs) == 3 && s.warm(h1.IP) == (warmFigure{2, 2, 0}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm desktops not replaced: %v %+v\n%s", imgs, s.warm(h1.IP), tail(s.caddy.Logs(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if s.eventCount("warm_replaced") == 0 {
		t.Fatal("no warm_replaced event")
	}
	if snap := s.snap(alice); snap.host != h1.IP {
		t.Fatalf("alice's session moved: %+v", snap)
	}

	// Draining removes them; the claimed one stays.
	s.hostReq("drain", h1.IP)
	s.waitWarm(h1.IP, warmFigure{}, 60*time.Second)
	got := s.warmContainers(h1)
	for deadline := time.Now().Add(60 * time.Second); len(got) > 1 && time.Now().Before(deadline); got = s.warmContainers(h1) {
		time.Sleep(200 * time.Millisecond)
	}
	for id := range got {
		if _, first := warm[id]; !first || len(got) != 1 {
			t.Fatalf("after drain: %v, want only alice's, one of %v", got, warm)
		}
	}
	if s.eventCount("warm_removed") == 0 {
		t.Fatal("no warm_removed event")
	}

	// Shutdown (policy destroy) leaves nothing.
	if err := s.caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := s.containers(); n != 0 {
		t.Fatalf("%d containers left after shutdown", n)
	}
}

// Players create while Caddy reloads its config: each gets exactly one
// session, on a warm desktop or a cold one, and the pool's books stay
// right: every container is a session's or a warm desktop, none twice.
func TestWarmClaimDuringReload(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.waitHostsHealthy(60 * time.Second)
	h1 := s.tb.Hosts[0]
	if err := s.caddy.Reload(s.warmCaddyfile(3, s.tb.TinyImage)); err != nil {
		t.Fatal(err)
	}
	s.waitWarm(h1.IP, warmFigure{3, 3, 0}, 60*time.Second)
	users := s.players(3)
	for _, u := range users {
		s.cookie(u) // logged in before the rush: the cookie jar is not shared
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
		if err := s.caddy.Reload(s.warmCaddyfile(3, s.tb.TinyImage)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	ids := map[string]bool{}
	for _, u := range users {
		sess := s.waitReady(u)
		id := fmt.Sprint(sess["id"])
		if ids[id] {
			t.Fatalf("two users share session %s", id)
		}
		ids[id] = true
	}
	s.waitWarm(h1.IP, warmFigure{3, 3, 0}, 60*time.Second)
	// Settled: 3 sessions + 3 warm desktops, nothing more.
	time.Sleep(6 * time.Second) // past a reaper pass and the orphan grace
	if n := s.containers(); n != 6 {
		t.Fatalf("%d containers, want 3 sessions + 3 warm", n)
	}
	for _, u := range users {
		if sess := s.status(u); sess["state"] != "ready" {
			t.Fatalf("session of %d: %v", u, sess)
		}
	}
	if n := s.eventCount("orphan_removed"); n != 0 {
		t.Fatalf("%d orphan_removed events", n)
	}
}
