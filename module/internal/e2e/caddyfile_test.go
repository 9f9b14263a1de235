package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

var builderBed = &testbed.Testbed{
	Hosts: []testbed.Host{
		{Name: "h1", IP: "172.30.77.11", User: "root", SSHPort: 22},
		{Name: "h2", IP: "172.30.77.12", User: "root"},
	},
	KnownHosts: "/state/known_hosts",
	SSHKey:     "/state/id_ed25519",
}

// Every knob of the builder lands where it belongs, and nothing is left
// empty (a blank option is no line at all).
func TestCaddyfileBuilder(t *testing.T) {
	t.Parallel()
	got := Caddyfile{
		Bed: builderBed, Instance: "sys1-1", HostsFile: "/nowhere/hosts.yml",
		Image: "rd-tiny:latest", HostLines: []string{"max_sessions -1"},
		Global:   []string{"\tstorage file_system /data"},
		App:      []string{"probe_interval 2s", "", "\t\tevent_log_size 20\n\t\trate_limit off"},
		Site:     []string{"\tbasic_auth {\n\t\talice hash\n\t}\n"},
		Identity: "identity caddy {\n\t\t\tadmins boss\n\t\t}",
		Handler:  []string{`brand "Hack The Desk"`},
		Respond:  []string{"respond /noop 200", "respond 404"},
		Site2:    true,
	}.String()
	want := `{
	admin {{ADMIN}}
	storage file_system /data
	remote_desktop {
		hosts_file /nowhere/hosts.yml
		host 172.30.77.11 {
			user root
			port 22
			docker_image rd-tiny:latest
			max_sessions -1
		}
		host 172.30.77.12 {
			user root
			docker_image rd-tiny:latest
			max_sessions -1
		}
		known_hosts /state/known_hosts
		ssh_key /state/id_ed25519
		instance sys1-1
		probe_interval 2s
		event_log_size 20
		rate_limit off
	}
}
http://127.0.0.1:{{PORT}} {
	basic_auth {
		alice hash
	}
	remote_desktop {
		identity caddy {
			admins boss
		}
		brand "Hack The Desk"
	}
	respond /noop 200
	respond 404
}
http://127.0.0.1:{{PORT2}} {
	remote_desktop {
		identity caddy {
			admins boss
		}
	}
	respond 404
}
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// What System.Caddyfile builds, with the CTFd identity, is a configuration
// the real binary adapts, with the defaults (no inline hosts, the site's
// respond) in place.
func TestCaddyfileAdapts(t *testing.T) {
	bin := caddyBinary(t)
	ctfd := NewCTFd(t)
	s := NewSystem(t, builderBed, ctfd, NewInstance("e2e"))
	c := s.Caddyfile()
	c.App = []string{"probe_interval 2s", "shutdown_policy destroy"}
	text := strings.NewReplacer("{{ADMIN}}", "127.0.0.1:2999", "{{PORT}}", "8080", "{{PORT2}}", "8081").Replace(c.String())
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "adapt", "--config", path, "--adapter", "caddyfile")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s\n%s", err, out, text)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, out)
	}
	app := string(cfg.Apps["remote_desktop"])
	for _, want := range []string{`"instance":"` + s.Instance + `"`, `"known_hosts":"/state/known_hosts"`} {
		if !strings.Contains(app, want) {
			t.Errorf("remote_desktop app lacks %s: %s", want, app)
		}
	}
	if strings.Contains(app, "172.30.77.11") {
		t.Errorf("inline hosts without Image: %s", app)
	}
	if !strings.Contains(string(cfg.Apps["http"]), ctfd.URL()) || !strings.Contains(string(cfg.Apps["http"]), "ctfd itself") {
		t.Errorf("the site lacks the CTFd identity or the respond: %s", cfg.Apps["http"])
	}
}
