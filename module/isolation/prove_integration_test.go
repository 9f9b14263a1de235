package isolation_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/isolation"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// prove runs isolation.Prove on the test bed's first host over SSH, as
// the host check does.
func prove(t *testing.T, h isolation.Host) isolation.Result {
	t.Helper()
	tb := testbed.Load(t)
	host := tb.Host(t, 0)
	hk, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	pool := sshpool.New(sshpool.Config{Addr: host.Addr(), User: host.User, Auth: tb.Auth(t), HostKeys: hk})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res isolation.Result
	err = pool.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		d := docker.New(docker.SSHDialer(c, docker.DefaultSocket))
		if err := d.EnsureNetwork(ctx, isolation.Network, isolation.NetworkOptions); err != nil {
			return err
		}
		if h.Image == "" {
			h.Image = tb.TinyImage
		}
		res = isolation.Prove(ctx, d, h, isolation.Policy{Egress: true})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The proof can fail: a target that a desktop does reach (its own
// loopback, which no rule may close) makes the host "NOT isolated", named.
func TestProveReportsWhatWasReached(t *testing.T) {
	res := prove(t, isolation.Host{SSHPort: 22, Others: []isolation.Target{
		{Name: "own loopback", Addr: netip.MustParseAddrPort("127.0.0.1:1")},
	}})
	if res.Isolated || !strings.Contains(res.Detail, "NOT isolated: a desktop reached own loopback 127.0.0.1:1 (answered)") {
		t.Errorf("got %+v", res)
	}
	if strings.Contains(res.Detail, "gateway") || strings.Contains(res.Detail, "metadata") {
		t.Errorf("a target the rules close was reached: %s", res.Detail)
	}
}

// A host where the rules cannot be installed says so.
func TestProveSaysWhenItCannotInstall(t *testing.T) {
	res := prove(t, isolation.Host{SSHPort: 22, Image: "rdtest-no-such-image:1"})
	if res.Isolated || !strings.HasPrefix(res.Detail, "cannot install the firewall rules: ") {
		t.Errorf("got %+v", res)
	}
}
