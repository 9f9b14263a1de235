package remotedesktop

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
)

func newTestApp(t *testing.T, a *App) (*App, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	a.logger = zap.New(core)
	a.setDefaults()
	return a, logs
}

func TestMissingHostsFileFallsBackToLocalhostWithOneWarning(t *testing.T) {
	a, logs := newTestApp(t, &App{HostsFile: filepath.Join(t.TempDir(), "hosts.yml")})
	f, err := a.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.WorkspaceHosts) != 1 || !f.WorkspaceHosts[0].IsLocal() {
		t.Fatalf("hosts = %+v, want the local engine only", f.WorkspaceHosts)
	}
	warnings := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warnings) != 1 || !strings.Contains(warnings[0].Message, "falling back to the local Docker engine") {
		t.Fatalf("warnings = %+v, want exactly one fallback warning", warnings)
	}
	if warnings[0].ContextMap()["hosts_file"] == "" {
		t.Error("the warning does not name the file")
	}
}

func TestBadHostsFileFailsProvisioningWithFileLineKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(p, []byte("workspace_hosts:\n  - hostname: 192.0.2.1\ncontainer_defaults:\n  memory_limit: 4x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newTestApp(t, &App{HostsFile: p})
	_, err := a.resolve()
	if err == nil || !strings.Contains(err.Error(), p+":4: container_defaults.memory_limit") {
		t.Fatalf("err = %v, want it to name %s, line 4 and the key", err, p)
	}
}

func TestInlineSettingsOverrideTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(p, []byte("workspace_hosts:\n  - hostname: 192.0.2.1\nsession_defaults:\n  initial_duration: 100\n  max_extensions: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zero := 0
	in := &App{HostsFile: p}
	in.SessionDefaults.InitialDuration = 60
	in.SessionDefaults.MaxExtensions = &zero
	in.ContainerDefaults.Resolution = "1280x800"
	in.WorkspaceHosts = append(in.WorkspaceHosts, hostCfg("192.0.2.2"))
	a, _ := newTestApp(t, in)
	f, err := a.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.WorkspaceHosts) != 2 || f.SessionDefaults.InitialDuration != 60 || f.SessionDefaults.Extensions() != 0 ||
		f.ContainerDefaults.Resolution != "1280x800" || f.SessionDefaults.ExtensionDuration != 1200 {
		t.Fatalf("merged = %+v", f)
	}
	// A host in both places is a duplicate.
	in.WorkspaceHosts = append(in.WorkspaceHosts, hostCfg("192.0.2.1"))
	if _, err := a.resolve(); err == nil || !strings.Contains(err.Error(), "already workspace_hosts[0]") {
		t.Fatalf("duplicate host accepted: %v", err)
	}
}

func TestEnvPlaceholdersInHosts(t *testing.T) {
	t.Setenv("RD_TEST_HOST", "192.0.2.77")
	in := &App{HostsFile: filepath.Join(t.TempDir(), "absent.yml")}
	in.WorkspaceHosts = append(in.WorkspaceHosts, hostCfg("{env.RD_TEST_HOST}"))
	a, _ := newTestApp(t, in)
	f, err := a.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if f.WorkspaceHosts[0].Hostname != "192.0.2.77" || f.WorkspaceHosts[0].BindAddress != "192.0.2.77" {
		t.Fatalf("host = %+v", f.WorkspaceHosts[0])
	}
}

func TestGlobalOptionCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`remote_desktop {
		hosts_file /etc/caddy/hosts.yml
		host 192.0.2.5 {
			user docker_user
			pub_hostname 192.0.2.6
			docker_image desk:1
			port 2222
			max_sessions 10
			bind_address 192.0.2.6
		}
		memory_limit 2g
		shm_size 1gb
		resolution 1280x800
		cpu_limit 1.5
		pids_limit 256
		publish_vnc
		initial_duration 1h
		extension_duration 600
		max_extensions 0
		known_hosts /k
		ssh_key /id
		max_connections 5
		dial_timeout 3s
		reaper_interval 1m
		readiness_timeout 30s
		probe_interval 5s
		orphan_grace 1m
		event_log_size 100
		shutdown_policy destroy
	}`)
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a)
	want := `{"hosts_file":"/etc/caddy/hosts.yml","workspace_hosts":[{"hostname":"192.0.2.5","user":"docker_user","pub_hostname":"192.0.2.6","docker_image":"desk:1","port":2222,"max_sessions":10,"bind_address":"192.0.2.6"}],` +
		`"container_defaults":{"memory_limit":"2g","shm_size":"1gb","resolution":"1280x800","cpu_limit":1.5,"pids_limit":256,"publish_vnc":true},` +
		`"session_defaults":{"initial_duration":3600,"extension_duration":600,"max_extensions":0},` +
		`"known_hosts":"/k","ssh_key":"/id","max_connections":5,"dial_timeout":3000000000,"reaper_interval":60000000000,"readiness_timeout":30000000000,` +
		`"probe_interval":5000000000,"orphan_grace":60000000000,"event_log_size":100,"shutdown_policy":"destroy"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestGlobalOptionCaddyfileErrors(t *testing.T) {
	for in, msg := range map[string]string{
		"remote_desktop {\n colour blue\n}":               "unrecognized remote_desktop option 'colour'",
		"remote_desktop {\n host a {\n  pasword x\n }\n}": "unrecognized host option 'pasword'",
		"remote_desktop {\n initial_duration 1.5s\n}":     "not a positive whole number of seconds",
		"remote_desktop {\n max_connections many\n}":      "not a whole number",
		"remote_desktop {\n shutdown_policy explode\n}":   "neither keep nor destroy",
		"remote_desktop {\n cpu_limit -1\n}":              "not a positive number",
		"remote_desktop {\n hosts_file a b\n}":            "wrong argument count",
		"remote_desktop {\n reaper_interval soon\n}":      "not a duration",
	} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want %q", in, err, msg)
		}
	}
}

func TestHandlerCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`remote_desktop {
		identity ctfd {
			url http://ctfd:8000
			admin_token {env.CTFD_ADMIN_TOKEN}
			cache_ttl 5s
			require_verified
		}
		path_prefix /desk
		stream_close_delay 2h
		allowed_origins https://ctf.example.com
		novnc_path /opt/novnc
		unsafe_container_http
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"identity":{"admin_token":"{env.CTFD_ADMIN_TOKEN}","cache_ttl":5000000000,"require_verified":true,"source":"ctfd","url":"http://ctfd:8000"},"path_prefix":"/desk","stream_close_delay":7200000000000,"allowed_origins":["https://ctf.example.com"],"novnc_path":"/opt/novnc","unsafe_container_http":true}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	var h2 Handler
	if err := h2.UnmarshalCaddyfile(caddyfile.NewTestDispenser("remote_desktop {\n identity caddy {\n admins alice bob\n }\n}")); err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(h2); string(got) != `{"identity":{"admins":["alice","bob"],"source":"caddy"}}` {
		t.Errorf("caddy identity = %s", got)
	}
	for in, msg := range map[string]string{
		"remote_desktop {\n identity nobody\n}":                 "remote_desktop.identity.nobody",
		"remote_desktop {\n identity ctfd {\n colour x\n }\n}":  "unrecognized identity ctfd option",
		"remote_desktop {\n identity caddy\n identity caddy\n}": "identity given twice",
		"remote_desktop {\n bogus\n}":                           "unrecognized remote_desktop option",
		"remote_desktop {\n unsafe_container_http yes\n}":       "wrong argument count",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want %q", in, err, msg)
		}
	}
}

func hostCfg(name string) (h config.Host) { h.Hostname = name; return h }
