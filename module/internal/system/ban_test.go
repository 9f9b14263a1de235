package system

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// A CTFd ban (which keeps the player's CTFd session, answering it with a 403
// HTML page) cuts the player's open desktop websocket within the identity
// cache's TTL, and the player page, the API and the desktop URL say why. A
// login made while banned gets the same; after the unban the player is back.
// The stand-in fails the test at cleanup if the module ever sent the admin
// token with a player's cookie (as it does for every system test).
func TestBanCutsTheConnectionAndSaysWhy(t *testing.T) {
	s := newSystem(t, sysConfig{cacheTTL: "1s"})
	s.createReady(alice)
	_, ws := s.dialWS(alice, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	if ws == nil {
		t.Fatal("could not open the websocket")
	}
	defer ws.Close()
	if _, err := ws.ReadWithin(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	s.CTFd.Ban(alice)
	banned := time.Now()
	deadline := banned.Add(8 * time.Second)
	for {
		_ = ws.WriteFrame([]byte("ping"))
		if _, err := ws.ReadWithin(time.Second); err != nil {
			break // cut
		}
		if time.Now().After(deadline) {
			t.Fatal("the banned player's desktop connection is still up")
		}
	}
	t.Logf("connection cut %v after the ban (cache_ttl 1s)", time.Since(banned).Round(100*time.Millisecond))

	page := func(cookie, path string) (int, string) {
		resp, body := e2e.Do(t, http.MethodGet, s.Caddy.URL+path,
			map[string]string{"Cookie": "session=" + cookie, "Accept": "text/html"}, "")
		return resp.StatusCode, string(body)
	}
	for _, cookie := range []string{s.Cookie(alice), s.CTFd.Login(alice)} { // the old session and a login made while banned
		if code, body := page(cookie, "/remote-desktop"); code != http.StatusForbidden || !strings.Contains(body, "banned") {
			t.Errorf("player page while banned: %d %s", code, body)
		}
		if code, body := page(cookie, "/remote-desktop/vnc/7/vnc.html"); code != http.StatusForbidden || !strings.Contains(body, "banned") {
			t.Errorf("desktop page while banned: %d %s", code, body)
		}
	}
	code, out, _ := s.req(alice, http.MethodGet, "/remote-desktop/api/status", "", nil)
	if e, _ := out["error"].(map[string]any); code != http.StatusForbidden || e["code"] != "banned" ||
		!strings.Contains(e["message"].(string), "banned") {
		t.Errorf("status while banned: %d %v", code, out)
	}

	s.CTFd.Unban(alice)
	deadline = time.Now().Add(5 * time.Second)
	for {
		code, out, _ := s.req(alice, http.MethodGet, "/remote-desktop/api/status", "", nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the unban: %d %v", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if esc := s.CTFd.Escalations(); len(esc) != 0 {
		t.Fatalf("the admin token travelled with a player's cookie %d times", len(esc))
	}
}
