package bench

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Settings of figure 4.
const (
	herdSize        = 200
	herdFirstUser   = 2001
	singleRuns      = 3
	singleFirstUser = 2401
	herdTimeout     = 5 * time.Minute
	herdMaxConns    = 20 // max_connections: the module's default, not set in the config
	sshSampleEvery  = 20 * time.Millisecond
	destroyWorkers  = 25
)

// sshSampler records the most SSH connections Caddy held to each host.
type sshSampler struct {
	stop    chan struct{}
	done    chan struct{}
	max     map[string]int
	samples int
	errs    int
}

func startSSHSampler(pid int) *sshSampler {
	s := &sshSampler{stop: make(chan struct{}), done: make(chan struct{}), max: map[string]int{}}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(sshSampleEvery)
		defer tick.Stop()
		limit := time.After(15 * time.Minute) // bounded whatever happens
		for {
			m, err := TCPConnsTo(pid, 22)
			if err != nil {
				s.errs++
			} else {
				s.samples++
				for ip, n := range m {
					s.max[ip] = max(s.max[ip], n)
				}
			}
			select {
			case <-s.stop:
				return
			case <-limit:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sshSampler) Stop() map[string]int {
	close(s.stop)
	<-s.done
	return s.max
}

type herdResult struct {
	ready  time.Time // the session's ready stage
	host   string
	failed string
}

// benchHerd is figure 4: 200 users create at once; failures, Caddy's SSH
// connections per host, and time to ready against a single create.
func (r *rig) benchHerd(t *testing.T, c *e2e.Caddy, a *api, instance string) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	pid := c.PID()
	r.cookie(e2e.AdminUserID)
	for i := range herdSize {
		r.cookie(herdFirstUser + i)
	}

	// The single create, in the same run and the same way (server's ready
	// stage minus the client's time before the POST).
	var singles, starts []time.Duration
	for i := range singleRuns {
		u := singleFirstUser + i
		cs, took, err := a.timedCreate(ctx, u, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		singles = append(singles, took)
		// The host's part: docker create + start, as the session's stages
		// time it.
		starts = append(starts, cs.Stages.at("waiting_for_desktop").Sub(cs.Stages.at("starting")))
	}
	single, start := Median(singles), Median(starts)
	t.Logf("single create (tiny): %v; container start: %v", singles, starts)

	sampler := startSSHSampler(pid)
	stopped := false
	defer func() {
		if !stopped {
			sampler.Stop()
		}
	}()
	t0s := make([]time.Time, herdSize)
	postErr := make([]error, herdSize)
	herdStart := atOnce(herdSize, func(i int) {
		t0s[i] = time.Now()
		postErr[i] = a.create(ctx, herdFirstUser+i)
	})
	postsDone := time.Since(herdStart)

	res := map[int]herdResult{}
	for i, err := range postErr {
		if err != nil {
			res[herdFirstUser+i] = herdResult{failed: "create: " + err.Error()}
		}
	}
	deadline := time.Now().Add(herdTimeout)
	for len(res) < herdSize && time.Now().Before(deadline) {
		var list struct {
			Sessions []sessionView `json:"sessions"`
		}
		if _, err := a.json(ctx, e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/containers", "", &list); err != nil {
			t.Fatalf("admin containers: %v", err)
		}
		live := map[int]bool{}
		for _, s := range list.Sessions {
			u, _ := strconv.Atoi(s.UserID)
			live[u] = true
			if _, done := res[u]; !done && u >= herdFirstUser && u < herdFirstUser+herdSize && s.State == "ready" {
				res[u] = herdResult{ready: s.Stages.at("ready"), host: s.Host}
			}
		}
		for i := range herdSize {
			u := herdFirstUser + i
			if _, done := res[u]; done || live[u] {
				continue
			}
			cs, err := a.creationStatus(ctx, u) // not live any more: ended
			if err != nil {
				t.Fatalf("creation-status of %d: %v", u, err)
			}
			if cs.State == "ready" { // raced with the list
				continue
			}
			res[u] = herdResult{failed: cs.State + ": " + cs.Error}
		}
		time.Sleep(250 * time.Millisecond)
	}
	allDone := time.Since(herdStart)

	var ttr []time.Duration
	var failures []string
	perHost := map[string]int{}
	for i := range herdSize {
		u := herdFirstUser + i
		hr, ok := res[u]
		switch {
		case !ok:
			failures = append(failures, fmt.Sprintf("%d: not ready within %s", u, herdTimeout))
		case hr.failed != "":
			failures = append(failures, fmt.Sprintf("%d: %s", u, hr.failed))
		default:
			ttr = append(ttr, hr.ready.Sub(t0s[i]))
			perHost[hr.host]++
		}
	}

	// Destroy every herd session (25 at a time) and check that no
	// container of this instance is left.
	tD := time.Now()
	users := make(chan int, herdSize)
	for i := range herdSize {
		users <- herdFirstUser + i
	}
	close(users)
	var derrMu sync.Mutex
	var destroyErrs []string
	destroyed := map[int]time.Time{} // when each destroy returned
	gone := startGoneWatch(r, instance)
	var wg sync.WaitGroup
	for range destroyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range users {
				err := a.destroy(ctx, u)
				derrMu.Lock()
				destroyed[u] = time.Now()
				if err != nil && !strings.Contains(err.Error(), "no_session") {
					destroyErrs = append(destroyErrs, fmt.Sprintf("%d: %v", u, err))
				}
				derrMu.Unlock()
			}
		}()
	}
	wg.Wait()
	destroyTook := time.Since(tD)
	maxConns := sampler.Stop()
	stopped = true
	// Every container must be gone within herdGoneWithin of its own
	// destroy; watched for longer, so a late one is measured, not guessed.
	lastGone, still := gone.wait(herdGoneWithin + 30*time.Second)
	slowest, slowUser, late := time.Duration(0), 0, 0
	for u, at := range lastGone {
		if d, ok := destroyed[u]; ok {
			if took := at.Sub(d); took > slowest {
				slowest, slowUser = took, u
			}
			if at.Sub(d) > herdGoneWithin {
				late++
			}
		}
	}
	if len(still) > 0 {
		removed := r.removeInstance(t, instance)
		r.note("herd: %d container(s) of the instance were still there %s after every destroy returned; removed by force (%d)", len(still), herdGoneWithin+30*time.Second, removed)
	}
	// Over the whole herd, its teardown included.
	hostEvents, left := r.hostEvents(ctx, a, herdStart)
	if hostEvents != "" {
		r.note("herd: host health changes while it ran: %s", hostEvents)
	}
	if len(destroyErrs) > 0 {
		r.note("herd: %d destroy call(s) failed, first: %s", len(destroyErrs), destroyErrs[0])
	}

	sort.Strings(failures)
	ttrS := Sorted(ttr)
	h50, h95 := Percentile(ttrS, 50), Percentile(ttrS, 95)
	fails := len(failures)
	failVerdict := verdict(fails == 0)
	ctxFail := "none"
	if fails > 0 {
		ctxFail = fmt.Sprintf("%s; first: %s", classify(failures), failures[0])
		for i, f := range failures {
			if i >= 5 {
				break
			}
			t.Logf("herd failure: %s", f)
		}
	}
	r.add(secHerd, Row{
		Figure:  fmt.Sprintf("Herd: %d creates at once from %d users (%s, %d hosts): failures", herdSize, herdSize, r.tb.TinyImage, len(r.tb.Hosts)),
		Ratio:   fmt.Sprintf("%d / %d", fails, herdSize),
		Target:  "0",
		Verdict: failVerdict,
		Context: fmt.Sprintf("%s; sessions per host %s; all POSTs answered in %s, all settled in %s; destroying all took %s",
			ctxFail, fmtHosts(perHost, r), Ms(postsDone), Ms(allDone), Ms(destroyTook)),
	})
	worst := 0
	for _, n := range maxConns {
		worst = max(worst, n)
	}
	r.add(secHerd, Row{
		Figure:  "Herd: most SSH connections Caddy held to one host (sampled every 20 ms from /proc)",
		Ratio:   fmt.Sprintf("%d of max_connections %d", worst, herdMaxConns),
		Target:  fmt.Sprintf("≤ %d", herdMaxConns),
		Verdict: verdict(worst <= herdMaxConns && worst > 0),
		Context: "per host: " + fmtHosts(maxConns, r) + fmt.Sprintf(" (%d samples during the herd and its teardown)", sampler.samples),
	})
	r.add(secHerd, Row{
		Figure:  "Herd: time to ready P50 ÷ a single create in the same run",
		Ratio:   X(Div(h50, single)),
		Context: fmt.Sprintf("herd P50 %s; single create %s (median of %d: %s)", Ms(h50), Ms(single), len(singles), fmtDurs(singles)),
	})
	r.add(secHerd, Row{
		Figure:  "Herd: time to ready P95 ÷ a single create",
		Ratio:   X(Div(h95, single)),
		Context: fmt.Sprintf("herd P95 %s, slowest %s (n=%d ready)", Ms(h95), Ms(Percentile(ttrS, 100)), len(ttr)),
	})
	// What the hosts allow: each host starts its share of the herd, one
	// container start at a time at worst.
	bound := time.Duration(float64(start) * float64(herdSize) / float64(len(r.tb.Hosts)))
	r.add(secHerd, Row{
		Figure: fmt.Sprintf("Herd: time to ready P95 ÷ (%d ÷ %d hosts × a single create's container start)", herdSize, len(r.tb.Hosts)),
		Ratio:  X(Div(h95, bound)),
		Context: fmt.Sprintf("herd P95 %s; bound %s from a container start of %s (median of %d: %s)",
			Ms(h95), Ms(bound), Ms(start), len(starts), fmtDurs(starts)),
	})
	r.add(secHerd, Row{
		Figure:  "Herd: hosts that left rotation while it ran",
		Ratio:   fmt.Sprint(left),
		Target:  "0",
		Verdict: verdict(left == 0),
		Context: orNone(hostEvents),
	})
	r.add(secHerd, Row{
		Figure:  "Herd: slowest container removal, from its destroy returning to the container gone",
		Ratio:   Ms(slowest),
		Target:  fmt.Sprintf("≤ %s each", Ms(herdGoneWithin)),
		Verdict: verdict(late == 0 && len(still) == 0 && len(lastGone) > 0),
		Context: fmt.Sprintf("%d containers watched (every %s); %d later than %s, %d never gone; slowest: user %d",
			len(lastGone)+len(still), Ms(goneEvery), late, Ms(herdGoneWithin), len(still), slowUser),
	})
}

