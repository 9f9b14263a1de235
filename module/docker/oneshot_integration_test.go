package docker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// A one-shot container runs to its end; its exit code and both output
// streams come back, and it is gone afterwards.
func TestRunOnce(t *testing.T) {
	e := setup(t)
	name := e.name(t, "oneshot")
	var code int
	var out string
	err := e.docker(ctxFor(t, 2*time.Minute), func(d *docker.Client) error {
		var err error
		code, out, err = d.RunOnce(context.Background(), docker.OneShot{
			Name: name, Image: e.tb.TinyImage, User: "0", NetworkMode: "none",
			Entrypoint: []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; id -u; exit 3"},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 || !strings.Contains(out, "to-stdout\n") || !strings.Contains(out, "to-stderr\n") || !strings.Contains(out, "0\n") {
		t.Errorf("exit %d, output %q", code, out)
	}
	if left, _ := testbed.TryExec(e.host, "docker", "ps", "-aq", "--filter", "name=^"+name+"$"); strings.TrimSpace(left) != "" {
		t.Errorf("container %s left behind", name)
	}
	err = e.docker(ctxFor(t, time.Minute), func(d *docker.Client) error {
		_, _, err := d.RunOnce(context.Background(), docker.OneShot{Name: name, Image: "rdtest-no-such-image:1", Entrypoint: []string{"true"}})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "create") {
		t.Errorf("missing image: %v", err)
	}
}
