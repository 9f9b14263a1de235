package web

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/audit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/proxy"
)

// desktop serves /vnc/<user_id>/... for its owner or an admin only:
// noVNC's page and files from Caddy's trusted copy, and the websocket,
// which alone reaches the container. Authorization happens here, per
// request, in-process.
func (s *Server) desktop(w http.ResponseWriter, r *http.Request) error {
	user, rest, err := proxy.ParsePath(r.URL.EscapedPath(), s.Prefix+"/vnc/")
	if err != nil {
		return errBadPath
	}
	h2ws := r.Method == http.MethodConnect && r.ProtoMajor >= 2 // websocket over HTTP/2 or 3
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !h2ws {
		w.Header().Set("Allow", "GET, HEAD")
		return errMethod
	}
	upgrade := isWebsocket(r)
	if upgrade {
		// The browser attaches the CTFd cookie to websockets from any site:
		// only our own pages may open one.
		origin := r.Header.Get("Origin")
		if origin == "" || !s.originAllowed(r, origin) {
			return errForeignOrigin
		}
	}
	viewer, err := s.Identity.Identify(r)
	if err != nil {
		return identityError(err)
	}
	if viewer.ID != user && !viewer.Admin {
		return errNotYourDesk
	}
	if err := s.waitLoaded(r.Context()); err != nil {
		return err
	}
	target, ok := s.Sessions.Lookup(user)
	if !ok {
		return errNoDesktop
	}
	if rest == "/" {
		http.Redirect(w, r, s.Prefix+"/vnc/"+user+"/vnc.html", http.StatusFound)
		return nil
	}
	if !upgrade {
		// A plain request to the websocket's path would return whatever
		// the container says: never proxied.
		if rest == "/websockify" {
			return errNotWebsocket
		}
		if !s.ContainerHTTP {
			files, err := s.NoVNC.Files(r.Context(), target)
			if err != nil {
				return err
			}
			name := strings.TrimPrefix(rest, "/")
			if d, ok := files.(digested); ok && path.Ext(name) == ".html" && !strings.Contains(name, "/") {
				if _, shared := s.NoVNC.(SharedNoVNC); shared {
					return s.noVNCPage(w, r, d, name)
				}
			}
			return noVNCFile(w, r, files, name, "")
		}
	}

	ctx := proxy.WithTarget(r.Context(), target.Addr)
	if upgrade {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go s.watch(ctx, cancel, r, viewer, user, target.SessionID)
		var closed func()
		w, closed = meter(w)
		defer closed()
		if viewer.ID != user {
			s.Events.Emit(events.Event{Type: events.SessionViewed, User: user, Level: "warn",
				Message: fmt.Sprintf("admin %s opened the desktop of user %s", display(viewer), user),
				Data:    map[string]any{"admin": viewer.ID, "session": target.SessionID}})
			s.record(r, viewer, audit.Entry{Action: audit.SessionViewed, User: user, Session: target.SessionID})
		}
	}
	return s.Proxy(w, proxy.ForContainer(r.WithContext(ctx), rest), target.Addr)
}

func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		(r.ProtoMajor >= 2 && r.Method == http.MethodConnect)
}

// watch cuts an open desktop connection (by cancelling its context, which
// closes both sides of the tunnel) when the session it was opened for ends
// or is replaced, or when its viewer's login is no longer valid (logout or
// ban, seen within the identity cache's TTL). An identity provider that
// cannot be asked is not a revocation: the connection stays.
func (s *Server) watch(ctx context.Context, cancel context.CancelFunc, r *http.Request, viewer identity.User, user, sessionID string) {
	t := time.NewTicker(s.recheckEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if tgt, ok := s.Sessions.Lookup(user); !ok || tgt.SessionID != sessionID {
			cancel()
			return
		}
		u, err := s.recheck(r)
		if revoked(err) || err == nil && u.ID != user && !u.Admin {
			if ce := s.Logger.Check(zap.InfoLevel, "desktop connection cut: viewer's login no longer valid"); ce != nil {
				ce.Write(zap.String("user", user), zap.String("viewer", viewer.ID))
			}
			cancel()
			return
		}
	}
}

// authCheck is the seed's nginx auth_request endpoint, for operators who
// keep nginx in front: X-User-ID names the desktop, the request's own login
// decides, and the answer carries X-VNC-Host and X-VNC-Port. It speaks
// auth_request's language: 200 (allowed), 401 (not logged in) or 403
// (anything else, including a foreign Origin or an identity source that
// cannot be asked), since nginx turns any other status into a 500. The
// same rules as the built-in proxy apply.
func (s *Server) authCheck(w http.ResponseWriter, r *http.Request) {
	status, host, port := s.authDecision(r)
	if status != http.StatusOK {
		_ = writeJSON(w, status, map[string]any{"allowed": false})
		return
	}
	w.Header().Set("X-VNC-Host", host)
	w.Header().Set("X-VNC-Port", port)
	_ = writeJSON(w, http.StatusOK, map[string]any{"host": host, "port": mustAtoi(port)})
}

func (s *Server) authDecision(r *http.Request) (status int, host, port string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return http.StatusForbidden, "", ""
	}
	// nginx passes the original request's headers: a websocket must come
	// from our own pages, and no browser request from another site passes.
	origin := r.Header.Get("Origin")
	if isWebsocket(r) && origin == "" || !s.sameSite(r) {
		return http.StatusForbidden, "", ""
	}
	user := r.Header.Get("X-User-ID")
	if !identity.ValidID(user) {
		return http.StatusForbidden, "", ""
	}
	viewer, err := s.Identity.Identify(r)
	if errors.Is(err, identity.ErrUnauthenticated) {
		return http.StatusUnauthorized, "", ""
	}
	if err != nil || viewer.ID != user && !viewer.Admin {
		return http.StatusForbidden, "", ""
	}
	if s.waitLoaded(r.Context()) != nil {
		return http.StatusForbidden, "", ""
	}
	target, ok := s.Sessions.Lookup(user)
	if !ok {
		return http.StatusForbidden, "", ""
	}
	host, port, err = net.SplitHostPort(target.Addr)
	if err != nil {
		return http.StatusForbidden, "", ""
	}
	return http.StatusOK, host, port
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// noVNCFile serves one of noVNC's files from Caddy's own copy, with
// cacheControl if it is not empty.
func noVNCFile(w http.ResponseWriter, r *http.Request, files fs.FS, name, cacheControl string) error {
	if !fs.ValidPath(name) {
		return errBadPath
	}
	if st, err := fs.Stat(files, name); err != nil || st.IsDir() {
		return errNotFound
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if cacheControl != "" {
		w.Header().Set("Cache-Control", cacheControl)
	}
	http.ServeFileFS(w, r, files, name)
	return nil
}
