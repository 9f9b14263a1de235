package remotedesktop

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestWarmCaddyfile(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("remote_desktop {\n host 192.0.2.5 {\n  warm 4\n }\n}")); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a.WorkspaceHosts)
	if want := `[{"hostname":"192.0.2.5","warm":4}]`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	var bad App
	if err := bad.UnmarshalCaddyfile(caddyfile.NewTestDispenser("remote_desktop {\n host a {\n  warm -2\n }\n}")); err == nil || !strings.Contains(err.Error(), "not a whole number") {
		t.Errorf("warm -2: %v", err)
	}
}
