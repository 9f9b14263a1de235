// Command tinyserver is a very light stand-in for the rd-desktop image, used by
// tests that need many "desktops" quickly. It keeps the desktop's contract:
//
//   - HTTP on :6080: GET /vnc.html answers 200 with a small HTML page, and
//     /websockify accepts a WebSocket upgrade (RFC 6455). Over the socket it
//     sends one binary message "RFB 003.008\n" (what a VNC server says first)
//     and then echoes every frame it receives.
//   - Raw TCP on :5900: writes "RFB 003.008\n" on connect.
//   - SIGTERM ends it at once, as rd-desktop ends through tini, so that
//     `docker stop` does not wait out its grace on a PID 1 that ignores it.
//   - VNC_PASSWORD must be set (like the desktop, it refuses to start without
//     one); its value is never shown anywhere. RESOLUTION (WIDTHxHEIGHT,
//     default 1280x800) is validated and shown on /vnc.html.
//
// Extra endpoints for tests of a reverse proxy in front of it:
//
//   - GET /headers: the request headers it received, as JSON in the shape of
//     http.Header (map of canonical name to list of values), plus "Host".
//   - GET /request: method, path, raw query, host, remote address and headers.
//
// Standard library only, so it builds as a static binary with CGO_ENABLED=0.
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

const (
	rfbVersion = "RFB 003.008\n"
	// wsGUID is the fixed GUID of RFC 6455, section 1.3.
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	// maxFrame bounds the payload of one frame we are willing to echo.
	maxFrame = 16 << 20
)

var resolutionRE = regexp.MustCompile(`^[1-9][0-9]{2,4}x[1-9][0-9]{2,4}$`)

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("tinyserver: ")

	if os.Getenv("VNC_PASSWORD") == "" {
		log.Fatal("VNC_PASSWORD is not set; refusing to start a desktop without a password")
	}
	resolution := os.Getenv("RESOLUTION")
	if resolution == "" {
		resolution = "1280x800"
	}
	if !resolutionRE.MatchString(resolution) {
		log.Fatalf("RESOLUTION must look like 1920x1080 (got %q)", resolution)
	}
	// As PID 1, a signal without a handler is ignored: handle it.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		os.Exit(0)
	}()
	httpAddr := envOr("TINY_HTTP_ADDR", ":6080")
	vncAddr := envOr("TINY_VNC_ADDR", ":5900")

	vncLn, err := net.Listen("tcp", vncAddr)
	if err != nil {
		log.Fatal(err)
	}
	go serveRFB(vncLn)

	mux := http.NewServeMux()
	mux.HandleFunc("/vnc.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>rd-tiny</title></head>"+
			"<body><h1>rd-tiny</h1><p>resolution %s</p></body></html>\n",
			html.EscapeString(resolution))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, headersOf(r))
	})
	mux.HandleFunc("/request", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]interface{}{
			"method":      r.Method,
			"path":        r.URL.Path,
			"raw_query":   r.URL.RawQuery,
			"host":        r.Host,
			"remote_addr": r.RemoteAddr,
			"headers":     headersOf(r),
		})
	})
	mux.HandleFunc("/websockify", serveWebSocket)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/vnc.html", http.StatusFound)
			return
		}
		http.NotFound(w, r)
	})

	srv := &http.Server{
		Addr:              httpAddr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Printf("listening on %s (http) and %s (rfb), resolution %s", httpAddr, vncAddr, resolution)
	log.Fatal(srv.ListenAndServe())
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func headersOf(r *http.Request) http.Header {
	h := r.Header.Clone()
	h.Set("Host", r.Host) // net/http moves Host out of r.Header
	return h
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveRFB answers every TCP connection with the RFB version line and then
// discards whatever the client sends until it hangs up.
func serveRFB(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			log.Fatal(err)
		}
		go func(c net.Conn) {
			defer c.Close()
			if _, err := io.WriteString(c, rfbVersion); err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
		}(c)
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket performs the server side of the RFC 6455 opening handshake,
// sends the RFB version as one binary message and then echoes frames.
func serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet ||
		!headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "websocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported websocket version", http.StatusBadRequest)
		return
	}
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if decoded, err := base64.StdEncoding.DecodeString(key); err != nil || len(decoded) != 16 {
		http.Error(w, "bad Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	// noVNC asks for "binary" (older clients for "base64"); websockify agrees
	// to "binary". Echo it if offered, otherwise choose no subprotocol.
	protocol := ""
	if headerHasToken(r.Header, "Sec-WebSocket-Protocol", "binary") {
		protocol = "binary"
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		log.Printf("websocket: hijack: %v", err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})

	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
	if protocol != "" {
		resp += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	resp += "\r\n"
	if _, err := rw.WriteString(resp); err != nil {
		return
	}
	if err := writeFrame(rw.Writer, true, 0x2, []byte(rfbVersion)); err != nil {
		return
	}
	if err := rw.Flush(); err != nil {
		return
	}
	if err := echoFrames(rw.Reader, rw.Writer); err != nil && !errors.Is(err, io.EOF) {
		log.Printf("websocket %s: %v", r.RemoteAddr, err)
	}
}

// echoFrames reads client frames and writes each one back (unmasked, same
// opcode and FIN bit, so fragmented messages keep their shape). Pings get a
// pong; a close frame is answered with a close frame and ends the exchange.
func echoFrames(br *bufio.Reader, bw *bufio.Writer) error {
	for {
		fin, opcode, payload, err := readFrame(br)
		if err != nil {
			return err
		}
		switch opcode {
		case 0x8: // close: answer with the same status code, then stop
			if len(payload) >= 2 {
				payload = payload[:2]
			}
			_ = writeFrame(bw, true, 0x8, payload)
			_ = bw.Flush()
			return nil
		case 0x9: // ping
			err = writeFrame(bw, true, 0xA, payload)
		case 0xA: // pong: ignore
			continue
		default: // continuation, text, binary: echo
			err = writeFrame(bw, fin, opcode, payload)
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			return err
		}
	}
}

func readFrame(br *bufio.Reader) (fin bool, opcode byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err = io.ReadFull(br, hdr[:]); err != nil {
		return
	}
	fin = hdr[0]&0x80 != 0
	opcode = hdr[0] & 0x0F
	masked := hdr[1]&0x80 != 0
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(br, ext[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(br, ext[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if !masked {
		err = errors.New("client frame is not masked")
		return
	}
	if n > maxFrame {
		err = fmt.Errorf("frame of %d bytes is too large", n)
		return
	}
	var mask [4]byte
	if _, err = io.ReadFull(br, mask[:]); err != nil {
		return
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(br, payload); err != nil {
		return
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return
}

func writeFrame(bw *bufio.Writer, fin bool, opcode byte, payload []byte) error {
	b0 := opcode & 0x0F
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 126, byte(n>>8), byte(n))
	default:
		var ext [8]byte
		binary.BigEndian.PutUint64(ext[:], uint64(n))
		hdr = append(append(hdr, 127), ext[:]...)
	}
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	_, err := bw.Write(payload)
	return err
}
