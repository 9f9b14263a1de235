package system

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// evilMarker is in every answer and header value of the malicious desktop
// (testdata/images/evil).
const evilMarker = "EVIL-DESKTOP-MARKER"

// hostileHeaders are what the malicious desktop sends; none may reach a
// browser.
var hostileHeaders = []string{"Set-Cookie", "Set-Cookie2", "Service-Worker-Allowed", "Clear-Site-Data", "Refresh",
	"Location", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Strict-Transport-Security",
	"Link", "X-Frame-Options", "Content-Disposition", "Alt-Svc", "X-Evil", "Sec-Websocket-Extensions"}

// trustedTree reads the files (symlinks followed) under /usr/share/novnc of
// image, from this machine's copy of it: what Caddy must serve.
func trustedTree(t *testing.T, image string) map[string][]byte {
	t.Helper()
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", "--entrypoint", "tar", image,
		"-C", "/usr/share", "-ch", "novnc").Output()
	if err != nil {
		t.Fatalf("read noVNC from %s: %v", image, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "novnc/")
		switch h.Typeflag {
		case tar.TypeReg:
			files[name], _ = io.ReadAll(tr)
		case tar.TypeLink: // tar -h stores a second link to a file so
			files[name] = files[strings.TrimPrefix(h.Linkname, "novnc/")]
		}
	}
	if len(files) < 10 || files["vnc.html"] == nil {
		t.Fatalf("%s's noVNC has %d files, no vnc.html?", image, len(files))
	}
	return files
}

// assertNoEvil fails if an answer carries anything of the malicious
// desktop in its headers.
func assertNoEvil(t *testing.T, what string, h http.Header) {
	t.Helper()
	for _, k := range hostileHeaders {
		if v := h.Values(k); len(v) > 0 {
			t.Errorf("%s: the container's %s reached the client: %q", what, k, v)
		}
	}
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, evilMarker) {
				t.Errorf("%s: header %s carries the container's marker: %q", what, k, v)
			}
		}
	}
}

