package remotedesktop

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The inline host block takes the same docker_concurrency key as hosts.yml.
func TestCaddyfileHostDockerConcurrency(t *testing.T) {
	d := caddyfile.NewTestDispenser(`remote_desktop {
		host 192.0.2.5 {
			docker_concurrency 8
		}
		host 192.0.2.6 {
			docker_concurrency -1
		}
	}`)
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a.WorkspaceHosts)
	if want := `[{"hostname":"192.0.2.5","docker_concurrency":8},{"hostname":"192.0.2.6","docker_concurrency":-1}]`; string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{"-2", "four", ""} {
		d = caddyfile.NewTestDispenser("remote_desktop {\n host a {\n  docker_concurrency " + bad + "\n }\n}")
		if err := (&App{}).UnmarshalCaddyfile(d); err == nil || (bad != "" && !strings.Contains(err.Error(), "docker_concurrency")) {
			t.Errorf("docker_concurrency %q: err = %v", bad, err)
		}
	}
}
