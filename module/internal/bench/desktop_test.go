package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Settings of figure 1.
const (
	ttdRounds  = 12                    // measured rounds (plus one warm-up)
	ttdPoll    = 50 * time.Millisecond // both sides poll at this interval
	ttdRetries = 6
	// The module's defaults, which the floor's docker run repeats.
	ttdMemory, ttdShm, ttdCPUs, ttdPids, ttdResolution = "4g", "2g", "2", "512", "1920x1080"
)

// moduleRound is one cold create through the module.
type moduleRound struct {
	total  time.Duration // POST /api/create → a creation-status poll that says ready
	stages stages
	t0     time.Time
	seen   time.Time
	host   string
}

// floorRound is one cold start by hand.
type floorRound struct {
	total time.Duration // ssh + docker run + docker port, then polling /vnc.html until 200
	run   time.Duration // the ssh command alone
}

// benchTimeToDesktop is figure 1: cold time to desktop with the real
// desktop image, through the module and by hand (the floor), alternating
// which goes first, on the host the module picked.
func (r *rig) benchTimeToDesktop(t *testing.T) {
	// One user creates and destroys 13 times in a row on purpose: the
	// per-player rate limit would (rightly) stop that.
	c, _ := r.startCaddy(t, caddyConf{image: r.tb.DesktopImage, extraApp: "\t\trate_limit off"}, "")
	a := r.api(c)
	const user = 101
	hostByIP := map[string]testbed.Host{}
	for _, h := range r.tb.Hosts {
		hostByIP[h.IP] = h
	}
	host := r.tb.Host(t, 0)
	var mods []moduleRound
	var floors []floorRound
	// Other engineers' tests stop and start test-bed hosts on purpose: a
	// round that fails is run again (at most ttdRetries times in all) once
	// the hosts had a moment, and the retries are reported.
	retries := 0
	for i := -1; i < ttdRounds; { // round -1 warms up both sides
		var m moduleRound
		var f floorRound
		var err error
		moduleFirst := i%2 == 0
		for step := 0; step < 2 && err == nil; step++ {
			if (step == 0) == moduleFirst {
				m, err = r.moduleColdStart(a, user)
				if err != nil {
					err = fmt.Errorf("module: %w", err)
				} else if h, ok := hostByIP[m.host]; ok {
					host = h
				}
			} else {
				f, err = r.floorColdStart(host, i)
				if err != nil {
					err = fmt.Errorf("floor on %s: %w", host.IP, err)
				}
			}
		}
		if err != nil {
			retries++
			t.Logf("round %d failed (%v)", i, err)
			if retries > ttdRetries {
				t.Fatalf("%d rounds failed; last: %v", retries, err)
			}
			dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
			_ = a.destroy(dctx, user) // whatever is left of the module's round
			dcancel()
			time.Sleep(5 * time.Second)
			continue
		}
		t.Logf("round %2d: module %v (on %s; queued→starting %v, container start %v, desktop %v), floor %v (ssh+run %v, on %s)",
			i, m.total.Round(time.Millisecond), m.host,
			m.stages.at("starting").Sub(m.stages.at("queued")).Round(time.Millisecond),
			m.stages.at("waiting_for_desktop").Sub(m.stages.at("starting")).Round(time.Millisecond),
			m.stages.at("ready").Sub(m.stages.at("waiting_for_desktop")).Round(time.Millisecond),
			f.total.Round(time.Millisecond), f.run.Round(time.Millisecond), host.IP)
		if i >= 0 {
			mods, floors = append(mods, m), append(floors, f)
		}
		i++
	}
	if retries > 0 {
		r.note("time to desktop: %d round(s) failed and were run again (test-bed hosts restarted by concurrent tests); see the log", retries)
	}

	var mt, ft, fRun []time.Duration
	var accept, sched, start, wait, seen []time.Duration
	for _, m := range mods {
		mt = append(mt, m.total)
		q, sc, st, w, rd := m.stages.at("queued"), m.stages.at("scheduling"), m.stages.at("starting"), m.stages.at("waiting_for_desktop"), m.stages.at("ready")
		accept = append(accept, q.Sub(m.t0))
		sched = append(sched, st.Sub(q))
		start = append(start, w.Sub(st))
		wait = append(wait, rd.Sub(w))
		seen = append(seen, m.seen.Sub(rd))
		_ = sc
	}
	for _, f := range floors {
		ft, fRun = append(ft, f.total), append(fRun, f.run)
	}
	var paired []float64
	for i := range mods {
		paired = append(paired, Div(mods[i].total, floors[i].total))
	}
	mS, fS := Sorted(mt), Sorted(ft)
	m50, m95, f50, f95 := Percentile(mS, 50), Percentile(mS, 95), Percentile(fS, 50), Percentile(fS, 95)
	r50, r95 := Div(m50, f50), Div(m95, f95)
	r.add(secDesktop, Row{
		Figure:  fmt.Sprintf("Time to desktop, cold, P50: module ÷ floor (%s, n=%d each)", r.tb.DesktopImage, len(mods)),
		Ratio:   X(r50),
		Target:  "≤ 1.15×",
		Verdict: AtMost(r50, 1.15),
		Context: fmt.Sprintf("module %s, floor %s (floor's ssh+docker run alone: %s); median of the per-round ratios %s",
			Ms(m50), Ms(f50), Ms(Median(fRun)), X(Median(paired))),
	})
	r.add(secDesktop, Row{
		Figure:  "Time to desktop, cold, P95: module ÷ floor",
		Ratio:   X(r95),
		Target:  "≤ 1.15×",
		Verdict: AtMost(r95, 1.15),
		Context: fmt.Sprintf("module %s, floor %s (nearest rank: with n=%d, P95 is the slowest)", Ms(m95), Ms(f95), len(mods)),
	})
	ms := Median(mt)
	share := func(d time.Duration) string { return fmt.Sprintf("%.0f%%", 100*Div(d, ms)) }
	aM, scM, stM, wM, seM := Median(accept), Median(sched), Median(start), Median(wait), Median(seen)
	r.add(secDesktop, Row{
		Figure: "Time to desktop, stages (P50 of each, share of the module's P50)",
		Ratio: fmt.Sprintf("request %s · scheduling %s · container start %s · waiting for desktop %s · poll sees ready %s",
			share(aM), share(scM), share(stM), share(wM), share(seM)),
		Context: fmt.Sprintf("request→queued %s, queued→starting %s, starting→waiting_for_desktop %s, waiting→ready %s, ready→client's poll %s",
			Ms(aM), Ms(scM), Ms(stM), Ms(wM), Ms(seM)),
	})
}

