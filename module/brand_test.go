package remotedesktop

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestHandlerBrandAndLinksCaddyfile(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`remote_desktop {
		identity caddy
		brand "Hack The Desk"
		links {
			Tasks /tasks
			"Rules and FAQ" https://ctf.example.com/rules
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"identity":{"source":"caddy"},"brand":"Hack The Desk","links":[{"name":"Tasks","url":"/tasks"},{"name":"Rules and FAQ","url":"https://ctf.example.com/rules"}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	h.PathPrefix = "/remote-desktop"
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	h.Links[0].URL = "javascript:alert(1)"
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "neither a path nor an http(s) URL") {
		t.Errorf("javascript: link: %v", err)
	}
	for in, msg := range map[string]string{
		"remote_desktop {\n links {\n }\n}":          "at least one",
		"remote_desktop {\n links {\n Tasks\n }\n}":  "needs a URL",
		"remote_desktop {\n links x {\n a /b\n }\n}": "wrong argument count",
		"remote_desktop {\n brand\n}":                "wrong argument count",
		"remote_desktop {\n links {\n a /b c\n }\n}": "wrong argument count",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want %q", in, err, msg)
		}
	}
}
