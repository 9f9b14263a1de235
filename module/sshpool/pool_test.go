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

func TestMaxConnsNeverExceededUnder200ConcurrentDo(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 20
	p := New(cfg)
	defer p.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Sample the pool's own accounting while the load runs.
	var sampled atomic.Int64
	var overLimit atomic.Int64
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
			st := p.Stats()
			if st.Open+st.Dialing > cfg.MaxConns || st.InUse > cfg.MaxConns {
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
				time.Sleep(2 * time.Millisecond) // hold the connection so that calls overlap
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
	if maxOpen > cfg.MaxConns {
		t.Errorf("server saw %d concurrent connections, MaxConns is %d", maxOpen, cfg.MaxConns)
	}
	if accepted > cfg.MaxConns {
		t.Errorf("server accepted %d connections in total; a healthy pool dials at most MaxConns=%d", accepted, cfg.MaxConns)
	}
	if maxOpen < 2 {
		t.Errorf("server saw at most %d connection(s): the load did not overlap", maxOpen)
	}
	if overLimit.Load() > 0 {
		t.Errorf("pool stats exceeded MaxConns in %d samples", overLimit.Load())
	}
	if st.Open > cfg.MaxConns || st.InUse != 0 || st.Waiting != 0 || st.Idle != st.Open {
		t.Errorf("after the load: %+v", st)
	}
}

func TestMaxDialingBoundsConcurrentHandshakes(t *testing.T) {
	srv := startTestServer(t)
	srv.authDelay.Store(int64(20 * time.Millisecond))
	cfg := srv.Config(t)
	cfg.MaxConns = 12
	cfg.MaxDialing = 3
	p := New(cfg)
	defer p.Close()

	conns := make(chan *Conn, cfg.MaxConns)
	var wg sync.WaitGroup
	for range cfg.MaxConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			conns <- c
		}()
	}
	wg.Wait()
	close(conns)
	for c := range conns {
		p.Put(c, false)
	}
	if got := srv.maxHandshaking.Load(); got > int64(cfg.MaxDialing) || got < 2 {
		t.Fatalf("server saw %d concurrent handshakes; want 2..%d", got, cfg.MaxDialing)
	}
	if st := p.Stats(); st.Dialed != int64(cfg.MaxConns) || st.Idle != cfg.MaxConns {
		t.Fatalf("pool %+v", st)
	}
}

func TestGetWaitsForPutAndHonoursContext(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 1
	p := New(cfg)
	defer p.Close()

	c1, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// Deadline while waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	start := time.Now()
	_, err = p.Get(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with a full pool = %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Get returned %s after its deadline", d)
	}

	// Cancel while waiting.
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.Get(ctx); errc <- err }()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	start = time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Get = %v; want context.Canceled", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("cancelled Get took %s to return", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Get did not return")
	}

	// A waiting Get receives the connection that is put back.
	got := make(chan *Conn, 1)
	go func() {
		c, err := p.Get(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	p.Put(c1, false)
	select {
	case c2 := <-got:
		if c2 != c1 {
			t.Fatalf("waiting Get got a new connection; want the one put back")
		}
		p.Put(c2, false)
	case <-time.After(5 * time.Second):
		t.Fatal("waiting Get did not get the connection put back")
	}
	if _, _, accepted := srv.Counts(); accepted != 1 {
		t.Fatalf("server accepted %d connections; want 1", accepted)
	}
}

func TestPutBrokenFreesSlotAndDoublePutIsNoop(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 1
	p := New(cfg)
	defer p.Close()

	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c, true)
	p.Put(c, true)
	p.Put(c, false)
	p.Put(nil, false)
	if st := p.Stats(); st.Open != 0 || st.Discarded != 1 || st.InUse != 0 {
		t.Fatalf("after Put(broken) and repeats: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err = p.Get(ctx)
	if err != nil {
		t.Fatalf("Get after freeing the only slot: %v", err)
	}
	p.Put(c, false)
}

func TestCloseClosesEverythingAndFailsLaterGets(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.MaxConns = 2
	p := New(cfg)
	warm(t, p, 2)
	inUse, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	held, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := p.Get(context.Background()); errc <- err }()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Get after Close = %v; want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting Get not released by Close")
	}
	if _, err := p.Get(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v; want ErrClosed", err)
	}
	if err := p.Do(context.Background(), func(context.Context, *ssh.Client) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v; want ErrClosed", err)
	}
	p.Put(inUse, false)
	p.Put(held, true)
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitFor(t, func() bool { open, _, _ := srv.Counts(); return open == 0 })
	if st := p.Stats(); st.Open != 0 || st.Idle != 0 || st.InUse != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}

func TestNilHostKeysRefusesToDial(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.HostKeys = nil
	p := New(cfg)
	defer p.Close()
	if _, err := p.Get(context.Background()); err == nil {
		t.Fatal("Get without a host key checker succeeded")
	}
	if _, _, accepted := srv.Counts(); accepted != 0 {
		t.Fatalf("server accepted %d connections", accepted)
	}
}

// warm checks out n connections at once and puts them all back.
func warm(t testing.TB, p *Pool, n int) {
	t.Helper()
	conns := make([]*Conn, 0, n)
	for range n {
		c, err := p.Get(context.Background())
		if err != nil {
			t.Fatalf("warm pool: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		p.Put(c, false)
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
