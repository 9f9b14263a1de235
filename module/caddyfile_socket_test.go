package remotedesktop

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The inline host block takes the same docker_socket key as hosts.yml.
func TestCaddyfileHostDockerSocket(t *testing.T) {
	d := caddyfile.NewTestDispenser(`remote_desktop {
		host 192.0.2.5 {
			docker_socket /run/user/1000/docker.sock
		}
	}`)
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a.WorkspaceHosts)
	if want := `[{"hostname":"192.0.2.5","docker_socket":"/run/user/1000/docker.sock"}]`; string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	d = caddyfile.NewTestDispenser("remote_desktop {\n host a {\n  docker_socket\n }\n}")
	if err := (&App{}).UnmarshalCaddyfile(d); err == nil || !strings.Contains(err.Error(), "argument") {
		t.Errorf("docker_socket without a path: err = %v", err)
	}
}