// With a malicious desktop, everything under /vnc/<id>/ but the websocket
// is Caddy's own bytes (noVNC from the desktop's image), for the owner and
// for an admin; a plain /websockify is refused; the websocket's 101 and any
// other answer of the container carry only allow-listed headers; nothing
// about the viewer reaches the container.
func TestMaliciousDesktopServesNothingOnOurOrigin(t *testing.T) {
	s := newSystem(t, sysConfig{evil: true})
	s.createReady(alice)
	tree := trustedTree(t, s.Bed.EvilImage)
	base := s.Caddy.URL + "/remote-desktop/vnc/7/"

	get := func(user int, method, rel string) (*http.Response, []byte) {
		return e2e.Do(t, method, base+rel, map[string]string{"Cookie": "session=" + s.Cookie(user), "Accept": "text/html,*/*"}, "")
	}
	// The first request reads noVNC from the image; later ones are memory.
	t0 := time.Now()
	get(alice, "GET", "vnc.html")
	cold := time.Since(t0)
	t0 = time.Now()
	const warmN = 20
	for range warmN {
		get(alice, "GET", "vnc.html")
	}
	t.Logf("vnc.html through Caddy: first %v (reads noVNC from the image), then %v each (from memory)",
		cold.Round(time.Millisecond), (time.Since(t0) / warmN).Round(10*time.Microsecond))
	for _, line := range strings.Split(s.Caddy.Logs(), "\n") {
		if strings.Contains(line, "noVNC read from the desktop image") {
			t.Logf("caddy: %s", line)
		}
	}
	served := 0
	for name, want := range tree {
		resp, body := get(alice, "GET", name)
		if !strings.Contains(name, "/") && strings.HasSuffix(name, ".html") {
			// noVNC's pages get a head pointing at the shared files
			// (viewer_test.go); the rest is the image's.
			var base string
			if body, base = withoutViewerHead(body); base == "" {
				t.Errorf("%s: no viewer head", name)
			}
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Errorf("%s: %d, %d bytes; want 200 and the image's %d bytes", name, resp.StatusCode, len(body), len(want))
		}
		assertNoEvil(t, name, resp.Header)
		served++
	}
	t.Logf("%d noVNC files served by Caddy, byte-identical to the image's", served)
	for _, user := range []int{alice, e2e.AdminUserID} {
		for _, c := range []struct {
			method, rel string
			want        int
		}{
			{"GET", "vnc.html", 200}, {"HEAD", "vnc.html", 200}, {"GET", "vnc_auto.html", 200},
			{"GET", "websockify", 400}, {"HEAD", "websockify", 400},
			{"GET", "nope", 404}, {"GET", "headers", 404}, {"GET", "app/evil.js", 404},
			{"GET", "", 302},
		} {
			resp, body := get(user, c.method, c.rel)
			if resp.StatusCode != c.want {
				t.Errorf("%s %s as %d: %d, want %d", c.method, c.rel, user, resp.StatusCode, c.want)
			}
			if bytes.Contains(body, []byte(evilMarker)) {
				t.Errorf("%s %s as %d: the container's page reached the client", c.method, c.rel, user)
			}
			if c.want == http.StatusFound && resp.Header.Get("Location") == "/remote-desktop/vnc/7/vnc.html" {
				resp.Header.Del("Location") // Caddy's own redirect
			}
			assertNoEvil(t, c.method+" "+c.rel, resp.Header)
		}
	}

	// The websocket: the only thing that reaches the container. Its 101
	// carries only what RFC 6455 needs, and the container saw nothing of
	// the viewer.
	viewer := map[string]string{
		"Referer": "http://127.0.0.1/referer-of-the-viewer", "User-Agent": "viewer-agent/1.0",
		"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8", "Forwarded": "for=203.0.113.9",
		"X-Forwarded-Host": "viewer.example", "Accept-Language": "xx-viewer", "Authorization": "Token " + s.CTFd.AdminToken(),
		"X-User-ID": "7", "Sec-WebSocket-Extensions": "permessage-deflate",
	}
	for _, user := range []int{alice, e2e.AdminUserID} {
		resp, ws := s.DialWS(user, "/remote-desktop/vnc/7/websockify", s.Caddy.URL, viewer)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("websocket as %d: %d", user, resp.StatusCode)
		}
		assertNoEvil(t, "101", resp.Header)
		for k := range resp.Header {
			switch k {
			case "Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Server", "Date":
			default:
				t.Errorf("101 carries %s: %q", k, resp.Header.Values(k))
			}
		}
		frame, err := ws.ReadWithin(5 * time.Second)
		ws.Close()
		if err != nil {
			t.Fatalf("first message: %v", err)
		}
		var seen struct {
			Headers http.Header `json:"headers"`
		}
		if err := json.Unmarshal(frame, &seen); err != nil {
			t.Fatalf("first message %q: %v", frame, err)
		}
		for k, v := range seen.Headers {
			switch k {
			case "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Origin",
				"Accept-Encoding": // Go's transport's own
			case "User-Agent":
				if v[0] != "" && strings.Contains(v[0], "viewer") {
					t.Errorf("the container saw the viewer's User-Agent %q", v)
				}
			default:
				t.Errorf("the container received %s: %q", k, v)
			}
		}
		if bytes.Contains(frame, []byte("203.0.113")) || bytes.Contains(frame, []byte("viewer")) || bytes.Contains(frame, []byte(s.Cookie(user))) {
			t.Errorf("something of the viewer reached the container: %s", frame)
		}
	}

	// Any other answer of the container to an upgrade: filtered too, and
	// sandboxed.
	resp, _ := s.DialWS(alice, "/remote-desktop/vnc/7/nope", s.Caddy.URL, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("upgrade on /nope: %d, want the container's 404", resp.StatusCode)
	}
	assertNoEvil(t, "404 to an upgrade", resp.Header)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox") {
		t.Errorf("the container's 404 is not sandboxed: CSP %q", csp)
	}
	if sess := s.Status(alice); sess == nil || sess["state"] != "ready" {
		t.Fatalf("alice's session: %v", sess)
	}
}

// An operator who opts into the container's own HTTP gets it sandboxed, with
// the header allow-list, and a warning in the log.
func TestUnsafeContainerHTTPIsSandboxed(t *testing.T) {
	s := newSystem(t, sysConfig{evil: true, handler: "\t\tunsafe_container_http"})
	s.createReady(alice)
	for _, rel := range []string{"vnc.html", "app/ui.js", "x"} {
		resp, body := e2e.Do(t, "GET", s.Caddy.URL+"/remote-desktop/vnc/7/"+rel, map[string]string{"Cookie": "session=" + s.Cookie(alice)}, "")
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(evilMarker)) {
			t.Fatalf("%s: %d; want the container's page (opted in)", rel, resp.StatusCode)
		}
		assertNoEvil(t, rel, resp.Header)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox") || strings.Contains(csp, "allow-same-origin") {
			t.Errorf("%s: CSP %q, want a sandbox without allow-same-origin", rel, csp)
		}
	}
	if resp, _ := e2e.Do(t, "GET", s.Caddy.URL+"/remote-desktop/vnc/7/websockify", map[string]string{"Cookie": "session=" + s.Cookie(alice)}, ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain /websockify with unsafe_container_http: %d, want 400", resp.StatusCode)
	}
	if !strings.Contains(s.Caddy.Logs(), "unsafe_container_http is ON") {
		t.Error("no warning about unsafe_container_http in the log")
	}
}

