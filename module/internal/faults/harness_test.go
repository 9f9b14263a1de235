package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Timings of every Caddy these tests start: short, so that faults show
// within seconds.
const (
	probeInterval  = 2 * time.Second
	reaperInterval = 2 * time.Second
	orphanGrace    = 5 * time.Second
	dialTimeout    = 3 * time.Second
	// keepaliveTimeout is sshpool's fixed bound on a keepalive round trip
	// (sshpool.DefaultKeepaliveTimeout; not configurable from Caddy).
	keepaliveTimeout = 5 * time.Second

	// apiBound: no API request may take longer, whatever a host does.
	// (e2e.RequestTimeout, where Try and Req give up, is twice that.)
	apiBound = 15 * time.Second
)

// system is one Caddy (the real binary) with the module, in front of the
// CTFd stand-in, on the test bed's three hosts, with its own instance label
// so that only its own containers are ever touched (e2e.System), and this
// package's configuration knobs.
type system struct {
	*e2e.System
	t   *testing.T
	cfg sysConfig
}

type sysConfig struct {
	desktop bool   // the real desktop image instead of the tiny one
	image   string // docker_image of every host; default the tiny (or desktop) image
	policy  string // shutdown_policy; default destroy
	extra   string // more lines for the app block
	global  string // more lines for the global options block (storage ...)
	dataDir string // Caddy's data directory; default a new temporary one
}

// newSystem starts Caddy; it is stopped (and this instance's containers
// removed) when the test ends.
func newSystem(t *testing.T, cfg sysConfig) *system {
	t.Helper()
	s := prepareSystem(t, cfg)
	s.Start(s.caddyfile(), cfg.dataDir)
	return s
}

// prepareSystem is newSystem without starting Caddy.
func prepareSystem(t *testing.T, cfg sysConfig) *system {
	t.Helper()
	tb := testbed.Load(t)
	s := &system{System: e2e.NewSystem(t, tb, e2e.NewCTFd(t), e2e.NewInstance("flt")), t: t, cfg: cfg}
	if s.cfg.image == "" {
		s.cfg.image = tb.TinyImage
		if cfg.desktop {
			s.cfg.image = tb.DesktopImage
		}
	}
	if s.cfg.policy == "" {
		s.cfg.policy = "destroy"
	}
	if dir := os.Getenv("RD_FAULTS_LOGDIR"); dir != "" { // keep Caddy's log (debugging)
		s.KeepLog = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".caddy.log")
	}
	return s
}

// in returns a copy of s bound to t (a subtest), sharing everything else.
func (s *system) in(t *testing.T) *system {
	c := *s
	c.t = t
	c.System = s.System.In(t)
	return &c
}

func (s *system) caddyfile() string {
	c := s.Caddyfile()
	c.Image = s.cfg.image
	c.Global = []string{s.cfg.global}
	c.App = []string{"probe_interval " + probeInterval.String(), "reaper_interval " + reaperInterval.String(),
		"orphan_grace " + orphanGrace.String(), "dial_timeout " + dialTimeout.String(), "memory_limit 256m", "shm_size 64m",
		"resolution 1280x800", "cpu_limit 1", "shutdown_policy " + s.cfg.policy, s.cfg.extra}
	return c.String()
}

// bounded is a request (Try) that fails the test if it took apiBound or
// more or got no answer, and logs how long it took.
func (s *system) bounded(what string, user int, method, path, body string) e2e.Answer {
	s.t.Helper()
	return s.boundedUnless("", what, user, method, path, body)
}

// boundedUnless is bounded for a request a known bug (bug: its id in
// RELIABILITY.md) may hold past apiBound: then the bug is reported.
func (s *system) boundedUnless(bug, what string, user int, method, path, body string) e2e.Answer {
	s.t.Helper()
	a := s.TryWithin(apiBound+time.Second, user, method, path, body, nil)
	s.t.Logf("timed: %-58s %3d in %v", what, a.Code, a.Took.Round(time.Millisecond))
	if a.Err != nil || a.Took >= apiBound {
		msg := fmt.Sprintf("%s (%s %s): %v after %v, want an answer within %v", what, method, path, a.Err, a.Took.Round(time.Millisecond), apiBound)
		if bug != "" {
			knownBug(s.t, bug, "%s", msg)
		} else {
			s.t.Error(msg)
		}
	}
	return a
}

// desktop fetches the user's noVNC page through Caddy's proxy.
func (s *system) desktop(user int) e2e.Answer {
	return s.Try(user, http.MethodGet, fmt.Sprintf("/remote-desktop/vnc/%d/vnc.html", user), "")
}

// docker runs the docker CLI on this machine (not in a host).
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), err
}

// restoreHost undoes every fault these tests inject into h, whichever it
// was (each step is a no-op when there is nothing to undo), then waits until
// `testbed.sh status` reports the whole test bed healthy.
func restoreHost(t testing.TB, tb *testbed.Testbed, h testbed.Host) {
	t.Helper()
	repairHost(t, tb, h)
	waitTestbedHealthy(t)
}

// repairHost is restoreHost without the final wait.
func repairHost(t testing.TB, tb *testbed.Testbed, h testbed.Host) {
	t.Helper()
	if st, _ := docker("inspect", "-f", "{{.State.Paused}}", h.Name); strings.TrimSpace(st) == "true" {
		if _, err := docker("unpause", h.Name); err != nil {
			t.Errorf("restore %s: %v", h.Name, err)
		}
	}
	nets, _ := docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", h.Name)
	if !strings.Contains(" "+nets, " "+tb.Network+" ") {
		if _, err := docker("network", "connect", "--ip", h.IP, tb.Network, h.Name); err != nil {
			t.Errorf("restore %s: %v", h.Name, err)
		}
	}
	for _, args := range [][]string{{"tb-dockerd", "start"}, {"tb-sshd", "start"}} {
		if _, err := testbed.TryExec(h, args...); err != nil {
			t.Errorf("restore %s: %v", h.Name, err)
		}
	}
}

// waitTestbedHealthy waits (up to 60 s) until `testbed.sh status` exits 0.
func waitTestbedHealthy(t testing.TB) {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "testdata/testbed/testbed.sh"), "status").CombinedOutput()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the test bed is not healthy 60 s after restoring it:\n%s", out)
			return
		}
		time.Sleep(time.Second)
	}
}

// measured collects figures for RELIABILITY.md; each test logs its own.
func measured(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("MEASURED "+format, args...)
}

// knownBug reports a regression of a product bug this package found and
// fixed (RELIABILITY.md, "Bugs found and fixed"): a failure.
func knownBug(t testing.TB, id, format string, args ...any) {
	t.Helper()
	t.Errorf("REGRESSION of %s (RELIABILITY.md): "+format, append([]any{id}, args...)...)
}
