// Package web is the HTTP surface under /remote-desktop: the seed's player
// and admin routes, the pages, the admin event stream, the nginx
// auth-check, and the authorization in front of the desktop proxy. It is
// plain net/http, testable without Caddy; the Caddy handler supplies the
// proxy.
package web

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/audit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/limit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/ui"
)

// Server serves one path prefix.
type Server struct {
	Prefix         string // e.g. /remote-desktop
	Identity       identity.Source
	Sessions       *session.Manager
	Hosts          *hosts.Orchestrator
	Events         *events.Log
	AllowedOrigins []string
	LoginURL       string // where pages send visitors who are not logged in
	// NoVNC gives the trusted noVNC files served for a desktop: every
	// request under /vnc/<id>/ but the websocket is answered from them, so
	// only the websocket reaches a player's container.
	NoVNC NoVNC
	// ContainerHTTP sends those requests to the container instead, its
	// answers filtered and sandboxed (the handler's unsafe_container_http).
	ContainerHTTP bool
	// RecheckIdentity re-identifies the viewer of an open desktop connection or
	// admin event stream. Default: Identity.Identify.
	RecheckIdentity func(r *http.Request) (identity.User, error)
	// Brand gives the CTF's name for the navbar (nil or "": "CTF").
	Brand func(context.Context) string
	// Links are the navbar's links (nil: CTFd's Challenges and Scoreboard).
	Links []ui.Link
	// Prepare is run on a host that passes a manual check.
	Prepare hosts.Prepare
	// Proxy sends an authorized request on to the container at addr.
	Proxy func(w http.ResponseWriter, r *http.Request, addr string) error
	// Recheck is how often an open desktop connection re-checks its
	// session and its viewer's login. Default: 2s.
	Recheck time.Duration
	// Limiter bounds each player's creates and destroys (nil: no limit).
	Limiter *limit.Limiter
	// Audit keeps admin actions and session_viewed (nil: not kept).
	Audit *audit.Trail
	// Done ends long-lived responses (SSE) when this server is replaced.
	Done   <-chan struct{}
	Logger *zap.Logger
}

// NoVNC gives the noVNC files to serve for a desktop.
type NoVNC interface {
	Files(ctx context.Context, t session.Target) (fs.FS, error)
}

// Error is an HTTP error with the stable JSON shape
// {"success": false, "error": {"code": ..., "message": ...}}.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

var (
	errNotFound      = errorf(http.StatusNotFound, "not_found", "no such page")
	errNotAdmin      = errorf(http.StatusForbidden, "forbidden", "admins only")
	errNoSession     = errorf(http.StatusNotFound, "no_session", "you have no active session")
	errMethod        = errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	errStarting      = errorf(http.StatusServiceUnavailable, "starting", "the remote desktop service is starting, try again in a moment")
	errCrossSite     = errorf(http.StatusForbidden, "cross_site", "cross-site request refused")
	errNotJSON       = errorf(http.StatusUnsupportedMediaType, "json_required", "send Content-Type: application/json")
	errBadJSON       = errorf(http.StatusBadRequest, "bad_request", "the request body is not the expected JSON")
	errTooLarge      = errorf(http.StatusRequestEntityTooLarge, "too_large", "request body too large")
	errBadPath       = errorf(http.StatusBadRequest, "bad_path", "malformed desktop path")
	errNoDesktop     = errorf(http.StatusNotFound, "no_desktop", "no ready desktop for that user")
	errNotYourDesk   = errorf(http.StatusForbidden, "forbidden", "that desktop is not yours")
	errForeignOrigin = errorf(http.StatusForbidden, "bad_origin", "websocket from a foreign origin refused")
	errNotWebsocket  = errorf(http.StatusBadRequest, "websocket_required", "only a websocket may open this path")
)

// identityError maps an identity failure to its response. Anything that is
// not a clear "no" is a 503: the authority being unreachable never lets
// anyone in, and never looks like a logout either.
func identityError(err error) *Error {
	switch {
	case errors.Is(err, identity.ErrUnauthenticated):
		return errorf(http.StatusUnauthorized, "unauthenticated", "you are not logged in")
	case errors.Is(err, identity.ErrBanned):
		return errorf(http.StatusForbidden, "banned", "You have been banned from this CTF: remote desktops are closed to your account.")
	case errors.Is(err, identity.ErrForbidden):
		return errorf(http.StatusForbidden, "forbidden", "your account may not use remote desktops")
	default:
		return errorf(http.StatusServiceUnavailable, "identity_unavailable", "the login service is unavailable, try again shortly")
	}
}

// route is one endpoint.
type route struct {
	method  string
	admin   bool
	page    bool // HTML: identity failures become pages, not JSON
	handler func(s *Server, w http.ResponseWriter, r *http.Request, u identity.User) error
}

