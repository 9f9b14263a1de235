package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rfbGreeting is the first websocket message of the tiny image (and of a
// VNC server behind websockify).
const rfbGreeting = "RFB 003.008\n"

// WSTarget is a websocket endpoint: ws://Addr+Path with extra headers
// (Cookie, Origin).
type WSTarget struct {
	Addr   string // host:port
	Path   string
	Header http.Header
}

// wsConn is an open client websocket.
type wsConn struct {
	net.Conn
	br *bufio.Reader
}

// wsDial opens a websocket (RFC 6455 handshake, subprotocol "binary" as
// noVNC asks) and reads the server's first message, which must be the RFB
// greeting.
func wsDial(ctx context.Context, t WSTarget) (*wsConn, error) {
	c, err := DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n",
		t.Path, t.Addr, base64.StdEncoding.EncodeToString(key[:]))
	for k, vs := range t.Header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(c, req.String()); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		c.Close()
		return nil, fmt.Errorf("websocket handshake: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	w := &wsConn{Conn: c, br: br}
	op, payload, err := w.readFrame(nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket first message: %w", err)
	}
	if op != 0x2 || string(payload) != rfbGreeting {
		c.Close()
		return nil, fmt.Errorf("websocket first message: opcode %d %q, want the RFB greeting", op, payload)
	}
	_ = c.SetDeadline(time.Time{})
	return w, nil
}

// readFrame reads one unmasked server frame into buf (grown as needed).
func (w *wsConn) readFrame(buf []byte) (opcode byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err = io.ReadFull(w.br, hdr[:]); err != nil {
		return
	}
	opcode = hdr[0] & 0x0F
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(w.br, ext[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(w.br, ext[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if hdr[1]&0x80 != 0 {
		return 0, nil, errors.New("server frame is masked")
	}
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	payload = buf[:n]
	_, err = io.ReadFull(w.br, payload)
	return
}

// maskedFrame builds a client frame (FIN set, masked with a fixed random
// key: the server unmasks it like any other).
func maskedFrame(opcode byte, payload []byte) []byte {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	f := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		var ext [8]byte
		binary.BigEndian.PutUint64(ext[:], uint64(n))
		f = append(append(f, 0x80|127), ext[:]...)
	}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

var closeFrame = maskedFrame(0x8, []byte{0x03, 0xE8}) // 1000, normal closure

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
	frame := maskedFrame(0x2, payload)

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
		op, p, err := c.readFrame(buf)
		if err != nil {
			close(stop)
			c.Close()
			return 0, fmt.Errorf("read echo: %w", err)
		}
		buf = p[:0]
		now := time.Now()
		if op != 0x2 {
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
