package remotedesktop

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/proxy"
	"github.com/ctf-desktops/caddy-remote-desktop/module/web"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves everything under /remote-desktop: the player and admin pages,
// the session API, and the noVNC proxy to each session's container. It
// decides who a request belongs to with its identity source, in-process, on
// every request. Requests outside its path go to the next handler (usually
// reverse_proxy to CTFd).
type Handler struct {
	// Who a request belongs to. "ctfd" asks CTFd (the default in
	// production); "caddy" takes the user Caddy's own authentication
	// handler established. Required.
	IdentityRaw json.RawMessage `json:"identity,omitempty" caddy:"namespace=remote_desktop.identity inline_key=source"`

	// URL path the handler serves. Default: /remote-desktop.
	PathPrefix string `json:"path_prefix,omitempty"`

	// How long a player's desktop websocket is kept open after a config
	// reload replaced this handler. Caddy closes proxied websockets on
	// reload unless this is set. Default: 24h (sessions end before that
	// and their connections are cut then).
	StreamCloseDelay caddy.Duration `json:"stream_close_delay,omitempty"`

	// Origins (scheme://host[:port]) besides the request's own host that may
	// make state-changing requests and open desktop websockets.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	// A directory holding noVNC's web client (e.g. /usr/share/novnc). When
	// set, the handler serves noVNC's page and files from it and only the
	// websocket goes to the player's container. Recommended: otherwise a
	// player controls the HTML served under this site's origin at
	// /remote-desktop/vnc/<their id>/, which an admin may open. Default:
	// unset (everything is proxied to the container, as the seed did).
	NoVNCRoot string `json:"novnc_root,omitempty"`

	// Where pages send visitors who are not logged in (with ?next=).
	// Default: /login (CTFd's) with the ctfd identity, none otherwise.
	LoginURL string `json:"login_url,omitempty"`

	identity Identifier
	logger   *zap.Logger
	web      *web.Server
	proxy    *reverseproxy.Handler
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.remote_desktop",
		New: func() caddy.Module { return new(Handler) },
	}
}

const defaultStreamCloseDelay = 24 * time.Hour

// Provision sets up the handler.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.PathPrefix == "" {
		h.PathPrefix = "/remote-desktop"
	}
	if h.StreamCloseDelay == 0 {
		h.StreamCloseDelay = caddy.Duration(defaultStreamCloseDelay)
	}
	if h.IdentityRaw == nil {
		return fmt.Errorf("identity is required (ctfd or caddy)")
	}
	mod, err := ctx.LoadModule(h, "IdentityRaw")
	if err != nil {
		return fmt.Errorf("load identity source: %w", err)
	}
	h.identity = mod.(Identifier)
	if _, isCTFd := mod.(*CTFdIdentity); isCTFd && h.LoginURL == "" {
		h.LoginURL = "/login"
	}

	appIface, err := ctx.App("remote_desktop")
	if err != nil {
		return fmt.Errorf("remote_desktop app: %w", err)
	}
	rt := appIface.(*App).rt

	// Caddy's own reverse proxy carries the desktop traffic (websockets over
	// HTTP/1.1, 2 and 3, streamed, flushed at once), with the session's
	// address as its only upstream, chosen per request after authorization.
	// Bounded: a desktop whose host is cut off answers 502 quickly instead
	// of holding the browser (websockets are not cut by these).
	transport := &reverseproxy.HTTPTransport{
		DialTimeout:           caddy.Duration(3 * time.Second),
		ResponseHeaderTimeout: caddy.Duration(10 * time.Second),
	}
	h.proxy = &reverseproxy.Handler{
		TransportRaw:     caddyconfig.JSONModuleObject(transport, "protocol", "http", nil),
		DynamicUpstreams: proxy.Upstreams{},
		StreamCloseDelay: h.StreamCloseDelay,
		Headers: &headers.Handler{Response: &headers.RespHeaderOps{
			HeaderOps: &headers.HeaderOps{Delete: []string{"Set-Cookie", "Set-Cookie2"}},
			Deferred:  true,
		}},
	}
	if err := h.proxy.Provision(ctx); err != nil {
		return fmt.Errorf("provision desktop proxy: %w", err)
	}

	var novnc fs.FS
	if h.NoVNCRoot != "" {
		root := caddy.NewReplacer().ReplaceKnown(h.NoVNCRoot, "")
		if st, err := os.Stat(filepath.Join(root, "vnc.html")); err != nil || st.IsDir() {
			return fmt.Errorf("novnc_root: %s has no vnc.html", root)
		}
		novnc = os.DirFS(root)
	}

	// Long-lived responses (the admin event stream) end when this config is
	// unloaded or when the HTTP server starts shutting down: Caddy cancels
	// ctx only after the server's Shutdown returned, which waits for them.
	done := make(chan struct{})
	shutdown := make(chan struct{})
	var once sync.Once
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		srv.RegisterOnShutdown(func() { once.Do(func() { close(shutdown) }) })
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-shutdown:
		}
		close(done)
	}()

	h.web = &web.Server{
		NoVNC:          novnc,
		Prefix:         h.PathPrefix,
		Identity:       h.identity,
		Sessions:       rt.sessions,
		Hosts:          rt.hosts,
		Events:         rt.events,
		AllowedOrigins: h.AllowedOrigins,
		LoginURL:       h.LoginURL,
		Prepare:        rt.prepare(true),
		Done:           done,
		Logger:         h.logger,
		Proxy: func(w http.ResponseWriter, r *http.Request, addr string) error {
			err := h.proxy.ServeHTTP(w, r, noNext)
			var he caddyhttp.HandlerError
			if errors.As(err, &he) {
				return &web.Error{Status: http.StatusBadGateway, Code: "desktop_unreachable",
					Message: "the desktop did not answer; try again in a moment"}
			}
			return err
		},
	}
	return nil
}

// noNext ends the proxy's handler chain: the desktop is the last stop.
var noNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// Cleanup stops the desktop proxy (after stream_close_delay for open
// desktop connections).
func (h *Handler) Cleanup() error {
	if h.proxy != nil {
		return h.proxy.Cleanup()
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if !strings.HasPrefix(h.PathPrefix, "/") || strings.HasSuffix(h.PathPrefix, "/") {
		return fmt.Errorf("path_prefix: %q must start with / and not end with one", h.PathPrefix)
	}
	for _, o := range h.AllowedOrigins {
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("allowed_origins: %q is not scheme://host", o)
		}
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p := r.URL.Path
	if p != h.PathPrefix && !strings.HasPrefix(p, h.PathPrefix+"/") {
		return next.ServeHTTP(w, r)
	}
	h.web.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
