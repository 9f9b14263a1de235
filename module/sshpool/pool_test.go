package sshpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func noop(context.Context, *ssh.Client) error { return nil }

func TestMaxConnsNeverExceededUnder200ConcurrentDo(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 5
	p := New(cfg)
	defer p.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Sample the pool's own accounting while the load runs.
	var sampled, overLimit atomic.Int64
	stopSampling := make(chan struct{})
	var samplerDone sync.WaitGroup
	samplerDone.Add(1)
	go func() {
		defer samplerDone.Done()
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			if st := p.Stats(); st.Open+st.Dialing > cfg.MaxConns {
				overLimit.Add(1)
			}
			sampled.Add(1)
			time.Sleep(100 * time.Microsecond)
		}
	}()

	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
				time.Sleep(20 * time.Millisecond) // hold the client so that calls overlap
				return ping(ctx, c, srv.socket)
			})
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	close(stopSampling)
	samplerDone.Wait()

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of 200 Do calls failed; first: %v", n, firstErr.Load())
	}
	_, maxOpen, accepted := srv.Counts()
	st := p.Stats()
	t.Logf("server: max concurrent conns %d, accepted %d; pool: %+v; %d samples", maxOpen, accepted, st, sampled.Load())
	if maxOpen > cfg.MaxConns || st.PeakOpen > cfg.MaxConns {
		t.Errorf("server saw %d concurrent connections, pool %d at peak; MaxConns is %d", maxOpen, st.PeakOpen, cfg.MaxConns)
	}
	if accepted > cfg.MaxConns {
		t.Errorf("server accepted %d connections in total; a healthy pool dials at most MaxConns=%d", accepted, cfg.MaxConns)
	}
	if overLimit.Load() > 0 {
		t.Errorf("pool stats exceeded MaxConns in %d samples", overLimit.Load())
	}
	// 200 operations holding 20 ms each over 5 clients: they must have
	// shared them, many at once on each.
	if st.PeakChannels <= 2*cfg.MaxConns {
		t.Errorf("at most %d operations ran at once over %d clients: not multiplexed", st.PeakChannels, cfg.MaxConns)
	}
	if st.Open > cfg.MaxConns || st.Channels != 0 || st.Busy != 0 || st.Waiting != 0 || st.Idle != st.Open {
		t.Errorf("after the load: %+v", st)
	}
}

// One client per ChannelsPerConn operations in flight, never more than
// MaxConns; past that, operations go to the least-loaded client.
func TestChannelsPerConnAccounting(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 3
	cfg.ChannelsPerConn = 2
	p := New(cfg)
	defer p.Close()

	var h holder
	defer h.releaseAll()
	// The operation that finds every client at the target runs on the
	// least-loaded one at once; the client dialed for it (in the
	// background) takes the next ones.
	for i, open := range []int{1, 1, 2, 2, 2, 3, 3, 3} {
		h.hold(t, p, 1)
		waitFor(t, func() bool { return p.Stats().Dialing == 0 })
		if st := p.Stats(); st.Open != open || st.Channels != i+1 {
			t.Fatalf("with %d operations held: %+v; want %d open", i+1, st, open)
		}
	}
	if _, _, accepted := srv.Counts(); accepted != 3 {
		t.Fatalf("server accepted %d connections; want 3", accepted)
	}
	// Past the target every client carries as evenly as it can.
	p.mu.Lock()
	for _, c := range p.clients {
		if c.inflight < 2 || c.inflight > 3 {
			t.Errorf("a client carries %d operations; want 2..3 of 8 over 3", c.inflight)
		}
	}
	p.mu.Unlock()

	h.releaseAll()
	waitFor(t, func() bool { return p.Stats().Channels == 0 })
	// Sequential operations reuse one client.
	for range 5 {
		if err := p.Do(context.Background(), func(ctx context.Context, c *ssh.Client) error { return ping(ctx, c, srv.socket) }); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats(); st.Open != 3 || st.Idle != 3 || st.Dialed != 3 || st.PeakOpen != 3 || st.PeakChannels != 8 {
		t.Fatalf("after release: %+v", st)
	}
}

// An operation never waits for another one: with a single client carrying a
// stuck operation, the next runs at once on the same client.
func TestSharedClientNeverWaitsForOtherOperations(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 1
	p := New(cfg)
	defer p.Close()

	var h holder
	defer h.releaseAll()
	h.hold(t, p, 20) // more than ChannelsPerConn, all on the one client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Do(ctx, func(ctx context.Context, c *ssh.Client) error { return ping(ctx, c, srv.socket) }); err != nil {
		t.Fatalf("Do beside 20 held operations: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Do beside held operations took %s", d)
	}
	if _, _, accepted := srv.Counts(); accepted != 1 {
		t.Fatalf("server accepted %d connections; want 1", accepted)
	}
}

