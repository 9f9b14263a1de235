package session

import (
	"context"
	"net/http"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
)

// Runtime is one host's container engine as sessions use it: the seam
// between the session state machine and Docker. The real one goes through
// the host's Engine (SSH or the local socket); unit tests use a fake.
// An error from any method says what was being done.
type Runtime interface {
	// Run creates and starts a container, returning it with its published
	// ports.
	Run(ctx context.Context, spec docker.RunSpec) (docker.Container, error)
	// Inspect returns a container by ID or name; docker.ErrNotFound if it
	// is not there.
	Inspect(ctx context.Context, id string) (docker.Container, error)
	// Remove stops (after stopTimeout) and removes a container; removing
	// one that is gone is not an error.
	Remove(ctx context.Context, id string, stopTimeout time.Duration) error
	// List returns every container, running or not, carrying all labels.
	List(ctx context.Context, labels map[string]string) ([]docker.Container, error)
}

// RuntimeFunc gives the Runtime of a host.
type RuntimeFunc func(h *hosts.Host) Runtime

// EngineRuntime is the real Runtime: each call is one operation on the
// host's Engine.
func EngineRuntime(h *hosts.Host) Runtime { return engineRuntime{h} }

type engineRuntime struct{ h *hosts.Host }

func (r engineRuntime) Run(ctx context.Context, spec docker.RunSpec) (c docker.Container, err error) {
	err = r.h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		c, err = d.Run(ctx, spec)
		return err
	})
	return c, err
}

func (r engineRuntime) Inspect(ctx context.Context, id string) (c docker.Container, err error) {
	err = r.h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		c, err = d.Inspect(ctx, id)
		return err
	})
	return c, err
}

func (r engineRuntime) Remove(ctx context.Context, id string, stopTimeout time.Duration) error {
	return r.h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		return d.Remove(ctx, id, stopTimeout)
	})
}

func (r engineRuntime) List(ctx context.Context, labels map[string]string) (list []docker.Container, err error) {
	err = r.h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		list, err = d.List(ctx, labels, true)
		return err
	})
	return list, err
}

// Prober asks whether a desktop answers: the readiness check.
type Prober interface {
	// Answers reports whether GET url answers 200.
	Answers(ctx context.Context, url string) bool
}

// HTTPProber is the real Prober.
type HTTPProber struct{ Client *http.Client }

// Answers implements Prober.
func (p HTTPProber) Answers(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Clock is the manager's one source of time: now, and timers. Tests inject
// a fake that they advance by hand.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
	// After sends once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Timer is a timer from a Clock.
type Timer interface {
	// Stop reports whether it stopped the timer before it fired.
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc implements Clock.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// After implements Clock.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Seams are the manager's ties to the world outside it: the hosts'
// container engines, the readiness probe and the clock. A zero field takes
// the real one; unit tests pass the fakes of package sessiontest.
type Seams struct {
	Runtime RuntimeFunc // default EngineRuntime
	Prober  Prober      // default an HTTPProber with a 2 s timeout, no redirects
	Clock   Clock       // default RealClock
}

func (s *Seams) setDefaults() {
	if s.Runtime == nil {
		s.Runtime = EngineRuntime
	}
	if s.Prober == nil {
		s.Prober = HTTPProber{Client: &http.Client{Timeout: 2 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	}
	if s.Clock == nil {
		s.Clock = RealClock{}
	}
}

func (m *Manager) now() time.Time { return m.clock.Now() }

// timeout is context.WithTimeout on the manager's clock: it bounds one
// answer from a host (never time spent in our own queues).
func (m *Manager) timeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := m.clock.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() {
		t.Stop()
		cancel(context.Canceled)
	}
}