var routes = map[string]route{
	"":                         {method: http.MethodGet, page: true, handler: (*Server).playerPage},
	"/":                        {method: http.MethodGet, page: true, handler: (*Server).playerPage},
	"/admin":                   {method: http.MethodGet, page: true, admin: true, handler: (*Server).adminPage},
	"/api/create":              {method: http.MethodPost, handler: (*Server).create},
	"/api/creation-status":     {method: http.MethodGet, handler: (*Server).creationStatus},
	"/api/status":              {method: http.MethodGet, handler: (*Server).status},
	"/api/me":                  {method: http.MethodGet, handler: (*Server).me},
	"/api/viewer":              {method: http.MethodGet, handler: (*Server).viewerFiles},
	"/api/destroy":             {method: http.MethodPost, handler: (*Server).destroy},
	"/api/extend":              {method: http.MethodPost, handler: (*Server).extend},
	"/admin/api/containers":    {method: http.MethodGet, admin: true, handler: (*Server).adminContainers},
	"/admin/api/kill":          {method: http.MethodPost, admin: true, handler: (*Server).adminKill},
	"/admin/api/extend":        {method: http.MethodPost, admin: true, handler: (*Server).adminExtend},
	"/admin/api/events/stream": {method: http.MethodGet, admin: true, handler: (*Server).eventStream},
	"/admin/api/events/recent": {method: http.MethodGet, admin: true, handler: (*Server).recentEvents},
	"/admin/api/hosts":         {method: http.MethodGet, admin: true, handler: (*Server).adminHosts},
	"/admin/api/hosts/drain":   {method: http.MethodPost, admin: true, handler: (*Server).adminDrain},
	"/admin/api/hosts/undrain": {method: http.MethodPost, admin: true, handler: (*Server).adminUndrain},
	"/admin/api/hosts/check":   {method: http.MethodPost, admin: true, handler: (*Server).adminCheck},
	"/admin/api/audit":         {method: http.MethodGet, admin: true, handler: (*Server).adminAudit},
}

// Owns reports whether the path is under the prefix.
func (s *Server) Owns(path string) bool {
	return path == s.Prefix || strings.HasPrefix(path, s.Prefix+"/")
}

// ServeHTTP serves a request under the prefix. Errors are written here;
// the returned error is only for the caller's logs.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := s.serve(w, r)
	if err == nil {
		return
	}
	// A browser opening a desktop URL it may not (or no longer) use gets a
	// page, not raw JSON.
	var e *Error
	if errors.As(err, &e) && r.Method == http.MethodGet && !isWebsocket(r) &&
		strings.HasPrefix(r.URL.Path, s.Prefix+"/vnc/") && strings.Contains(r.Header.Get("Accept"), "text/html") {
		if perr := s.messagePage(w, r, e.Status, e.Message); perr == nil {
			return
		}
	}
	s.writeError(w, r, err)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) error {
	sub := strings.TrimPrefix(r.URL.Path, s.Prefix)
	switch {
	case strings.HasPrefix(sub, "/static/"):
		return s.static(w, r, strings.TrimPrefix(sub, "/static/"))
	case strings.HasPrefix(sub, "/vnc/") || sub == "/vnc":
		return s.desktop(w, r)
	case strings.HasPrefix(sub, "/novnc/"):
		return s.sharedNoVNC(w, r, sub)
	case sub == "/api/auth-check":
		s.authCheck(w, r)
		return nil
	}
	rt, ok := routes[sub]
	if !ok {
		return errNotFound
	}
	if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", rt.method)
		return errMethod
	}
	if rt.method == http.MethodPost {
		if err := s.checkStateChanging(r); err != nil {
			return err
		}
	}
	u, err := s.Identity.Identify(r)
	if err != nil {
		if rt.page {
			return s.identityPage(w, r, err)
		}
		return identityError(err)
	}
	if rt.admin && !u.Admin {
		if rt.page { // a browser opening /admin gets a page, not raw JSON
			return s.messagePage(w, r, errNotAdmin.Status, "This page is for the CTF's admins only.")
		}
		return errNotAdmin
	}
	if err := s.waitLoaded(r.Context()); err != nil {
		return err
	}
	return rt.handler(s, w, r, u)
}

// me answers who the request belongs to (also what a re-check of
// identity caddy asks the current configuration).
func (s *Server) me(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return writeJSON(w, http.StatusOK, map[string]any{"user": u})
}

// recheck re-identifies the viewer of a long-lived response.
func (s *Server) recheck(r *http.Request) (identity.User, error) {
	if s.RecheckIdentity != nil {
		return s.RecheckIdentity(r)
	}
	return s.Identity.Identify(r)
}

// revoked reports whether a re-check says the viewer lost their login; an
// identity source that cannot be asked is not a revocation.
func revoked(err error) bool {
	return errors.Is(err, identity.ErrUnauthenticated) || errors.Is(err, identity.ErrForbidden)
}

func (s *Server) recheckEvery() time.Duration {
	if s.Recheck > 0 {
		return s.Recheck
	}
	return 2 * time.Second
}

// waitLoaded holds a request until stored sessions are loaded at start, so
// that nobody sees "no session" (and makes a second one) in that moment.
func (s *Server) waitLoaded(ctx context.Context) error {
	select {
	case <-s.Sessions.Loaded():
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-s.Sessions.Loaded():
		return nil
	case <-ctx.Done():
		return errStarting
	}
}
