package system

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/isolation"
)

// metadataLocal gives every test-bed host 169.254.169.254 in its own
// network namespace (on lo: the hosts cannot load the dummy module), so
// that a probe of the metadata address that is not blocked lands on the
// host's own sshd (and is seen) instead of leaving the machine. Removed at
// the end of the test.
func metadataLocal(t *testing.T, tb *testbed.Testbed) {
	t.Helper()
	for _, h := range tb.Hosts {
		testbed.Exec(t, h, "ip", "addr", "replace", "169.254.169.254/32", "dev", "lo")
		t.Cleanup(func() { _, _ = testbed.TryExec(h, "ip", "addr", "del", "169.254.169.254/32", "dev", "lo") })
	}
}

// probe runs isolation.ProbeScript for targets with run (a command taking
// the script as its last argument) and returns each target's outcome:
// blocked, open or answered (refused: the SYN got through).
func probe(t *testing.T, h testbed.Host, targets []isolation.Target, run ...string) map[string]string {
	t.Helper()
	out, err := testbed.TryExec(h, append(run, isolation.ProbeScript(targets))...)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if state, addr, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			got[addr] = state
		}
	}
	return got
}

// From inside a player's desktop, as the player, nothing of ours answers:
// other desktops (bridge address and published port, same host and
// another host), every host's sshd on its bed address and on the desktop
// network's gateway, and the metadata address. The same probes from a
// container without the rules reach every target (the control), the
// player's own desktop still works through the proxy, and every host's
// check reports the proof on the dashboard and in the event log.
func TestDesktopsReachNothingOfOurs(t *testing.T) {
	tb := testbed.Load(t)
	metadataLocal(t, tb)
	// A listener on the test bed's network (not a host): open_ranges opens
	// it, while the hosts in the same range stay closed.
	listener := "i11net-listener-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("docker", "run", "-d", "--rm", "--name", listener, "--network", tb.Network,
		"-e", "VNC_PASSWORD=x", tb.TinyImage).CombinedOutput(); err != nil {
		t.Fatalf("start the listener: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", listener).Run() })
	lip, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", listener).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := newSystem(t, sysConfig{desktop: true, extra: "\t\topen_ranges " + tb.Subnet})
	h1, h2 := tb.Host(t, 0), tb.Host(t, 1)

	// Placement by draining: the first and third desktop on host 1, the
	// second on host 2.
	hostReq := func(action, ip string) {
		if code, out, _ := s.req(e2e.AdminUserID, "POST", "/remote-desktop/admin/api/hosts/"+action, fmt.Sprintf(`{"host":%q}`, ip), nil); code != 200 {
			t.Fatalf("%s %s: %d %v", action, ip, code, out)
		}
	}
	p := s.players(3)
	for _, h := range tb.Hosts[1:] {
		hostReq("drain", h.IP)
	}
	s.createReady(p[0])
	s.createReady(p[2])
	hostReq("drain", h1.IP)
	hostReq("undrain", h2.IP)
	s.createReady(p[1])
	alice, peer, far := s.inspect(h1, p[0]), s.inspect(h1, p[2]), s.inspect(h2, p[1])
	for _, c := range []inspected{alice, peer, far} {
		if _, ok := c.NetworkSettings.Networks[isolation.Network]; !ok {
			t.Fatalf("container %.12s not on %s: %v", c.ID, isolation.Network, c.NetworkSettings.Networks)
		}
	}
	if uid := strings.TrimSpace(testbed.Exec(t, h1, "docker", "exec", alice.ID, "id", "-u")); uid == "0" {
		t.Fatal("the probe would run as root, not as the player")
	}
	gw := strings.TrimSpace(testbed.Exec(t, h1, "docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", isolation.Network))
	addr := func(name, ip string, port string) isolation.Target {
		n, _ := strconv.Atoi(port)
		return isolation.Target{Name: name, Addr: netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(n))}
	}
	peerIP := peer.NetworkSettings.Networks[isolation.Network].IPAddress
	targets := []isolation.Target{
		addr("same-host desktop, published port", h1.IP, peer.NetworkSettings.Ports["6080/tcp"][0].HostPort),
		addr("other-host desktop, published port", h2.IP, far.NetworkSettings.Ports["6080/tcp"][0].HostPort),
		addr("gateway sshd", gw, "22"),
		addr("metadata (on the host, sshd)", "169.254.169.254", "22"),
		addr("metadata :80 (on the host)", "169.254.169.254", "80"),
	}
	for _, h := range tb.Hosts {
		targets = append(targets, addr(h.Name+" sshd", h.IP, "22"))
	}
	peerTarget := addr("same-host desktop, bridge address", peerIP, "6080")

	// Control: without the rules, every target answers. A container on
	// host 1's default bridge reaches the published ports and sshd; the
	// host's own namespace reaches the peer's bridge address.
	ctl := probe(t, h1, targets, "docker", "run", "--rm", "--name", "i11net-control-"+s.Instance, "--network", "bridge",
		"--entrypoint", "bash", tb.DesktopImage, "-c")
	for _, tg := range targets[:4] { // :80 has no listener
		if ctl[tg.Addr.String()] != "open" {
			t.Errorf("control: %s %s is %q from a container without the rules, want open (the probe could not fail)", tg.Name, tg.Addr, ctl[tg.Addr.String()])
		}
	}
	if got := probe(t, h1, []isolation.Target{peerTarget}, "bash", "-c"); got[peerTarget.Addr.String()] != "open" {
		t.Errorf("control: the peer's bridge address from the host: %v, want open", got)
	}

	// The attack: the player's shell in their desktop.
	start := time.Now()
	got := probe(t, h1, append(targets, peerTarget), "docker", "exec", alice.ID, "bash", "-c")
	for _, tg := range append(targets, peerTarget) {
		if got[tg.Addr.String()] != "blocked" {
			t.Errorf("from a desktop: %s %s is %q, want blocked", tg.Name, tg.Addr, got[tg.Addr.String()])
		}
	}
	t.Logf("%d targets probed from inside the desktop, all blocked, in %v", len(targets)+1, time.Since(start).Round(10*time.Millisecond))

	// The player's own desktop still works through the proxy.
	code, ws := s.dialWS(p[0], fmt.Sprintf("/remote-desktop/vnc/%d/websockify", p[0]), s.Caddy.URL)
	if code != 101 {
		t.Fatalf("own desktop's websocket: %d", code)
	}
	if b, err := ws.ReadWithin(10 * time.Second); err != nil || !strings.HasPrefix(string(b), "RFB ") {
		t.Errorf("own desktop's greeting %q %v", b, err)
	}
	ws.Close()

	// Each host's check proved isolation; the dashboard and the event log
	// say so.
	_, out, _ := s.req(e2e.AdminUserID, "GET", "/remote-desktop/admin/api/hosts", "", nil)
	hostsOut, _ := out["data"].(map[string]any)["hosts"].([]any)
	for _, raw := range hostsOut {
		hs := raw.(map[string]any)
		found := false
		checks, _ := hs["checks"].([]any)
		for _, c := range checks {
			c := c.(map[string]any)
			if c["name"] == "isolation" {
				found = true
				if c["ok"] != true || !strings.HasPrefix(fmt.Sprint(c["detail"]), "isolated: ") {
					t.Errorf("host %v isolation check: %v", hs["name"], c)
				}
				t.Logf("host %v: %v", hs["name"], c["detail"])
			}
		}
		if !found {
			t.Errorf("host %v has no isolation check: %v", hs["name"], checks)
		}
	}
	_, ev, _ := s.req(e2e.AdminUserID, "GET", "/remote-desktop/admin/api/events/recent?limit=200", "", nil)
	if n := strings.Count(fmt.Sprint(ev), "isolation: isolated: "); n < len(tb.Hosts) {
		t.Errorf("%d host_check events report the isolation proof, want %d", n, len(tb.Hosts))
	}

	// An admin's re-check proves again; the rules stay single (idempotent)
	// and dockerd's own chain still ends in its RETURN.
	// (A proof may take longer than e2e.Do's 30 s on a loaded machine.)
	var took []time.Duration
	for range 3 {
		req, _ := http.NewRequest("POST", s.Caddy.URL+"/remote-desktop/admin/api/hosts/check", strings.NewReader(fmt.Sprintf(`{"host":%q}`, h1.IP)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", s.Caddy.URL)
		req.Header.Set("Cookie", "session="+s.Cookie(e2e.AdminUserID))
		t0 := time.Now()
		resp, err := e2e.LoopbackClient(3 * time.Minute).Do(req)
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("check: %d", resp.StatusCode)
		}
		took = append(took, time.Since(t0))
	}
	sort.Slice(took, func(i, k int) bool { return took[i] < took[k] })
	t.Logf("admin check of one host (install + prove): %v (median %v)", took, took[1].Round(10*time.Millisecond))
	user := testbed.Exec(t, h1, "iptables", "-S", "DOCKER-USER")
	if strings.Count(user, "-j RD-DESKTOPS") != 1 || !strings.HasSuffix(strings.TrimSpace(user), "-A DOCKER-USER -j RETURN") {
		t.Errorf("DOCKER-USER after repeated installs:\n%s", user)
	}
	if in := testbed.Exec(t, h1, "iptables", "-S", "INPUT"); strings.Count(in, "-j RD-DESKTOPS-IN") != 1 {
		t.Errorf("INPUT after repeated installs:\n%s", in)
	}
	// Right after the re-check (which installed this test's policy: hosts
	// sharing a policy is the rule, see README), an allowed target answers
	// the same probe from inside the desktop, and a desktop still does not.
	allowed := addr("listener in open_ranges", strings.TrimSpace(string(lip)), "6080")
	got = probe(t, h1, []isolation.Target{allowed, targets[0]}, "docker", "exec", alice.ID, "bash", "-c")
	if got[allowed.Addr.String()] != "open" || got[targets[0].Addr.String()] != "blocked" {
		t.Errorf("after re-checks: %s want open, %s want blocked: %v", allowed.Addr, targets[0].Addr, got)
	}
	// And the proxy's own path to a desktop is untouched.
	if c, err := net.DialTimeout("tcp", targets[0].Addr.String(), 3*time.Second); err != nil {
		t.Errorf("the proxy's path to the desktop: %v", err)
	} else {
		c.Close()
	}
}
