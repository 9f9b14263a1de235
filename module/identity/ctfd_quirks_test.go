package identity_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// A ban keeps CTFd's session and answers it with an HTML page: that is
// "banned" (no identity, a page saying so), and the same cookie works again
// once unbanned and the cached answer is older than CacheTTL. Through it
// all, the admin token never travels with the player's cookie (the
// stand-in fails the test at cleanup otherwise).
func TestCTFdBanAndUnban(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.AddUser(e2e.User{ID: 7, Name: "alice"})
	src := newSource(t, stub, time.Minute)
	now := time.Now()
	src.SetClock(func() time.Time { return now })

	cookie := stub.Login(7)
	if u, err := src.Identify(request(cookie)); err != nil || u.ID != "7" {
		t.Fatalf("before the ban: %+v, %v", u, err)
	}
	stub.Ban(7)
	now = now.Add(2 * time.Minute)
	_, err := src.Identify(request(cookie))
	if !errors.Is(err, identity.ErrBanned) || !errors.Is(err, identity.ErrForbidden) {
		t.Fatalf("banned: %v, want ErrBanned (an ErrForbidden)", err)
	}
	// A login made while banned is banned too.
	if _, err := src.Identify(request(stub.Login(7))); !errors.Is(err, identity.ErrBanned) {
		t.Fatalf("new login while banned: %v", err)
	}
	stub.Unban(7)
	if _, err := src.Identify(request(cookie)); !errors.Is(err, identity.ErrBanned) {
		t.Fatalf("within the TTL the cached ban holds: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if u, err := src.Identify(request(cookie)); err != nil || u.ID != "7" {
		t.Fatalf("after the unban: %+v, %v", u, err)
	}
	// After logout the cookie is anonymous (CTFd re-issues its id): no identity.
	stub.Logout(cookie)
	now = now.Add(2 * time.Minute)
	if _, err := src.Identify(request(cookie)); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("after logout: %v", err)
	}
	if esc := stub.Escalations(); len(esc) != 0 {
		t.Fatalf("the admin token went with a player's cookie %d times", len(esc))
	}
	for _, rec := range stub.Requests() {
		if rec.Header.Get("Authorization") != "" && rec.Header.Get("Cookie") != "" && rec.Path == "/api/v1/users/me" {
			t.Fatalf("a /users/me request carried the token: %+v", rec.Header)
		}
	}
}
