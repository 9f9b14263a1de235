package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// AdminUserID is the id of the admin account every stand-in starts with (name
// "admin"); AdminToken belongs to it.
const AdminUserID = 1

// sessionLifetime is CTFd's default PERMANENT_SESSION_LIFETIME (7 days): the
// Expires of a logged-in session's cookie.
const sessionLifetime = 7 * 24 * time.Hour

// Messages of CTFd's JSON errors: Flask-RESTX answers {"message": <the
// werkzeug exception's description>}.
const (
	msgForbidden    = "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server."
	msgUnauthorized = "The server could not verify that you are authorized to access the URL requested. You either supplied the wrong credentials (e.g. a bad password), or your browser doesn't understand how to supply the credentials required."
	msgNotFound     = "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
	msgNotAllowed   = "The method is not allowed for the requested URL."
	msgServerError  = "Internal Server Error"
)

// User is an account of the stand-in. Only what the views below show is
// kept; everything else CTFd has (website, country, ...) is null or empty.
type User struct {
	ID       int // > 0; 1 is the admin account NewCTFd creates
	Name     string
	Email    string
	Admin    bool // type "admin" rather than "user"
	Banned   bool
	Hidden   bool
	Verified bool
	Created  time.Time // default: when added
}

// Mode is how the stand-in answers. Normal is CTFd's behaviour; the others
// are faults. Slow(d) is a Mode too.
type Mode int64

// Modes for SetMode. A positive Mode is Slow(Mode) (a duration).
const (
	// Normal answers like CTFd.
	Normal Mode = 0
	// Down closes the listener and every open connection: connections are
	// refused until Up (or SetMode with any other mode) listens again on the
	// same address.
	Down Mode = -1
	// Error500 answers every request 500 {"message": "Internal Server Error"}.
	Error500 Mode = -2
	// Garbage answers every request 200, Content-Type application/json, with
	// a body that is not JSON.
	Garbage Mode = -3
	// WrongShape answers every request 200 {"success": true, "data": {}}.
	WrongShape Mode = -4
)

// Slow answers normally after waiting d, or not at all if the request is
// cancelled first.
func Slow(d time.Duration) Mode {
	if d <= 0 {
		return Normal
	}
	return Mode(d)
}

func (m Mode) String() string {
	switch {
	case m == Normal:
		return "normal"
	case m == Down:
		return "down"
	case m == Error500:
		return "error500"
	case m == Garbage:
		return "garbage"
	case m == WrongShape:
		return "wrong-shape"
	case m > 0:
		return "slow(" + time.Duration(m).String() + ")"
	}
	return "mode(" + strconv.FormatInt(int64(m), 10) + ")"
}

// Recorded is one request the stand-in received.
type Recorded struct {
	Method        string
	Path          string
	RawQuery      string
	Header        http.Header // a copy
	XForwardedFor string      // every X-Forwarded-For value, joined with ", "
	RemoteAddr    string
	Time          time.Time
}

