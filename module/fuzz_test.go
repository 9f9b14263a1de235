package remotedesktop

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzAppCaddyfile: any global option block either parses or fails with an
// error; never a panic.
func FuzzAppCaddyfile(f *testing.F) {
	for _, s := range []string{
		"remote_desktop {\n hosts_file /x\n host a {\n user b\n port 22\n }\n initial_duration 1h\n}",
		"remote_desktop {\n max_extensions 0\n shutdown_policy keep\n cpu_limit 1.5\n publish_vnc\n}",
		"remote_desktop",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var a App
		_ = a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
	})
}

// FuzzHandlerCaddyfile: the same for the handler directive, identity
// blocks included.
func FuzzHandlerCaddyfile(f *testing.F) {
	for _, s := range []string{
		"remote_desktop {\n identity ctfd {\n url http://c\n admin_token t\n cache_ttl 1s\n }\n}",
		"remote_desktop {\n identity caddy {\n admins a b\n }\n path_prefix /d\n allowed_origins https://x\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var h Handler
		_ = h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
	})
}
