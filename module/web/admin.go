package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/audit"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

func (s *Server) adminContainers(w http.ResponseWriter, r *http.Request, u identity.User) error {
	now := time.Now()
	list := s.Sessions.List()
	out := make([]sessionJSON, 0, len(list))
	for _, v := range list {
		out = append(out, s.sessionJSON(v, now))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": out, "summary": s.summary()})
}

// targetUser reads {"user_id": ...} from an admin request.
func targetUser(w http.ResponseWriter, r *http.Request) (string, error) {
	var body userIDBody
	if err := readJSON(w, r, &body); err != nil {
		return "", err
	}
	return body.id()
}

func (s *Server) adminKill(w http.ResponseWriter, r *http.Request, u identity.User) (err error) {
	target, err := targetUser(w, r)
	if err != nil {
		return err
	}
	defer func() { s.record(r, u, audit.Entry{Action: audit.Kill, User: target, Result: result(err)}) }()
	reason := fmt.Sprintf("killed by admin %s", display(u))
	if err := s.Sessions.Destroy(r.Context(), target, reason); errors.Is(err, session.ErrNoSession) {
		return errorf(http.StatusNotFound, "no_session", "that user has no active session")
	} else if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{})
}

func display(u identity.User) string {
	if u.Name == "" || u.Name == u.ID {
		return u.ID
	}
	return fmt.Sprintf("%s (%s)", u.Name, u.ID)
}

func (s *Server) adminExtend(w http.ResponseWriter, r *http.Request, u identity.User) (err error) {
	target, err := targetUser(w, r)
	if err != nil {
		return err
	}
	defer func() { s.record(r, u, audit.Entry{Action: audit.Extend, User: target, Result: result(err)}) }()
	return s.doExtend(w, r, target, true)
}

func (s *Server) adminHosts(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return writeJSON(w, http.StatusOK, map[string]any{"hosts": s.Hosts.Status(), "warm": s.Sessions.WarmStatus(), "summary": s.summary()})
}

type hostBody struct {
	Host string `json:"host"`
}

func (s *Server) hostFromBody(w http.ResponseWriter, r *http.Request) (*hosts.Host, error) {
	var body hostBody
	if err := readJSON(w, r, &body); err != nil {
		return nil, err
	}
	h, ok := s.Hosts.Get(body.Host)
	if !ok {
		return nil, errorf(http.StatusNotFound, "no_host", "no workspace host named "+strconv.Quote(body.Host))
	}
	return h, nil
}

func (s *Server) adminDrain(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return s.setDrained(w, r, u, true)
}

func (s *Server) adminUndrain(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return s.setDrained(w, r, u, false)
}

func (s *Server) setDrained(w http.ResponseWriter, r *http.Request, u identity.User, drained bool) (err error) {
	h, err := s.hostFromBody(w, r)
	if err != nil {
		return err
	}
	action := audit.Undrain
	if drained {
		action = audit.Drain
	}
	defer func() { s.record(r, u, audit.Entry{Action: action, Host: h.Name(), Result: result(err)}) }()
	if err := s.Hosts.SetDrained(h.Name(), drained); err != nil {
		return err
	}
	return s.adminHosts(w, r, identity.User{})
}

// adminCheck runs the host's checks now (the manual recovery the seed
// asked admins for; hosts also recover on their own).
func (s *Server) adminCheck(w http.ResponseWriter, r *http.Request, u identity.User) error {
	h, err := s.hostFromBody(w, r)
	if err != nil {
		return err
	}
	s.record(r, u, audit.Entry{Action: audit.Check, Host: h.Name()})
	ctx := context.WithoutCancel(r.Context())
	s.Hosts.Probe(ctx, h, 30*time.Second, s.Prepare)
	return s.adminHosts(w, r, u)
}

func (s *Server) recentEvents(w http.ResponseWriter, r *http.Request, u identity.User) error {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return errorf(http.StatusBadRequest, "bad_request", "limit must be a positive number")
		}
		limit = n
	}
	return writeJSON(w, http.StatusOK, map[string]any{"events": s.Events.Recent(limit)})
}

// eventStream is the admin feed over SSE: recent events first (those after
// Last-Event-ID when reconnecting), then live ones, with a keepalive
// comment every 15 s. A client that cannot keep up is dropped (it
// reconnects with Last-Event-ID and misses nothing still in the ring); it
// never slows the others.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request, u identity.User) error {
	after := uint64(0)
	replayRecent := true
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			after, replayRecent = n, false
		}
	}
	sub, replay := s.Events.Subscribe("sse "+display(u), after, 256)
	defer sub.Cancel()
	defer metrics.SSEClientOpened()()
	if replayRecent && len(replay) > 50 {
		replay = replay[len(replay)-50:]
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write([]byte("retry: 2000\n\n")); err != nil {
		return nil
	}
	for _, e := range replay {
		if err := write(sseFrame(e)); err != nil {
			return nil
		}
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	// The viewer is re-checked as often as an open desktop is: a logout, a
	// ban or a lost admin right ends the stream within the identity TTL.
	recheck := time.NewTicker(s.recheckEvery())
	defer recheck.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.Done:
			return nil
		case <-recheck.C:
			if v, err := s.recheck(r); revoked(err) || err == nil && !v.Admin {
				if ce := s.Logger.Check(zap.InfoLevel, "admin event stream ended: viewer is no longer an admin"); ce != nil {
					ce.Write(zap.String("viewer", u.ID))
				}
				return nil
			}
		case <-keepalive.C:
			if err := write([]byte(": keepalive\n\n")); err != nil {
				return nil
			}
		case e, ok := <-sub.C:
			if !ok {
				return nil // fell behind: removed; the browser reconnects
			}
			if err := write(sseFrame(e)); err != nil {
				return nil
			}
		}
	}
}

func sseFrame(e events.Event) []byte {
	data, _ := json.Marshal(e)
	return fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, data)
}
