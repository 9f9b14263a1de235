package system

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// Everyone who must be refused is refused, by every route; the owner and
// admins are let in; nothing refused ever reaches a container.
func TestAuthorizationMatrix(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.createReady(alice)
	aliceVNC := "/remote-desktop/vnc/7/vnc.html"

	type call struct {
		name     string
		user     int // 0 anonymous, e2e.AdminUserID admin
		method   string
		path     string
		body     string
		headers  map[string]string
		wantCode int
	}
	admin := e2e.AdminUserID
	adminRoutes := []struct{ method, path, body string }{
		{"GET", "/remote-desktop/admin", ""},
		{"GET", "/remote-desktop/admin/api/containers", ""},
		{"POST", "/remote-desktop/admin/api/kill", `{"user_id":"7"}`},
		{"POST", "/remote-desktop/admin/api/extend", `{"user_id":"7"}`},
		{"GET", "/remote-desktop/admin/api/events/recent", ""},
		{"GET", "/remote-desktop/admin/api/hosts", ""},
		{"POST", "/remote-desktop/admin/api/hosts/drain", `{"host":"172.30.77.11"}`},
		{"POST", "/remote-desktop/admin/api/hosts/undrain", `{"host":"172.30.77.11"}`},
		{"POST", "/remote-desktop/admin/api/hosts/check", `{"host":"172.30.77.11"}`},
	}
	playerRoutes := []struct{ method, path, body string }{
		{"POST", "/remote-desktop/api/create", "{}"},
		{"GET", "/remote-desktop/api/creation-status", ""},
		{"GET", "/remote-desktop/api/status", ""},
		{"POST", "/remote-desktop/api/destroy", "{}"},
		{"POST", "/remote-desktop/api/extend", "{}"},
	}
	var calls []call
	for _, r := range append(append([]struct{ method, path, body string }{}, adminRoutes...), playerRoutes...) {
		calls = append(calls, call{"anonymous " + r.path, 0, r.method, r.path, r.body, nil, http.StatusUnauthorized})
	}
	calls[0].wantCode = http.StatusFound // the admin page sends visitors to CTFd's login
	for _, r := range adminRoutes {
		calls = append(calls, call{"player on " + r.path, bob, r.method, r.path, r.body, nil, http.StatusForbidden})
	}
	calls = append(calls,
		call{"anonymous page", 0, "GET", "/remote-desktop", "", nil, http.StatusFound},
		call{"anonymous desktop", 0, "GET", aliceVNC, "", nil, http.StatusUnauthorized},
		call{"other player's desktop", bob, "GET", aliceVNC, "", nil, http.StatusForbidden},
		call{"forged X-User-ID", bob, "GET", aliceVNC, "", map[string]string{"X-User-ID": "7"}, http.StatusForbidden},
		call{"forged auth-check", bob, "GET", "/remote-desktop/api/auth-check", "", map[string]string{"X-User-ID": "7"}, http.StatusForbidden},
		call{"cross-site create", bob, "POST", "/remote-desktop/api/create", "{}", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		call{"cross-site kill by admin", admin, "POST", "/remote-desktop/admin/api/kill", `{"user_id":"7"}`, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		call{"sec-fetch cross-site", bob, "POST", "/remote-desktop/api/create", "{}", map[string]string{"Origin": "", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		call{"form post", bob, "POST", "/remote-desktop/api/create", "a=b", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		call{"traversal", alice, "GET", "/remote-desktop/vnc/7/../8/vnc.html", "", nil, http.StatusBadRequest},
		call{"encoded traversal", alice, "GET", "/remote-desktop/vnc/7/..%2f..%2f8/vnc.html", "", nil, http.StatusBadRequest},
		call{"encoded slash in id", alice, "GET", "/remote-desktop/vnc/7%2F..%2F8/vnc.html", "", nil, http.StatusBadRequest},
		call{"malformed id", alice, "GET", "/remote-desktop/vnc/-x/vnc.html", "", nil, http.StatusBadRequest},
		call{"unknown session", bob, "GET", "/remote-desktop/vnc/8/vnc.html", "", nil, http.StatusNotFound},
		call{"admin on unknown session", admin, "GET", "/remote-desktop/vnc/99/vnc.html", "", nil, http.StatusNotFound},
		call{"wrong method", alice, "GET", "/remote-desktop/api/create", "", nil, http.StatusMethodNotAllowed},
		call{"unknown route", alice, "GET", "/remote-desktop/api/nope", "", nil, http.StatusNotFound},
		// allowed
		call{"owner's desktop", alice, "GET", aliceVNC, "", nil, http.StatusOK},
		call{"admin on alice's desktop", admin, "GET", aliceVNC, "", nil, http.StatusOK},
		call{"owner's auth-check", alice, "GET", "/remote-desktop/api/auth-check", "", map[string]string{"X-User-ID": "7"}, http.StatusOK},
		call{"admin containers", admin, "GET", "/remote-desktop/admin/api/containers", "", nil, http.StatusOK},
		call{"admin page", admin, "GET", "/remote-desktop/admin", "", nil, http.StatusOK},
		call{"player page", bob, "GET", "/remote-desktop", "", nil, http.StatusOK},
		call{"outside the prefix goes on to CTFd", 0, "GET", "/challenges", "", nil, http.StatusOK},
	)
	before := s.CTFd.Count("/api/v1/users/me")
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{}
			for k, v := range c.headers {
				h[k] = v
			}
			code, out, hdr := s.req(c.user, c.method, c.path, c.body, h)
			if code != c.wantCode {
				t.Fatalf("%s %s as %d: %d %v, want %d", c.method, c.path, c.user, code, out, c.wantCode)
			}
			if code >= 400 && out != nil && out["success"] != false {
				t.Errorf("error answer lacks the stable shape: %v", out)
			}
			if code == http.StatusOK && c.path == "/remote-desktop/api/auth-check" && (hdr.Get("X-VNC-Host") == "" || hdr.Get("X-VNC-Port") == "") {
				t.Errorf("auth-check without X-VNC-Host/Port: %v", hdr)
			}
		})
	}
	if s.CTFd.Count("/api/v1/users/me") == before {
		t.Error("CTFd was never asked")
	}
	// alice's session survived every refused attempt on it.
	if sess := s.Status(alice); sess == nil || sess["state"] != "ready" {
		t.Fatalf("alice's session after the matrix: %v", sess)
	}

	// Websocket upgrades: a foreign or missing Origin is refused even for
	// the owner (the browser attaches the cookie to cross-site sockets).
	ws := "/remote-desktop/vnc/7/websockify"
	for _, c := range []struct {
		user   int
		origin string
		want   int
	}{
		{alice, "https://evil.example", http.StatusForbidden},
		{alice, "", http.StatusForbidden},
		{bob, s.Caddy.URL, http.StatusForbidden},
		{0, s.Caddy.URL, http.StatusUnauthorized},
		{alice, s.Caddy.URL, http.StatusSwitchingProtocols},
		{admin, s.Caddy.URL, http.StatusSwitchingProtocols},
	} {
		code, conn := s.dialWS(c.user, ws, c.origin)
		if conn != nil {
			conn.Close()
		}
		if code != c.want {
			t.Errorf("websocket as %d from %q: %d, want %d", c.user, c.origin, code, c.want)
		}
	}
	// The admin's look at alice's desktop is on record.
	_, out, _ := s.req(admin, "GET", "/remote-desktop/admin/api/events/recent?limit=500", "", nil)
	if !strings.Contains(fmt.Sprint(out), "session_viewed") {
		t.Error("no session_viewed event for the admin opening alice's desktop")
	}
}

// What reaches a container (only the websocket, with no credential and
// nothing about the viewer) is tested with the malicious desktop in
// untrusted_test.go.

// The real desktop's VNC server greets through Caddy's websocket proxy.
func TestRFBHandshakeThroughTheProxy(t *testing.T) {
	s := newSystem(t, sysConfig{desktop: true})
	s.createReady(alice)
	code, ws := s.dialWS(alice, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", code)
	}
	defer ws.Close()
	p, err := ws.ReadWithin(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != "RFB 003.008\n" {
		t.Fatalf("first message %q, want the RFB 3.8 greeting", p)
	}
	// Answer with our version: the server offers its security types (VNC
	// authentication, type 2).
	if err := ws.WriteFrame([]byte("RFB 003.008\n")); err != nil {
		t.Fatal(err)
	}
	p, err = ws.ReadWithin(10 * time.Second)
	if err != nil || len(p) < 2 || !bytes.Contains(p[1:], []byte{2}) {
		t.Fatalf("security types %v, %v: want VNC authentication offered", p, err)
	}
}

// An admin's event stream shows another client's create as it happens.
func TestAdminStreamSeesCreate(t *testing.T) {
	s := newSystem(t, sysConfig{})
	req, _ := http.NewRequest("GET", s.Caddy.URL+"/remote-desktop/admin/api/events/stream", nil)
	req.Header.Set("Cookie", "session="+s.Cookie(e2e.AdminUserID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, ct)
	}
	seen := make(chan string, 100)
	go func() {
		lines := bufioLines(resp.Body)
		for l := range lines {
			if after, ok := strings.CutPrefix(l, "event: "); ok {
				seen <- after
			}
		}
		close(seen)
	}()
	s.createReady(bob)
	want := map[string]bool{"session_created": false, "session_ready": false}
	timeout := time.After(30 * time.Second)
	for !want["session_created"] || !want["session_ready"] {
		select {
		case ev, ok := <-seen:
			if !ok {
				t.Fatalf("stream ended; saw %v", want)
			}
			if _, w := want[ev]; w {
				want[ev] = true
			}
		case <-timeout:
			t.Fatalf("after 30 s the stream showed %v", want)
		}
	}
}

func bufioLines(r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := r.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				ch <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// With CTFd stopped, slow, erroring or answering garbage, every route that
// depends on identity answers 503: never access, never a fake logout.
func TestCTFdTroubleMeans503(t *testing.T) {
	s := newSystem(t, sysConfig{cacheTTL: "1ms", timeout: "300ms"})
	s.createReady(alice)
	routes := []struct{ method, path, body string }{
		{"GET", "/remote-desktop/api/status", ""},
		{"GET", "/remote-desktop/api/creation-status", ""},
		{"POST", "/remote-desktop/api/create", "{}"},
		{"POST", "/remote-desktop/api/extend", "{}"},
		{"POST", "/remote-desktop/api/destroy", "{}"},
		{"GET", "/remote-desktop/admin/api/containers", ""},
		{"GET", "/remote-desktop/vnc/7/vnc.html", ""},
	}
	for _, mode := range []e2e.Mode{e2e.Down, e2e.Error500, e2e.Garbage, e2e.WrongShape, e2e.Slow(3 * time.Second)} {
		s.CTFd.SetMode(mode)
		time.Sleep(20 * time.Millisecond)
		for _, r := range routes {
			for _, user := range []int{alice, e2e.AdminUserID} {
				code, out, _ := s.req(user, r.method, r.path, r.body, map[string]string{"X-User-ID": "7"})
				if code != http.StatusServiceUnavailable {
					t.Errorf("CTFd %v: %s %s as %d: %d %v, want 503", mode, r.method, r.path, user, code, out)
				}
			}
		}
		code, _, _ := s.req(alice, "GET", "/remote-desktop", "", nil)
		if code != http.StatusServiceUnavailable {
			t.Errorf("CTFd %v: the page answered %d, want a 503 page", mode, code)
		}
		// nginx's auth_request knows only 2xx, 401 and 403: "cannot tell"
		// is a refusal there.
		if code, out, _ := s.req(alice, "GET", "/remote-desktop/api/auth-check", "", map[string]string{"X-User-ID": "7"}); code != http.StatusForbidden {
			t.Errorf("CTFd %v: auth-check answered %d %v, want 403", mode, code, out)
		}
	}
	s.CTFd.SetMode(e2e.Normal)
	if sess := s.Status(alice); sess == nil || sess["state"] != "ready" {
		t.Fatalf("alice's session after CTFd's trouble: %v", sess)
	}
}