// herdGoneWithin bounds each destroyed session's container's life.
const (
	herdGoneWithin = 60 * time.Second
	goneEvery      = 500 * time.Millisecond
)

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// goneWatch notes, for each user's container of the instance, the first
// time it was seen gone, polling every host's container list.
type goneWatch struct {
	r        *rig
	instance string
	stop     chan struct{}
	done     chan struct{}
	seen     map[int]bool      // ever seen
	gone     map[int]time.Time // first seen gone
}

func startGoneWatch(r *rig, instance string) *goneWatch {
	g := &goneWatch{r: r, instance: instance, stop: make(chan struct{}), done: make(chan struct{}),
		seen: map[int]bool{}, gone: map[int]time.Time{}}
	go func() {
		defer close(g.done)
		for {
			if present, err := g.present(); err == nil {
				now := time.Now()
				for u := range present {
					g.seen[u] = true
				}
				for u := range g.seen {
					if _, ok := g.gone[u]; !ok && !present[u] {
						g.gone[u] = now
					}
				}
				if len(g.gone) == len(g.seen) && len(g.seen) > 0 {
					return
				}
			}
			select {
			case <-g.stop:
				return
			case <-time.After(goneEvery):
			}
		}
	}()
	return g
}

// present lists the users whose container of the instance is on a host.
func (g *goneWatch) present() (map[int]bool, error) {
	out := map[int]bool{}
	for _, h := range g.r.tb.Hosts {
		list, err := testbed.TryExec(h, "docker", "ps", "-a", "--filter", "label=io.ctf-remote-desktop.instance="+g.instance,
			"--format", `{{.Label "io.ctf-remote-desktop.user"}}`)
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(list) {
			if u, err := strconv.Atoi(f); err == nil {
				out[u] = true
			}
		}
	}
	return out, nil
}

