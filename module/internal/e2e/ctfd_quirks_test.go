package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// CTFd 3.8.7's observed behaviours beyond the API's documentation
// (the CTFd API contract the stand-in follows), one test each.

func isBannedPage(resp *http.Response, body []byte) bool {
	return resp.StatusCode == http.StatusForbidden && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") &&
		strings.Contains(string(body), "You have been banned from this CTF") && resp.Header.Get("Set-Cookie") == ""
}

// A ban keeps the session: every request (JSON or not, any route) gets the
// banned page with no Set-Cookie; after the unban the same cookie works.
func TestCTFdBanKeepsSessionUntilUnban(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	cookie := c.Login(alice.ID)
	c.Ban(alice.ID)
	for _, path := range []string{meURL, "/api/v1/users/7", "/logout", "/nowhere"} {
		for _, ct := range []string{jsonCT, "", "text/html"} {
			resp, body := get(t, c, path, map[string]string{"Cookie": cookie, "Content-Type": ct, "Accept": "application/json"})
			if !isBannedPage(resp, body) {
				t.Errorf("%s (Content-Type %q): %d %q Set-Cookie %q: %s", path, ct, resp.StatusCode,
					resp.Header.Get("Content-Type"), resp.Header.Get("Set-Cookie"), body)
			}
		}
	}
	// A banned user can still log in; the new cookie gets the same page.
	again := c.Login(alice.ID)
	if resp, body := get(t, c, meURL, map[string]string{"Cookie": again, "Content-Type": jsonCT}); !isBannedPage(resp, body) {
		t.Errorf("new login while banned: %d %s", resp.StatusCode, body)
	}
	c.Unban(alice.ID)
	for _, ck := range []string{cookie, again} {
		if resp, body := get(t, c, meURL, map[string]string{"Cookie": ck, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK ||
			!strings.Contains(string(body), `"id": 7,`) {
			t.Errorf("after the unban: %d %s", resp.StatusCode, body)
		}
	}
}

// After logout the old cookie is answered 403 (JSON) with a Set-Cookie that
// re-issues the same session id, now anonymous.
func TestCTFdLogoutReissuesSameSessionID(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	for _, viaRoute := range []bool{false, true} {
		cookie := c.Login(alice.ID)
		if viaRoute {
			if resp, _ := get(t, c, "/logout", map[string]string{"Cookie": cookie}); resp.StatusCode != http.StatusFound {
				t.Fatalf("GET /logout: %d", resp.StatusCode)
			}
		} else {
			c.Logout(cookie)
		}
		resp, body := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": jsonCT})
		ck := sessionCookie(t, resp)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != jsonCT || ck == nil || ck.Value != cookie {
			t.Fatalf("old cookie after logout (route %v): %d %q Set-Cookie %v: %s", viaRoute, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header["Set-Cookie"], body)
		}
		// Still anonymous the next time.
		if resp, _ := get(t, c, meURL, map[string]string{"Cookie": cookie, "Content-Type": jsonCT}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("second request after logout: %d", resp.StatusCode)
		}
	}
}

// Only Content-Type: application/json turns the not-logged-in redirect into
// a 403; Accept: application/json alone still gets the 302.
func TestCTFdOnlyContentTypeJSONGets403(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	for _, tc := range []struct {
		headers map[string]string
		want    int
	}{
		{map[string]string{"Content-Type": jsonCT}, http.StatusForbidden},
		{map[string]string{"Content-Type": jsonCT, "Accept": jsonCT}, http.StatusForbidden},
		{map[string]string{"Accept": jsonCT}, http.StatusFound},
		{map[string]string{"Content-Type": "application/json; charset=utf-8"}, http.StatusFound},
		{map[string]string{}, http.StatusFound},
	} {
		resp, body := get(t, c, meURL, tc.headers)
		if resp.StatusCode != tc.want {
			t.Errorf("%v: %d, want %d: %s", tc.headers, resp.StatusCode, tc.want, body)
		}
		if tc.want == http.StatusFound && !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("%v: Location %q", tc.headers, resp.Header.Get("Location"))
		}
	}
}

// The admin token together with a player's cookie makes that player's
// session an admin session; the request is recorded as an escalation.
func TestCTFdTokenWithPlayerCookieEscalates(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	player := c.Login(alice.ID)
	if got := c.Escalations(); len(got) != 0 {
		t.Fatalf("escalations before any: %v", got)
	}
	resp, body := get(t, c, "/api/v1/users/7", map[string]string{
		"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT, "Cookie": player})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"type": "user"`) {
		t.Fatalf("token + cookie: %d %s", resp.StatusCode, body)
	}
	// The player's cookie alone is now the admin.
	if resp, body := get(t, c, meURL, map[string]string{"Cookie": player, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK ||
		!strings.Contains(string(body), `"id": 1,`) {
		t.Fatalf("player's cookie after the escalation: %d %s", resp.StatusCode, body)
	}
	// A logged-out (re-issued) cookie escalates too; the token's own cookie does not.
	gone := c.Login(alice.ID)
	c.Logout(gone)
	get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT, "Cookie": gone})
	resp, _ = get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT})
	own := sessionCookie(t, resp)
	get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT, "Cookie": own.Value})
	// Without JSON the token is ignored: no login, no escalation.
	get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token " + c.AdminToken(), "Cookie": player})

	esc := c.TakeEscalations()
	if len(esc) != 2 || esc[0].Header.Get("Cookie") != "session="+player || esc[1].Header.Get("Cookie") != "session="+gone {
		t.Fatalf("escalations: %d, want the player's and the logged-out cookie's", len(esc))
	}
	if len(c.Escalations()) != 0 {
		t.Fatal("TakeEscalations did not clear them")
	}
}

