package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// testPrefix starts the name of everything these tests create.
const testPrefix = "rdtest-"

// sweepOnce removes what earlier, crashed runs left behind.
var sweepOnce sync.Once

type env struct {
	tb    *testbed.Testbed
	host  testbed.Host
	pool  *sshpool.Pool
	runID string
}

func setup(t *testing.T) *env {
	t.Helper()
	tb := testbed.Load(t)
	host := tb.Host(t, 0)
	hk, err := sshpool.KnownHosts(tb.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	p := sshpool.New(sshpool.Config{Addr: host.Addr(), User: host.User, Auth: tb.Auth(t), HostKeys: hk})
	t.Cleanup(func() { _ = p.Close() })
	sweepOnce.Do(func() {
		for _, h := range tb.Hosts {
			testbed.SweepStale(t, h, testPrefix, 15*time.Minute)
		}
	})
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &env{tb: tb, host: host, pool: p, runID: hex.EncodeToString(b)}
}

// docker runs fn with a Docker client over a pooled SSH connection.
func (e *env) docker(ctx context.Context, fn func(*docker.Client) error) error {
	return e.pool.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		return fn(docker.New(docker.SSHDialer(c, docker.DefaultSocket)))
	})
}

// name returns a container name for this run, removed (from this machine,
// with docker exec) when the test ends, whatever happens.
func (e *env) name(t *testing.T, suffix string) string {
	t.Helper()
	name := testPrefix + e.runID + "-" + suffix
	testbed.DumpOnFailure(t, e.host, name)
	t.Cleanup(func() { _, _ = testbed.TryExec(e.host, "docker", "rm", "-f", name) })
	return name
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegrationPingAndImages(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 30*time.Second)
	err := e.docker(ctx, func(d *docker.Client) error {
		if err := d.Ping(ctx); err != nil {
			return err
		}
		for ref, want := range map[string]bool{e.tb.DesktopImage: true, e.tb.TinyImage: true, "nope:latest": false} {
			got, err := d.ImagePresent(ctx, ref)
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("ImagePresent(%s) = %v; want %v", ref, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationContainerLifecycle(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 2*time.Minute)
	name := e.name(t, "tiny")
	labels := map[string]string{"rdtest.run": e.runID, "rdtest.case": "lifecycle"}

	var ctr docker.Container
	err := e.docker(ctx, func(d *docker.Client) error {
		var err error
		ctr, err = d.Run(ctx, docker.RunSpec{
			Name:        name,
			Image:       e.tb.TinyImage,
			Env:         []string{"VNC_PASSWORD=rdtest-pw", "RESOLUTION=1024x768"},
			Labels:      labels,
			MemoryBytes: 128 << 20,
			ShmBytes:    64 << 20,
			NanoCPUs:    500_000_000,
			PidsLimit:   64,
			BindAddress: e.host.IP,
			Ports:       []int{6080, 5900},
		})
		return err
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("running %s (%.12s): ports %v on %v", ctr.Name, ctr.ID, ctr.Ports, ctr.HostIPs)
	if !ctr.Running || ctr.State != "running" || ctr.Name != name || ctr.Image != e.tb.TinyImage || ctr.Labels["rdtest.run"] != e.runID {
		t.Fatalf("container %+v", ctr)
	}
	if ctr.HostIPs[6080] != e.host.IP || ctr.Ports[6080] == 0 || ctr.Ports[5900] == 0 {
		t.Fatalf("ports %v on %v; want 6080 and 5900 published on %s", ctr.Ports, ctr.HostIPs, e.host.IP)
	}

	// The hardening reached the daemon.
	out := testbed.Exec(t, e.host, "docker", "inspect", "--format",
		"{{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Privileged}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", name)
	if want := fmt.Sprintf("[ALL] [no-new-privileges:true] false no 64 %d 500000000", 128<<20); strings.TrimSpace(out) != want {
		t.Errorf("host config %q; want %q", strings.TrimSpace(out), want)
	}

	// noVNC's page answers on the published port, from this machine.
	url := "http://" + net.JoinHostPort(e.host.IP, strconv.Itoa(ctr.Ports[6080])) + "/vnc.html"
	if err := waitHTTP200(ctx, url); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}

	// List by label finds it (and only it).
	var listed []docker.Container
	if err := e.docker(ctx, func(d *docker.Client) (err error) {
		listed, err = d.List(ctx, map[string]string{"rdtest.run": e.runID, "rdtest.case": ""}, false)
		return err
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(listed) != 1 || listed[0].ID != ctr.ID || !listed[0].Running || listed[0].Ports[6080] != ctr.Ports[6080] {
		t.Fatalf("List = %+v; want just %s", listed, name)
	}

	// Remove twice: both succeed. Then it is gone.
	for i := 1; i <= 2; i++ {
		if err := e.docker(ctx, func(d *docker.Client) error { return d.Remove(ctx, ctr.ID, 2*time.Second) }); err != nil {
			t.Fatalf("Remove #%d: %v", i, err)
		}
	}
	err = e.docker(ctx, func(d *docker.Client) error { _, err := d.Inspect(ctx, ctr.ID); return err })
	if !errors.Is(err, docker.ErrNotFound) {
		t.Fatalf("Inspect after Remove = %v; want ErrNotFound", err)
	}
}

func TestIntegrationRunCleansUpAfterStartFailure(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, time.Minute)
	name := e.name(t, "nostart")
	labels := map[string]string{"rdtest.run": e.runID, "rdtest.case": "nostart"}

	// Publishing on an address the host does not have makes the start fail
	// after the create succeeded.
	err := e.docker(ctx, func(d *docker.Client) error {
		_, err := d.Run(ctx, docker.RunSpec{
			Name: name, Image: e.tb.TinyImage, Env: []string{"VNC_PASSWORD=rdtest-pw"},
			Labels: labels, BindAddress: "172.30.77.250", Ports: []int{6080},
		})
		return err
	})
	t.Logf("Run error: %v", err)
	var apiErr *docker.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "start container") {
		t.Fatalf("Run = %v; want the start's APIError", err)
	}
	var left []docker.Container
	if err := e.docker(ctx, func(d *docker.Client) (err error) {
		left, err = d.List(ctx, labels, true)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("Run left %+v behind", left)
	}

	// A missing image is refused, never pulled.
	err = e.docker(ctx, func(d *docker.Client) error {
		_, err := d.Run(ctx, docker.RunSpec{Name: name, Image: "nope:latest", Labels: labels})
		return err
	})
	if !errors.Is(err, docker.ErrNotFound) {
		t.Fatalf("Run(nope:latest) = %v; want ErrNotFound", err)
	}
}

func TestIntegrationEnsureNetworkAndAttach(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, time.Minute)
	network := testPrefix + e.runID + "-net"
	t.Cleanup(func() {
		// By ID: should a duplicate survive, the name would be ambiguous.
		ids, _ := testbed.TryExec(e.host, "docker", "network", "ls", "-q", "--filter", "name=^"+network+"$")
		for _, id := range strings.Fields(ids) {
			_, _ = testbed.TryExec(e.host, "docker", "network", "rm", id)
		}
	})
	name := e.name(t, "net")

	// Concurrent EnsureNetwork calls all succeed, and leave one network.
	const racers = 6
	errs := make(chan error, racers)
	for range racers {
		go func() {
			errs <- e.docker(ctx, func(d *docker.Client) error {
				return d.EnsureNetwork(ctx, network, map[string]string{"com.docker.network.bridge.enable_icc": "false"})
			})
		}()
	}
	for range racers {
		if err := <-errs; err != nil {
			t.Fatalf("EnsureNetwork: %v", err)
		}
	}
	out := testbed.Exec(t, e.host, "docker", "network", "ls", "--filter", "name=^"+network+"$", "--format", "{{.Name}} {{.Driver}}")
	if strings.TrimSpace(out) != network+" bridge" {
		t.Fatalf("networks named %s: %q; want exactly one bridge", network, out)
	}

	var ctr docker.Container
	err := e.docker(ctx, func(d *docker.Client) (err error) {
		ctr, err = d.Run(ctx, docker.RunSpec{
			Name: name, Image: e.tb.TinyImage, Env: []string{"VNC_PASSWORD=rdtest-pw"},
			Labels: map[string]string{"rdtest.run": e.runID}, BindAddress: e.host.IP, Ports: []int{6080}, Network: network,
		})
		return err
	})
	if err != nil {
		t.Fatalf("Run on %s: %v", network, err)
	}
	url := "http://" + net.JoinHostPort(e.host.IP, strconv.Itoa(ctr.Ports[6080])) + "/vnc.html"
	if err := waitHTTP200(ctx, url); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if err := e.docker(ctx, func(d *docker.Client) error { return d.Remove(ctx, ctr.ID, 0) }); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// waitHTTP200 polls url until it answers 200.
func waitHTTP200(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