// A desktop image without noVNC at novnc_path gets a page naming both.
func TestImageWithoutNoVNCSaysSo(t *testing.T) {
	s := newSystem(t, sysConfig{evil: true, handler: "\t\tnovnc_path /usr/share/no-novnc-here"})
	s.createReady(alice)
	resp, body := e2e.Do(t, "GET", s.Caddy.URL+"/remote-desktop/vnc/7/vnc.html", map[string]string{"Cookie": "session=" + s.Cookie(alice), "Accept": "text/html"}, "")
	if resp.StatusCode != http.StatusBadGateway || !bytes.Contains(body, []byte("/usr/share/no-novnc-here")) || !bytes.Contains(body, []byte(s.Bed.EvilImage)) {
		t.Fatalf("%d %s; want 502 naming the path and the image", resp.StatusCode, body)
	}
	// The websocket still works: only the page is missing.
	code, ws := s.dialWS(alice, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("websocket: %d", code)
	}
	ws.Close()
}

// /api/auth-check speaks nginx auth_request's language: 200, 401 or 403,
// and checks Origin like the proxy does.
func TestAuthCheckSpeaksNginx(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.createReady(alice)
	path := "/remote-desktop/api/auth-check"
	for _, c := range []struct {
		name string
		user int
		hdr  map[string]string
		want int
	}{
		{"owner", alice, map[string]string{"X-User-ID": "7"}, 200},
		{"admin", e2e.AdminUserID, map[string]string{"X-User-ID": "7"}, 200},
		{"owner, own origin websocket", alice, map[string]string{"X-User-ID": "7", "Upgrade": "websocket", "Origin": s.Caddy.URL}, 200},
		{"anonymous", 0, map[string]string{"X-User-ID": "7"}, 401},
		{"another player", bob, map[string]string{"X-User-ID": "7"}, 403},
		{"foreign origin", alice, map[string]string{"X-User-ID": "7", "Origin": "https://evil.example"}, 403},
		{"cross-site fetch", alice, map[string]string{"X-User-ID": "7", "Sec-Fetch-Site": "cross-site"}, 403},
		{"websocket without origin", alice, map[string]string{"X-User-ID": "7", "Upgrade": "websocket"}, 403},
		{"no X-User-ID", alice, nil, 403},
		{"bad X-User-ID", alice, map[string]string{"X-User-ID": "../7"}, 403},
		{"no session", bob, map[string]string{"X-User-ID": "8"}, 403},
	} {
		code, out, hdr := s.req(c.user, "GET", path, "", c.hdr)
		if code != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, code, out, c.want)
		}
		if (code == 200) != (hdr.Get("X-VNC-Port") != "") {
			t.Errorf("%s: %d with X-VNC-Port %q", c.name, code, hdr.Get("X-VNC-Port"))
		}
	}
	s.CTFd.SetMode(e2e.Down)
	time.Sleep(1200 * time.Millisecond) // past cache_ttl
	if code, _, _ := s.req(alice, "GET", path, "", map[string]string{"X-User-ID": "7"}); code != 403 {
		t.Errorf("CTFd down: %d, want 403", code)
	}
	s.CTFd.SetMode(e2e.Normal)
}

// The admin event stream ends when its viewer is no longer an admin.
func TestEventStreamEndsWhenAdminIsDemoted(t *testing.T) {
	s := newSystem(t, sysConfig{cacheTTL: "1s"})
	ctfd2 := e2e.User{ID: 9, Name: "carol", Email: "carol@example.com", Admin: true}
	s.CTFd.AddUser(ctfd2)
	req, _ := http.NewRequest("GET", s.Caddy.URL+"/remote-desktop/admin/api/events/stream", nil)
	req.Header.Set("Cookie", "session="+s.Cookie(9))
	resp, err := e2e.LoopbackClient(0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, bufio.NewReader(resp.Body))
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the stream ended while carol was an admin: %v", err)
	case <-time.After(3 * time.Second):
	}
	s.CTFd.SetAdmin(9, false)
	start := time.Now()
	select {
	case <-ended:
		t.Logf("stream ended %v after the demotion (cache_ttl 1s, re-check every 2s)", time.Since(start).Round(100*time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the stream still runs 10s after carol lost admin")
	}
	if code, _, _ := s.req(9, "GET", "/remote-desktop/admin/api/events/recent", "", nil); code != http.StatusForbidden {
		t.Errorf("carol on the admin API after demotion: %d", code)
	}
}
