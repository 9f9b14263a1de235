// Package system tests the product as it runs: the real Caddy binary built
// from this repository, the CTFd stand-in, and the real test bed's hosts.
package system

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// CTFd user ids of the stand-in's accounts.
const (
	alice = 7
	bob   = 8
)

type system struct {
	t        *testing.T
	tb       *testbed.Testbed
	ctfd     *e2e.CTFd
	caddy    *e2e.Caddy
	instance string
	cfg      sysConfig
	cookies  map[int]string
}

type sysConfig struct {
	desktop  bool   // the real desktop image instead of the tiny one
	evil     bool   // the malicious desktop image (testdata/images/evil)
	policy   string // shutdown_policy, default destroy
	extra    string // more lines for the app block
	handler  string // more lines for the handler block
	identity string // the handler's identity block instead of CTFd's
	site     string // lines before the handler in the site block
	cacheTTL string // identity cache_ttl, default 1s
	timeout  string // identity timeout, default 2s
	dataDir  string
}

var seq int

// newSystem starts Caddy with the module in front of the CTFd stand-in,
// on the test bed's three hosts, with its own instance label.
func newSystem(t *testing.T, cfg sysConfig) *system {
	t.Helper()
	tb := testbed.Load(t)
	ctfd := e2e.NewCTFd(t)
	ctfd.AddUser(e2e.User{ID: alice, Name: "alice", Email: "alice@example.com"})
	ctfd.AddUser(e2e.User{ID: bob, Name: "bob", Email: "bob@example.com"})
	seq++
	s := &system{t: t, tb: tb, ctfd: ctfd, cfg: cfg, cookies: map[int]string{},
		instance: fmt.Sprintf("sys%d-%d", os.Getpid()%10000, seq)}
	if s.cfg.policy == "" {
		s.cfg.policy = "destroy"
	}
	if s.cfg.cacheTTL == "" {
		s.cfg.cacheTTL = "1s"
	}
	if s.cfg.timeout == "" {
		s.cfg.timeout = "2s"
	}
	s.caddy = e2e.StartCaddy(t, e2e.CaddyOptions{Caddyfile: s.caddyfile(), DataDir: cfg.dataDir})
	t.Cleanup(func() {
		if s.caddy.Running() {
			_ = s.caddy.Stop()
		}
		s.removeLeftovers()
	})
	return s
}

func (s *system) caddyfile() string {
	image := s.tb.TinyImage
	if s.cfg.desktop {
		image = s.tb.DesktopImage
	}
	if s.cfg.evil {
		image = s.tb.EvilImage
	}
	identityBlock := s.cfg.identity
	if identityBlock == "" {
		identityBlock = fmt.Sprintf("\t\tidentity ctfd {\n\t\t\turl %s\n\t\t\tadmin_token %s\n\t\t\tcache_ttl %s\n\t\t\ttimeout %s\n\t\t}",
			s.ctfd.URL(), s.ctfd.AdminToken(), s.cfg.cacheTTL, s.cfg.timeout)
	}
	var hosts strings.Builder
	for _, h := range s.tb.Hosts {
		fmt.Fprintf(&hosts, "\t\thost %s {\n\t\t\tuser %s\n\t\t\tdocker_image %s\n\t\t}\n", h.IP, h.User, image)
	}
	return fmt.Sprintf(`{
	admin {{ADMIN}}
	remote_desktop {
		hosts_file %s
%s		known_hosts %s
		ssh_key %s
		instance %s
		probe_interval 2s
		reaper_interval 2s
		orphan_grace 5s
		memory_limit 256m
		shm_size 64m
		resolution 1280x800
		cpu_limit 1
		shutdown_policy %s
%s
	}
}
http://127.0.0.1:{{PORT}} {
%s	remote_desktop {
%s
%s
	}
	respond "ctfd itself" 200
}
`, filepath.Join(s.t.TempDir(), "no-hosts.yml"), hosts.String(), s.tb.KnownHosts, s.tb.SSHKey, s.instance,
		s.cfg.policy, s.cfg.extra, s.cfg.site, identityBlock, s.cfg.handler)
}

func (s *system) cookie(user int) string {
	if c, ok := s.cookies[user]; ok {
		return c
	}
	s.cookies[user] = s.ctfd.Login(user)
	return s.cookies[user]
}

