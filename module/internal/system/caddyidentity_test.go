package system

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// With identity caddy, an open desktop connection is cut once a reloaded
// configuration no longer lets its viewer in: an admin no longer listed in
// admins, a user removed from basic_auth. Unchanged viewers keep theirs.
func TestIdentityCaddyRevokesOnReload(t *testing.T) {
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	users := map[string]string{"alice": hash("alice"), "boss": hash("boss")}
	site := func(names ...string) string {
		s := "\tbasic_auth {\n"
		for _, n := range names {
			s += fmt.Sprintf("\t\t%s %s\n", n, users[n])
		}
		return s + "\t}\n"
	}
	auth := func(u string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+u))}
	}
	s := newSystem(t, sysConfig{site: site("alice", "boss"), identity: "\t\tidentity caddy {\n\t\t\tadmins boss\n\t\t}"})
	if code, out, _ := s.req(0, http.MethodPost, "/remote-desktop/api/create", "{}", auth("alice")); code != http.StatusAccepted {
		t.Fatalf("create: %d %v", code, out)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, out, _ := s.req(0, http.MethodGet, "/remote-desktop/api/status", "", auth("alice"))
		if sess, _ := out["data"].(map[string]any)["session"].(map[string]any); sess != nil && sess["state"] == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's desktop never became ready: %v", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	open := func(u string) *e2e.WSConn {
		resp, ws := s.DialWS(0, "/remote-desktop/vnc/alice/websockify", s.Caddy.URL, auth(u))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("websocket as %s: %d", u, resp.StatusCode)
		}
		if _, err := ws.ReadWithin(5 * time.Second); err != nil {
			t.Fatalf("websocket as %s: %v", u, err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	// cutWithin reports whether the server closed ws within d.
	cutWithin := func(ws *e2e.WSConn, d time.Duration) bool {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			_, err := ws.ReadWithin(500 * time.Millisecond)
			var ne net.Error
			if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
				return true
			}
		}
		return false
	}
	owner, admin := open("alice"), open("boss")
	if cutWithin(owner, 3*time.Second) || cutWithin(admin, time.Second) {
		t.Fatal("a connection was cut with nothing changed")
	}

	// boss is no longer an admin.
	s.cfg.identity = "\t\tidentity caddy"
	if err := s.Caddy.Reload(s.caddyfile()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !cutWithin(admin, 10*time.Second) {
		t.Fatal("boss's look at alice's desktop survived losing admin")
	}
	t.Logf("demoted admin cut %v after the reload", time.Since(start).Round(100*time.Millisecond))
	if cutWithin(owner, 3*time.Second) {
		t.Fatal("alice's own connection was cut by a reload that kept her")
	}

	// alice's account is removed.
	s.cfg.site = site("boss")
	if err := s.Caddy.Reload(s.caddyfile()); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if !cutWithin(owner, 10*time.Second) {
		t.Fatal("alice's connection survived the removal of her account")
	}
	t.Logf("removed user cut %v after the reload", time.Since(start).Round(100*time.Millisecond))
}
