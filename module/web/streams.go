package web

import (
	"bufio"
	"errors"
	"net"
	"net/http"

	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// meteredStream wraps a desktop websocket's request and response so its
// bytes are counted each way through the hijacked connection (HTTP/1.1;
// over HTTP/2 and 3 the response writes, from the desktop). Counts
// are added to the metrics as they pass, so a long session shows its
// traffic while it runs.
type meteredStream struct {
	http.ResponseWriter
}

func (m meteredStream) Write(p []byte) (int, error) {
	n, err := m.ResponseWriter.Write(p)
	metrics.StreamBytes(0, int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (m meteredStream) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// Hijack hands out the connection with its reads (to the desktop) and
// writes (from it) counted. The few bytes already buffered when the
// protocol switched are passed on uncounted.
func (m meteredStream) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(m.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &meteredConn{Conn: conn}, brw, nil
}

type meteredConn struct {
	net.Conn
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	metrics.StreamBytes(int64(n), 0)
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	metrics.StreamBytes(0, int64(n))
	return n, err
}

// CloseWrite keeps the proxy's half-close working through the wrapper.
func (c *meteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// meter counts the stream as open until the returned func runs, and its
// bytes each way (over HTTP/2 and 3, only those from the desktop: the
// request side is the proxy's own stream).
func meter(w http.ResponseWriter) (http.ResponseWriter, func()) {
	return meteredStream{w}, metrics.StreamOpened()
}
