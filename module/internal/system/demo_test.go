package system

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// The demo's identity: users from Caddy's basic_auth, admins listed in the
// config. The demo Caddyfile itself runs, with its hosts file pointed at
// the test bed and a missing one reported as the localhost fallback.
func TestDemoCaddyfileWithBasicAuth(t *testing.T) {
	tb := testbed.Load(t)
	demo, err := os.ReadFile(filepath.Join("..", "..", "..", "caddyfile", "demo.Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	instance := fmt.Sprintf("demo%d", os.Getpid()%10000)
	cfg := strings.Replace(string(demo), "admin localhost:2019", "admin {{ADMIN}}", 1)
	cfg = strings.Replace(cfg, "{$RD_PORT:8080}", "{{PORT}}", 1)
	cfg = strings.Replace(cfg, "remote_desktop {\n", fmt.Sprintf("remote_desktop {\n\t\tknown_hosts %s\n\t\tssh_key %s\n\t\tinstance %s\n", tb.KnownHosts, tb.SSHKey, instance), 1)
	c := e2e.StartCaddy(t, e2e.CaddyOptions{Caddyfile: cfg, Env: []string{
		"RD_HOSTS_FILE=" + tb.HostsFile,
	}})
	t.Cleanup(func() {
		_ = c.Stop()
		for _, h := range tb.Hosts {
			out, _ := testbed.TryExec(h, "docker", "ps", "-aq", "--filter", "label=io.ctf-remote-desktop.instance="+instance)
			if ids := strings.Fields(out); len(ids) > 0 {
				_, _ = testbed.TryExec(h, append([]string{"docker", "rm", "-f"}, ids...)...)
			}
		}
	})
	base := c.URL
	do := func(user, method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
		req.Host = fmt.Sprintf("localhost:%d", c.Port) // the demo's site address
		if user != "" {
			req.SetBasicAuth(user, user)
		}
		if method == "POST" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Header.Get("Location"))
		return resp.StatusCode, b.String()
	}
	if code, _ := do("", "GET", "/remote-desktop"); code != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d, want basic_auth's 401", code)
	}
	if code, _ := do("player", "GET", "/remote-desktop/admin/api/hosts"); code != http.StatusForbidden {
		t.Fatalf("player on admin: %d", code)
	}
	if code, _ := do("admin", "GET", "/remote-desktop/admin/api/hosts"); code != http.StatusOK {
		t.Fatalf("admin: %d", code)
	}
	if code, _ := do("player", "POST", "/remote-desktop/api/create"); code != http.StatusAccepted {
		t.Fatalf("create: %d", code)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, _ := do("player", "GET", "/remote-desktop/vnc/player/vnc.html")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo player's desktop never answered (last %d)\n%s", code, e2e.Tail(c.Logs(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _ := do("player2", "GET", "/remote-desktop/vnc/player/vnc.html"); code != http.StatusForbidden {
		t.Fatalf("player2 on player's desktop: %d", code)
	}
	if code, loc := do("player", "GET", "/"); code != http.StatusFound || loc != "/remote-desktop" {
		t.Fatalf("/ → %d %q", code, loc)
	}
}

var noRedirects = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
