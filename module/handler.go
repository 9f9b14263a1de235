package remotedesktop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/proxy"
	"github.com/ctf-desktops/caddy-remote-desktop/module/ui"
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

	// Where noVNC's web client is inside the desktop image. Caddy serves
	// every request under /remote-desktop/vnc/<id>/ but the websocket
	// itself, from the files at this path in the image the desktop was
	// created from (read once per image ID through the Docker API, from a
	// container that is never started, and kept in memory): the operator
	// built that image, a player never touched it. Only the websocket
	// reaches the player's container. An image without noVNC there gets a
	// clear error page. Default: /usr/share/novnc (Debian's novnc package).
	NoVNCPath string `json:"novnc_path,omitempty"`

	// A directory of this machine holding noVNC's web client, served
	// instead of the image's (novnc_path is then unused). Default: unset.
	NoVNCRoot string `json:"novnc_root,omitempty"`

	// UNSAFE: send every request under /remote-desktop/vnc/<id>/ to the
	// player's container, as the seed did, instead of serving noVNC from a
	// trusted copy. A player controls what their container answers, so
	// its answers are sandboxed (Content-Security-Policy: sandbox, an
	// allow-list of headers): the page runs in an opaque origin, which
	// also means it cannot open the desktop websocket itself. Logged as a
	// warning at every start. Default: off.
	UnsafeContainerHTTP bool `json:"unsafe_container_http,omitempty"`

	// Where pages send visitors who are not logged in (with ?next=).
	// Default: /login (CTFd's) with the ctfd identity, none otherwise.
	LoginURL string `json:"login_url,omitempty"`

	// The CTF's name, shown in the pages' navbar and titles. Default: with
	// the ctfd identity, CTFd's own name (its ctf_name setting, asked once
	// with the admin token); otherwise "CTF".
	Brand string `json:"brand,omitempty"`

	// The navbar's links before Remote Desktop, in order: each a name and
	// a path or URL. Default: CTFd's Challenges (/challenges) and
	// Scoreboard (/scoreboard).
	Links []ui.Link `json:"links,omitempty"`

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
	ctfd, isCTFd := mod.(*CTFdIdentity)
	if isCTFd && h.LoginURL == "" {
		h.LoginURL = "/login"
	}
	brand := func(context.Context) string { return h.Brand }
	if h.Brand == "" && isCTFd {
		logger := h.logger
		var warned atomic.Int64 // unix seconds of the last warning
		brand = func(ctx context.Context) string {
			name, err := ctfd.source.CTFName(ctx)
			if now := time.Now().Unix(); err != nil && now-warned.Load() >= 60 {
				warned.Store(now)
				logger.Warn("could not ask CTFd for its name (ctf_name); pages say \"CTF\" for now", zap.Error(err))
			}
			return name
		}
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
		// What the proxy adds about the viewer (X-Forwarded-*, Via) after
		// the request was prepared: these operations run after it.
		// Answers are filtered by proxy.FilterResponse.
		Headers: &headers.Handler{Request: &headers.HeaderOps{Delete: proxy.AddedByProxy}},
	}
	if err := h.proxy.Provision(ctx); err != nil {
		return fmt.Errorf("provision desktop proxy: %w", err)
	}

	if h.NoVNCPath == "" {
		h.NoVNCPath = defaultNoVNCPath
	}
	var novnc web.NoVNC = &imageNoVNC{path: h.NoVNCPath, hosts: rt.hosts, sessions: rt.sessions, cache: &rt.novnc,
		currentSem: make(chan struct{}, 1), logger: h.logger.Named("novnc")}
	if h.NoVNCRoot != "" {
		if novnc, err = newDirNoVNC(caddy.NewReplacer().ReplaceKnown(h.NoVNCRoot, "")); err != nil {
			return err
		}
	}
	if h.UnsafeContainerHTTP {
		h.logger.Warn("unsafe_container_http is ON: pages under " + h.PathPrefix + "/vnc/<id>/ come from the players' containers, which players control; " +
			"they are sandboxed (Content-Security-Policy: sandbox) but this site serves them. Turn it off to serve noVNC from a trusted copy")
	}

	// Long-lived responses (the admin event stream) end when this config is
	// unloaded or when the HTTP server starts shutting down: Caddy cancels
	// ctx only after the server's Shutdown returned, which waits for them.
	done := make(chan struct{})
	shutdown := make(chan struct{})
	var once sync.Once
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv != nil {
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
		NoVNC:           novnc,
		ContainerHTTP:   h.UnsafeContainerHTTP,
		Prefix:          h.PathPrefix,
		Identity:        h.identity,
		Sessions:        rt.sessions,
		Hosts:           rt.hosts,
		Events:          rt.events,
		Limiter:         rt.limiter,
		Audit:           rt.audit,
		AllowedOrigins:  h.AllowedOrigins,
		LoginURL:        h.LoginURL,
		Brand:           brand,
		Links:           h.Links,
		Prepare:         rt.prepare(true),
		Done:            done,
		Logger:          h.logger,
		RecheckIdentity: recheckFor(h.identity, srv, h.PathPrefix),
		Proxy: func(w http.ResponseWriter, r *http.Request, addr string) error {
			fw := proxy.FilterResponse(w)
			err := h.proxy.ServeHTTP(fw, r, noNext)
			fw.Finish()
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

// recheckFor is how long-lived responses re-identify their viewer: CTFd is
// asked again; Caddy's own authentication is replayed under the running
// configuration (see configRecheck).
func recheckFor(id Identifier, srv *caddyhttp.Server, prefix string) func(*http.Request) (identity.User, error) {
	if _, ok := id.(*CaddyIdentity); ok && srv != nil {
		return (&configRecheck{server: srv, prefix: prefix, own: id}).Recheck
	}
	return id.Identify
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
	if h.NoVNCPath != "" && !path.IsAbs(h.NoVNCPath) {
		return fmt.Errorf("novnc_path: %q is not an absolute path", h.NoVNCPath)
	}
	if !strings.HasPrefix(h.PathPrefix, "/") || strings.HasSuffix(h.PathPrefix, "/") {
		return fmt.Errorf("path_prefix: %q must start with / and not end with one", h.PathPrefix)
	}
	for _, l := range h.Links {
		if strings.TrimSpace(l.Name) == "" {
			return fmt.Errorf("links: a link has no name")
		}
		if !strings.HasPrefix(l.URL, "/") && !strings.HasPrefix(l.URL, "http://") && !strings.HasPrefix(l.URL, "https://") {
			return fmt.Errorf("links: %q: %q is neither a path nor an http(s) URL", l.Name, l.URL)
		}
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