// moduleColdStart creates a session, polls creation-status every ttdPoll
// until ready, reads its host, and destroys it.
func (r *rig) moduleColdStart(a *api, user int) (moduleRound, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var m moduleRound
	m.t0 = time.Now()
	if err := a.create(ctx, user); err != nil {
		return m, err
	}
	seen, cs, err := a.waitReady(ctx, user, ttdPoll)
	if err != nil {
		return m, err
	}
	m.seen, m.total, m.stages = seen, seen.Sub(m.t0), cs.Stages
	var st struct {
		Session sessionView `json:"session"`
	}
	if _, err := a.json(ctx, user, http.MethodGet, "/remote-desktop/api/status", "", &st); err != nil {
		return m, err
	}
	m.host = st.Session.Host
	return m, a.destroy(ctx, user)
}

// floorColdStart is the floor: a fresh OpenSSH connection (strict host key
// checking against the test bed's known_hosts) running docker run of the
// same image with the module's limits, -p <host ip>:0:6080 and a password,
// then docker port; then /vnc.html polled every ttdPoll until it answers
// 200. The container is removed afterwards (not timed).
func (r *rig) floorColdStart(h testbed.Host, round int) (floorRound, error) {
	var f floorRound
	name := fmt.Sprintf("bench-floor-%s-%d", r.run, round+1)
	defer func() {
		if out, err := testbed.TryExec(h, "docker", "rm", "-f", name); err != nil && !strings.Contains(out, "No such container") {
			fmt.Printf("floor: remove %s: %v\n", name, err)
		}
	}()
	if err := checkAllowedAddr(h.Addr()); err != nil {
		return f, err
	}
	remote := fmt.Sprintf("docker run -d --name %s --cap-drop ALL --security-opt no-new-privileges:true "+
		"--memory %s --shm-size %s --cpus %s --pids-limit %s -p %s:0:6080 -e VNC_PASSWORD=%s -e RESOLUTION=%s %s >/dev/null && docker port %s 6080/tcp",
		name, ttdMemory, ttdShm, ttdCPUs, ttdPids, h.IP, randomToken(24), ttdResolution, r.tb.DesktopImage, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-i", r.tb.SSHKey,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+r.tb.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "ControlMaster=no", "-o", "ControlPath=none",
		"-o", "ConnectTimeout=10", "-p", strconv.Itoa(max(h.SSHPort, 22)), h.User+"@"+h.IP, remote)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return f, fmt.Errorf("ssh docker run: %w: %s", err, errb.String())
	}
	f.run = time.Since(t0)
	addr := strings.TrimSpace(strings.SplitN(out.String(), "\n", 2)[0])
	if err := checkAllowedAddr(addr); err != nil {
		return f, fmt.Errorf("docker port said %q: %w", out.String(), err)
	}
	url := "http://" + addr + "/vnc.html"
	client := NewHTTPClient(1, 2*time.Second)
	tick := time.NewTicker(ttdPoll)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				f.total = time.Since(t0)
				return f, nil
			}
		}
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("%s did not answer: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

const tokenAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = tokenAlphabet[int(b[i])%len(tokenAlphabet)]
	}
	return string(b)
}
