package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// rfbGreeting is the first websocket message of the tiny image (and of a
// VNC server behind websockify).
const rfbGreeting = "RFB 003.008\n"

// WSTarget is a websocket endpoint: ws://Addr+Path with extra headers
// (Cookie, Origin).
type WSTarget = e2e.WSTarget

// wsDial opens a websocket (e2e.DialWS, only to allowed addresses) and
// reads the server's first message, which must be the RFB greeting.
func wsDial(ctx context.Context, t WSTarget) (*e2e.WSConn, error) {
	if t.Dial == nil {
		t.Dial = DialContext
	}
	_, w, err := e2e.DialWS(ctx, t)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = w.SetDeadline(dl)
	}
	op, payload, err := w.ReadFrame(nil)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("websocket first message: %w", err)
	}
	if op != e2e.OpBinary || string(payload) != rfbGreeting {
		w.Close()
		return nil, fmt.Errorf("websocket first message: opcode %d %q, want the RFB greeting", op, payload)
	}
	_ = w.SetDeadline(time.Time{})
	return w, nil
}

var closeFrame = e2e.MaskedFrame(e2e.OpClose, []byte{0x03, 0xE8}) // 1000, normal closure

// ConnectResult is a websocket connect load's outcome.
type ConnectResult struct {
	N       int           // connects completed
	Errors  int           // connects that failed
	Elapsed time.Duration // wall time
	Lat     []time.Duration
	First   error // the first failure, if any
}

// Rate is connects per second.
func (r ConnectResult) Rate() float64 { return float64(r.N) / r.Elapsed.Seconds() }

// WSConnectLoad has workers connect in a loop: handshake, wait for the
// first message, send a close frame, hang up. It stops after dur or max
// connects, whichever comes first.
func WSConnectLoad(ctx context.Context, t WSTarget, workers, max int, dur time.Duration) ConnectResult {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var (
		mu     sync.Mutex
		res    ConnectResult
		issued atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			var errs int
			var first error
			for ctx.Err() == nil && issued.Add(1) <= int64(max) {
				t0 := time.Now()
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := wsDial(cctx, t)
				ccancel()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				_, _ = c.Write(closeFrame)
				c.Close()
			}
			mu.Lock()
			res.Lat = append(res.Lat, lat...)
			res.Errors += errs
			if res.First == nil {
				res.First = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.N = len(res.Lat)
	sort.Slice(res.Lat, func(i, j int) bool { return res.Lat[i] < res.Lat[j] })
	return res
}

// WSThroughput sends binary frames of frameSize bytes as fast as the
// connection takes them for dur and counts the bytes echoed back; the
// first warmup of the run is not counted. It returns echoed payload bytes
// per second.
func WSThroughput(ctx context.Context, t WSTarget, frameSize int, warmup, dur time.Duration) (float64, error) {
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := wsDial(dctx, t)
	dcancel()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	payload := make([]byte, frameSize)
	_, _ = rand.Read(payload)
	frame := e2e.MaskedFrame(e2e.OpBinary, payload)

	stop := make(chan struct{})
	writeErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				writeErr <- nil
				return
			default:
			}
			if _, err := c.Write(frame); err != nil {
				writeErr <- err
				return
			}
		}
	}()

	start := time.Now()
	measureFrom, end := start.Add(warmup), start.Add(warmup+dur)
	_ = c.SetReadDeadline(end.Add(5 * time.Second))
	var counted int64
	var t0, tLast time.Time
	buf := make([]byte, 0, frameSize)
	for {
		op, p, err := c.ReadFrame(buf)
		if err != nil {
			close(stop)
			c.Close()
			return 0, fmt.Errorf("read echo: %w", err)
		}
		buf = p[:0]
		now := time.Now()
		if op != e2e.OpBinary {
			continue
		}
		if now.Before(measureFrom) {
			continue
		}
		if t0.IsZero() {
			t0 = now // bytes of this frame arrived before t0: not counted
			continue
		}
		counted += int64(len(p))
		tLast = now
		if now.After(end) {
			break
		}
	}
	close(stop)
	c.Close() // unblocks the writer
	<-writeErr
	if tLast.Sub(t0) <= 0 {
		return 0, errors.New("no echo measured")
	}
	return float64(counted) / tLast.Sub(t0).Seconds(), nil
}
