package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// DefaultSocket is where dockerd listens by default.
const DefaultSocket = "/var/run/docker.sock"

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// Errors an APIError matches with errors.Is.
var (
	ErrNotFound = errors.New("not found") // status 404
	ErrConflict = errors.New("conflict")  // status 409
)

// APIError is a non-2xx answer of the daemon.
type APIError struct {
	Status  int    // HTTP status
	Message string // Docker's "message", or the raw body
}

func (e *APIError) Error() string {
	return fmt.Sprintf("docker: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Is makes errors.Is(err, ErrNotFound) true for a 404, ErrConflict for a 409.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	}
	return false
}

// DialFunc opens a connection to a Docker daemon's API socket.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Client talks to one Docker daemon, in the API version negotiated with it
// (see Negotiate and WithVersion).
type Client struct {
	dial DialFunc

	mu      sync.Mutex
	version string // "" until negotiated
}

// New returns a client that reaches the daemon through dial. Its first
// request negotiates the API version unless WithVersion sets one.
func New(dial DialFunc) *Client {
	return &Client{dial: dial}
}

// do sends one request and decodes a 2xx JSON answer into out (if non-nil).
// 304 Not Modified is success with no body; any other non-2xx answer becomes
// an *APIError. The status is returned either way.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	version, err := c.apiVersion(ctx)
	if err != nil {
		return 0, err
	}
	u := "http://docker/v" + version + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, release, err := c.exchange(ctx, req)
	if err != nil {
		return 0, err
	}
	defer release()
	if resp.StatusCode == http.StatusNotModified {
		// Start of a running or stop of a stopped container: already done.
		return resp.StatusCode, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, readAPIError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, withCtx(ctx, fmt.Errorf("decode answer: %w", err))
	}
	return resp.StatusCode, nil
}

func readAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var msg struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &msg) == nil && msg.Message != "" {
		return &APIError{Status: resp.StatusCode, Message: msg.Message}
	}
	return &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
}

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.do(ctx, http.MethodGet, "/_ping", nil, nil, nil); err != nil {
		return fmt.Errorf("ping docker: %w", err)
	}
	return nil
}

// pathEscape escapes each segment of a name that may contain slashes (an
// image reference such as registry.example/team/image:tag).
func pathEscape(s string) string {
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// Interface guards
var _ error = (*APIError)(nil)
