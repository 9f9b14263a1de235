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
//
// The same is then measured with rate_limit off, for contrast (no target):
// what the limit saves the other players.
func (r *rig) benchAbuse(t *testing.T) {
	ratio, limited, ctxt := r.abuseRun(t, "", abuseFirstUser)
	r.add(secAbuse, Row{
		Figure:  "Abuse: one player's create/destroy loop (default rate_limit): other players' time to ready, loud ÷ quiet (P50)",
		Ratio:   X(ratio),
		Target:  fmt.Sprintf("≤ %.1f×", abuseTarget),
		Verdict: verdict(ratio <= abuseTarget && limited > 0),
		Context: ctxt,
	})
	if limited == 0 {
		t.Errorf("the loop was never throttled")
	}
	ratio, _, ctxt = r.abuseRun(t, "\t\trate_limit off", abuseFirstUser+100)
	r.add(secAbuse, Row{
		Figure:  "Abuse, for contrast: the same loop with rate_limit off: loud ÷ quiet (P50)",
		Ratio:   X(ratio),
		Context: ctxt,
	})
}

// abuseRun measures one configuration; it returns loud ÷ quiet, how many
// of the loop's requests were answered 429, and the row's context.
func (r *rig) abuseRun(t *testing.T, extraApp string, firstUser int) (float64, int64, string) {
	c, _ := r.startCaddy(t, caddyConf{image: r.tb.TinyImage, extraApp: extraApp}, "")
	defer func() { _ = c.Stop() }()
	a := r.api(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r.cookie(abuserUser)
	for i := range 2 * abuseRounds {
		r.cookie(firstUser + i)
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
		u := firstUser + i
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
	return ratio, limited.Load(), fmt.Sprintf("quiet %s, loud %s (%d creates each, alternating); the loop (one request per %s): %s",
		Ms(q), Ms(n), abuseRounds, abusePace, loop)
}
