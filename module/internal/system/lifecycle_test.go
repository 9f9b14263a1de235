package system

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// players registers n more CTFd users (ids 100...) and returns their ids.
func (s *system) players(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 100 + i
		s.CTFd.AddUser(e2e.User{ID: ids[i], Name: fmt.Sprintf("p%d", ids[i]), Email: fmt.Sprintf("p%d@example.com", ids[i])})
	}
	return ids
}

// echo sends a frame on an open desktop websocket and reads it back (the
// tiny image echoes), proving the connection still carries data.
func echo(t *testing.T, ws *e2e.WSConn, msg string) {
	t.Helper()
	if err := ws.WriteFrame([]byte(msg)); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
	p, err := ws.ReadWithin(5 * time.Second)
	if err != nil || string(p) != msg {
		t.Fatalf("websocket echo: %q, %v; want %q", p, err, msg)
	}
}

// A config reload with five live sessions keeps all five (same host, port,
// expiry) and a player's open websocket stays up and keeps carrying frames.
func TestReloadKeepsSessionsAndWebsockets(t *testing.T) {
	s := newSystem(t, sysConfig{})
	users := s.players(5)
	for _, u := range users {
		if code, out, _ := s.req(u, "POST", "/remote-desktop/api/create", "{}", nil); code != http.StatusAccepted {
			t.Fatalf("create: %d %v", code, out)
		}
	}
	before := map[int]e2e.Snapshot{}
	for _, u := range users {
		s.WaitReady(u, 90*time.Second)
		before[u] = s.Snap(u, e2e.RequestTimeout)
	}
	code, ws := s.dialWS(users[0], fmt.Sprintf("/remote-desktop/vnc/%d/websockify", users[0]), s.Caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", code)
	}
	defer ws.Close()
	if p, err := ws.ReadWithin(5 * time.Second); err != nil || !strings.HasPrefix(string(p), "RFB") {
		t.Fatalf("greeting %q %v", p, err)
	}
	echo(t, ws, "before reload")

	s.cfg.extra = "\t\tevent_log_size 600" // a real change, so Caddy applies it
	if err := s.Caddy.Reload(s.caddyfile()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	echo(t, ws, "after reload")
	for _, u := range users {
		if got := s.Snap(u, e2e.RequestTimeout); got != before[u] {
			t.Fatalf("session of %d after reload: %+v, before: %+v", u, got, before[u])
		}
	}
	if n := s.Containers(); n != 5 {
		t.Fatalf("%d containers after reload, want 5", n)
	}
	echo(t, ws, "still here")
}

// Caddy killed with SIGKILL and started again: every session is back with
// the same host, port and expiry, and nothing was left as an orphan.
func TestSIGKILLThenStartKeepsSessions(t *testing.T) {
	s := newSystem(t, sysConfig{policy: "keep", dataDir: t.TempDir()})
	users := s.players(5)
	before := map[int]e2e.Snapshot{}
	for _, u := range users {
		s.createReady(u)
		before[u] = s.Snap(u, e2e.RequestTimeout)
	}
	s.Caddy.Kill()
	s.Caddy.Restart()
	for _, u := range users {
		if got := s.Snap(u, e2e.RequestTimeout); got != before[u] {
			t.Fatalf("session of %d after restart: %+v, before: %+v", u, got, before[u])
		}
		resp, _ := e2e.Do(t, "GET", fmt.Sprintf("%s/remote-desktop/vnc/%d/vnc.html", s.Caddy.URL, u), map[string]string{"Cookie": "session=" + s.Cookie(u)}, "")
		if resp.StatusCode != 200 {
			t.Fatalf("desktop of %d unreachable after restart: %d", u, resp.StatusCode)
		}
	}
	time.Sleep(8 * time.Second) // past orphan_grace, several reaper passes
	if n := s.Containers(); n != 5 {
		t.Fatalf("%d containers after restart, want 5", n)
	}
	if logs := s.Caddy.Logs(); strings.Contains(logs, "orphan_removed") {
		t.Fatal("a live session's container was removed as an orphan")
	}
}

// With shutdown_policy destroy, SIGTERM leaves no container behind.
func TestDestroyPolicyOnSIGTERM(t *testing.T) {
	s := newSystem(t, sysConfig{policy: "destroy"})
	for _, u := range s.players(3) {
		s.createReady(u)
	}
	if n := s.Containers(); n != 3 {
		t.Fatalf("%d containers, want 3", n)
	}
	if err := s.Caddy.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if n := s.Containers(); n != 0 {
		t.Fatalf("%d containers left after SIGTERM with shutdown_policy destroy", n)
	}
}

// A player's open desktop connection is cut once their CTFd login ends
// (logout), within the identity cache's TTL; so is one whose session is
// destroyed.
func TestLogoutAndDestroyCutTheConnection(t *testing.T) {
	s := newSystem(t, sysConfig{cacheTTL: "1s"})
	s.createReady(alice)
	s.createReady(bob)
	_, wsA := s.dialWS(alice, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	_, wsB := s.dialWS(bob, "/remote-desktop/vnc/8/websockify", s.Caddy.URL)
	if wsA == nil || wsB == nil {
		t.Fatal("could not open the websockets")
	}
	defer wsA.Close()
	defer wsB.Close()
	for _, ws := range []*e2e.WSConn{wsA, wsB} {
		if _, err := ws.ReadWithin(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s.CTFd.Logout(s.Cookie(alice))
	if code, _, _ := s.req(bob, "POST", "/remote-desktop/api/destroy", "{}", nil); code != 200 {
		t.Fatalf("destroy: %d", code)
	}
	for name, ws := range map[string]*e2e.WSConn{"logged-out alice": wsA, "destroyed bob": wsB} {
		deadline := time.Now().Add(8 * time.Second)
		for {
			_ = ws.WriteFrame([]byte("ping"))
			if _, err := ws.ReadWithin(time.Second); err != nil {
				break // cut
			}
			if time.Now().After(deadline) {
				t.Fatalf("the connection of %s is still up", name)
			}
		}
	}
}

// No VNC password and no CTFd token or cookie ever appears in Caddy's log
// after a full run: create, poll, connect, extend, admin view, destroy.
func TestNoSecretsInLogs(t *testing.T) {
	s := newSystem(t, sysConfig{})
	sess := s.createReady(alice)
	connect := fmt.Sprint(sess["connect_url"])
	_, pw, _ := strings.Cut(connect, "password=")
	pw, _, _ = strings.Cut(pw, "&")
	if len(pw) < 16 {
		t.Fatalf("connect_url %q has no password of >= 16 characters", connect)
	}
	_, ws := s.dialWS(alice, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	if ws != nil {
		ws.Close()
	}
	s.req(alice, "POST", "/remote-desktop/api/extend", "{}", nil)
	s.req(e2e.AdminUserID, "GET", "/remote-desktop/admin/api/containers", "", nil)
	s.req(e2e.AdminUserID, "GET", "/remote-desktop/admin/api/events/recent", "", nil)
	s.req(alice, "POST", "/remote-desktop/api/destroy", "{}", nil)
	_ = s.Caddy.Stop()
	logs := []byte(s.Caddy.Logs())
	for what, secret := range map[string]string{
		"VNC password": pw, "CTFd admin token": s.CTFd.AdminToken(),
		"alice's cookie": s.Cookie(alice), "the admin's cookie": s.Cookie(e2e.AdminUserID),
	} {
		if bytes.Contains(logs, []byte(secret)) {
			t.Errorf("the %s is in Caddy's log", what)
		}
	}
}

// An admin's open event stream does not hold Caddy's shutdown: the stream
// ends as soon as the server starts shutting down.
func TestStopWithOpenEventStream(t *testing.T) {
	s := newSystem(t, sysConfig{})
	req, _ := http.NewRequest("GET", s.Caddy.URL+"/remote-desktop/admin/api/events/stream", nil)
	req.Header.Set("Cookie", "session="+s.Cookie(e2e.AdminUserID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	start := time.Now()
	if err := s.Caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Caddy took %v to stop with an event stream open", d)
	}
}
