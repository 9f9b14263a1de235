package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Settings of figure 5.
const (
	footprintSessions  = 1000
	footprintFirstUser = 5001
	pollPasses         = 3    // alternating noop and status passes
	pollsPerPass       = 3000 // each of the 1,000 users three times
	pollWorkers        = 8
	settle             = 3 * time.Second
	// voidHost is configured but unreachable (nothing listens on
	// 127.0.0.1:1): the restart's reconciliation cannot inspect its
	// containers, so it keeps their sessions, as it would for a host that
	// is down, and the reaper only visits healthy hosts.
	voidHost = "127.0.0.1"
	voidPort = 1
)

// benchFootprint is figure 5: Caddy's RSS idle and with 1,000 tracked
// sessions, and its CPU time per 1,000 status polls against per 1,000
// plain Caddy responses in the same process.
//
// The 1,000 sessions are records written into Caddy's storage while it is
// stopped, in the exact shape the module stores (session.Session), ready,
// timers running, on voidHost; Caddy restores them at start. 1,000 real
// containers would need ~1,000 containerd shims and docker-proxy processes
// on this 2-core machine that other engineers share, and several minutes
// to create.
func (r *rig) benchFootprint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	extra := fmt.Sprintf("\t\thost %s {\n\t\t\tport %d\n\t\t\tuser root\n\t\t\tdocker_image %s\n\t\t}\n\t\treaper_interval 1h",
		voidHost, voidPort, r.tb.TinyImage)
	// keep: Caddy made no container here, and destroying 1,000 sessions on
	// an unreachable host at shutdown would only time out.
	c, _ := r.startCaddy(t, caddyConf{image: r.tb.TinyImage, policy: "keep", extraApp: extra}, dataDir)
	a := r.api(c)
	r.cookie(e2e.AdminUserID)
	if err := waitHostsChecked(ctx, a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(settle)
	idleRSS, err := RSS(c.PID())
	if err != nil {
		t.Fatal(err)
	}
	idleHeap, err := heapAfterGC(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	dir := filepath.Join(dataDir, "data", "caddy", "remote_desktop", "sessions")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range footprintSessions {
		u := strconv.Itoa(footprintFirstUser + i)
		s := session.Session{
			ID: randomToken(20), User: u, UserName: "player" + u, State: session.Ready,
			Stages: []session.Stage{
				{State: session.Queued, At: now.Add(-60 * time.Second)},
				{State: session.Scheduling, At: now.Add(-60 * time.Second)},
				{State: session.Starting, At: now.Add(-59 * time.Second)},
				{State: session.WaitingForDesktop, At: now.Add(-58 * time.Second)},
				{State: session.Ready, At: now.Add(-57 * time.Second)},
			},
			Host: voidHost, PubHostname: voidHost, ContainerID: randomHex(32), Port: 30000 + i,
			Password: randomToken(24), CreatedAt: now.Add(-60 * time.Second), ReadyAt: now.Add(-57 * time.Second),
			TimerStartedAt: now.Add(-50 * time.Second), ExpiresAt: now.Add(2 * time.Hour),
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, u+".json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart()
	if err := waitHostsChecked(ctx, a); err != nil {
		t.Fatal(err)
	}
	tracked := 0
	for wait := time.Now().Add(60 * time.Second); time.Now().Before(wait); time.Sleep(500 * time.Millisecond) {
		var list struct {
			Sessions []sessionView `json:"sessions"`
		}
		if _, err := a.json(ctx, e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/containers", "", &list); err != nil {
			t.Fatal(err)
		}
		tracked = len(list.Sessions)
		if tracked == footprintSessions {
			break
		}
	}
	if tracked != footprintSessions {
		t.Fatalf("Caddy tracks %d sessions after the restart, want %d", tracked, footprintSessions)
	}
	time.Sleep(settle)
	pid := c.PID()
	fullRSS, err := RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	fullHeap, err := heapAfterGC(ctx, c)
	if err != nil {
		t.Fatal(err)
	}

	// Every user polls once (the identity cache fills; each answer must be
	// the user's ready session), then the measured passes.
	for i := range footprintSessions {
		r.cookie(footprintFirstUser + i)
	}
	status := func(i int) (int, string) {
		u := footprintFirstUser + i%footprintSessions
		return u, "/remote-desktop/api/status"
	}
	noop := func(int) (int, string) { return 0, "/bench-noop" }
	if _, _, err := pollPass(ctx, a, pid, footprintSessions, status, true); err != nil {
		t.Fatal(err)
	}
	var cpuStatus, cpuNoop []time.Duration
	var wallStatus, wallNoop []time.Duration
	for range pollPasses {
		cpu, wall, err := pollPass(ctx, a, pid, pollsPerPass, noop, false)
		if err != nil {
			t.Fatal(err)
		}
		cpuNoop, wallNoop = append(cpuNoop, cpu), append(wallNoop, wall)
		cpu, wall, err = pollPass(ctx, a, pid, pollsPerPass, status, true)
		if err != nil {
			t.Fatal(err)
		}
		cpuStatus, wallStatus = append(cpuStatus, cpu), append(wallStatus, wall)
	}
	per1000 := func(d time.Duration) time.Duration { return d * 1000 / pollsPerPass }
	cs, cn := per1000(Median(cpuStatus)), per1000(Median(cpuNoop))
	r.add(secFootprint, Row{
		Figure: fmt.Sprintf("Footprint: Caddy RSS with %d tracked sessions ÷ idle", footprintSessions),
		Ratio:  X(Div(fullRSS, idleRSS)),
		Context: fmt.Sprintf("RSS idle %s, with %d sessions %s; live heap after a forced GC %s → %s (%.1f KiB per session); sessions restored from storage on an unreachable configured host (see notes)",
			MiB(idleRSS), footprintSessions, MiB(fullRSS), MiB(idleHeap), MiB(fullHeap), float64(fullHeap-idleHeap)/1024/footprintSessions),
	})
	r.add(secFootprint, Row{
		Figure: fmt.Sprintf("CPU per 1,000 GET /api/status (%d sessions tracked, identity cache warm) ÷ per 1,000 plain Caddy `respond` in the same process", footprintSessions),
		Ratio:  X(Div(cs, cn)),
		Context: fmt.Sprintf("Caddy CPU (utime+stime from /proc) %s per 1,000 status polls, %s per 1,000 noop; %d-poll passes × %d, %d concurrent keep-alive clients, %.0f polls/s",
			Ms(cs), Ms(cn), pollsPerPass, pollPasses, pollWorkers, float64(pollsPerPass)/Median(wallStatus).Seconds()),
	})
	r.note("footprint: the %d sessions are records written to Caddy's storage (remote_desktop/sessions/<user>.json, module/session.Session's JSON) while Caddy was stopped, ready with timers running, on a configured host that cannot be reached (127.0.0.1:1), so the restart's reconciliation keeps them as it would for a host that is down; real containers were not made because 1,000 containers with a containerd shim and a docker-proxy each do not fit beside other engineers on this 2-core machine", footprintSessions)
}

// pollPass sends n GETs from pollWorkers keep-alive clients and returns
// Caddy's CPU time and the wall time they took. With checkReady, each
// answer must be a ready session.
func pollPass(ctx context.Context, a *api, pid, n int, target func(i int) (int, string), checkReady bool) (time.Duration, time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	cpu0, err := CPUTime(pid)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	for range pollWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				user, path := target(i)
				code, body, err := a.do(ctx, user, http.MethodGet, path, "")
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("GET %s as %d: %d %.200s", path, user, code, body)
				}
				if err == nil && checkReady {
					var env struct {
						Data struct {
							Session *sessionView `json:"session"`
						} `json:"data"`
					}
					if jerr := json.Unmarshal(body, &env); jerr != nil || env.Data.Session == nil || env.Data.Session.State != "ready" {
						err = fmt.Errorf("status of %d: not a ready session: %.200s", user, body)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	cpu1, err := CPUTime(pid)
	if err != nil {
		return 0, 0, err
	}
	return cpu1 - cpu0, wall, firstErr
}

// waitHostsChecked waits until every host is healthy: in rotation, its
// isolation proof passed. A phase that ran with a host out of rotation
// would measure a smaller cluster than it says (a herd once put all 200
// sessions on one host that way), so it fails instead, naming why.
func waitHostsChecked(ctx context.Context, a *api) error {
	var last []string
	for wait := time.Now().Add(120 * time.Second); time.Now().Before(wait); time.Sleep(200 * time.Millisecond) {
		var hs struct {
			Hosts []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
				Reason string `json:"reason"`
			} `json:"hosts"`
		}
		if _, err := a.json(ctx, e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/hosts", "", &hs); err != nil {
			return err
		}
		last = last[:0]
		for _, h := range hs.Hosts {
			if h.Health != "healthy" {
				last = append(last, fmt.Sprintf("%s %s (%s)", h.Name, h.Health, h.Reason))
			}
		}
		if len(last) == 0 && len(hs.Hosts) > 0 {
			return nil
		}
	}
	return fmt.Errorf("hosts not all healthy within 120s: %s", strings.Join(last, "; "))
}

// heapAfterGC forces a GC in Caddy (the admin API's heap profile with
// gc=1) and returns HeapAlloc from its /debug/vars.
func heapAfterGC(ctx context.Context, c *e2e.Caddy) (int64, error) {
	client := NewHTTPClient(1, 30*time.Second)
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.AdminAddr+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return b, err
	}
	if _, err := get("/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	b, err := get("/debug/vars")
	if err != nil {
		return 0, err
	}
	var v struct {
		Memstats struct {
			HeapAlloc int64 `json:"HeapAlloc"`
		} `json:"memstats"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("/debug/vars: %w", err)
	}
	return v.Memstats.HeapAlloc, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
