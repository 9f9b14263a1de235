package identity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// CTFd's name is asked once, with the admin token and no player's cookie,
// and kept; a CTFd that cannot answer is asked again only after a while.
func TestCTFNameAskedOnceWithTheToken(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.SetConfig("ctf_name", "Hack The Desk")
	src := newSource(t, stub, time.Minute)
	stub.AddUser(e2e.User{ID: 7, Name: "alice"})
	if _, err := src.Identify(request(stub.Login(7))); err != nil { // a player lookup first: separate clients
		t.Fatal(err)
	}
	for range 3 {
		name, err := src.CTFName(context.Background())
		if err != nil || name != "Hack The Desk" {
			t.Fatalf("CTFName: %q %v", name, err)
		}
	}
	if n := stub.Count("/api/v1/configs/ctf_name"); n != 1 {
		t.Fatalf("CTFd asked %d times, want 1", n)
	}
	for _, r := range stub.Requests() {
		if r.Path != "/api/v1/configs/ctf_name" {
			continue
		}
		if r.Header.Get("Authorization") != "Token "+stub.AdminToken() || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("ctf_name asked without the admin token as JSON: %v", r.Header)
		}
		for _, ck := range r.Header.Values("Cookie") {
			if ck != "" && !hasOnlyAdminSession(stub, ck) {
				t.Fatalf("ctf_name asked with a cookie that is not the admin client's: %q", ck)
			}
		}
	}
}

// hasOnlyAdminSession: the admin client keeps CTFd's own cookie from its
// token calls; a player's cookie must never be there.
func hasOnlyAdminSession(stub *e2e.CTFd, cookie string) bool {
	for _, r := range stub.Requests() {
		if r.Path == "/api/v1/users/me" && r.Header.Get("Cookie") == cookie {
			return false
		}
	}
	return true
}

func TestCTFNameUnsetAndUnavailable(t *testing.T) {
	stub := e2e.NewCTFd(t)
	stub.SetConfig("ctf_name", "")
	if name, err := newSource(t, stub, time.Minute).CTFName(context.Background()); err != nil || name != "" {
		t.Fatalf("unset ctf_name: %q %v", name, err)
	}
	stub.SetMode(e2e.Error500)
	src := newSource(t, stub, time.Minute)
	for range 2 {
		if _, err := src.CTFName(context.Background()); !errors.Is(err, identity.ErrUnavailable) {
			t.Fatalf("CTFd failing: %v, want ErrUnavailable", err)
		}
	}
	if n := stub.Count("/api/v1/configs/ctf_name"); n != 2 { // one per source: the failure is remembered
		t.Fatalf("CTFd asked %d times, want 2", n)
	}
}
