package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"sync/atomic"
	"time"
)

// The websocket after its first message (JSON of the request): every
// fifth connection of the container says nothing more, as a hung desktop
// would, and echoes what it gets; the others speak RFB 3.8 as a hostile
// VNC server would to noVNC, then hang up after a second:
//
//   - security type None, so no password is needed;
//   - a desktop name (ServerInit, then again as a DesktopName rect) and a
//     clipboard (ServerCutText) that are HTML with script in them and the
//     marker; a bell;
//   - a 64x48 raw frame, magenta.
//
// So a viewer can be checked for what it does with each, and for how it
// retries a desktop that keeps dropping or never finishes its handshake.
var conns atomic.Int64

const (
	hostileName = `<img src=x onerror="window.__evil=1">` + marker + `<script>window.__evil=2</script>`
	hostileCut  = `<img src=x onerror="window.__evil=3">` + marker + ` clipboard`
	rfbHold     = time.Second
)

// afterGreeting runs the websocket once its first message is out.
func afterGreeting(rw *bufio.ReadWriter) {
	if conns.Add(1)%5 == 0 {
		echo(rw)
		return
	}
	speakRFB(rw)
}

func echo(rw *bufio.ReadWriter) {
	for {
		op, payload, err := readFrame(rw.Reader)
		if err != nil || op == 0x8 {
			return
		}
		if writeFrame(rw.Writer, op, payload) != nil || rw.Flush() != nil {
			return
		}
	}
}

// frames reads the client's binary frames as one byte stream.
type frames struct {
	r   *bufio.Reader
	buf []byte
}

func (f *frames) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		op, payload, err := readFrame(f.r)
		if err != nil {
			return 0, err
		}
		if op == 0x8 {
			return 0, io.EOF
		}
		f.buf = payload
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

func speakRFB(rw *bufio.ReadWriter) {
	in := &frames{r: rw.Reader}
	send := func(b []byte) bool { return writeFrame(rw.Writer, 0x2, b) == nil && rw.Flush() == nil }
	read := func(n int) bool { _, err := io.ReadFull(in, make([]byte, n)); return err == nil }
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	u32 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }

	if !send([]byte("RFB 003.008\n")) || !read(12) || // versions
		!send([]byte{1, 1}) || !read(1) || // security: None
		!send(u32(nil, 0)) || !read(1) { // security result OK; ClientInit
		return
	}
	const w, h = 64, 48
	init := u16(u16(nil, w), h)
	init = append(init, 32, 24, 0, 1) // bpp, depth, little-endian, true colour
	init = u16(u16(u16(init, 255), 255), 255)
	init = append(init, 16, 8, 0, 0, 0, 0)
	init = append(u32(init, len(hostileName)), hostileName...)
	name := append(u16([]byte{0, 0}, 1), u16(u16(u16(u16(nil, 0), 0), 0), 0)...)
	name = append(u32(u32(name, 0xFFFFFECD), len(hostileName)), hostileName...) // DesktopName (-307)
	raw := append(u16([]byte{0, 0}, 1), u16(u16(u16(u16(nil, 0), 0), w), h)...)
	raw = u32(raw, 0) // Raw
	for i := 0; i < w*h; i++ {
		raw = append(raw, 0xff, 0x00, 0xff, 0x00) // B, G, R, X: magenta
	}
	cut := append(u32([]byte{3, 0, 0, 0}, len(hostileCut)), hostileCut...)
	for _, m := range [][]byte{init, name, cut, {2}, raw} {
		if !send(m) {
			return
		}
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, in); close(done) }()
	select {
	case <-done:
	case <-time.After(rfbHold):
	}
}
