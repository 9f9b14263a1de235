package sshpool

import (
	"net"
	"syscall"
)

// quickAckConn re-arms TCP_QUICKACK after every read that returned data, so
// the kernel acknowledges what sshd sent at once instead of after the
// delayed-ACK timer (40 ms minimum on Linux).
//
// Why: OpenSSH's sshd sets TCP_NODELAY only for interactive sessions (a
// pty, or IPQoS lowdelay); for forwarded channels and exec it leaves Nagle
// on. Nagle holds a small segment while an earlier one is unacknowledged.
// One Docker operation makes sshd write several small packets in a row
// (channel open confirmation, the answer's data, EOF, close): whenever the
// client has nothing to send back, the second packet waits for the client's
// delayed ACK, ~40 ms. Measured on the test bed (BENCHMARKS.md, SSH): that
// was 15–26 % of back-to-back operations. We cannot configure sshd, but the
// client can ACK immediately. Linux clears quick-ACK mode again whenever it
// judges the flow interactive (pingpong), so one setsockopt at dial time is
// not enough: setting it after each read also flushes an ACK that is
// already pending (tcp_sock_set_quickack). Elsewhere this is a no-op.
type quickAckConn struct {
	net.Conn
	raw syscall.RawConn
}

// withQuickAck wraps c if it is a TCP connection on a system that has
// TCP_QUICKACK; otherwise it returns c as is.
func withQuickAck(c net.Conn) net.Conn {
	if !haveQuickAck {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	if _, tcp := c.(*net.TCPConn); !tcp {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{Conn: c, raw: raw}
	q.arm()
	return q
}

func (c *quickAckConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.arm()
	}
	return n, err
}

func (c *quickAckConn) arm() {
	_ = c.raw.Control(setQuickAck)
}
