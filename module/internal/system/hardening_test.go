package system

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

type inspected struct {
	ID     string
	Config struct {
		User   string
		Labels map[string]string
	}
	HostConfig struct {
		Privileged      bool
		CapAdd, CapDrop []string
		SecurityOpt     []string
		PidsLimit       *int64
		Memory          int64
		NanoCpus        int64
		ShmSize         int64
		ReadonlyRootfs  bool
		PortBindings    map[string][]struct{ HostIp, HostPort string }
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
		Ports    map[string][]struct{ HostIp, HostPort string }
	}
}

func (s *system) inspect(h testbed.Host, userID int) inspected {
	s.t.Helper()
	id := strings.TrimSpace(testbed.Exec(s.t, h, "docker", "ps", "-q", "--filter", "label=io.ctf-remote-desktop.instance="+s.Instance,
		"--filter", fmt.Sprintf("label=io.ctf-remote-desktop.user=%d", userID)))
	if id == "" {
		s.t.Fatalf("no container of user %d on %s", userID, h.Name)
	}
	var out []inspected
	if err := json.Unmarshal([]byte(testbed.Exec(s.t, h, "docker", "inspect", id)), &out); err != nil || len(out) != 1 {
		s.t.Fatalf("inspect %s: %v", id, err)
	}
	return out[0]
}

// Session containers are hardened: no new privileges, every capability
// dropped, limits from the config, a pids limit, not privileged, the
// desktop as a non-root user, ports bound to the host's private address
// only, on a network where sessions cannot reach each other.
func TestContainersAreHardened(t *testing.T) {
	s := newSystem(t, sysConfig{desktop: true})
	s.createReady(alice)
	h := s.HostOf(s.Status(alice)["host"])
	c := s.inspect(h, alice)
	hc := c.HostConfig
	if hc.Privileged || len(hc.CapAdd) != 0 || len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" {
		t.Errorf("privileges: privileged=%v cap_add=%v cap_drop=%v", hc.Privileged, hc.CapAdd, hc.CapDrop)
	}
	if !strings.Contains(strings.Join(hc.SecurityOpt, ","), "no-new-privileges") {
		t.Errorf("security_opt %v lacks no-new-privileges", hc.SecurityOpt)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit <= 0 {
		t.Error("no pids limit")
	}
	if hc.Memory != 256<<20 || hc.ShmSize != 64<<20 || hc.NanoCpus != 1e9 {
		t.Errorf("limits memory=%d shm=%d nanocpus=%d, want the configured 256m, 64m, 1", hc.Memory, hc.ShmSize, hc.NanoCpus)
	}
	if uid := strings.TrimSpace(testbed.Exec(t, h, "docker", "exec", c.ID, "id", "-u")); uid == "0" {
		t.Error("the desktop runs as root")
	}
	for port, bs := range hc.PortBindings {
		for _, b := range bs {
			if b.HostIp != h.IP {
				t.Errorf("port %s published on %q, want only %s", port, b.HostIp, h.IP)
			}
		}
	}
	if _, ok := c.NetworkSettings.Networks["rd-desktops"]; !ok || len(c.NetworkSettings.Networks) != 1 {
		t.Errorf("networks %v, want only rd-desktops", c.NetworkSettings.Networks)
	}
	icc := testbed.Exec(t, h, "docker", "network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.enable_icc"}}`, "rd-desktops")
	if strings.TrimSpace(icc) != "false" {
		t.Errorf("rd-desktops enable_icc = %q, want false", icc)
	}
}

// The desktop's published port answers on the host's configured address
// and on no other address of the host; a second session's container cannot
// reach the first one.
func TestDesktopPortsOnlyOnTheBindAddress(t *testing.T) {
	s := newSystem(t, sysConfig{extra: "\t\tpublish_vnc"})
	s.createReady(alice)
	s.createReady(bob)
	sessA := s.Status(alice)
	h := s.HostOf(sessA["host"])
	a := s.inspect(h, alice)
	var port, vnc string
	if p := a.NetworkSettings.Ports["6080/tcp"]; len(p) > 0 {
		port = p[0].HostPort
	}
	if p := a.NetworkSettings.Ports["5900/tcp"]; len(p) > 0 {
		vnc = p[0].HostPort
	}
	if port == "" || vnc == "" {
		t.Fatalf("published ports %v", a.NetworkSettings.Ports)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, port), 3*time.Second); err != nil {
		t.Fatalf("the bind address does not answer: %v", err)
	} else {
		c.Close()
	}
	// Every other address of the host: its loopback, its Docker bridges.
	addrs := regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+)/`).FindAllStringSubmatch(testbed.Exec(t, h, "ip", "-4", "-o", "addr"), -1)
	tried := 0
	for _, m := range addrs {
		ip := m[1]
		if ip == h.IP {
			continue
		}
		for _, p := range []string{port, vnc} {
			tried++
			if out, err := testbed.TryExec(h, "bash", "-c", fmt.Sprintf("timeout 2 bash -c 'echo > /dev/tcp/%s/%s' && echo open", ip, p)); err == nil && strings.Contains(out, "open") {
				t.Errorf("port %s is reachable on %s, another address of the host", p, ip)
			}
		}
	}
	if tried == 0 {
		t.Fatal("found no other address on the host to try")
	}
	// Inter-container traffic is off: bob's container cannot reach alice's.
	if s.HostOf(s.Status(bob)["host"]).IP == h.IP {
		b := s.inspect(h, bob)
		ipA := a.NetworkSettings.Networks["rd-desktops"].IPAddress
		out, err := testbed.TryExec(h, "docker", "exec", b.ID, "bash", "-c", fmt.Sprintf("timeout 3 bash -c 'echo > /dev/tcp/%s/6080' && echo open", ipA))
		if err == nil && strings.Contains(out, "open") {
			t.Errorf("bob's container reached alice's at %s:6080", ipA)
		}
	}
}