// CTFd is a stand-in for CTFd 3.8.7 (see ../shared/ctfd-api/README.md, beside the repository, for
// the contract), listening on 127.0.0.1. It serves:
//
//   - GET /api/v1/users/me: the "self" view of the session cookie's user;
//     403 JSON for a request that is not logged in and has Content-Type
//     application/json (exactly that string, as CTFd compares it), 302 to
//     /login otherwise; 403 HTML for a banned user (CTFd's app-wide check);
//     401 JSON once the user's password changed since the session logged in
//     (and the session is gone).
//   - GET /api/v1/users/<id>: the "admin" view when the caller is an admin
//     (Authorization: Token <AdminToken()> on a JSON request, which also logs
//     the admin in and answers a Set-Cookie, as CTFd does), else the public
//     "user" view; 404 for an unknown id, and for a hidden or banned user
//     unless the caller is an admin; 401 JSON for an unknown token.
//   - GET /api/v1/configs/<key> (@admins_only): {"success": true, "data":
//     {"id", "key", "value"}} for an admin (the token, as above); 404 for a
//     key that is not set; 403 JSON for anyone else on a JSON request, 302
//     to /login otherwise. ctf_name is "Stand-in CTF" until SetConfig.
//   - GET /logout: ends the cookie's session, 302 to /.
//
// Every response that creates or changes a session carries CTFd's
// Set-Cookie: a request without a cookie, or with a cookie the stand-in never
// issued, gets a new anonymous session (unless it carries an Authorization
// header, which makes CTFd skip its CSRF nonce); a cookie whose session ended
// (logout) gets a new anonymous session under the same id, as CTFd's session
// store re-issues it.
//
// As observed on CTFd 3.8.7: a ban keeps the user's sessions (every request
// gets the 403 HTML page until Unban), and a request carrying both the admin
// token and a session cookie the token did not issue turns that session into
// the admin's. Every such request is recorded (Escalations), and the test
// fails at cleanup unless it took them with TakeEscalations: the module must
// never send the token with a player's cookie.
type CTFd struct {
	t          testing.TB
	srv        *http.Server
	addr       string // 127.0.0.1:port, stable across Down/Up
	adminToken string
	now        func() time.Time

	inflight atomic.Int64 // handlers running (tests: Slow returns on cancel)

	stateMu   sync.Mutex // serialises SetMode/Close
	closed    bool
	serveDone chan struct{} // closed when the current Serve returns

	mu              sync.Mutex
	mode            Mode
	ln              net.Listener // nil while Down
	conns           map[net.Conn]struct{}
	users           map[int]*userRecord
	sessions        map[string]*session // by cookie value
	issued          map[string]bool     // every session id handed out
	requests        []Recorded
	escalations     []Recorded // admin token + a session it did not issue
	adminCalls      int
	adminWithCookie int
	configs         []configRow // CTFd's Configs table, in insertion order
}

type configRow struct {
	key, value string
}

type userRecord struct {
	User
	password int // generation: ChangePassword bumps it
}

// session is CTFd's server-side session.
type session struct {
	userID    int // 0: anonymous
	password  int // the user's password generation when it logged in
	nonce     bool
	permanent bool // logged in: the cookie has an Expires
	byToken   bool // last logged in by an API token
}

// NewCTFd starts a stand-in with one admin account (id 1, "admin") owning
// AdminToken; it is closed when the test ends.
func NewCTFd(t testing.TB) *CTFd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ctfd stand-in: listen: %v", err)
	}
	c := &CTFd{
		t:          t,
		addr:       ln.Addr().String(),
		adminToken: "ctfd_" + randomHex(32),
		now:        time.Now,
		ln:         ln,
		conns:      make(map[net.Conn]struct{}),
		users:      make(map[int]*userRecord),
		sessions:   make(map[string]*session),
		issued:     make(map[string]bool),
		configs:    []configRow{{"ctf_version", "3.8.7"}, {"ctf_name", "Stand-in CTF"}},
	}
	c.users[AdminUserID] = &userRecord{User: User{
		ID: AdminUserID, Name: "admin", Email: "admin@example.com",
		Admin: true, Verified: true, Created: c.now(),
	}}
	c.srv = &http.Server{
		Handler:           c,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         c.trackConn,
	}
	c.serve(ln)
	t.Cleanup(c.Close)
	t.Cleanup(c.checkEscalations)
	return c
}

// checkEscalations fails the test if any request sent the admin token with
// a session cookie the token did not issue, unless the test took them.
func (c *CTFd) checkEscalations() {
	c.mu.Lock()
	esc := c.escalations
	c.mu.Unlock()
	if len(esc) > 0 {
		r := esc[0]
		c.t.Errorf("ctfd stand-in: %d request(s) carried the admin token together with a player's session cookie "+
			"(CTFd turns that session into an admin session); first: %s %s at %s",
			len(esc), r.Method, r.Path, r.Time.Format(time.RFC3339Nano))
	}
}

