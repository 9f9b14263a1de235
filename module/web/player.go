package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// sessionJSON is a session as players and admins see it.
type sessionJSON struct {
	ID               string          `json:"id"`
	UserID           string          `json:"user_id"`
	UserName         string          `json:"user_name,omitempty"`
	State            session.State   `json:"state"`
	Host             string          `json:"host,omitempty"`
	CreatedAt        time.Time       `json:"created_at"`
	ReadyAt          *time.Time      `json:"ready_at"`
	ExpiresAt        *time.Time      `json:"expires_at"`
	RemainingSeconds *int64          `json:"remaining_seconds"`
	ExtensionsUsed   int             `json:"extensions_used"`
	MaxExtensions    int             `json:"max_extensions"`
	ExtensionsLeft   int             `json:"extensions_left"`
	ExtensionSeconds int             `json:"extension_seconds"`
	QueuePosition    int             `json:"queue_position"`
	Stages           []session.Stage `json:"stages"`
	Error            string          `json:"error,omitempty"`
	// Only for the owner and admins, only when ready. The password is in
	// the fragment, which browsers never send to a server or log.
	ConnectURL string `json:"connect_url,omitempty"`
}

func (s *Server) sessionJSON(v session.View, now time.Time) sessionJSON {
	j := sessionJSON{
		ID: v.ID, UserID: v.User, UserName: v.UserName, State: v.State, Host: v.Host, CreatedAt: v.CreatedAt,
		ExtensionsUsed: v.Extensions, MaxExtensions: v.MaxExtensions, ExtensionSeconds: v.ExtensionSeconds,
		QueuePosition: v.QueuePosition, Stages: v.Stages, Error: v.Error,
	}
	j.ExtensionsLeft = max(v.MaxExtensions-v.Extensions, 0)
	if !v.ReadyAt.IsZero() {
		t := v.ReadyAt
		j.ReadyAt = &t
	}
	if !v.ExpiresAt.IsZero() {
		t := v.ExpiresAt
		j.ExpiresAt = &t
		rem := max(int64(t.Sub(now).Seconds()), 0)
		j.RemainingSeconds = &rem
	}
	if v.State == session.Ready {
		j.ConnectURL = s.connectURL(v.User, v.Password)
	}
	return j
}

// connectURL opens noVNC through the proxy with the password applied.
func (s *Server) connectURL(user, password string) string {
	base := s.Prefix + "/vnc/" + user
	return fmt.Sprintf("%s/vnc.html#autoconnect=1&reconnect=1&resize=remote&password=%s&path=%s",
		base, password, strings.TrimPrefix(base, "/")+"/websockify")
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, u identity.User) error {
	var body struct{}
	if err := readJSON(w, r, &body); err != nil {
		return err
	}
	// Only a create that makes a session costs the player (a second
	// click answers the existing one).
	if v, ok := s.Sessions.Get(u.ID); !ok || v.State.Terminal() {
		if err := s.throttle(w, u); err != nil {
			return err
		}
	}
	_, created, err := s.Sessions.Create(u.ID, u.Name)
	if errors.Is(err, session.ErrStopped) {
		return errStarting
	}
	if err != nil {
		return err
	}
	v, _ := s.Sessions.Get(u.ID)
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	return writeJSON(w, status, map[string]any{"session": s.sessionJSON(v, time.Now())})
}

func (s *Server) creationStatus(w http.ResponseWriter, r *http.Request, u identity.User) error {
	v, ok := s.Sessions.Get(u.ID)
	if !ok {
		return writeJSON(w, http.StatusOK, map[string]any{"active": false, "state": nil, "queue_position": 0, "stages": []session.Stage{}, "error": ""})
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"active": !v.State.Terminal(), "state": v.State, "queue_position": v.QueuePosition,
		"stages": v.Stages, "error": v.Error,
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, u identity.User) error {
	v, ok, err := s.Sessions.Poll(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if !ok {
		return writeJSON(w, http.StatusOK, map[string]any{"active": false, "session": nil})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"active": !v.State.Terminal(), "session": s.sessionJSON(v, time.Now())})
}

func (s *Server) destroy(w http.ResponseWriter, r *http.Request, u identity.User) error {
	var body struct{}
	if err := readJSON(w, r, &body); err != nil {
		return err
	}
	if v, ok := s.Sessions.Get(u.ID); ok && !v.State.Terminal() {
		if err := s.throttle(w, u); err != nil {
			return err
		}
	}
	if err := s.Sessions.Destroy(r.Context(), u.ID, ""); errors.Is(err, session.ErrNoSession) {
		return errNoSession
	} else if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) extend(w http.ResponseWriter, r *http.Request, u identity.User) error {
	var body struct{}
	if err := readJSON(w, r, &body); err != nil {
		return err
	}
	return s.doExtend(w, r, u.ID, false)
}

func (s *Server) doExtend(w http.ResponseWriter, r *http.Request, user string, byAdmin bool) error {
	v, err := s.Sessions.Extend(r.Context(), user, byAdmin)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return errNoSession
	case errors.Is(err, session.ErrNotReady):
		return errorf(http.StatusConflict, "not_ready", "the session is not ready yet")
	case errors.Is(err, session.ErrMaxExtensions):
		return errorf(http.StatusConflict, "max_extensions", "no extensions left")
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"session": s.sessionJSON(v, time.Now())})
}
