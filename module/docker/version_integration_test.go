package docker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// onHost runs fn with a Docker client (speaking version; "" negotiates) over
// an SSH connection of its own to h.
func onHost(t *testing.T, tb *testbed.Testbed, h testbed.Host, version string, fn func(ctx context.Context, d *docker.Client) error) error {
	t.Helper()
	hk, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	p := sshpool.New(sshpool.Config{Addr: h.Addr(), User: h.User, Auth: tb.Auth(t), HostKeys: hk})
	defer func() { _ = p.Close() }()
	ctx := ctxFor(t, 30*time.Second)
	return p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		return fn(ctx, docker.New(docker.SSHDialer(c, docker.DefaultSocket)).WithVersion(version))
	})
}

func minor(t *testing.T, v string) int {
	t.Helper()
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || major != 1 {
		t.Fatalf("API version %q is not 1.N", v)
	}
	return minor
}

// Each host of the bed gets the highest API version both sides serve: 1.41
// at most from Debian's Docker 20.10, 1.44 at least from the Engine 29 host
// (it refuses less).
func TestIntegrationNegotiatedVersionPerHost(t *testing.T) {
	tb := testbed.Load(t)
	for _, h := range tb.Hosts {
		var n docker.Negotiation
		err := onHost(t, tb, h, "", func(ctx context.Context, d *docker.Client) (err error) {
			n, err = d.Negotiate(ctx)
			return err
		})
		if err != nil {
			t.Errorf("%s: negotiate: %v", h.Name, err)
			continue
		}
		t.Logf("%s (%s, Docker Engine %s): %s", h.Name, h.IP, h.Engine, n)
		switch h.EngineMajor() {
		case 20:
			if minor(t, n.Version) > 41 {
				t.Errorf("%s: Docker 20.10 negotiated %s; want <= 1.41", h.Name, n.Version)
			}
		case 0:
			t.Errorf("%s: testbed.json records no engine: bring the bed up with the current testbed.sh", h.Name)
		default:
			if minor(t, n.Version) < 44 || n.DaemonMin != "1.44" {
				t.Errorf("%s: Engine %s negotiated %s (daemon minimum %q); want >= 1.44 with minimum 1.44", h.Name, h.Engine, n.Version, n.DaemonMin)
			}
		}
	}
	tb.Engine29Host(t) // fails (RD_TESTBED_REQUIRED=1) when the bed has no Engine 29 host
}

// The Engine 29 host refuses API 1.41, what this client once pinned: a
// regression to a fixed old version fails here.
func TestIntegrationEngine29RefusesAPI141(t *testing.T) {
	tb := testbed.Load(t)
	h := tb.Engine29Host(t)
	err := onHost(t, tb, h, "1.41", func(ctx context.Context, d *docker.Client) error {
		_, err := d.ImagePresent(ctx, tb.TinyImage) // GET /v1.41/images/rd-tiny:latest/json
		return err
	})
	var apiErr *docker.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, "too old") {
		t.Fatalf("%s at API 1.41: %v; want 400 \"client version 1.41 is too old\"", h.Name, err)
	}
	t.Logf("%s at API 1.41: %v", h.Name, apiErr)
	err = onHost(t, tb, h, "", func(ctx context.Context, d *docker.Client) error {
		ok, err := d.ImagePresent(ctx, tb.TinyImage)
		if err == nil && !ok {
			err = fmt.Errorf("%s missing", tb.TinyImage)
		}
		if err == nil && minor(t, d.Version()) < 44 {
			err = fmt.Errorf("spoke API %s", d.Version())
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s with a negotiating client: %v", h.Name, err)
	}
}
