package faults

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// Caddy's storage cannot be written: Caddy refuses to start and says why,
// rather than keep sessions only in memory. Tests run as root, which file
// permissions do not stop: the storage is put on a read-only tmpfs instead.
func TestUnwritableStorageStopsStart(t *testing.T) {
	t.Run("storage file_system on a read-only mount", func(t *testing.T) {
		dir := mountTmpfs(t, "ro")
		s := prepareSystem(t, sysConfig{global: fmt.Sprintf("\tstorage file_system %s", dir)})
		msg := startExpectingFailure(t, e2e.CaddyOptions{Caddyfile: s.caddyfile()})
		checkRefusal(t, msg, dir)
	})
	t.Run("default storage in a read-only XDG_DATA_HOME", func(t *testing.T) {
		dataDir := t.TempDir()
		data := filepath.Join(dataDir, "data") // XDG_DATA_HOME; storage is data/caddy
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		mount(t, data, "ro")
		s := prepareSystem(t, sysConfig{})
		msg := startExpectingFailure(t, e2e.CaddyOptions{Caddyfile: s.caddyfile(), DataDir: dataDir})
		checkRefusal(t, msg, data)
	})
}

func checkRefusal(t *testing.T, msg, where string) {
	t.Helper()
	if msg == "" {
		t.Fatal("Caddy started on a storage it cannot write")
	}
	line := ""
	for _, l := range strings.Split(msg, "\n") {
		if strings.Contains(l, "not writable") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, where) || !strings.Contains(line, "read-only file system") {
		t.Fatalf("Caddy did not say the storage at %s is not writable:\n%s", where, msg)
	}
	if !strings.Contains(msg, "exited early") {
		t.Errorf("Caddy did not exit:\n%s", msg)
	}
	t.Logf("Caddy refused to start: %s", line)
}

// The storage turns read-only under a running Caddy: what needs a write
// fails loudly (no session lives only in memory), what does not goes on,
// and all is well once it is writable again.
func TestStorageTurnsReadOnly(t *testing.T) {
	dir := mountTmpfs(t, "rw")
	s := newSystem(t, sysConfig{global: fmt.Sprintf("\tstorage file_system %s", dir)})
	s.WaitEachHealthy(30 * time.Second)
	alice := s.NewUser()
	s.CreateReady(alice, 60*time.Second)
	before := s.Snap(alice, apiBound)

	remount(t, dir, "ro")
	mark := s.LastEventID()
	if a := s.bounded("extend, storage read-only", alice, http.MethodPost, "/remote-desktop/api/extend", "{}"); a.Code < 500 {
		t.Errorf("extend with a read-only storage: %d %v, want an error", a.Code, a.Body)
	}
	if got := s.Snap(alice, apiBound); got != before {
		t.Errorf("a failed extend changed the session: %+v, before %+v", got, before)
	}
	bob := s.NewUser()
	s.bounded("create, storage read-only", bob, http.MethodPost, "/remote-desktop/api/create", "{}")
	sess, ok := s.TryWaitReady(bob, 30*time.Second)
	if ok || sess == nil || sess["state"] != "failed" {
		t.Fatalf("a creation with a read-only storage: ok=%v %v, want failed", ok, sess)
	}
	if !strings.Contains(fmt.Sprint(sess["error"]), "save session record") {
		t.Errorf("the failed creation does not say why: %q", sess["error"])
	}
	t.Logf("creation with a read-only storage: %s", sess["error"])
	// A storage failure is not a host failure.
	if evs := s.EventsSince(mark, "host_unhealthy", ""); len(evs) > 0 {
		var hosts []string
		for _, e := range evs {
			hosts = append(hosts, e.Host)
		}
		knownBug(t, "B3", "a storage failure took %d host(s) out of rotation (%s): %s", len(evs), strings.Join(hosts, ", "), evs[0].Message)
	}
	for _, h := range s.Bed.Hosts {
		for id, sid := range s.ContainerSessions(h) {
			if sid != before.ID {
				t.Errorf("container %s (session %s) left on %s by the failed creation", id, sid, h.Name)
			}
		}
	}

	remount(t, dir, "rw")
	s.WaitEachHealthy(30 * time.Second)
	carol := s.NewUser()
	s.CreateReady(carol, 60*time.Second)
	if got := s.Snap(alice, apiBound); got != before {
		t.Errorf("alice's session changed: %+v, before %+v", got, before)
	}
	t.Logf("events:\n%s", s.Story(mark))
}

// mountTmpfs mounts a small tmpfs (mode "ro" or "rw") on a new directory,
// unmounted when the test ends.
func mountTmpfs(t *testing.T, mode string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "storage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(t, dir, mode)
	return dir
}

func mount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", mode+",size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s (needs root): %v %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v %s", dir, mode, err, out)
	}
}

// fatalCatcher turns the harness's t.Fatalf into a message: StartCaddy
// fails its test when Caddy does not come up, which is what these tests
// want to see.
type fatalCatcher struct {
	testing.TB
	msg string
}

func (f *fatalCatcher) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalCatcher) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalCatcher) FailNow() { runtime.Goexit() }

// startExpectingFailure runs StartCaddy and returns why Caddy did not come
// up ("" if it did; it is stopped then).
func startExpectingFailure(t *testing.T, opts e2e.CaddyOptions) string {
	t.Helper()
	fc := &fatalCatcher{TB: t}
	done := make(chan *e2e.Caddy, 1)
	go func() {
		var c *e2e.Caddy
		defer func() { done <- c }()
		c = e2e.StartCaddy(fc, opts)
	}()
	if c := <-done; c != nil {
		_ = c.Stop()
		return ""
	}
	return fc.msg
}
