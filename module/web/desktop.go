package web

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/audit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/proxy"
)

// desktop serves /vnc/<user_id>/...: noVNC's page, its files and the
// websocket, from that user's container, for its owner or an admin only.
// Authorization happens here, per request, in-process.
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

	if s.NoVNC != nil && !upgrade && rest != "/websockify" {
		return s.noVNCFile(w, r, strings.TrimPrefix(rest, "/"))
	}

	ctx := proxy.WithTarget(r.Context(), target.Addr)
	if upgrade {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go s.watch(ctx, cancel, r, viewer, user, target.SessionID)
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
	every := s.Recheck
	if every <= 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
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
		u, err := s.Identity.Identify(r)
		if err != nil && (errors.Is(err, identity.ErrUnauthenticated) || errors.Is(err, identity.ErrForbidden)) ||
			err == nil && u.ID != user && !u.Admin {
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
// decides, and the answer carries X-VNC-Host and X-VNC-Port. The same rules
// as the built-in proxy apply.
func (s *Server) authCheck(w http.ResponseWriter, r *http.Request, viewer identity.User) error {
	user := r.Header.Get("X-User-ID")
	if !identity.ValidID(user) {
		return errorf(http.StatusBadRequest, "bad_request", "X-User-ID must name a user")
	}
	if viewer.ID != user && !viewer.Admin {
		return errNotYourDesk
	}
	target, ok := s.Sessions.Lookup(user)
	if !ok {
		return errNoDesktop
	}
	host, port, err := net.SplitHostPort(target.Addr)
	if err != nil {
		return err
	}
	w.Header().Set("X-VNC-Host", host)
	w.Header().Set("X-VNC-Port", port)
	return writeJSON(w, http.StatusOK, map[string]any{"host": host, "port": mustAtoi(port)})
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// noVNCFile serves one of noVNC's files from Caddy's own copy.
func (s *Server) noVNCFile(w http.ResponseWriter, r *http.Request, name string) error {
	if !fs.ValidPath(name) {
		return errBadPath
	}
	if st, err := fs.Stat(s.NoVNC, name); err != nil || st.IsDir() {
		return errNotFound
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeFileFS(w, r, s.NoVNC, name)
	return nil
}
