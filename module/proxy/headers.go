package proxy

import (
	"net/http"
	"strings"
)

// requestAllowed are the only request headers a container receives: what a
// websocket handshake (RFC 6455) and a conditional or ranged GET need.
// Nothing that identifies the viewer (cookies, IP, Referer, User-Agent,
// language) passes. Sec-WebSocket-Extensions is left out, so no extension
// is negotiated and the 101's allow-list can omit it.
var requestAllowed = map[string]bool{
	"Accept": true, "Accept-Encoding": true, "Cache-Control": true, "Pragma": true,
	"If-Modified-Since": true, "If-None-Match": true, "If-Range": true, "Range": true,
	"Connection": true, "Upgrade": true,
	"Sec-Websocket-Key": true, "Sec-Websocket-Version": true, "Sec-Websocket-Protocol": true,
	"Origin": true,
}

// AddedByProxy are the headers Caddy's reverse proxy adds to the request
// after the handler prepared it (X-Forwarded-*, Via). They are deleted by
// the proxy's request header operations, which run after that step.
// (User-Agent is not deleted there: Go's transport would send its own.)
var AddedByProxy = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip", "Via"}

// filterRequestHeaders keeps only requestAllowed.
func filterRequestHeaders(h http.Header) {
	for k := range h {
		if !requestAllowed[http.CanonicalHeaderKey(k)] {
			delete(h, k)
		}
	}
	// The proxy sends its own User-Agent when none is set; an empty one
	// keeps Go's default out too.
	h["User-Agent"] = []string{""}
}

// switchingAllowed are the headers of a 101 answer a browser receives: what
// RFC 6455 needs and nothing else.
var switchingAllowed = map[string]bool{
	"Upgrade": true, "Connection": true, "Sec-Websocket-Accept": true, "Sec-Websocket-Protocol": true,
}

// contentAllowed are the headers kept on any other answer of a container:
// what describes the body and its caching.
var contentAllowed = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true, "Content-Range": true,
	"Accept-Ranges": true, "Cache-Control": true, "Etag": true, "Last-Modified": true,
	"Expires": true, "Date": true, "Vary": true,
}

// Sandbox is the Content-Security-Policy every non-101 answer of a
// container carries: the page runs in an opaque origin, so it cannot read
// this site's cookies, storage or APIs, nor be treated as this site.
const Sandbox = "sandbox allow-scripts allow-forms allow-popups allow-downloads"

// FilteredWriter passes a container's answer to the client with only the
// allowed headers, on every status including 101: Caddy's proxy copies a
// 101's headers straight to the ResponseWriter before its own response
// header operations could run, so the filter applies at WriteHeader.
// Headers set before the proxy ran (Caddy's own) are restored as they were.
// Unwrap keeps http.NewResponseController's Hijack, Flush and deadlines.
type FilteredWriter struct {
	http.ResponseWriter
	before http.Header
	wrote  bool
}

// FilterResponse wraps w; see FilteredWriter.
func FilterResponse(w http.ResponseWriter) *FilteredWriter {
	return &FilteredWriter{ResponseWriter: w, before: w.Header().Clone()}
}

// WriteHeader implements http.ResponseWriter.
func (f *FilteredWriter) WriteHeader(code int) {
	if f.wrote {
		f.ResponseWriter.WriteHeader(code)
		return
	}
	h := f.ResponseWriter.Header()
	allowed := contentAllowed
	switch {
	case code == http.StatusSwitchingProtocols:
		allowed = switchingAllowed
	case code < 200:
		allowed = nil // 103 Early Hints and the like: nothing
	}
	for k := range h {
		if !allowed[http.CanonicalHeaderKey(k)] {
			delete(h, k)
		}
	}
	for k, v := range f.before {
		h[k] = v
	}
	if code != http.StatusSwitchingProtocols && code >= 200 {
		h.Set("Content-Security-Policy", Sandbox)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		f.wrote = true
	}
	f.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (f *FilteredWriter) Write(b []byte) (int, error) {
	if !f.wrote {
		f.WriteHeader(http.StatusOK)
	}
	return f.ResponseWriter.Write(b)
}

// Finish drops trailers the container announced after the body; call it
// once the proxy has returned.
func (f *FilteredWriter) Finish() {
	h := f.ResponseWriter.Header()
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			delete(h, k)
		}
	}
}

// Unwrap returns the wrapped writer (for http.NewResponseController).
func (f *FilteredWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }
