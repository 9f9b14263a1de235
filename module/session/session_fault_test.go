package session_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// The host a session is being created on dies (its container is killed):
// the session becomes ready on another host, and once the host is back no
// container of the failed attempt is left on it.
func TestHostKilledMidCreation(t *testing.T) {
	r := newRig(t, rigConfig{hosts: 2, desktop: true, opts: session.Options{
		ReaperInterval: 500 * time.Millisecond, OrphanGrace: time.Second,
	}})
	first := r.tb.Host(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prepare := func(ctx context.Context, _ *hosts.Host, d *docker.Client) ([]hosts.Check, error) {
		return nil, d.EnsureNetwork(ctx, session.SessionNetwork, session.NetworkOptions)
	}
	go r.hosts.Run(ctx, func() time.Duration { return time.Second }, 10*time.Second, prepare)
	t.Cleanup(func() { restartHost(t, first.Name) })

	// The real desktop takes a second or two to answer: kill the host
	// while the creation is in flight there.
	if _, _, err := r.m.Create("9", ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _ := r.m.Get("9")
		if v.Host == first.IP && (v.State == session.Starting || v.State == session.WaitingForDesktop) {
			break
		}
		if v.State == session.Ready || time.Now().After(deadline) {
			t.Fatalf("did not catch the creation in flight on %s: state %s on %s", first.IP, v.State, v.Host)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if out, err := exec.Command("docker", "kill", first.Name).CombinedOutput(); err != nil {
		t.Fatalf("kill %s: %v %s", first.Name, err, out)
	}
	v := r.waitState("9", session.Ready, 90*time.Second)
	if v.Host == first.IP {
		t.Fatalf("session ready on the killed host %s", v.Host)
	}
	if r.hosts.Healthy(first.IP) {
		t.Error("the killed host is still in rotation")
	}

	restartHost(t, first.Name)
	deadline = time.Now().Add(60 * time.Second)
	for !r.hosts.Healthy(first.IP) {
		if time.Now().After(deadline) {
			t.Fatalf("host %s did not come back: %+v", first.IP, r.hosts.Status())
		}
		time.Sleep(250 * time.Millisecond)
	}
	h, _ := r.hosts.Get(first.IP)
	deadline = time.Now().Add(30 * time.Second)
	for {
		left := r.containers(h)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leftover containers on %s once it is back: %+v", len(left), first.IP, left)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// restartHost starts a killed test-bed host again and waits for its sshd
// and dockerd (the image's entrypoint starts both).
func restartHost(t *testing.T, name string) {
	t.Helper()
	state, _ := exec.Command("docker", "inspect", "-f", "{{.State.Running}}", name).Output()
	if string(state) == "true\n" {
		return
	}
	if out, err := exec.Command("docker", "start", name).CombinedOutput(); err != nil {
		t.Fatalf("start %s: %v %s", name, err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := exec.Command("docker", "exec", name, "docker", "info").Run(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: dockerd did not come back", name)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
