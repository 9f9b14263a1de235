package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// GET /api/v1/configs/<key> answers as CTFd 3.8.7's Config resource
// (@admins_only, ConfigSchema's id, key, value).
func TestCTFdConfigs(t *testing.T) {
	t.Parallel()
	c := NewCTFd(t)
	c.AddUser(alice)
	admin := map[string]string{"Authorization": "Token " + c.AdminToken(), "Content-Type": jsonCT}

	resp, body := get(t, c, "/api/v1/configs/ctf_name", admin)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %d %s", resp.StatusCode, body)
	}
	sameJSON(t, body, `{"success": true, "data": {"id": 2, "key": "ctf_name", "value": "Stand-in CTF"}}`)
	c.SetConfig("ctf_name", "Hack The Desk")
	if _, body := get(t, c, "/api/v1/configs/ctf_name", admin); !strings.Contains(string(body), `"value": "Hack The Desk"`) {
		t.Errorf("after SetConfig: %s", body)
	}
	if resp, _ := get(t, c, "/api/v1/configs/no_such_key", admin); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown key: %d, want 404", resp.StatusCode)
	}
	// Not an admin: 403 on a JSON request, the login redirect otherwise.
	player := c.Login(alice.ID)
	if resp, _ := get(t, c, "/api/v1/configs/ctf_name", map[string]string{"Cookie": player, "Content-Type": jsonCT}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("player, JSON: %d, want 403", resp.StatusCode)
	}
	if resp, _ := get(t, c, "/api/v1/configs/ctf_name", map[string]string{"Cookie": player}); resp.StatusCode != http.StatusFound {
		t.Errorf("player, not JSON: %d, want 302", resp.StatusCode)
	}
}
