package system

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// A player's creates and destroys are rate-limited (429 with Retry-After
// and a message for the page); a create that returns the existing session
// costs nothing; other players and admins are not held back.
func TestCreateDestroyRateLimit(t *testing.T) {
	s := newSystem(t, sysConfig{extra: "\t\trate_limit 3 1m"})
	create, destroy := "/remote-desktop/api/create", "/remote-desktop/api/destroy"
	for i, step := range []struct {
		path string
		want int
	}{{create, 202}, {create, 200}, {destroy, 200}, {create, 202}, {destroy, 429}, {create, 200}} {
		code, out, hdr := s.req(alice, "POST", step.path, "{}", nil)
		if code != step.want {
			t.Fatalf("step %d %s: %d %v, want %d", i, step.path, code, out, step.want)
		}
		if code != http.StatusTooManyRequests {
			continue
		}
		ra, err := strconv.Atoi(hdr.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Errorf("Retry-After %q, want 1..60 seconds", hdr.Get("Retry-After"))
		}
		e, _ := out["error"].(map[string]any)
		if e["code"] != "rate_limited" || !strings.Contains(fmt.Sprint(e["message"]), "Please wait") {
			t.Errorf("429 body: %v", out)
		}
	}
	// Another player is not affected; an admin is never limited.
	if code, out, _ := s.req(bob, "POST", create, "{}", nil); code != http.StatusAccepted {
		t.Fatalf("bob's create: %d %v", code, out)
	}
	for i := range 5 {
		for _, p := range []string{create, destroy} {
			if code, out, _ := s.req(e2e.AdminUserID, "POST", p, "{}", nil); code >= 400 {
				t.Fatalf("admin round %d %s: %d %v", i, p, code, out)
			}
		}
	}
}

// Admin actions and session_viewed are kept in a persisted audit trail
// that a churn of player events cannot push out, that survives a restart,
// and that only admins can read.
func TestAuditTrail(t *testing.T) {
	s := newSystem(t, sysConfig{dataDir: t.TempDir(), extra: "\t\tevent_log_size 20\n\t\trate_limit off"})
	admin := e2e.AdminUserID
	host := s.Bed.Hosts[0].IP
	s.createReady(alice)
	code, conn := s.dialWS(admin, "/remote-desktop/vnc/7/websockify", s.Caddy.URL)
	if conn != nil {
		conn.Close()
	}
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("admin opening alice's desktop: %d", code)
	}
	for _, c := range []struct{ path, body string }{
		{"/remote-desktop/admin/api/extend", `{"user_id":"7"}`},
		{"/remote-desktop/admin/api/hosts/drain", `{"host":"` + host + `"}`},
		{"/remote-desktop/admin/api/hosts/undrain", `{"host":"` + host + `"}`},
		{"/remote-desktop/admin/api/kill", `{"user_id":"7"}`},
		{"/remote-desktop/admin/api/kill", `{"user_id":"7"}`}, // no session any more: recorded as refused
	} {
		s.req(admin, "POST", c.path, c.body, nil)
	}
	// A churn of player events turns the 20-event ring over.
	for range 12 {
		s.req(bob, "POST", "/remote-desktop/api/create", "{}", nil)
		s.req(bob, "POST", "/remote-desktop/api/destroy", "{}", nil)
	}
	_, recent, _ := s.req(admin, "GET", "/remote-desktop/admin/api/events/recent?limit=500", "", nil)
	if strings.Contains(fmt.Sprint(recent), "session_viewed") {
		t.Fatal("the churn did not turn the event ring over; the test proves nothing")
	}

	check := func(when string) {
		t.Helper()
		code, out, _ := s.req(admin, "GET", "/remote-desktop/admin/api/audit", "", nil)
		if code != http.StatusOK {
			t.Fatalf("%s: audit as admin: %d %v", when, code, out)
		}
		var got []string
		for _, e := range out["data"].(map[string]any)["entries"].([]any) {
			m := e.(map[string]any)
			str := func(k string) string { v, _ := m[k].(string); return v }
			got = append(got, str("action")+":"+str("user")+str("host")+":"+str("result"))
			if m["actor"] != strconv.Itoa(admin) {
				t.Errorf("%s: entry without its admin: %v", when, m)
			}
		}
		want := fmt.Sprintf("[kill:7:no_session kill:7:ok undrain:%[1]s:ok drain:%[1]s:ok extend:7:ok session_viewed:7:ok]", host)
		if fmt.Sprint(got) != want {
			t.Fatalf("%s: audit trail\n got %v\nwant %s", when, got, want)
		}
		code, out, _ = s.req(admin, "GET", "/remote-desktop/admin/api/audit?action=session_viewed&user=7&limit=5", "", nil)
		if n := len(out["data"].(map[string]any)["entries"].([]any)); code != 200 || n != 1 {
			t.Fatalf("%s: filtered query: %d, %d entries", when, code, n)
		}
	}
	check("after the churn")
	for user, want := range map[int]int{0: http.StatusUnauthorized, bob: http.StatusForbidden} {
		if code, out, _ := s.req(user, "GET", "/remote-desktop/admin/api/audit", "", nil); code != want {
			t.Errorf("audit as %d: %d %v, want %d", user, code, out, want)
		}
	}
	if code, _, _ := s.req(admin, "GET", "/remote-desktop/admin/api/audit?limit=0", "", nil); code != http.StatusBadRequest {
		t.Errorf("limit=0: %d, want 400", code)
	}
	s.Caddy.Restart()
	check("after a restart")
}
