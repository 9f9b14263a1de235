package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The shapes of ../shared/ctfd-api (CTFd 3.8.7's answers), for alice,
// id 7, created 2026-11-28T10:00:00Z.
const (
	usersMeJSON = `{
  "success": true,
  "data": {
    "website": null,
    "name": "alice",
    "email": "alice@example.com",
    "language": null,
    "country": null,
    "affiliation": null,
    "bracket_id": null,
    "id": 7,
    "oauth_id": null,
    "fields": [],
    "team_id": null,
    "place": null,
    "score": 0
  }
}`
	usersIDAdminViewJSON = `{
  "success": true,
  "data": {
    "website": null,
    "name": "alice",
    "created": "2026-11-28T10:00:00+00:00",
    "country": null,
    "banned": false,
    "email": "alice@example.com",
    "language": null,
    "affiliation": null,
    "secret": null,
    "bracket_id": null,
    "hidden": false,
    "id": 7,
    "oauth_id": null,
    "type": "user",
    "verified": false,
    "change_password": false,
    "fields": [],
    "team_id": null
  }
}`
	notLoggedInJSON = `{
  "message": "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server."
}`
)

var alice = User{
	ID: 7, Name: "alice", Email: "alice@example.com",
	Created: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
}

const (
	jsonCT = "application/json"
	meURL  = "/api/v1/users/me"
)

// get asks the stand-in with the given headers; "Cookie" may be a bare
// session value (session=... is added).
func get(t *testing.T, c *CTFd, path string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	h := map[string]string{}
	for k, v := range headers {
		if k == "Cookie" && !strings.Contains(v, "=") {
			v = "session=" + v
		}
		h[k] = v
	}
	return Do(t, http.MethodGet, c.URL()+path, h, "")
}

// sameJSON fails unless got is want: the same values and the same key order.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON differs:\ngot  %s\nwant %s", got, want)
	}
	if gk, wk := keyOrder(t, got), keyOrder(t, []byte(want)); !reflect.DeepEqual(gk, wk) {
		t.Fatalf("key order differs:\ngot  %v\nwant %v", gk, wk)
	}
}

// keyOrder lists every object key of a JSON document in document order.
func keyOrder(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	var keys []string
	var stack []bool // per open container: is it an object expecting a key?
	expectKey := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return keys
		}
		if err != nil {
			t.Fatalf("keyOrder: %v", err)
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				stack = append(stack, v == '{')
				expectKey = v == '{'
			default:
				stack = stack[:len(stack)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1]
			}
			continue
		case string:
			if expectKey {
				keys = append(keys, v)
				expectKey = false
				continue
			}
		}
		expectKey = len(stack) > 0 && stack[len(stack)-1]
	}
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, ck := range resp.Cookies() {
		if ck.Name == "session" {
			return ck
		}
	}
	return nil
}