// The cleanup check fails a test that sent the token with a player's cookie.
func TestCTFdCleanupFailsOnEscalation(t *testing.T) {
	t.Parallel()
	ft := &recordingTB{TB: t}
	c := NewCTFd(ft)
	c.AddUser(alice)
	player := c.Login(alice.ID)
	get(t, c, meURL, map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT, "Cookie": player})
	c.checkEscalations()
	if len(ft.errors) != 1 || !strings.Contains(ft.errors[0], "admin token together with a player's session cookie") {
		t.Fatalf("cleanup check reported %q", ft.errors)
	}
	c.TakeEscalations()
}

// An admin-token call's Set-Cookie is by itself a full admin session, valid
// for 7 days.
func TestCTFdTokenSetCookieIsAnAdminSession(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	resp, _ := get(t, c, "/api/v1/users/7", map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT})
	ck := sessionCookie(t, resp)
	if ck == nil || ck.Value == "" {
		t.Fatalf("no Set-Cookie: %v", resp.Header["Set-Cookie"])
	}
	if d := time.Until(ck.Expires); d < sessionLifetime-time.Minute || d > sessionLifetime+time.Minute {
		t.Errorf("cookie expires in %v, want 7 days", d)
	}
	// The cookie alone: /users/me is the admin, and /users/<id> the admin view.
	if resp, body := get(t, c, meURL, map[string]string{"Cookie": ck.Value, "Content-Type": jsonCT}); resp.StatusCode != http.StatusOK ||
		!strings.Contains(string(body), `"id": 1,`) {
		t.Errorf("/users/me with the token's cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, c, "/api/v1/users/7", map[string]string{"Cookie": ck.Value}); resp.StatusCode != http.StatusOK ||
		!strings.Contains(string(body), `"banned": false`) {
		t.Errorf("/users/7 with the token's cookie, no token: %d %s", resp.StatusCode, body)
	}
}

// recordingTB records Errorf instead of failing (for testing the stand-in's
// own cleanup check).
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