// wait waits up to d for every container seen to be gone; it returns when
// each went, and the users whose container never did.
func (g *goneWatch) wait(d time.Duration) (gone map[int]time.Time, still []int) {
	select {
	case <-g.done:
	case <-time.After(d):
		close(g.stop)
		<-g.done
	}
	for u := range g.seen {
		if _, ok := g.gone[u]; !ok {
			still = append(still, u)
		}
	}
	return g.gone, still
}

func fmtHosts(m map[string]int, r *rig) string {
	var parts []string
	for _, h := range r.tb.Hosts {
		parts = append(parts, fmt.Sprintf("%s: %d", h.IP, m[h.IP]))
	}
	return strings.Join(parts, ", ")
}

func fmtDurs(v []time.Duration) string {
	var parts []string
	for _, d := range v {
		parts = append(parts, Ms(d))
	}
	return strings.Join(parts, ", ")
}

// hostEvents lists the host health events since t (hosts leaving or
// returning to rotation), from the admin event log, and counts the hosts
// that left.
func (r *rig) hostEvents(ctx context.Context, a *api, since time.Time) (string, int) {
	var ev struct {
		Events []struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Host    string    `json:"host"`
			Message string    `json:"message"`
		} `json:"events"`
	}
	if _, err := a.json(ctx, e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/events/recent?limit=1000", "", &ev); err != nil {
		return "(event log unreadable: " + err.Error() + ")", -1
	}
	var parts []string
	left := map[string]bool{}
	for _, e := range ev.Events {
		if e.Time.Before(since) || (e.Type != "host_unhealthy" && e.Type != "host_recovered") {
			continue
		}
		if e.Type == "host_unhealthy" {
			left[e.Host] = true
		}
		msg := e.Message
		if len(msg) > 160 {
			msg = msg[:160] + "…"
		}
		parts = append(parts, fmt.Sprintf("+%s %s", e.Time.Sub(since).Round(100*time.Millisecond), msg))
	}
	return strings.Join(parts, "; "), len(left)
}