// Escalations returns the requests that carried the admin token together
// with a session cookie the token did not issue (a player's or a browser's),
// oldest first. Each turned that session into an admin session.
func (c *CTFd) Escalations() []Recorded {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Recorded(nil), c.escalations...)
}

// TakeEscalations returns Escalations and forgets them, so that a test that
// escalates on purpose does not fail at cleanup.
func (c *CTFd) TakeEscalations() []Recorded {
	c.mu.Lock()
	defer c.mu.Unlock()
	esc := c.escalations
	c.escalations = nil
	return esc
}

// URL is the stand-in's base URL, http://127.0.0.1:port (the same after
// Down and Up).
func (c *CTFd) URL() string { return "http://" + c.addr }

// AdminToken is the admin account's API token, ctfd_<64 hex>.
func (c *CTFd) AdminToken() string { return c.adminToken }

// AddUser registers a user. The id must be positive and unused.
func (c *CTFd) AddUser(u User) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if u.ID <= 0 {
		c.t.Fatalf("ctfd stand-in: AddUser: id must be > 0, got %d", u.ID)
	}
	if _, dup := c.users[u.ID]; dup {
		c.t.Fatalf("ctfd stand-in: AddUser: id %d is taken", u.ID)
	}
	if u.Created.IsZero() {
		u.Created = c.now()
	}
	c.users[u.ID] = &userRecord{User: u}
}

// Login opens a new session for the user, as logging in through CTFd's form
// does, and returns the value of its session cookie. A user may hold several.
func (c *CTFd) Login(userID int) string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.users[userID]
	if u == nil {
		c.t.Fatalf("ctfd stand-in: Login: no user %d", userID)
	}
	sid := newSessionID()
	c.issued[sid] = true
	c.sessions[sid] = &session{userID: userID, password: u.password, nonce: true, permanent: true}
	return sid
}

// Logout deletes the session of that cookie value at once, as CTFd's
// /logout does.
func (c *CTFd) Logout(cookie string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, cookie)
}

// Ban bans the user: every request of theirs (with a session opened before
// or after) gets CTFd's 403 HTML page, and the public view of them is a 404.
// Their sessions are kept.
func (c *CTFd) Ban(userID int) { c.setBanned(userID, true) }

// Unban lifts a ban: the user's sessions answer as before it.
func (c *CTFd) Unban(userID int) { c.setBanned(userID, false) }

func (c *CTFd) setBanned(userID int, banned bool) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.users[userID]
	if u == nil {
		c.t.Fatalf("ctfd stand-in: Ban/Unban: no user %d", userID)
	}
	u.Banned = banned
}

// SetAdmin makes the user an admin ("type": "admin") or takes that away,
// as CTFd's admin panel does.
func (c *CTFd) SetAdmin(userID int, admin bool) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.users[userID]
	if u == nil {
		c.t.Fatalf("ctfd stand-in: SetAdmin: no user %d", userID)
	}
	u.Admin = admin
}

// ChangePassword changes the user's password: the sessions opened before
// are answered 401 (JSON) or a redirect to /login, and are then gone.
func (c *CTFd) ChangePassword(userID int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.users[userID]
	if u == nil {
		c.t.Fatalf("ctfd stand-in: ChangePassword: no user %d", userID)
	}
	u.password++
}

// AdminCookieReuse says how many requests logged in with the admin token
// (calls), and how many of them sent back the session cookie an earlier token
// request was given (withCookie). A client that keeps its cookie between
// calls has withCookie == calls-1; one that does not creates a new
// server-side session on every call.
func (c *CTFd) AdminCookieReuse() (calls, withCookie int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adminCalls, c.adminWithCookie
}

