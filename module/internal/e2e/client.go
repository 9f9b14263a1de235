package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// RequestTimeout is how long System's requests wait for an answer.
const RequestTimeout = 30 * time.Second

// APIRequest is a request to the module at base (http://127.0.0.1:port) as
// the holder of a CTFd session cookie ("": anonymous). A POST carries a JSON
// content type and the site's Origin, as the player's page sends it.
// headers may hold "Host" too.
func APIRequest(ctx context.Context, base, cookie, method, path, body string, headers map[string]string) (*http.Request, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if cookie != "" {
		req.Header.Set("Cookie", "session="+cookie)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", base)
	}
	setHeaders(req, headers)
	return req, nil
}

func setHeaders(req *http.Request, headers map[string]string) {
	for k, v := range headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
}

// Answer is one API exchange, timed, its JSON body decoded.
type Answer struct {
	Code   int
	Body   map[string]any // nil if the body is not a JSON object
	Raw    []byte
	Header http.Header
	Took   time.Duration
	Err    error // transport error, client timeout, or body not read whole
}

// Data is the answer's "data" object.
func (a Answer) Data() map[string]any {
	d, _ := a.Body["data"].(map[string]any)
	return d
}

// Try sends a request as user (0: anonymous) and never fails the test: a
// request that cannot be sent or times out (RequestTimeout) is an Answer
// with Err set.
func (s *System) Try(user int, method, path, body string) Answer {
	return s.TryWithin(RequestTimeout, user, method, path, body, nil)
}

