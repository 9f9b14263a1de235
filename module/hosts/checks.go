package hosts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
)

// Check is one start-up/probe check of a host: ssh, docker or image.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Warn: a failure is reported (event log, dashboard) but keeps the
	// host in rotation.
	Warn bool `json:"warn,omitempty"`
}

// Prepare, when set, runs after a host passes its checks and before it
// enters rotation (the session layer makes its network there); an error
// keeps the host out of rotation. The checks it returns (isolation) are
// reported with the others.
type Prepare func(ctx context.Context, h *Host, d *docker.Client) ([]Check, error)

// CheckHost runs the seed's three start-up checks on h: SSH reachable, the
// Docker daemon answering, the desktop image present (never pulled).
//
// Over SSH its Docker calls are channels on a client the host's pool shares
// with every other operation: load on the host never makes a check wait for
// a connection (see sshpool.Pool.Do), so a failed check means the host did
// not answer, not that it was busy.
func CheckHost(ctx context.Context, h *Host, prepare Prepare) []Check {
	ssh := Check{Name: "ssh"}
	if _, local := h.Engine.(*LocalEngine); local {
		ssh.Name = "socket" // the local engine is reached without SSH
	}
	dock := Check{Name: "docker", Detail: "not reached"}
	img := Check{Name: "image", Detail: "not reached"}
	disk := Check{Name: "disk", OK: true, Detail: "not reached"}
	var extra []Check
	hc := h.Config() // one snapshot: a reload may replace the settings meanwhile
	err := h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		ssh.OK = true
		n, err := d.Negotiate(ctx)
		if err != nil {
			dock.Detail = describeDockerError(err, hc.DockerSocket)
			return nil
		}
		// The negotiated version shows on the dashboard and in host_check.
		dock.OK, dock.Detail = true, n.String()
		present, err := d.ImagePresent(ctx, hc.DockerImage)
		switch {
		case err != nil:
			img.Detail = fmt.Sprintf("inspect image %s: %v", hc.DockerImage, err)
			return nil
		case !present:
			img.Detail = fmt.Sprintf("image %s is not on the host (it is never pulled; load it there)", hc.DockerImage)
			return nil
		}
		img.OK, img.Detail = true, ""
		disk = diskCheck(ctx, h, d)
		if prepare != nil {
			var err error
			if extra, err = prepare(ctx, h, d); err != nil {
				img.OK, img.Detail = false, "prepare host: "+err.Error()
			}
		}
		return nil
	})
	if err != nil && !ssh.OK {
		ssh.Detail = describeReachError(err)
	} else if err != nil {
		dock.OK, dock.Detail = false, err.Error()
	}
	return append([]Check{ssh, dock, img, disk}, extra...)
}

func describeReachError(err error) string {
	s := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		s = "timed out: " + s
	}
	return "ssh: " + s
}

// describeDockerError says why the daemon did not answer. sshd refuses a
// stream-local channel with the same answer whether its configuration
// forbids it or nothing listens at the path (OpenSSH 9.2: "connect failed"
// with message "open failed", both seen on the test bed), so the message
// names both.
func describeDockerError(err error, socket string) string {
	var open *ssh.OpenChannelError
	if errors.As(err, &open) && (open.Reason == ssh.ConnectionFailed || open.Reason == ssh.Prohibited) {
		if socket == "" {
			socket = DockerSocket
		}
		return fmt.Sprintf("sshd refused to open a channel to the Docker socket %s (%v): "+
			"either sshd forbids forwarding it (set AllowStreamLocalForwarding yes, or local, in the host's sshd_config; "+
			"DisableForwarding or a no-port-forwarding key option also forbid it) or nothing listens at %s (check docker_socket)",
			socket, open, socket)
	}
	if errors.Is(err, docker.ErrNoCommonVersion) {
		return err.Error()
	}
	return "docker daemon not answering: " + err.Error()
}

func summarize(checks []Check) (ok bool, reason string) {
	var bad []string
	for _, c := range checks {
		if !c.OK && !c.Warn {
			bad = append(bad, c.Name+" check failed: "+c.Detail)
		}
	}
	return len(bad) == 0, strings.Join(bad, "; ")
}

// Probe checks one host now and updates its health. It emits host_check when
// the result differs from the previous one (always on the first check), so
// the event log shows every change without repeating itself each interval.
func (o *Orchestrator) Probe(ctx context.Context, h *Host, timeout time.Duration, prepare Prepare) bool {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	checks := CheckHost(cctx, h, prepare)
	cancel()
	if ctx.Err() != nil { // shutting down: a cancelled check says nothing
		return false
	}
	ok, reason := summarize(checks)

	o.mu.Lock()
	prevChecks, prevHealth := h.checks, h.health
	o.mu.Unlock()
	changed := prevHealth == Unknown || ok != (prevHealth == Healthy) || !sameChecks(prevChecks, checks)

	health := Healthy
	if !ok {
		health = Unhealthy
	}
	if changed {
		level, msg := "info", fmt.Sprintf("host %s: %s, docker (%s) and image checks passed", h.Name(), checks[0].Name, checks[1].Detail)
		for _, c := range checks[3:] {
			if c.OK {
				msg += fmt.Sprintf("; %s: %s", c.Name, c.Detail)
			} else {
				level, msg = "warn", msg+fmt.Sprintf("; %s check failed (host kept in rotation): %s", c.Name, c.Detail)
			}
		}
		if !ok {
			level, msg = "error", fmt.Sprintf("host %s: %s", h.Name(), reason)
		}
		o.events.Emit(events.Event{Type: events.HostCheck, Level: level, Host: h.Name(), Message: msg,
			Data: map[string]any{"checks": checks}})
	}
	o.setHealth(h.Name(), health, reason, checks)
	return ok
}

func sameChecks(a, b []Check) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		// A passing check's detail is stable (the docker check's API
		// version): a change there is news, e.g. an upgraded daemon.
		if a[i].Name != b[i].Name || a[i].OK != b[i].OK || (a[i].OK && a[i].Detail != b[i].Detail) {
			return false
		}
	}
	return true
}

// ProbeAll checks every host at once and waits for all.
func (o *Orchestrator) ProbeAll(ctx context.Context, timeout time.Duration, prepare Prepare) {
	var wg sync.WaitGroup
	for _, h := range o.Hosts() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.Probe(ctx, h, timeout, prepare)
		}()
	}
	wg.Wait()
}

// Run probes every host each interval until ctx ends: healthy hosts so that
// a dead one leaves rotation within one interval even when idle, unhealthy
// ones so that they come back on their own. Each host is probed on its own:
// a host whose probe hangs (frozen) delays no other host's, and is not
// probed twice at once. Run returns once its probes have ended. The
// interval is read before each round, so a config reload can change it.
func (o *Orchestrator) Run(ctx context.Context, interval func() time.Duration, timeout time.Duration, prepare Prepare) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTimer(interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(interval())
		}
		for _, h := range o.Hosts() {
			o.mu.Lock()
			busy := h.probing
			h.probing = true
			o.mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					o.mu.Lock()
					h.probing = false
					o.mu.Unlock()
					if r := recover(); r != nil {
						o.logger.Error("host probe panicked", zap.String("host", h.Name()), zap.Any("panic", r), zap.Stack("stack"))
					}
				}()
				o.Probe(ctx, h, timeout, prepare)
			}()
		}
	}
}