// Requests returns every request received so far, oldest first.
func (c *CTFd) Requests() []Recorded {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Recorded(nil), c.requests...)
}

// Count is the number of requests received for exactly this path.
func (c *CTFd) Count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.requests {
		if r.Path == path {
			n++
		}
	}
	return n
}

// Mode returns the current mode.
func (c *CTFd) Mode() Mode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode
}

// SetMode switches the stand-in to m. Going Down closes the listener and
// every connection; leaving Down listens again on the same address (the
// test fails if that address cannot be had back within 5s). Call it from the
// test's goroutine.
func (c *CTFd) SetMode(m Mode) {
	c.t.Helper()
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.closed {
		return
	}
	if m == Down {
		c.goDown()
		return
	}
	c.mu.Lock()
	c.mode = m
	down := c.ln == nil
	c.mu.Unlock()
	if !down {
		return
	}
	ln, err := listenAgain(c.addr, 5*time.Second)
	if err != nil {
		c.t.Fatalf("ctfd stand-in: come back up on %s: %v", c.addr, err)
	}
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	c.serve(ln)
}

// Up leaves Down: SetMode(Normal).
func (c *CTFd) Up() {
	c.t.Helper()
	c.SetMode(Normal)
}

// Close stops the stand-in for good (NewCTFd registers it with t.Cleanup).
func (c *CTFd) Close() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	_ = c.srv.Close()
	if c.serveDone != nil {
		<-c.serveDone
	}
}

func (c *CTFd) goDown() {
	c.mu.Lock()
	c.mode = Down
	ln := c.ln
	c.ln = nil
	c.mu.Unlock()
	if ln == nil {
		return
	}
	_ = ln.Close()
	<-c.serveDone
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
}

func (c *CTFd) serve(ln net.Listener) {
	done := make(chan struct{})
	c.serveDone = done
	go func() {
		defer close(done)
		_ = c.srv.Serve(ln)
	}()
}

func (c *CTFd) trackConn(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch state {
	case http.StateNew:
		c.conns[conn] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(c.conns, conn)
	}
}

