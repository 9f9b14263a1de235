package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

type targetKey struct{}

// WithTarget records in the request's context the container address the
// handler authorized for this request.
func WithTarget(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, targetKey{}, addr)
}

// Upstreams is the reverse proxy's upstream source: the address the handler
// put in the request's context after authorizing it, from memory, never
// from anything the client sent.
type Upstreams struct{}

// GetUpstreams implements reverseproxy.UpstreamSource.
func (Upstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	addr, _ := r.Context().Value(targetKey{}).(string)
	if addr == "" {
		return nil, errors.New("no authorized desktop target for this request")
	}
	return []*reverseproxy.Upstream{{Dial: addr}}, nil
}

// ForContainer returns the request to send to a container: the path
// rewritten to rest, and only the headers in requestAllowed kept (no
// credential and nothing about the viewer: the container is the player's
// to control, and admins open it through the same proxy).
func ForContainer(r *http.Request, rest string) *http.Request {
	out := r.Clone(r.Context())
	u := *r.URL
	u.Path, u.RawPath = pathUnescape(rest), rest
	out.URL = &u
	out.RequestURI = u.RequestURI()
	filterRequestHeaders(out.Header)
	return out
}

func pathUnescape(p string) string {
	if s, err := url.PathUnescape(p); err == nil {
		return s
	}
	return p
}

var _ reverseproxy.UpstreamSource = Upstreams{}
