package remotedesktop

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestAbuseOptionsCaddyfile(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`remote_desktop {
		host 192.0.2.5 {
			max_sessions -1
		}
		tmp_size 256m
		writable_root
		rate_limit 3 30s
		audit_retention_days 7
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a)
	want := `{"workspace_hosts":[{"hostname":"192.0.2.5","max_sessions":-1}],"container_defaults":{"tmp_size":"256m","writable_root":true},` +
		`"rate_limit":{"burst":3,"interval":30000000000},"audit_retention_days":7}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	var off App
	if err := off.UnmarshalCaddyfile(caddyfile.NewTestDispenser("remote_desktop {\n rate_limit off\n}")); err != nil {
		t.Fatal(err)
	}
	off.setAbuseDefaults()
	if b, e := off.rate(); b != 0 || e != 0 {
		t.Errorf("rate_limit off gives %d per %v", b, e)
	}
	var def App
	def.setAbuseDefaults()
	if b, e := def.rate(); b != 10 || e != time.Minute || def.AuditRetentionDays != 90 {
		t.Errorf("defaults: %d per %v, audit %d days", b, e, def.AuditRetentionDays)
	}

	for in, msg := range map[string]string{
		"remote_desktop {\n rate_limit 3\n}":                    "want <burst> <interval>",
		"remote_desktop {\n rate_limit 0 1m\n}":                 "not a positive whole number",
		"remote_desktop {\n rate_limit 3 soon\n}":               "not a positive duration",
		"remote_desktop {\n host a {\n  max_sessions -2\n }\n}": "or -1 for no limit",
		"remote_desktop {\n writable_root yes\n}":               "wrong argument count",
		"remote_desktop {\n audit_retention_days forever\n}":    "not a whole number",
	} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want %q", in, err, msg)
		}
	}
}
