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
	var singles []time.Duration
	for i := range singleRuns {
		u := singleFirstUser + i
		t0 := time.Now()
		if err := a.create(ctx, u); err != nil {
			t.Fatal(err)
		}
		_, cs, err := a.waitReady(ctx, u, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		singles = append(singles, cs.Stages.at("ready").Sub(t0))
		if err := a.destroy(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	single := Median(singles)
	t.Logf("single create (tiny): %v", singles)

	sampler := startSSHSampler(pid)
	stopped := false
	defer func() {
		if !stopped {
			sampler.Stop()
		}
	}()
	t0s := make([]time.Time, herdSize)
	postErr := make([]error, herdSize)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range herdSize {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			t0s[i] = time.Now()
			postErr[i] = a.create(ctx, herdFirstUser+i)
		}()
	}
	herdStart := time.Now()
	close(gate)
	wg.Wait()
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
	hostEvents := r.hostEvents(ctx, a, herdStart)
	if hostEvents != "" {
		r.note("herd: host health changes while it ran: %s", hostEvents)
	}

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
	for range destroyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range users {
				if err := a.destroy(ctx, u); err != nil && !strings.Contains(err.Error(), "no_session") {
					derrMu.Lock()
					destroyErrs = append(destroyErrs, fmt.Sprintf("%d: %v", u, err))
					derrMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	destroyTook := time.Since(tD)
	maxConns := sampler.Stop()
	stopped = true
	left := -1
	for wait := time.Now().Add(60 * time.Second); time.Now().Before(wait); time.Sleep(time.Second) {
		n, err := r.countInstance(instance)
		if err == nil && n == 0 {
			left = 0
			break
		}
		left = n
	}
	if left != 0 {
		removed := r.removeInstance(t, instance)
		r.note("herd: %d container(s) of the instance were still there 60 s after every destroy returned; removed by force (%d)", left, removed)
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
// returning to rotation), from the admin event log.
func (r *rig) hostEvents(ctx context.Context, a *api, since time.Time) string {
	var ev struct {
		Events []struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Host    string    `json:"host"`
			Message string    `json:"message"`
		} `json:"events"`
	}
	if _, err := a.json(ctx, e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/events/recent?limit=1000", "", &ev); err != nil {
		return "(event log unreadable: " + err.Error() + ")"
	}
	var parts []string
	for _, e := range ev.Events {
		if e.Time.Before(since) || (e.Type != "host_unhealthy" && e.Type != "host_recovered") {
			continue
		}
		msg := e.Message
		if len(msg) > 160 {
			msg = msg[:160] + "…"
		}
		parts = append(parts, fmt.Sprintf("+%s %s", e.Time.Sub(since).Round(100*time.Millisecond), msg))
	}
	return strings.Join(parts, "; ")
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