func TestCTFdUsersMeLoggedIn(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	cookie := c.Login(alice.ID)

	resp, body := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": jsonCT, "Accept": jsonCT, "X-Forwarded-For": "203.0.113.9"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != jsonCT {
		t.Fatalf("got %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	sameJSON(t, body, usersMeJSON)
	// CTFd writes JSON with Python's separators.
	if !strings.HasPrefix(string(body), `{"success": true, "data": {"website": null, "name": "alice", `) {
		t.Errorf("not written like CTFd: %s", body)
	}
	if sc := resp.Header.Get("Set-Cookie"); sc != "" {
		t.Errorf("a live session got a Set-Cookie: %s", sc)
	}

	// Several sessions per user; each works.
	second := c.Login(alice.ID)
	if second == cookie {
		t.Fatal("Login returned the same cookie twice")
	}
	if resp, body := get(t, c, meURL, map[string]string{"Cookie": second, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK {
		t.Fatalf("second session: %d %s", resp.StatusCode, body)
	}

	// Recorded, with the X-Forwarded-For it was sent.
	if n := c.Count(meURL); n != 2 {
		t.Errorf("Count(%s) = %d, want 2", meURL, n)
	}
	reqs := c.Requests()
	if len(reqs) != 2 || reqs[0].Method != http.MethodGet || reqs[0].XForwardedFor != "203.0.113.9" ||
		reqs[0].Header.Get("Cookie") != "session="+cookie || reqs[1].XForwardedFor != "" {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestCTFdUsersMeAnonymous(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)

	// No cookie, JSON: 403 with CTFd's message, and a new anonymous session.
	resp, body := get(t, c, meURL, map[string]string{"Content-Type": jsonCT})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != jsonCT {
		t.Fatalf("got %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	sameJSON(t, body, notLoggedInJSON)
	anon := sessionCookie(t, resp)
	if anon == nil || anon.Value == "" {
		t.Fatalf("no session cookie for an anonymous visitor: %v", resp.Header["Set-Cookie"])
	}
	// The anonymous cookie sent back: still 403, and no new cookie: a cookie
	// is not a login.
	resp, body = get(t, c, meURL, map[string]string{"Cookie": anon.Value, "Content-Type": jsonCT})
	if resp.StatusCode != http.StatusForbidden || sessionCookie(t, resp) != nil {
		t.Fatalf("anonymous session: %d %v %s", resp.StatusCode, resp.Header["Set-Cookie"], body)
	}

	// Without the JSON content type: a redirect to the login page.
	for _, ct := range []string{"", "text/html", "application/json; charset=utf-8"} {
		resp, _ = get(t, c, meURL, map[string]string{"Content-Type": ct, "Accept": jsonCT})
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/login?next=%2Fapi%2Fv1%2Fusers%2Fme" {
			t.Errorf("Content-Type %q: got %d Location %q, want 302 to /login", ct, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func TestCTFdInvalidCookieGetsANewAnonymousSession(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	resp, body := get(t, c, meURL, map[string]string{"Cookie": "forged-or-expired", "Content-Type": jsonCT})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("got %d: %s", resp.StatusCode, body)
	}
	sameJSON(t, body, notLoggedInJSON)
	sc := resp.Header.Get("Set-Cookie")
	value, attrs, _ := strings.Cut(sc, "; ")
	if !strings.HasPrefix(value, "session=") || value == "session=forged-or-expired" || len(value) < len("session=")+20 ||
		attrs != "HttpOnly; Path=/; SameSite=Lax" {
		t.Fatalf("Set-Cookie %q, want session=<new value>; HttpOnly; Path=/; SameSite=Lax", sc)
	}
}

func TestCTFdAdminView(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	c.AddUser(User{ID: 8, Name: "hidden", Email: "h@example.com", Hidden: true})
	c.AddUser(User{ID: 9, Name: "banned", Email: "b@example.com", Banned: true})
	tok := c.AdminToken()
	if len(tok) != len("ctfd_")+64 || !strings.HasPrefix(tok, "ctfd_") || strings.Trim(tok[5:], "0123456789abcdef") != "" {
		t.Fatalf("AdminToken %q is not ctfd_<64 hex>", tok)
	}
	admin := map[string]string{"Authorization": "Token " + tok, "Content-Type": jsonCT}

	resp, body := get(t, c, "/api/v1/users/7", admin)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin view: %d %s", resp.StatusCode, body)
	}
	sameJSON(t, body, usersIDAdminViewJSON)

	// The admin sees hidden and banned users, with their flags.
	for id, flag := range map[string]string{"8": `"hidden": true`, "9": `"banned": true`} {
		resp, body := get(t, c, "/api/v1/users/"+id, admin)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), flag) {
			t.Errorf("admin view of %s: %d %s", id, resp.StatusCode, body)
		}
	}
	// The admin account itself is type "admin".
	resp, body = get(t, c, "/api/v1/users/1", admin)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"type": "admin"`) {
		t.Errorf("admin's own view: %d %s", resp.StatusCode, body)
	}

	// Unknown id: 404 JSON.
	resp, body = get(t, c, "/api/v1/users/4242", admin)
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != jsonCT || !strings.Contains(string(body), `"message": `) {
		t.Errorf("unknown id: %d %s", resp.StatusCode, body)
	}

	// A wrong token on a JSON request: 401.
	resp, body = get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token ctfd_" + strings.Repeat("0", 64), "Content-Type": jsonCT})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"message": `) {
		t.Errorf("wrong token: %d %s", resp.StatusCode, body)
	}

	// The token on a non-JSON request is not read: anonymous, public view.
	publicKeys := []string{"success", "data", "website", "name", "country", "affiliation", "bracket_id", "id", "oauth_id", "fields", "team_id"}
	for _, h := range []map[string]string{
		{"Authorization": "Token " + tok},
		{"Authorization": "Token " + tok, "Content-Type": "application/json; charset=utf-8"},
		{"Content-Type": jsonCT},
		{},
	} {
		resp, body := get(t, c, "/api/v1/users/7", h)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%v: %d %s", h, resp.StatusCode, body)
			continue
		}
		if keys := keyOrder(t, body); !reflect.DeepEqual(keys, publicKeys) {
			t.Errorf("%v: keys %v, want the public view %v", h, keys, publicKeys)
		}
		for _, id := range []string{"8", "9", "4242"} {
			if resp, body := get(t, c, "/api/v1/users/"+id, h); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%v: anonymous view of %s: %d %s", h, id, resp.StatusCode, body)
			}
		}
	}
	if resp, _ := get(t, c, "/api/v1/users/abc", admin); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/api/v1/users/abc: %d", resp.StatusCode)
	}
}

func TestCTFdAdminTokenSessions(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	admin := map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT}

	// A client without a cookie jar: a new session (and Set-Cookie) per call.
	for range 2 {
		resp, body := get(t, c, "/api/v1/users/7", admin)
		ck := sessionCookie(t, resp)
		if resp.StatusCode != http.StatusOK || ck == nil || !ck.HttpOnly || ck.Path != "/" || ck.Expires.IsZero() {
			t.Fatalf("token call: %d Set-Cookie %v: %s", resp.StatusCode, resp.Header["Set-Cookie"], body)
		}
	}
	if calls, with := c.AdminCookieReuse(); calls != 2 || with != 0 {
		t.Fatalf("no jar: AdminCookieReuse = %d, %d; want 2, 0", calls, with)
	}

	// A client that keeps its cookie: CTFd's Set-Cookie keeps the same value,
	// and every later call carries it.
	jar, _ := cookiejar.New(nil)
	client := LoopbackClient(5 * time.Second)
	client.Jar = jar
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, c.URL()+"/api/v1/users/7", nil)
		req.Header.Set("Authorization", "Token "+c.AdminToken())
		req.Header.Set("Content-Type", jsonCT)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("jar client: %d", resp.StatusCode)
		}
	}
	if calls, with := c.AdminCookieReuse(); calls != 5 || with != 2 {
		t.Fatalf("with a jar: AdminCookieReuse = %d, %d; want 5, 2", calls, with)
	}
	u, _ := url.Parse(c.URL())
	if cks := jar.Cookies(u); len(cks) != 1 {
		t.Fatalf("jar holds %v, want one session cookie", cks)
	}

	// A token call carrying some other session's cookie is not a reuse, and
	// (as in CTFd, whose login_user keeps the session id) turns that session
	// into the admin's: an admin client must never send a player's cookie.
	player := c.Login(alice.ID)
	resp, body := get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT, "Cookie": player})
	if ck := sessionCookie(t, resp); resp.StatusCode != http.StatusOK || ck == nil || ck.Value != player {
		t.Fatalf("token call with a player's cookie: %d %v %s", resp.StatusCode, resp.Header["Set-Cookie"], body)
	}
	if calls, with := c.AdminCookieReuse(); calls != 6 || with != 2 {
		t.Fatalf("after a player's cookie: AdminCookieReuse = %d, %d; want 6, 2", calls, with)
	}
	if esc := c.TakeEscalations(); len(esc) != 1 || esc[0].Header.Get("Cookie") != "session="+player {
		t.Fatalf("escalations recorded: %+v, want the one token call with the player's cookie", esc)
	}
	resp, body = get(t, c, meURL, map[string]string{"Cookie": player, "Content-Type": jsonCT})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id": 1,`) {
		t.Errorf("the player's session after a token call: %d %s", resp.StatusCode, body)
	}

	// The token's session is the admin's: /users/me answers as the admin.
	resp, body = get(t, c, meURL, admin)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id": 1,`) {
		t.Errorf("/users/me with the token: %d %s", resp.StatusCode, body)
	}
}