// Oversized bodies, wrong content types and huge headers get clear 4xx
// answers; nothing is lost.
func TestBadRequestsAreRefused(t *testing.T) {
	s := newSystem(t, sysConfig{})
	big := `{"pad":"` + strings.Repeat("x", 64<<10) + `"}`
	for _, c := range []struct {
		name, path, body string
		hdr              map[string]string
		want             int
	}{
		{"oversized body", "/remote-desktop/api/create", big, nil, http.StatusRequestEntityTooLarge},
		{"unknown field", "/remote-desktop/api/create", `{"user_id":"8"}`, nil, http.StatusBadRequest},
		{"not JSON", "/remote-desktop/api/create", `{`, nil, http.StatusBadRequest},
		{"text/plain", "/remote-desktop/api/create", `{}`, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"admin body of the wrong shape", "/remote-desktop/admin/api/kill", `{"user_id":{"a":1}}`, nil, http.StatusBadRequest},
	} {
		user := alice
		if strings.Contains(c.path, "admin") {
			user = e2e.AdminUserID
		}
		code, out, _ := s.req(user, "POST", c.path, c.body, c.hdr)
		if code != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, code, out, c.want)
		}
	}
	resp, _ := e2e.Do(t, "GET", s.Caddy.URL+"/remote-desktop/api/status", map[string]string{
		"Cookie": "session=" + s.Cookie(alice), "X-Huge": strings.Repeat("a", 2<<20)}, "")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB header: %d, want 431", resp.StatusCode)
	}
	if code, _, _ := s.req(alice, "GET", "/remote-desktop/api/status", "", nil); code != 200 {
		t.Errorf("status after the bad requests: %d", code)
	}
}

// Thousands of event-stream clients opening and dropping leave no
// listener or goroutine behind and never block the log.
func TestManySSEClientsOpenAndDrop(t *testing.T) {
	s := newSystem(t, sysConfig{})
	goroutines := func() int {
		resp, body := e2e.Do(t, "GET", "http://"+s.Caddy.AdminAddr+"/debug/pprof/goroutine?debug=1", nil, "")
		if resp.StatusCode != 200 {
			t.Fatalf("pprof: %d", resp.StatusCode)
		}
		m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindSubmatch(body)
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	cookie := "session=" + s.Cookie(e2e.AdminUserID)
	s.req(e2e.AdminUserID, "GET", "/remote-desktop/admin/api/hosts", "", nil) // warm the identity cache
	s.createReady(alice)                                                      // and the SSH pools
	time.Sleep(time.Second)
	base := goroutines()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	var failed sync.Map
	for i := range 2000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.Caddy.URL, "http://"), 5*time.Second)
			if err != nil {
				failed.Store(i, err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET /remote-desktop/admin/api/events/stream HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n", cookie)
			buf := make([]byte, 512)
			if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
				failed.Store(i, fmt.Errorf("%q %v", buf[:n], err))
			}
		}()
	}
	wg.Wait()
	n := 0
	failed.Range(func(k, v any) bool {
		if n < 3 {
			t.Logf("client %v: %v", k, v)
		}
		n++
		return true
	})
	if n > 0 {
		t.Errorf("%d of 2000 stream clients failed", n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		g := goroutines()
		if g <= base+20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after 2000 stream clients left, %d before", g, base)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// With novnc_root, Caddy serves noVNC's files itself and only the
// websocket reaches the player's container: a player cannot serve their
// own HTML under the site's origin.
func TestNoVNCRootServesFilesFromCaddy(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("bash", "-c", fmt.Sprintf("docker run --rm --entrypoint tar rd-desktop:latest -C /usr/share -c novnc | tar -x -C %s", dir)).CombinedOutput()
	if err != nil {
		t.Fatalf("copy noVNC out of the desktop image: %v %s", err, out)
	}
	s := newSystem(t, sysConfig{handler: "\t\tnovnc_root " + filepath.Join(dir, "novnc")})
	s.createReady(alice)
	get := func(path string) (int, string) {
		resp, body := e2e.Do(t, "GET", s.Caddy.URL+path, map[string]string{"Cookie": "session=" + s.Cookie(alice)}, "")
		return resp.StatusCode, string(body)
	}
	if code, body := get("/remote-desktop/vnc/7/vnc.html"); code != 200 || !strings.Contains(body, "noVNC") {
		t.Fatalf("vnc.html: %d, from noVNC: %v", code, strings.Contains(body, "noVNC"))
	}
	if code, _ := get("/remote-desktop/vnc/7/headers"); code != http.StatusNotFound {
		t.Fatalf("a container path was proxied: %d", code)
	}
	if code, _ := get("/remote-desktop/vnc/8/vnc.html"); code != http.StatusForbidden {
		t.Fatalf("someone else's desktop: %d", code)
	}
	code, ws := s.dialWS(alice, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("websocket: %d", code)
	}
	defer ws.Close()
	if p, err := ws.ReadWithin(5 * time.Second); err != nil || string(p) != "RFB 003.008\n" {
		t.Fatalf("greeting %q %v", p, err)
	}
}