// classify counts failures by the cause their message names.
func classify(failures []string) string {
	kinds := []struct{ label, needle string }{
		{"waited for a pooled SSH connection past the deadline", "wait for ssh connection"},
		{"Docker call past the deadline", "context deadline exceeded"},
		{"no healthy host left", "no healthy workspace host"},
		{"SSH channel refused", "open failed"},
	}
	counts := make([]int, len(kinds)+1)
	for _, f := range failures {
		k := len(kinds)
		for i, kind := range kinds {
			if strings.Contains(f, kind.needle) {
				k = i
				break
			}
		}
		counts[k]++
	}
	var parts []string
	for i, kind := range kinds {
		if counts[i] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[i], kind.label))
		}
	}
	if n := counts[len(kinds)]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d other", n))
	}
	return "by cause: " + strings.Join(parts, ", ")
}

// timedCreate is one player's create on an otherwise idle system: POST,
// poll every `every` until ready, destroy. took is the server's ready stage
// minus the client's time before the POST, the herd's own measure.
func (a *api) timedCreate(ctx context.Context, u int, every time.Duration) (cs creationStatus, took time.Duration, err error) {
	t0 := time.Now()
	if err := a.create(ctx, u); err != nil {
		return cs, 0, err
	}
	if _, cs, err = a.waitReady(ctx, u, every); err != nil {
		return cs, 0, err
	}
	return cs, cs.Stages.at("ready").Sub(t0), a.destroy(ctx, u)
}

// atOnce runs fn(0..n-1) in n goroutines released together, waits for all,
// and returns the moment they were released.
func atOnce(n int, fn func(i int)) time.Time {
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			fn(i)
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	return start
}
