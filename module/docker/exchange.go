package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// drainTimeout bounds the wait for the daemon's side of a connection to
// close after an answer has been read.
const drainTimeout = 250 * time.Millisecond

// exchange sends req on a connection of its own and returns the answer;
// release must be called once its body has been read. ctx bounds it all:
// when ctx ends, the connection is closed, which ends any read or write.
//
// net/http's Transport is not used: it closes a finished connection in the
// background, and over SSH that order matters. Measured on the test bed, a
// channel opened right after the previous one was closed waited ~40 ms for
// its confirmation (sshd's Nagle holding it behind its unacknowledged
// close, the client delaying the ACK); waiting for the daemon's side to
// close first, as release does, makes the next open ~0.3 ms.
func (c *Client) exchange(ctx context.Context, req *http.Request) (*http.Response, func(), error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	release := func() {
		if stop() {
			closeDrained(conn)
		}
	}
	req.Close = true // "Connection: close": the daemon hangs up after answering
	bw := bufio.NewWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		release()
		return nil, nil, withCtx(ctx, fmt.Errorf("send request: %w", err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		release()
		return nil, nil, withCtx(ctx, fmt.Errorf("read answer: %w", err))
	}
	return resp, release, nil
}

// closeDrained half-closes conn, waits (briefly) until the far side has
// closed too, then closes it.
func closeDrained(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	drained := make(chan struct{})
	go func() { // ends at the far side's close, or when conn's transport dies
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
		close(drained)
	}()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
	}
	_ = conn.Close()
}

// withCtx puts ctx's error first when ctx has ended: the failure is then the
// deadline, not the closed connection it caused.
func withCtx(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return err
}