// listenAgain listens on addr, retrying while it is still held (a
// connection of the old listener in TIME_WAIT does not hold it on Linux, but
// another process might briefly).
func listenAgain(addr string, patience time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(patience)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ServeHTTP records the request, then answers it according to the mode.
func (c *CTFd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.inflight.Add(1)
	defer c.inflight.Add(-1)

	c.mu.Lock()
	c.requests = append(c.requests, Recorded{
		Method:        r.Method,
		Path:          r.URL.Path,
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header.Clone(),
		XForwardedFor: strings.Join(r.Header.Values("X-Forwarded-For"), ", "),
		RemoteAddr:    r.RemoteAddr,
		Time:          c.now(),
	})
	mode := c.mode
	c.mu.Unlock()

	switch {
	case mode == Down: // a request that raced the listener closing
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case mode == Error500:
		reply{status: http.StatusInternalServerError, contentType: "application/json", body: messageJSON(msgServerError)}.write(w)
		return
	case mode == Garbage:
		reply{status: http.StatusOK, contentType: "application/json", body: "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>\n"}.write(w)
		return
	case mode == WrongShape:
		reply{status: http.StatusOK, contentType: "application/json", body: pyJSON(object{{"success", true}, {"data", object{}}})}.write(w)
		return
	case mode > 0:
		timer := time.NewTimer(time.Duration(mode))
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
	}

	c.mu.Lock()
	rep := c.answer(r)
	c.mu.Unlock()
	rep.write(w)
}

// exchange is one request's view of its session, as Flask's session
// interface holds it between opening and saving.
type exchange struct {
	r        *http.Request
	sid      string
	s        *session
	known    bool // the request's cookie named a live session
	issued   bool // the request's cookie named a session id CTFd issued (live or ended)
	modified bool
	cleared  bool
	isJSON   bool // CTFd: request.content_type == "application/json"
}

// answer runs CTFd's request pipeline: open the session, the app-wide
// before_request hooks (banned, tokens, csrf), the view, save the session.
// c.mu is held.
func (c *CTFd) answer(r *http.Request) reply {
	x := &exchange{r: r, isJSON: r.Header.Get("Content-Type") == "application/json"}
	if ck, err := r.Cookie("session"); err == nil {
		if s, ok := c.sessions[ck.Value]; ok {
			x.sid, x.s, x.known, x.issued = ck.Value, s, true, true
		} else if c.issued[ck.Value] { // ended (logout): the same id, now anonymous
			x.sid, x.s, x.issued = ck.Value, &session{}, true
		}
	}
	if x.s == nil { // none, or one CTFd cannot read: a new anonymous session
		x.sid, x.s = newSessionID(), &session{}
		c.issued[x.sid] = true
	}
	rep := c.handle(x)
	switch {
	case x.cleared:
		delete(c.sessions, x.sid)
		rep.setCookie = "session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"
	case x.modified:
		c.sessions[x.sid] = x.s
		rep.setCookie = "session=" + x.sid
		if x.s.permanent {
			rep.setCookie += "; Expires=" + c.now().Add(sessionLifetime).UTC().Format(http.TimeFormat)
		}
		rep.setCookie += "; HttpOnly; Path=/; SameSite=Lax"
	}
	return rep
}

func (c *CTFd) handle(x *exchange) reply {
	r := x.r
	// banned(): app-wide, before the API, whatever the route.
	if u := c.users[x.s.userID]; u != nil && u.Banned {
		return reply{status: http.StatusForbidden, contentType: "text/html; charset=utf-8", body: bannedPage}
	}
	// tokens(): an API token on a JSON request logs its user in.
	auth := r.Header.Get("Authorization")
	if auth != "" && x.isJSON {
		_, token, ok := strings.Cut(auth, " ")
		if !ok || token != c.adminToken {
			return jsonReply(http.StatusUnauthorized, messageJSON(msgUnauthorized))
		}
		if x.known && x.s.byToken {
			c.adminWithCookie++
		}
		if x.issued && !x.s.byToken { // CTFd logs the admin into this very session
			c.escalations = append(c.escalations, c.requests[len(c.requests)-1])
		}
		c.adminCalls++
		admin := c.users[AdminUserID]
		*x.s = session{userID: admin.ID, password: admin.password, nonce: true, permanent: true, byToken: true}
		x.modified = true
	}

	route, userID := matchRoute(r.URL.Path)
	if route == "" {
		return reply{status: http.StatusNotFound, contentType: "text/html; charset=utf-8", body: notFoundPage}
	}
	// csrf(): every session gets a nonce, unless the request carries an
	// Authorization header.
	if auth == "" && !x.s.nonce {
		x.s.nonce = true
		x.modified = true
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return jsonReply(http.StatusMethodNotAllowed, messageJSON(msgNotAllowed))
	}
	switch route {
	case "me":
		return c.usersMe(x)
	case "user":
		return c.usersID(x, userID)
	case "config":
		return c.config(x, strings.TrimPrefix(r.URL.Path, "/api/v1/configs/"))
	default: // logout
		x.cleared = true
		return reply{status: http.StatusFound, location: "/"}
	}
}

// usersMe is GET /api/v1/users/me (@authed_only).
func (c *CTFd) usersMe(x *exchange) reply {
	if x.s.userID == 0 {
		if x.isJSON || strings.HasPrefix(strings.TrimSpace(x.r.Header.Get("Accept")), "text/event-stream") {
			return jsonReply(http.StatusForbidden, messageJSON(msgForbidden))
		}
		return loginRedirect(x.r)
	}
	u := c.users[x.s.userID]
	if u == nil || x.s.password != u.password { // get_current_user(): session hash no longer matches
		x.cleared = true
		if x.isJSON {
			return jsonReply(http.StatusUnauthorized, messageJSON(msgUnauthorized))
		}
		return loginRedirect(x.r)
	}
	return jsonReply(http.StatusOK, pyJSON(object{{"success", true}, {"data", selfView(u.User)}}))
}

// usersID is GET /api/v1/users/<int:user_id>.
func (c *CTFd) usersID(x *exchange, id int) reply {
	u := c.users[id]
	if u == nil {
		return jsonReply(http.StatusNotFound, messageJSON(msgNotFound))
	}
	viewer := c.users[x.s.userID]
	isAdmin := viewer != nil && viewer.Admin
	if (u.Banned || u.Hidden) && !isAdmin {
		return jsonReply(http.StatusNotFound, messageJSON(msgNotFound))
	}
	data := userView(u.User)
	if isAdmin {
		data = adminView(u.User)
	}
	return jsonReply(http.StatusOK, pyJSON(object{{"success", true}, {"data", data}}))
}

// config is GET /api/v1/configs/<config_key> (@admins_only).
func (c *CTFd) config(x *exchange, key string) reply {
	if u := c.users[x.s.userID]; u == nil || !u.Admin {
		if x.isJSON {
			return jsonReply(http.StatusForbidden, messageJSON(msgForbidden))
		}
		return loginRedirect(x.r)
	}
	for i, row := range c.configs {
		if row.key == key {
			return jsonReply(http.StatusOK, pyJSON(object{{"success", true},
				{"data", object{{"id", i + 1}, {"key", row.key}, {"value", row.value}}}}))
		}
	}
	return jsonReply(http.StatusNotFound, messageJSON(msgNotFound))
}

// SetConfig sets one of CTFd's config keys (e.g. ctf_name); an empty value
// removes it.
func (c *CTFd) SetConfig(key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, row := range c.configs {
		if row.key == key {
			if value == "" {
				c.configs = append(c.configs[:i], c.configs[i+1:]...)
			} else {
				c.configs[i].value = value
			}
			return
		}
	}
	if value != "" {
		c.configs = append(c.configs, configRow{key, value})
	}
}

func loginRedirect(r *http.Request) reply {
	next := r.URL.Path
	if r.URL.RawQuery != "" {
		next += "?" + r.URL.RawQuery
	}
	return reply{status: http.StatusFound, location: "/login?next=" + url.QueryEscape(next)}
}

// matchRoute maps a path to a view: "me", "user" (with its id), "config",
// "logout", or "" for none.
func matchRoute(path string) (string, int) {
	switch path {
	case "/api/v1/users/me":
		return "me", 0
	case "/logout":
		return "logout", 0
	}
	if key, ok := strings.CutPrefix(path, "/api/v1/configs/"); ok && key != "" && !strings.Contains(key, "/") {
		return "config", 0
	}
	rest, ok := strings.CutPrefix(path, "/api/v1/users/")
	if !ok || rest == "" || len(rest) > 9 || strings.Trim(rest, "0123456789") != "" {
		return "", 0
	}
	id, _ := strconv.Atoi(rest)
	return "user", id
}

// The views of CTFd's UserSchema, keys in the order CTFd writes them
// (users_me.json, users_id_admin_view.json).

func selfView(u User) object {
	return object{
		{"website", nil}, {"name", u.Name}, {"email", u.Email}, {"language", nil},
		{"country", nil}, {"affiliation", nil}, {"bracket_id", nil}, {"id", u.ID},
		{"oauth_id", nil}, {"fields", []any{}}, {"team_id", nil},
		{"place", nil}, {"score", 0},
	}
}

func userView(u User) object {
	return object{
		{"website", nil}, {"name", u.Name}, {"country", nil}, {"affiliation", nil},
		{"bracket_id", nil}, {"id", u.ID}, {"oauth_id", nil}, {"fields", []any{}},
		{"team_id", nil},
	}
}

func adminView(u User) object {
	typ := "user"
	if u.Admin {
		typ = "admin"
	}
	return object{
		{"website", nil}, {"name", u.Name},
		{"created", u.Created.UTC().Format("2006-01-02T15:04:05+00:00")},
		{"country", nil}, {"banned", u.Banned}, {"email", u.Email}, {"language", nil},
		{"affiliation", nil}, {"secret", nil}, {"bracket_id", nil}, {"hidden", u.Hidden},
		{"id", u.ID}, {"oauth_id", nil}, {"type", typ}, {"verified", u.Verified},
		{"change_password", false}, {"fields", []any{}}, {"team_id", nil},
	}
}

// reply is one response.
type reply struct {
	status      int
	contentType string
	body        string
	location    string
	setCookie   string
}

func (rep reply) write(w http.ResponseWriter) {
	h := w.Header()
	if rep.location != "" {
		h.Set("Location", rep.location)
		if rep.contentType == "" {
			rep.contentType = "text/html; charset=utf-8"
			rep.body = redirectPage(rep.location)
		}
	}
	if rep.setCookie != "" {
		h.Set("Set-Cookie", rep.setCookie)
	}
	if rep.contentType != "" {
		h.Set("Content-Type", rep.contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(rep.status)
	_, _ = w.Write([]byte(rep.body))
}

func jsonReply(status int, body string) reply {
	return reply{status: status, contentType: "application/json", body: body}
}

func messageJSON(msg string) string { return pyJSON(object{{"message", msg}}) }

// werkzeug's redirect() body.
func redirectPage(location string) string {
	return "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n" +
		"<p>You should be redirected automatically to the target URL: <a href=\"" + location + "\">" +
		location + "</a>. If not, click the link.\n"
}

const bannedPage = `<!DOCTYPE html>
<html>
<head>
	<meta charset="utf-8">
	<title>Forbidden</title>
</head>
<body>
	<div class="jumbotron">
		<div class="container">
			<h1>Forbidden</h1>
			<h2>You have been banned from this CTF</h2>
		</div>
	</div>
</body>
</html>
`

const notFoundPage = `<!DOCTYPE html>
<html>
<head>
	<meta charset="utf-8">
	<title>404</title>
</head>
<body>
	<h1>404</h1>
	<h2>Whoops, looks like we can't find that.</h2>
	<h2>Sorry about that</h2>
</body>
</html>
`

// newSessionID is a cookie value shaped like CTFd's: a uuid4 signed with
// itsdangerous (uuid "." base64url of an HMAC-SHA1).
func newSessionID() string {
	var b [16 + 20]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	u := hex.EncodeToString(b[:16])
	return fmt.Sprintf("%s-%s-%s-%s-%s.%s", u[:8], u[8:12], u[12:16], u[16:20], u[20:],
		base64.RawURLEncoding.EncodeToString(b[16:]))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// object is a JSON object whose keys keep their order.
type object []field

type field struct {
	key   string
	value any
}

// pyJSON writes v the way CTFd (Flask-RESTX, Python's json.dumps) does:
// ", " and ": " separators, non-ASCII escaped, a final newline. v holds
// object, []any, string, int, bool and nil only.
func pyJSON(v any) string {
	var b strings.Builder
	writePy(&b, v)
	b.WriteByte('\n')
	return b.String()
}

func writePy(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case int:
		b.WriteString(strconv.Itoa(v))
	case string:
		writePyString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writePy(b, e)
		}
		b.WriteByte(']')
	case object:
		b.WriteByte('{')
		for i, f := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyString(b, f.key)
			b.WriteString(": ")
			writePy(b, f.value)
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("pyJSON: unsupported %T", v))
	}
}

// writePyString quotes s as json.dumps(ensure_ascii=True) does.
func writePyString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r > 0x7f && r <= 0xffff):
			fmt.Fprintf(b, `\u%04x`, r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
