package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
)

const maxBody = 16 << 10

func writeJSON(w http.ResponseWriter, status int, data any) error {
	body, err := json.Marshal(map[string]any{"success": status < 400, "data": data})
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		s.Logger.Error("request failed", zap.String("path", r.URL.Path), zap.Error(err))
		e = errorf(http.StatusInternalServerError, "internal", "internal error")
	}
	body, _ := json.Marshal(map[string]any{"success": false, "error": map[string]string{"code": e.Code, "message": e.Message}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// readJSON decodes a small JSON body strictly. An empty body is allowed
// (as {}) for routes without parameters.
func readJSON(w http.ResponseWriter, r *http.Request, out any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return errBadJSON
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "the request body is not the expected JSON: "+err.Error())
	}
	return nil
}

// checkStateChanging refuses cross-site requests to routes that change
// state: the body must be JSON (a cross-site form cannot send that without
// a preflight) and, when the browser says where the request came from, it
// must be this site or an allowed origin.
func (s *Server) checkStateChanging(r *http.Request) error {
	if r.ContentLength > maxBody {
		// Read (a bounded amount of) what the client is sending before
		// answering, so that it gets to read the 413 rather than a reset.
		_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
		return errTooLarge
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errNotJSON
	}
	if !s.sameSite(r) {
		return errCrossSite
	}
	return nil
}

// sameSite reports whether a browser request comes from this site: its
// Origin (when sent) is the request's own scheme://host or an allowed
// origin, and Sec-Fetch-Site (when sent) is not cross-site. Requests from
// non-browser clients carry neither and are let through (they cannot ride
// on a victim's cookie).
func (s *Server) sameSite(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin != "" {
		return s.originAllowed(r, origin)
	}
	sfs := r.Header.Get("Sec-Fetch-Site")
	return sfs != "cross-site" && sfs != "same-site"
}

func (s *Server) originAllowed(r *http.Request, origin string) bool {
	if slices.Contains(s.AllowedOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host)
}

// userIDBody is an admin request naming a user. CTFd ids are numbers;
// both 7 and "7" are accepted.
type userIDBody struct {
	UserID json.RawMessage `json:"user_id"`
}

func (b userIDBody) id() (string, error) {
	var s string
	if err := json.Unmarshal(b.UserID, &s); err == nil && s != "" {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(b.UserID, &n); err == nil && n.String() != "" {
		return n.String(), nil
	}
	return "", errorf(http.StatusBadRequest, "bad_request", `send {"user_id": "<id>"}`)
}