// While the first client is being dialed, operations wait for it, and their
// context bounds the wait.
func TestWaitForFirstClientHonoursContext(t *testing.T) {
	srv := startTestServer(t)
	srv.authDelay.Store(int64(300 * time.Millisecond))
	cfg := srv.Config(t)
	cfg.MaxConns = 1
	p := New(cfg)
	defer p.Close()

	done := make(chan error, 1)
	go func() { done <- p.Do(context.Background(), noop) }()
	waitFor(t, func() bool { return p.Stats().Dialing == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Do(ctx, noop)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do while the only slot dials = %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("Do returned %s after its deadline", d)
	}
	// A waiter with time to spare runs on the client being dialed.
	if err := p.Do(context.Background(), noop); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Dialed != 1 || st.Waiting != 0 {
		t.Fatalf("pool %+v; want one client dialed for all", st)
	}
}

func TestMaxDialingBoundsConcurrentHandshakes(t *testing.T) {
	srv := startTestServer(t)
	srv.authDelay.Store(int64(20 * time.Millisecond))
	cfg := srv.Config(t)
	cfg.MaxConns = 12
	cfg.MaxDialing = 3
	cfg.ChannelsPerConn = 1
	p := New(cfg)
	defer p.Close()

	// 12 operations at once, each staying until all run: 12 clients.
	var running sync.WaitGroup
	running.Add(cfg.MaxConns)
	errs := make(chan error, cfg.MaxConns)
	for range cfg.MaxConns {
		go func() {
			errs <- p.Do(context.Background(), func(context.Context, *ssh.Client) error {
				running.Done()
				running.Wait()
				return nil
			})
		}()
	}
	for range cfg.MaxConns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return p.Stats().Dialing == 0 })
	if got := srv.maxHandshaking.Load(); got > int64(cfg.MaxDialing) || got < 2 {
		t.Fatalf("server saw %d concurrent handshakes; want 2..%d", got, cfg.MaxDialing)
	}
	if st := p.Stats(); st.Dialed != int64(cfg.MaxConns) || st.Open != cfg.MaxConns {
		t.Fatalf("pool %+v", st)
	}
}

// A client whose transport dies is discarded at once, with no operation
// needed to notice, and its slot freed.
func TestDeadClientDiscardedAndSlotFreed(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 2
	cfg.ChannelsPerConn = 1
	p := New(cfg)
	defer p.Close()
	warm(t, p, 2)
	srv.KillAll()
	waitFor(t, func() bool { return p.Stats().Open == 0 })
	if st := p.Stats(); st.Discarded != 2 {
		t.Fatalf("pool %+v; want both dead clients discarded", st)
	}
	warm(t, p, 2)
	if st := p.Stats(); st.Dialed != 4 || st.Open != 2 {
		t.Fatalf("pool %+v; want two new clients in the freed slots", st)
	}
}

func TestCloseClosesEverythingAndFailsLaterDo(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 1

	// A busy client is closed under its operation.
	p := New(cfg)
	var h holder
	h.hold(t, p, 1)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, func() bool { open, _, _ := srv.Counts(); return open == 0 })
	h.releaseAll()
	if err := p.Do(context.Background(), noop); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v; want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if st := p.Stats(); st.Open != 0 || st.Channels != 0 || len(p.slots) != 0 {
		t.Fatalf("after Close: %+v, %d slots held", st, len(p.slots))
	}

	// The only slot is being dialed when Close comes: the dial and the
	// operation waiting for it both end with ErrClosed.
	srv.authDelay.Store(int64(200 * time.Millisecond))
	p = New(cfg)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- p.Do(context.Background(), noop) }()
	}
	waitFor(t, func() bool { st := p.Stats(); return st.Dialing == 1 && st.Waiting == 1 })
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Do waiting at Close = %v; want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Do waiting at Close was not released")
		}
	}
	waitFor(t, func() bool { open, _, _ := srv.Counts(); return open == 0 })
	if st := p.Stats(); st.Open != 0 || st.Dialing != 0 || st.Waiting != 0 || len(p.slots) != 0 {
		t.Fatalf("after Close: %+v, %d slots held", st, len(p.slots))
	}
}

func TestNilHostKeysRefusesToDial(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.HostKeys = nil
	p := New(cfg)
	defer p.Close()
	if err := p.Do(context.Background(), noop); err == nil {
		t.Fatal("Do without a host key checker succeeded")
	}
	if _, _, accepted := srv.Counts(); accepted != 0 {
		t.Fatalf("server accepted %d connections", accepted)
	}
}

// holder keeps operations running on a pool until released.
type holder struct {
	wg      sync.WaitGroup
	release []chan struct{}
}

// hold starts n operations that block until releaseAll, and waits until
// all of them run.
func (h *holder) hold(t testing.TB, p *Pool, n int) {
	t.Helper()
	before := p.Stats().Channels
	for range n {
		ch := make(chan struct{})
		h.release = append(h.release, ch)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := p.Do(context.Background(), func(context.Context, *ssh.Client) error { <-ch; return nil }); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("held operation: %v", err)
			}
		}()
		// One at a time, so that each sees the ones before it.
		waitFor(t, func() bool { return p.Stats().Channels >= before+1 })
		before++
	}
}

func (h *holder) releaseAll() {
	for _, ch := range h.release {
		close(ch)
	}
	h.release = nil
	h.wg.Wait()
}

// warm opens n clients: the pool must have ChannelsPerConn 1.
func warm(t testing.TB, p *Pool, n int) {
	t.Helper()
	var h holder
	h.hold(t, p, n)
	h.releaseAll()
	waitFor(t, func() bool { return p.Stats().Dialing == 0 })
	if st := p.Stats(); st.Open < n {
		t.Fatalf("warm pool: %+v; want %d open", st, n)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
