package remotedesktop

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
)

// reloadApp is a remote_desktop app as Caddy provisions it, on the local
// engine at a socket that does not exist (nothing is dialed), sharing the
// control plane under key, with maxSessions telling configs apart.
func reloadApp(t *testing.T, key, dir string, maxSessions int) (*App, context.CancelFunc) {
	t.Helper()
	var f config.File
	f.WorkspaceHosts = []config.Host{{Hostname: "localhost", MaxSessions: maxSessions, DockerSocket: filepath.Join(dir, "docker.sock")}}
	a, _ := newTestApp(t, &App{HostsFile: filepath.Join(dir, "hosts.yml"), File: f})
	settings, err := a.resolve()
	if err != nil {
		t.Fatal(err)
	}
	a.settings = settings
	var cancel context.CancelFunc
	a.ctx, cancel = caddy.NewContext(caddy.Context{Context: context.Background()})
	a.rtKey = key
	store := storageStore{storage: &certmagic.FileStorage{Path: filepath.Join(dir, "storage")}, logger: zap.NewNop()}
	val, _, err := runtimes.LoadOrNew(key, func() (caddy.Destructor, error) { return newRuntime(a, store), nil })
	if err != nil {
		t.Fatal(err)
	}
	a.rt = val.(*runtime)
	return a, cancel
}

func maxSessions(r *runtime) int { return r.hosts.Hosts()[0].Config().MaxSessions }

// Caddy's reload order (caddy.go run): the new config is provisioned and
// started while the old one runs; if another app then fails to start, the
// new one is stopped and cleaned up and the old one keeps running. The
// control plane must then run with the old config's settings again.
func TestRejectedReloadRestoresRunningSettings(t *testing.T) {
	key, dir := "remote_desktop|test-"+t.Name(), t.TempDir()
	old, stopOld := reloadApp(t, key, dir, 2)
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	r := old.rt

	// A reload rejected by another app after ours started.
	rejected, cancelRejected := reloadApp(t, key, dir, 5)
	if err := rejected.Start(); err != nil {
		t.Fatal(err)
	}
	if maxSessions(r) != 5 {
		t.Fatal("the new config was not applied at Start")
	}
	_ = rejected.Stop()
	cancelRejected()
	_ = rejected.Cleanup()
	if got := maxSessions(r); got != 2 || r.settings != old {
		t.Fatalf("after the rejected reload max_sessions = %d, current config is the old one: %t; want 2, true", got, r.settings == old)
	}

	// A reload that succeeds: the old config's Stop and Cleanup change nothing.
	next, stopNext := reloadApp(t, key, dir, 7)
	if err := next.Start(); err != nil {
		t.Fatal(err)
	}
	_ = old.Stop()
	stopOld()
	_ = old.Cleanup()
	if got := maxSessions(r); got != 7 || r.settings != next {
		t.Fatalf("after a good reload max_sessions = %d; want 7", got)
	}

	// Shutdown: the last config goes, the old one is not brought back.
	_ = next.Stop()
	stopNext()
	_ = next.Cleanup()
	if got := maxSessions(r); got != 7 || r.settings != next {
		t.Fatalf("after shutdown max_sessions = %d; want 7 (nothing restored)", got)
	}
	if _, ok := runtimes.References(key); ok {
		t.Fatal("the control plane outlived its last config")
	}
}
