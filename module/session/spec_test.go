package session

import (
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
)

func TestContainerSpecBoundsTheDisk(t *testing.T) {
	f := config.File{WorkspaceHosts: []config.Host{{Hostname: "10.0.0.5"}}}
	f.ContainerDefaults.TmpSize = "64m"
	f.SetDefaults()
	s := &Session{ID: "abcdefghijkl", User: "7", Password: "pw"}
	spec := containerSpec(s, f.WorkspaceHosts[0], f.ContainerDefaults, DefaultInstance, time.Now())
	if !spec.ReadOnlyRoot {
		t.Error("root filesystem is writable by default")
	}
	if got, want := spec.Tmpfs["/tmp"], "rw,exec,nosuid,nodev,mode=1777,size=67108864"; got != want || len(spec.Tmpfs) != 1 {
		t.Errorf("tmpfs = %v, want only /tmp: %s", spec.Tmpfs, want)
	}

	f.ContainerDefaults.WritableRoot = true
	spec = containerSpec(s, f.WorkspaceHosts[0], f.ContainerDefaults, DefaultInstance, time.Now())
	if spec.ReadOnlyRoot || spec.Tmpfs != nil {
		t.Errorf("writable_root: read-only %v, tmpfs %v", spec.ReadOnlyRoot, spec.Tmpfs)
	}
}
