package identity_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

func newSource(t *testing.T, stub *e2e.CTFd, ttl time.Duration) *identity.CTFd {
	u, _ := url.Parse(stub.URL())
	return &identity.CTFd{BaseURL: u, AdminToken: stub.AdminToken(), CacheTTL: ttl, Timeout: 500 * time.Millisecond}
}

func request(cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/remote-desktop/api/status", nil)
	r.RemoteAddr = "198.51.100.7:51234"
	if cookie != "" {
		r.Header.Set("Cookie", "theme=dark; session="+cookie)
	}
	return r
}

func TestCTFdIdentifiesPlayersAndAdmins(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.AddUser(e2e.User{ID: 7, Name: "alice", Email: "a@x"})
	src := newSource(t, stub, time.Minute)

	u, err := src.Identify(request(stub.Login(7)))
	if err != nil || u.ID != "7" || u.Name != "alice" || u.Admin {
		t.Fatalf("alice = %+v, %v", u, err)
	}
	a, err := src.Identify(request(stub.Login(e2e.AdminUserID)))
	if err != nil || a.ID != "1" || !a.Admin {
		t.Fatalf("admin = %+v, %v", a, err)
	}
	for _, rec := range stub.Requests() {
		if rec.Path == "/api/v1/users/me" && rec.XForwardedFor != "198.51.100.7" {
			t.Errorf("X-Forwarded-For = %q, want the player's address", rec.XForwardedFor)
		}
	}
	// The admin client keeps CTFd's cookie between token calls (each one
	// would otherwise make CTFd create a session).
	src.Identify(request(stub.Login(7)))
	if calls, withCookie := stub.AdminCookieReuse(); calls < 2 || withCookie < calls-1 {
		t.Errorf("admin token calls %d, with CTFd's cookie %d", calls, withCookie)
	}
}

func TestCTFdRefusals(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.AddUser(e2e.User{ID: 7, Name: "alice"})
	stub.AddUser(e2e.User{ID: 8, Name: "mallory"})
	stub.AddUser(e2e.User{ID: 9, Name: "carol"})
	src := newSource(t, stub, time.Minute)
	mallory, carol := stub.Login(8), stub.Login(9)
	stub.Ban(8)
	stub.ChangePassword(9)
	for name, c := range map[string]struct {
		cookie string
		want   error
	}{
		"no cookie":        {"", identity.ErrUnauthenticated},
		"unknown cookie":   {"forged", identity.ErrUnauthenticated},
		"banned":           {mallory, identity.ErrForbidden},
		"password changed": {carol, identity.ErrUnauthenticated},
	} {
		if _, err := src.Identify(request(c.cookie)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// An admin token that is not an admin's: the lookup lacks the admin
	// view; that is an outage of configuration, never a login.
	u, _ := url.Parse(stub.URL())
	bad := &identity.CTFd{BaseURL: u, AdminToken: "ctfd_0000", Timeout: 500 * time.Millisecond}
	if _, err := bad.Identify(request(stub.Login(7))); !errors.Is(err, identity.ErrUnavailable) {
		t.Errorf("wrong admin token: %v, want ErrUnavailable", err)
	}
}

// Answers are cached per cookie for the TTL: a reconnect storm is one CTFd
// call, and a logout is seen once the TTL has passed.
func TestCTFdCache(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.AddUser(e2e.User{ID: 7, Name: "alice"})
	src := newSource(t, stub, 300*time.Millisecond)
	cookie := stub.Login(7)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := src.Identify(request(cookie)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := stub.Count("/api/v1/users/me"); n != 1 {
		t.Fatalf("50 concurrent requests asked CTFd %d times, want 1", n)
	}
	stub.Logout(cookie)
	if _, err := src.Identify(request(cookie)); err != nil {
		t.Fatalf("within the TTL the cached answer stands: %v", err)
	}
	time.Sleep(350 * time.Millisecond)
	if _, err := src.Identify(request(cookie)); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("after the TTL a logout shows: %v", err)
	}
}

// CTFd in trouble never lets anyone in, and trouble is not cached.
func TestCTFdTroubleIsUnavailable(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.AddUser(e2e.User{ID: 7, Name: "alice"})
	src := newSource(t, stub, time.Minute)
	cookie := stub.Login(7)
	for _, m := range []e2e.Mode{e2e.Down, e2e.Error500, e2e.Garbage, e2e.WrongShape, e2e.Slow(2 * time.Second)} {
		stub.SetMode(m)
		if u, err := src.Identify(request(cookie)); !errors.Is(err, identity.ErrUnavailable) {
			t.Errorf("CTFd %v: %+v, %v; want ErrUnavailable", m, u, err)
		}
	}
	stub.SetMode(e2e.Normal)
	if u, err := src.Identify(request(cookie)); err != nil || u.ID != "7" {
		t.Fatalf("after recovery: %+v, %v", u, err)
	}
}
