package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// WebSocket opcodes.
const (
	OpText   byte = 0x1
	OpBinary byte = 0x2
	OpClose  byte = 0x8
)

// WSTarget is a websocket endpoint: ws://Addr+Path with more request
// headers (Cookie, Origin ...).
type WSTarget struct {
	Addr   string // host:port
	Path   string
	Header http.Header
	// Dial connects to Addr; default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WSConn is an open client websocket: a minimal RFC 6455 client, enough to
// open a desktop's websocket through Caddy and exchange unfragmented frames.
type WSConn struct {
	net.Conn
	br *bufio.Reader
}

// DialWS opens t as a websocket, asking for the subprotocol "binary" as
// noVNC does, within ctx's deadline (if any). It returns the handshake's
// answer and, on 101, the connection; on another status the connection is
// closed, the answer's body read into memory, and the error says so.
func DialWS(ctx context.Context, t WSTarget) (*http.Response, *WSConn, error) {
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	c, err := dial(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Read the body while the connection is open, for the caller
		// and the error.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		c.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil, fmt.Errorf("websocket handshake: %s: %.300s", resp.Status, strings.TrimSpace(string(body)))
	}
	_ = c.SetDeadline(time.Time{})
	return resp, &WSConn{Conn: c, br: br}, nil
}

// ReadFrame reads one unmasked, unfragmented server frame into buf (grown
// as needed).
func (w *WSConn) ReadFrame(buf []byte) (opcode byte, payload []byte, err error) {
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

// ReadWithin reads one frame's payload, waiting at most timeout.
func (w *WSConn) ReadWithin(timeout time.Duration) ([]byte, error) {
	_ = w.SetReadDeadline(time.Now().Add(timeout))
	defer w.SetReadDeadline(time.Time{})
	_, p, err := w.ReadFrame(nil)
	return p, err
}

// WriteFrame sends one binary frame.
func (w *WSConn) WriteFrame(p []byte) error {
	_, err := w.Write(MaskedFrame(OpBinary, p))
	return err
}

// MaskedFrame builds a client frame (FIN set, masked with a random key, as
// clients must).
func MaskedFrame(opcode byte, payload []byte) []byte {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	f := make([]byte, 0, len(payload)+14)
	f = append(f, 0x80|opcode)
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

// DialWS opens path on the System's Caddy as a websocket as user (0:
// anonymous), with origin ("": none) and more headers; it returns the
// handshake's answer and, on 101, the connection. The
// test fails if the handshake cannot be made.
func (s *System) DialWS(user int, path, origin string, extra map[string]string) (*http.Response, *WSConn) {
	s.t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if user != 0 {
		h.Set("Cookie", "session="+s.Cookie(user))
	}
	for k, v := range extra {
		h.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, ws, err := DialWS(ctx, WSTarget{Addr: strings.TrimPrefix(s.Caddy.URL, "http://"), Path: path, Header: h})
	if resp == nil {
		s.t.Fatalf("websocket %s: %v", path, err)
	}
	return resp, ws
}