func TestCTFdBanned(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	cookie := c.Login(alice.ID)
	c.Ban(alice.ID)
	for _, ct := range []string{jsonCT, ""} {
		resp, body := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": ct})
		if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(string(body), "You have been banned from this CTF") {
			t.Errorf("Content-Type %q: %d %q: %s", ct, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	// The public view of a banned user is a 404.
	if resp, body := get(t, c, "/api/v1/users/7", map[string]string{"Content-Type": jsonCT}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("public view of a banned user: %d %s", resp.StatusCode, body)
	}
}

func TestCTFdChangePasswordAndLogout(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	old1, old2 := c.Login(alice.ID), c.Login(alice.ID)
	c.ChangePassword(alice.ID)

	resp, body := get(t, c, meURL, map[string]string{"Cookie": old1, "Content-Type": jsonCT})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != jsonCT || !strings.Contains(string(body), `"message": `) {
		t.Fatalf("old session after a password change: %d %s", resp.StatusCode, body)
	}
	if ck := sessionCookie(t, resp); ck == nil || ck.Value != "" || ck.MaxAge >= 0 {
		t.Errorf("want the session cookie deleted, got %v", resp.Header["Set-Cookie"])
	}
	// CTFd logged that session out: it is now anonymous.
	if resp, _ := get(t, c, meURL, map[string]string{"Cookie": old1, "Content-Type": jsonCT}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after the 401: %d, want 403", resp.StatusCode)
	}
	// Without JSON: a redirect to the login page.
	if resp, _ := get(t, c, meURL, map[string]string{"Cookie": old2}); resp.StatusCode != http.StatusFound {
		t.Errorf("old session, no JSON: %d, want 302", resp.StatusCode)
	}
	// A new login works.
	fresh := c.Login(alice.ID)
	if resp, body := get(t, c, meURL, map[string]string{"Cookie": fresh, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh login: %d %s", resp.StatusCode, body)
	}

	// Logout ends that session at once, not the others.
	other := c.Login(alice.ID)
	c.Logout(fresh)
	if resp, _ := get(t, c, meURL, map[string]string{"Cookie": fresh, "Content-Type": jsonCT}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logged-out session: %d, want 403", resp.StatusCode)
	}
	if resp, _ := get(t, c, meURL, map[string]string{"Cookie": other, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK {
		t.Errorf("other session after a logout: %d, want 200", resp.StatusCode)
	}
	// So does GET /logout.
	if resp, _ := get(t, c, "/logout", map[string]string{"Cookie": other}); resp.StatusCode != http.StatusFound {
		t.Errorf("GET /logout: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, meURL, map[string]string{"Cookie": other, "Content-Type": jsonCT}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after GET /logout: %d, want 403", resp.StatusCode)
	}
}

func TestCTFdFaultModes(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	cookie := c.Login(alice.ID)
	me := map[string]string{"Cookie": cookie, "Content-Type": jsonCT}

	c.SetMode(Error500)
	if resp, body := get(t, c, meURL, me); resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("Error500: %d %s", resp.StatusCode, body)
	}
	c.SetMode(Garbage)
	resp, body := get(t, c, meURL, me)
	var v any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) == nil {
		t.Errorf("Garbage: %d %s (want 200 and not JSON)", resp.StatusCode, body)
	}
	c.SetMode(WrongShape)
	resp, body = get(t, c, meURL, me)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("WrongShape: %d", resp.StatusCode)
	}
	sameJSON(t, body, `{"success": true, "data": {}}`)
	c.SetMode(Normal)
	if resp, body := get(t, c, meURL, me); resp.StatusCode != http.StatusOK {
		t.Errorf("Normal again: %d %s", resp.StatusCode, body)
	}
}

func TestCTFdDownUpKeepsTheAddress(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	cookie := c.Login(alice.ID)
	before := c.URL()

	// A kept-alive connection must not survive going down either.
	client := &http.Client{Timeout: 5 * time.Second}
	ask := func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, c.URL()+meURL, nil)
		req.Header.Set("Cookie", "session="+cookie)
		req.Header.Set("Content-Type", jsonCT)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := ask(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("before: %v %v", resp, err)
	}

	c.SetMode(Down)
	if _, err := ask(); err == nil {
		t.Fatal("a request got through while Down (kept-alive connection)")
	}
	_, err := LoopbackClient(5 * time.Second).Get(c.URL() + meURL)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("while Down: %v, want connection refused", err)
	}

	c.Up()
	if c.URL() != before {
		t.Fatalf("URL changed: %s -> %s", before, c.URL())
	}
	if resp, err := ask(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after Up: %v %v", resp, err)
	}
	// Sessions survive.
	if resp, body := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK {
		t.Fatalf("after Up: %d %s", resp.StatusCode, body)
	}
	// Down twice, Up twice: harmless.
	c.SetMode(Down)
	c.SetMode(Down)
	c.Up()
	c.Up()
	if resp, _ := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK {
		t.Fatalf("after Down, Down, Up, Up: %d", resp.StatusCode)
	}
}

func TestCTFdSlowRespectsCancellation(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	cookie := c.Login(alice.ID)

	c.SetMode(Slow(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+meURL, nil)
	req.Header.Set("Cookie", "session="+cookie)
	req.Header.Set("Content-Type", jsonCT)
	start := time.Now()
	_, err := LoopbackClient(time.Minute).Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the client's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
	// The handler gives up too, rather than sleeping its hour.
	deadline := time.Now().Add(5 * time.Second)
	for c.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow handler is still running after its request was cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A short delay delays, then answers normally.
	c.SetMode(Slow(300 * time.Millisecond))
	start = time.Now()
	resp, body := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": jsonCT})
	if d := time.Since(start); resp.StatusCode != http.StatusOK || d < 300*time.Millisecond {
		t.Fatalf("Slow(300ms): %d after %s: %s", resp.StatusCode, d, body)
	}
	if got := Slow(300 * time.Millisecond).String(); got != "slow(300ms)" {
		t.Errorf("String() = %q", got)
	}
}

// Many clients at once while the mode flips: for -race, and no lost records.
func TestCTFdConcurrentUse(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	const workers, each = 8, 25
	done := make(chan error, workers)
	for w := range workers {
		go func() {
			client := LoopbackClient(5 * time.Second)
			cookie := c.Login(alice.ID)
			for i := range each {
				path := meURL
				if (w+i)%2 == 0 {
					path = "/api/v1/users/7"
				}
				req, _ := http.NewRequest(http.MethodGet, c.URL()+path, nil)
				req.Header.Set("Cookie", "session="+cookie)
				req.Header.Set("Content-Type", jsonCT)
				if w%3 == 0 {
					req.Header.Set("Authorization", "Token "+c.AdminToken())
				}
				resp, err := client.Do(req)
				if err != nil {
					done <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusInternalServerError {
					done <- fmt.Errorf("%s: %d", path, resp.StatusCode)
					return
				}
			}
			done <- nil
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			c.SetMode(Error500)
		} else {
			c.SetMode(Normal)
		}
		_ = c.Requests()
		_, _ = c.AdminCookieReuse()
		time.Sleep(time.Millisecond)
	}
	c.SetMode(Normal)
	for range workers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.Requests()); n != workers*each {
		t.Fatalf("recorded %d requests, want %d", n, workers*each)
	}
	c.TakeEscalations() // the token workers send their player cookie on purpose
}

func TestPyJSONEscapesLikePython(t *testing.T) {
	got := pyJSON(object{{"name", "é\"\\\n\x01😀<&>"}, {"l", []any{1, true, nil}}})
	want := `{"name": "\u00e9\"\\\n\u0001\ud83d\ude00<&>", "l": [1, true, null]}` + "\n"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestDoRefusesNonLoopback(t *testing.T) {
	_, err := LoopbackClient(time.Second).Get("http://192.0.2.1:9/")
	if err == nil || !strings.Contains(err.Error(), "only talk to loopback") {
		t.Fatalf("got %v", err)
	}
}

const caddyfileHi = `{
	admin {{ADMIN}}
}

http://127.0.0.1:{{PORT}} {
	respond "hi"
}
`

// The runner drives the real binary: start, reload, kill, restart.
func TestCaddyRunner(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOptions{Caddyfile: caddyfileHi, Env: []string{"RD_E2E_MARKER=yes"}})
	if c.Port == 0 || c.URL != "http://127.0.0.1:"+strconv.Itoa(c.Port) || !strings.HasPrefix(c.AdminAddr, "127.0.0.1:") {
		t.Fatalf("Port %d URL %s AdminAddr %s", c.Port, c.URL, c.AdminAddr)
	}
	expect := func(want string) {
		t.Helper()
		resp, body := Do(t, http.MethodGet, c.URL+"/", nil, "")
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("GET %s: %d %q, want %q", c.URL, resp.StatusCode, body, want)
		}
	}
	expect("hi")
	pid := c.PID()

	if err := c.Reload(strings.Replace(caddyfileHi, `"hi"`, `"bye"`, 1)); err != nil {
		t.Fatal(err)
	}
	expect("bye")
	if c.PID() != pid {
		t.Fatal("Reload started a new process")
	}

	c.Kill()
	if c.Running() {
		t.Fatal("still running after Kill")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d still exists after Kill: %v", pid, err)
	}
	if _, err := LoopbackClient(2 * time.Second).Get(c.URL + "/"); err == nil {
		t.Fatal("GET succeeded after Kill")
	}

	port, admin := c.Port, c.AdminAddr
	c.Restart()
	if c.Port != port || c.AdminAddr != admin || c.PID() == pid {
		t.Fatalf("Restart: port %d->%d admin %s->%s pid %d->%d", port, c.Port, admin, c.AdminAddr, pid, c.PID())
	}
	expect("bye") // the last Caddyfile written

	// The environment is isolated inside DataDir, plus Env.
	env, err := os.ReadFile("/proc/" + strconv.Itoa(c.PID()) + "/environ")
	if err != nil && runtime.GOOS == "linux" {
		t.Fatalf("read caddy's environment: %v", err)
	}
	if err == nil {
		for _, want := range []string{"HOME=" + c.DataDir + "/home", "XDG_DATA_HOME=" + c.DataDir + "/data", "XDG_CONFIG_HOME=" + c.DataDir + "/config", "RD_E2E_MARKER=yes"} {
			if !strings.Contains("\x00"+string(env)+"\x00", "\x00"+want+"\x00") {
				t.Errorf("caddy's environment lacks %s", want)
			}
		}
	}
	if logs := c.Logs(); strings.Count(logs, "=== e2e: start #") != 2 || !strings.Contains(logs, "caddy reload") {
		t.Errorf("log does not show two starts and a reload:\n%s", logs)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if c.Running() {
		t.Fatal("still running after Stop")
	}
}

// A second Caddy on the same DataDir keeps using it (and its log).
func TestCaddySharedDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := StartCaddy(t, CaddyOptions{Caddyfile: caddyfileHi, DataDir: dir})
	a.Kill()
	b := StartCaddy(t, CaddyOptions{Caddyfile: caddyfileHi, DataDir: dir})
	if resp, body := Do(t, http.MethodGet, b.URL, nil, ""); string(body) != "hi" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if b.LogPath() != a.LogPath() || strings.Count(b.Logs(), "=== e2e: start #") != 2 {
		t.Fatalf("log %s:\n%s", b.LogPath(), b.Logs())
	}
}

// A Caddyfile that does not load fails StartCaddy quickly, with the log.
func TestCaddyBadConfigFailsFast(t *testing.T) {
	t.Parallel()
	if os.Getenv(EnvCaddyBin) == "" {
		caddyBinary(t) // build first, so the timing below is Caddy's
	}
	f := &fatalTB{TB: t}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartCaddy(f, CaddyOptions{Caddyfile: "{\n\tadmin {{ADMIN}}\n}\nhttp://127.0.0.1:{{PORT}} {\n\tno_such_directive\n}\n"})
	}()
	<-done
	if !f.failed || !strings.Contains(f.msg, "no_such_directive") {
		t.Fatalf("StartCaddy did not fail with the log: failed=%v %s", f.failed, f.msg)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %s to notice", d)
	}
}

// fatalTB turns Fatalf into an ending of the goroutine, recorded.
type fatalTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
