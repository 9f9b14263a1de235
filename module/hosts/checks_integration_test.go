package hosts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// check runs the host check of h reached on sshPort with the docker socket
// at socket, trusting the host keys in knownHosts.
func check(t *testing.T, tb *testbed.Testbed, h testbed.Host, sshPort int, knownHosts, socket string) []hosts.Check {
	t.Helper()
	hk, err := sshpool.KnownHosts(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("%s:%d", h.IP, sshPort)
	p := sshpool.New(sshpool.Config{Addr: addr, User: h.User, Auth: tb.Auth(t), HostKeys: hk})
	host := hosts.NewHost(config.Host{Hostname: h.IP, Port: sshPort, User: h.User, DockerImage: tb.DesktopImage, DockerSocket: socket},
		&hosts.SSHEngine{Pool: p, Socket: socket}, "")
	defer func() { _ = host.Engine.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	checks := hosts.CheckHost(ctx, host, nil)
	t.Logf("%s via %s, socket %s: %+v", h.Name, addr, socket, checks)
	return checks
}

// A rootless-style socket path (/run/user/1000/docker.sock, where the bed's
// dockerd also listens) is reached through docker_socket; a path where
// nothing listens fails with a message naming the path and the setting.
func TestIntegrationDockerSocketSetting(t *testing.T) {
	tb := testbed.Load(t)
	h := tb.Host(t, 0)
	checks := check(t, tb, h, 22, tb.KnownHosts, "/run/user/1000/docker.sock")
	for _, c := range checks {
		if !c.OK {
			t.Fatalf("check %s failed: %s", c.Name, c.Detail)
		}
	}
	if !strings.HasPrefix(checks[1].Detail, "API 1.") {
		t.Fatalf("docker check detail %q; want the negotiated API version", checks[1].Detail)
	}
	checks = check(t, tb, h, 22, tb.KnownHosts, "/run/user/1000/nothing.sock")
	if !checks[0].OK || checks[1].OK || !strings.Contains(checks[1].Detail, "nothing listens at /run/user/1000/nothing.sock (check docker_socket)") {
		t.Fatalf("checks %+v; want ssh ok and docker failing, naming the socket", checks)
	}
}

// An sshd with AllowStreamLocalForwarding no (a second sshd on the host, on
// port 2222) lets the client in but refuses the socket channel: the check
// says which setting does that.
func TestIntegrationCheckNamesAllowStreamLocalForwarding(t *testing.T) {
	tb := testbed.Load(t)
	h := tb.Host(t, 0)
	const port, pidFile = 2222, "/run/sshd-rdtest-nofwd.pid"
	testbed.Exec(t, h, "/usr/sbin/sshd", "-p", fmt.Sprint(port), "-o", "AllowStreamLocalForwarding=no",
		"-o", "PidFile="+pidFile, "-E", "/var/log/sshd-rdtest-nofwd.log")
	t.Cleanup(func() { _, _ = testbed.TryExec(h, "sh", "-c", "kill $(cat "+pidFile+") && rm -f "+pidFile) })

	// The second sshd has the host's keys; known_hosts names them by port.
	data, err := os.ReadFile(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, h.IP+" "); ok {
			lines = append(lines, fmt.Sprintf("[%s]:%d %s", h.IP, port, rest))
		}
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var checks []hosts.Check
	for range 50 { // sshd daemonizes before it listens
		if checks = check(t, tb, h, port, kh, ""); checks[0].OK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !checks[0].OK || checks[1].OK || !strings.Contains(checks[1].Detail, "AllowStreamLocalForwarding") {
		t.Fatalf("checks %+v; want ssh ok and the docker check naming AllowStreamLocalForwarding", checks)
	}
}
