package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Settings of the abuse row.
const (
	abuseRounds    = 5                     // creates by other players, each of quiet and loud
	abusePace      = 50 * time.Millisecond // the loop's requests: 20 a second
	abuseFirstUser = 3001                  // other players: one fresh user per create
	abuserUser     = 2999
	abuseTarget    = 1.5
)

// benchAbuse is the abuse row: one player runs a create/destroy loop (20
// requests a second, ignoring every 429), with the default rate limit;
// other players' creates, alternating between quiet (no loop) and loud
// (the loop running), are timed from POST to the server's ready stage.
// Same run, same hosts, so the ratio of the medians is the loop's cost to
// others. The loop is paced: unpaced, it is an HTTP flood from the same
// 2-core machine, which measures CPU contention between the client and
// Caddy, not what a create/destroy costs the hosts (bounding request
// floods is a front proxy's job, e.g. a per-IP rate limit).
func (r *rig) benchAbuse(t *testing.T) {
	c, _ := r.startCaddy(t, caddyConf{image: r.tb.TinyImage}, "") // default rate_limit
	a := r.api(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r.cookie(abuserUser)
	for i := range 2 * abuseRounds {
		r.cookie(abuseFirstUser + i)
	}

	// The loop: create; when accepted, destroy at once; again.
	var loud atomic.Bool
	var created, destroyed, free, limited, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !loud.Load() {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			for _, p := range []string{"/remote-desktop/api/create", "/remote-desktop/api/destroy"} {
				time.Sleep(abusePace)
				code, _, err := a.do(ctx, abuserUser, http.MethodPost, p, "{}")
				switch {
				case err != nil:
					other.Add(1)
				case code == http.StatusTooManyRequests:
					limited.Add(1)
				case code == http.StatusAccepted:
					created.Add(1)
				case code == http.StatusOK && p == "/remote-desktop/api/destroy":
					destroyed.Add(1)
				case code == http.StatusOK || code == http.StatusNotFound:
					free.Add(1) // the existing session, or none to destroy: no host work
				default:
					other.Add(1)
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	var quiet, noisy []time.Duration
	for i := range 2 * abuseRounds {
		isLoud := i%2 == 1
		loud.Store(isLoud)
		if isLoud {
			time.Sleep(500 * time.Millisecond) // the loop is going
		}
		u := abuseFirstUser + i
		t0 := time.Now()
		if err := a.create(ctx, u); err != nil {
			t.Fatal(err)
		}
		_, cs, err := a.waitReady(ctx, u, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		d := cs.Stages.at("ready").Sub(t0)
		if isLoud {
			noisy = append(noisy, d)
		} else {
			quiet = append(quiet, d)
		}
		loud.Store(false)
		if err := a.destroy(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	q, n := Median(quiet), Median(noisy)
	ratio := Div(n, q)
	loop := fmt.Sprintf("%d creates and %d destroys done, %d answered 429, %d free (nothing to do), %d other",
		created.Load(), destroyed.Load(), limited.Load(), free.Load(), other.Load())
	t.Logf("abuse: quiet %v; loud %v; loop: %s", quiet, noisy, loop)
	if limited.Load() == 0 {
		t.Errorf("the loop was never throttled: %s", loop)
	}
	r.add(secAbuse, Row{
		Figure:  "Abuse: one player's create/destroy loop (default rate_limit): other players' time to ready, loud ÷ quiet (P50)",
		Ratio:   X(ratio),
		Target:  fmt.Sprintf("≤ %.1f×", abuseTarget),
		Verdict: verdict(ratio <= abuseTarget && limited.Load() > 0),
		Context: fmt.Sprintf("quiet %s, loud %s (%d creates each, alternating); the loop (one request per %s): %s",
			Ms(q), Ms(n), abuseRounds, abusePace, loop),
	})
}
