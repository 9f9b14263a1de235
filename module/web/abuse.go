package web

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/audit"
	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

// throttle takes one create/destroy from u's rate; admins are never
// limited. Refused: 429 with Retry-After (whole seconds, rounded up) and a
// message the player page shows as is.
func (s *Server) throttle(w http.ResponseWriter, u identity.User) error {
	if u.Admin {
		return nil
	}
	ok, wait := s.Limiter.Allow(u.ID)
	if ok {
		return nil
	}
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return errorf(http.StatusTooManyRequests, "rate_limited",
		fmt.Sprintf("You started or stopped desktops too often. Please wait %s before trying again.", waitText(secs)))
}

func waitText(secs int) string {
	if secs < 120 {
		return fmt.Sprintf("%d seconds", secs)
	}
	return fmt.Sprintf("%d minutes", (secs+59)/60)
}

// record writes an admin action to the audit trail. A trail that cannot
// be written does not undo or refuse the action (it already happened);
// it is logged as an error.
func (s *Server) record(r *http.Request, u identity.User, e audit.Entry) {
	e.Actor, e.ActorName = u.ID, u.Name
	if e.ActorName == e.Actor {
		e.ActorName = ""
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.Remote = host
	}
	if e.Result == "" {
		e.Result = "ok"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := s.Audit.Record(ctx, e); err != nil {
		s.Logger.Error("audit trail not written", zap.String("action", e.Action), zap.String("actor", e.Actor), zap.Error(err))
	}
}

// result is the audit result of an admin handler's error.
func result(err error) string {
	var e *Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return e.Code
	default:
		return "internal"
	}
}

// adminAudit answers GET /admin/api/audit?action=&actor=&user=&since=&until=&limit=,
// newest first. since and until are RFC 3339 times; limit defaults to 100,
// at most 1000.
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request, u identity.User) error {
	q := r.URL.Query()
	f := audit.Filter{Action: q.Get("action"), Actor: q.Get("actor"), User: q.Get("user"), Limit: 100}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, "bad_request", "limit must be a number from 1 to 1000")
		}
		f.Limit = n
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return errorf(http.StatusBadRequest, "bad_request", name+" must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")
			}
			*dst = t
		}
	}
	entries, err := s.Audit.Query(r.Context(), f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}