// req sends a request as user (0: anonymous) and decodes the JSON answer.
func (s *system) req(user int, method, path string, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	s.t.Helper()
	h := map[string]string{}
	if user != 0 {
		h["Cookie"] = "session=" + s.cookie(user)
	}
	if method == http.MethodPost {
		h["Content-Type"] = "application/json"
		h["Origin"] = s.caddy.URL
	}
	for k, v := range hdr {
		h[k] = v
	}
	resp, data := e2e.Do(s.t, method, s.caddy.URL+path, h, body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out, resp.Header
}

// session returns data.session of /api/status for user.
func (s *system) status(user int) map[string]any {
	s.t.Helper()
	code, out, _ := s.req(user, http.MethodGet, "/remote-desktop/api/status", "", nil)
	if code != 200 {
		s.t.Fatalf("status for %d: %d %v", user, code, out)
	}
	sess, _ := out["data"].(map[string]any)["session"].(map[string]any)
	return sess
}

// createReady starts a session for user and waits until it is ready.
func (s *system) createReady(user int) map[string]any {
	s.t.Helper()
	code, out, _ := s.req(user, http.MethodPost, "/remote-desktop/api/create", "{}", nil)
	if code != http.StatusAccepted && code != http.StatusOK {
		s.t.Fatalf("create for %d: %d %v", user, code, out)
	}
	return s.waitReady(user)
}

func (s *system) waitReady(user int) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		sess := s.status(user)
		if sess != nil && sess["state"] == "ready" {
			return sess
		}
		if sess != nil && (sess["state"] == "failed" || sess["state"] == "destroyed") {
			s.t.Fatalf("session of %d ended: %v", user, sess)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("session of %d not ready: %v\n%s", user, sess, tail(s.caddy.Logs(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHostsHealthy waits until the admin API shows every host healthy: the
// start-up checks (isolation proof included) take some seconds, and a test
// that reads host figures must not race them.
func (s *system) waitHostsHealthy(limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		code, out, _ := s.req(e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/hosts", "", nil)
		data, _ := out["data"].(map[string]any)
		list, _ := data["hosts"].([]any)
		healthy := 0
		for _, h := range list {
			if m, _ := h.(map[string]any); m["health"] == "healthy" {
				healthy++
			}
		}
		if code == http.StatusOK && len(list) > 0 && healthy == len(list) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("hosts not all healthy after %v: %d %v", limit, code, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeLeftovers force-removes this instance's containers on every host.
func (s *system) removeLeftovers() {
	for _, h := range s.tb.Hosts {
		out, _ := testbed.TryExec(h, "docker", "ps", "-aq", "--filter", "label=io.ctf-remote-desktop.instance="+s.instance)
		if ids := strings.Fields(out); len(ids) > 0 {
			_, _ = testbed.TryExec(h, append([]string{"docker", "rm", "-f"}, ids...)...)
		}
	}
}

// containers counts this instance's running containers on all hosts.
func (s *system) containers() int {
	s.t.Helper()
	n := 0
	for _, h := range s.tb.Hosts {
		out := testbed.Exec(s.t, h, "docker", "ps", "-q", "--filter", "label=io.ctf-remote-desktop.instance="+s.instance)
		n += len(strings.Fields(out))
	}
	return n
}

// wsConn is a minimal RFC 6455 client: enough to open a desktop's
// websocket through Caddy and read what the server sends first.
type wsConn struct {
	net.Conn
	r *bufio.Reader
}

// dialWS opens path as a websocket; it returns the HTTP status and, on 101,
// the connection.
func (s *system) dialWS(user int, path, origin string) (int, *wsConn) {
	s.t.Helper()
	resp, ws := s.dialWSHeaders(user, path, origin, nil)
	return resp.StatusCode, ws
}

// dialWSHeaders is dialWS with more request headers; it returns the
// handshake's answer (its body unread) and, on 101, the connection.
func (s *system) dialWSHeaders(user int, path, origin string, extra map[string]string) (*http.Response, *wsConn) {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.caddy.URL, "http://"), 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path, strings.TrimPrefix(s.caddy.URL, "http://"))
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n", base64.StdEncoding.EncodeToString(key))
	if origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", origin)
	}
	if user != 0 {
		fmt.Fprintf(&b, "Cookie: session=%s\r\n", s.cookie(user))
	}
	for k, v := range extra {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(b.String())); err != nil {
		s.t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		s.t.Fatalf("websocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return resp, nil
	}
	_ = c.SetDeadline(time.Time{})
	return resp, &wsConn{Conn: c, r: r}
}

// readFrame reads one (unfragmented) frame's payload.
func (w *wsConn) readFrame(timeout time.Duration) ([]byte, error) {
	_ = w.SetReadDeadline(time.Now().Add(timeout))
	defer w.SetReadDeadline(time.Time{})
	h := make([]byte, 2)
	if _, err := io.ReadFull(w.r, h); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		ext := make([]byte, 2)
		if _, err := io.ReadFull(w.r, ext); err != nil {
			return nil, err
		}
		n = int(ext[0])<<8 | int(ext[1])
	case 127:
		ext := make([]byte, 8)
		if _, err := io.ReadFull(w.r, ext); err != nil {
			return nil, err
		}
		n = 0
		for _, x := range ext {
			n = n<<8 | int(x)
		}
	}
	p := make([]byte, n)
	_, err := io.ReadFull(w.r, p)
	return p, err
}

// writeFrame sends one masked binary frame (clients must mask).
func (w *wsConn) writeFrame(p []byte) error {
	mask := []byte{1, 2, 3, 4}
	hdr := []byte{0x82}
	switch {
	case len(p) < 126:
		hdr = append(hdr, 0x80|byte(len(p)))
	case len(p) < 1<<16:
		hdr = append(hdr, 0x80|126, byte(len(p)>>8), byte(len(p)))
	default:
		hdr = append(hdr, 0x80|127, 0, 0, 0, 0, byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
	}
	hdr = append(hdr, mask...)
	body := make([]byte, len(p))
	for i := range p {
		body[i] = p[i] ^ mask[i%4]
	}
	_, err := w.Write(append(hdr, body...))
	return err
}
