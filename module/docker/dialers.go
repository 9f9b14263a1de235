package docker

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"
)

// SSHDialer opens each API connection as a direct-streamlocal channel of the
// SSH client to the daemon's socket on the remote host (DefaultSocket if
// socket is empty). The channel is bounded by ctx while it opens.
func SSHDialer(c *ssh.Client, socket string) DialFunc {
	if socket == "" {
		socket = DefaultSocket
	}
	return func(ctx context.Context) (net.Conn, error) {
		conn, err := c.DialContext(ctx, "unix", socket)
		if err != nil {
			return nil, fmt.Errorf("open ssh channel to %s: %w", socket, err)
		}
		return conn, nil
	}
}

// UnixDialer connects to a local daemon's socket (DefaultSocket if empty).
func UnixDialer(socket string) DialFunc {
	if socket == "" {
		socket = DefaultSocket
	}
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
}
