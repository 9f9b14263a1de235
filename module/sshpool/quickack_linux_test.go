package sshpool

import (
	"io"
	"net"
	"syscall"
	"testing"
)

// After every read the wrapped connection is in quick-ACK mode again, even
// after a ping-pong exchange (which makes Linux delay ACKs).
func TestQuickAckRearmedAfterEveryRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	tcp, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	c := withQuickAck(tcp)
	if _, ok := c.(*quickAckConn); !ok {
		t.Fatalf("withQuickAck(%T) = %T; want the wrapper on Linux", tcp, c)
	}
	raw, err := tcp.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	quickAck := func() int {
		var v int
		var gerr error
		if err := raw.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
		}); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
	buf := make([]byte, 64)
	for i := range 20 {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:4]); err != nil {
			t.Fatal(err)
		}
		if q := quickAck(); q != 1 {
			t.Fatalf("exchange %d: TCP_QUICKACK = %d after a read; want 1", i, q)
		}
	}
	// Not a TCP connection: left alone.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := withQuickAck(a); got != a {
		t.Fatalf("withQuickAck(pipe) = %T; want the pipe itself", got)
	}
}
