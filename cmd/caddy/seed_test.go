package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The seed's own sample hosts.yml (a DNS pub_hostname, no bind_address),
// named by a Caddyfile, passes `caddy validate`: what a migrating operator
// tries first.
func TestSeedHostsFileValidates(t *testing.T) {
	caddyfile := `{
	admin off
	remote_desktop {
		hosts_file ../../testdata/seed/hosts.yml
	}
}
:8080 {
	remote_desktop {
		identity ctfd {
			url http://127.0.0.1:8000
			admin_token ctfd_` + strings.Repeat("0", 64) + `
		}
	}
	reverse_proxy 127.0.0.1:8000
}
`
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s:%d: %s", w.File, w.Line, w.Message)
	}
	if !strings.Contains(string(out), `"hosts_file":"../../testdata/seed/hosts.yml"`) {
		t.Fatalf("adapted config does not name the seed's file:\n%s", out)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validate: %v", err)
	}
}