// TryWithin is Try with more headers and the client giving up after
// timeout.
func (s *System) TryWithin(timeout time.Duration, user int, method, path, body string, headers map[string]string) Answer {
	cookie := ""
	if user != 0 {
		cookie = s.Cookie(user)
	}
	req, err := APIRequest(context.Background(), s.Caddy.URL, cookie, method, path, body, headers)
	if err != nil {
		return Answer{Err: err}
	}
	start := time.Now()
	resp, err := LoopbackClient(timeout).Do(req)
	if err != nil {
		return Answer{Err: err, Took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	a := Answer{Code: resp.StatusCode, Raw: raw, Header: resp.Header, Took: time.Since(start), Err: err}
	_ = json.Unmarshal(raw, &a.Body)
	return a
}

// Req is TryWithin(RequestTimeout) that fails the test on a transport
// error.
func (s *System) Req(user int, method, path, body string, headers map[string]string) Answer {
	s.t.Helper()
	a := s.TryWithin(RequestTimeout, user, method, path, body, headers)
	if a.Err != nil {
		s.t.Fatalf("%s %s as %d: %v (after %v)", method, path, user, a.Err, a.Took.Round(time.Millisecond))
	}
	return a
}

// --- the player's view ---

// Status returns data.session of user's /api/status (nil: none).
func (s *System) Status(user int) map[string]any {
	s.t.Helper()
	a := s.Req(user, http.MethodGet, "/remote-desktop/api/status", "", nil)
	if a.Code != http.StatusOK {
		s.t.Fatalf("status for %d: %d %v", user, a.Code, a.Body)
	}
	sess, _ := a.Data()["session"].(map[string]any)
	return sess
}

// Create asks for a session for user; the test fails unless it is
// accepted (202, or 200 for an existing one).
func (s *System) Create(user int) {
	s.t.Helper()
	a := s.Req(user, http.MethodPost, "/remote-desktop/api/create", "{}", nil)
	if a.Code != http.StatusAccepted && a.Code != http.StatusOK {
		s.t.Fatalf("create for %d: %d %v", user, a.Code, a.Body)
	}
}

// CreateReady creates a session for user and waits (WaitReady) until it is
// ready.
func (s *System) CreateReady(user int, within time.Duration) map[string]any {
	s.t.Helper()
	s.Create(user)
	return s.WaitReady(user, within)
}

// Snapshot is what must not change about a live session: where it runs
// and until when.
type Snapshot struct{ Host, ID, Expires, Port string }

// Snap is the Snapshot of user's session, which must be ready; its port,
// not in the player's view, is the answer of auth-check, asked within
// timeout.
func (s *System) Snap(user int, timeout time.Duration) Snapshot {
	s.t.Helper()
	sess := s.Status(user)
	if sess == nil || sess["state"] != "ready" {
		s.t.Fatalf("session of %d: %v", user, sess)
	}
	a := s.TryWithin(timeout, user, http.MethodGet, "/remote-desktop/api/auth-check", "", map[string]string{"X-User-ID": fmt.Sprint(user)})
	if a.Err != nil {
		s.t.Fatalf("auth-check for %d: %v", user, a.Err)
	}
	port := a.Header.Get("X-VNC-Port")
	if port == "" {
		s.t.Fatalf("auth-check for %d: %d, no X-VNC-Port", user, a.Code)
	}
	return Snapshot{Host: fmt.Sprint(sess["host"]), ID: fmt.Sprint(sess["id"]), Expires: fmt.Sprint(sess["expires_at"]), Port: port}
}

// --- the admin's view ---

// HostStatus is a host in the admin API.
type HostStatus struct {
	Name    string  `json:"name"`
	Health  string  `json:"health"`
	Reason  string  `json:"reason"`
	Drained bool    `json:"drained"`
	Active  int     `json:"active"`
	Checks  []Check `json:"checks"`
}

// Check is one of a host's health checks.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Event is an entry of the event log.
type Event struct {
	ID      uint64         `json:"id"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Level   string         `json:"level"`
	Host    string         `json:"host"`
	User    string         `json:"user"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

// SessionInfo is a session in the admin API.
type SessionInfo struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	State     string     `json:"state"`
	Host      string     `json:"host"`
	ExpiresAt *time.Time `json:"expires_at"`
	Error     string     `json:"error"`
}

// AdminGet decodes the data of GET path, as the admin, into out; the test
// fails unless it answers 200.
func (s *System) AdminGet(path string, out any) {
	s.t.Helper()
	a := s.Req(AdminUserID, http.MethodGet, path, "", nil)
	if a.Code != http.StatusOK {
		s.t.Fatalf("GET %s as admin: %d %v", path, a.Code, a.Body)
	}
	raw, _ := json.Marshal(a.Data())
	if err := json.Unmarshal(raw, out); err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
}

// hostsAPI is the admin hosts API's answer: the hosts and their warm pools.
type hostsAPI struct {
	Hosts []HostStatus
	Warm  []WarmPool
}

func (s *System) readHosts() hostsAPI {
	s.t.Helper()
	var out hostsAPI
	s.AdminGet("/remote-desktop/admin/api/hosts", &out)
	return out
}

// Hosts is the admin API's hosts by name.
func (s *System) Hosts() map[string]HostStatus {
	s.t.Helper()
	m := map[string]HostStatus{}
	for _, h := range s.readHosts().Hosts {
		m[h.Name] = h
	}
	return m
}

// Events is the whole recent event log.
func (s *System) Events() []Event {
	s.t.Helper()
	var out struct{ Events []Event }
	s.AdminGet("/remote-desktop/admin/api/events/recent?limit=100000", &out)
	return out.Events
}

// EventsSince returns the events of type typ (any type if "") for host (any
// if "") with an id above after.
func (s *System) EventsSince(after uint64, typ, host string) []Event {
	s.t.Helper()
	var out []Event
	for _, e := range s.Events() {
		if e.ID > after && (typ == "" || e.Type == typ) && (host == "" || e.Host == host) {
			out = append(out, e)
		}
	}
	return out
}

// LastEventID is the id of the latest event (0: none).
func (s *System) LastEventID() uint64 {
	s.t.Helper()
	var last uint64
	for _, e := range s.Events() {
		last = max(last, e.ID)
	}
	return last
}

// Story is the event log since after, one line per event.
func (s *System) Story(after uint64) string {
	var b strings.Builder
	for _, e := range s.EventsSince(after, "", "") {
		fmt.Fprintf(&b, "  #%d %s %-18s %-13s %s\n", e.ID, e.Time.Format("15:04:05.000"), e.Type, e.Host, e.Message)
	}
	return b.String()
}

// Sessions lists every live session (admin view).
func (s *System) Sessions() []SessionInfo {
	s.t.Helper()
	var out struct{ Sessions []SessionInfo }
	s.AdminGet("/remote-desktop/admin/api/containers", &out)
	return out.Sessions
}
