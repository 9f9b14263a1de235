package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const seedFile = `workspace_hosts:
  - hostname: host1.internal
    user: docker_user
    pub_hostname: 10.0.0.5
    docker_image: ctfd-remote-desktop:latest
container_defaults:
  memory_limit: 4g
  shm_size: 2gb
  resolution: 1920x1080
  cpu_limit: 2
session_defaults:
  initial_duration: 3600
  extension_duration: 1200
  max_extensions: 3
`

func TestParseSeedExample(t *testing.T) {
	f, err := Parse("hosts.yml", []byte(seedFile))
	if err != nil {
		t.Fatal(err)
	}
	h := f.WorkspaceHosts[0]
	if h.Hostname != "host1.internal" || h.User != "docker_user" || h.PubHostname != "10.0.0.5" ||
		h.DockerImage != "ctfd-remote-desktop:latest" || h.Port != 22 || h.BindAddress != "10.0.0.5" {
		t.Errorf("host = %+v", h)
	}
	if n, _ := ParseSize(f.ContainerDefaults.ShmSize); n != 2<<30 {
		t.Errorf("shm_size = %d bytes, want 2 GiB", n)
	}
	if f.ContainerDefaults.CPULimit != 2 || f.SessionDefaults.Extensions() != 3 ||
		f.SessionDefaults.InitialDuration != 3600 || f.SessionDefaults.ExtensionDuration != 1200 {
		t.Errorf("defaults = %+v %+v", f.ContainerDefaults, f.SessionDefaults)
	}
}

func TestParseDefaults(t *testing.T) {
	f, err := Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n    user: u\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, s := f.ContainerDefaults, f.SessionDefaults
	if c.MemoryLimit != "4g" || c.ShmSize != "2gb" || c.Resolution != "1920x1080" || c.CPULimit != 2 ||
		s.InitialDuration != 3600 || s.ExtensionDuration != 1200 || s.Extensions() != 3 {
		t.Errorf("defaults not applied: %+v %+v", c, s)
	}
	if f.WorkspaceHosts[0].DockerImage != DefaultImage || f.WorkspaceHosts[0].PubHostname != "192.0.2.1" {
		t.Errorf("host defaults not applied: %+v", f.WorkspaceHosts[0])
	}
}

func TestMaxExtensionsZeroIsKept(t *testing.T) {
	f, err := Parse("h.yml", []byte("workspace_hosts: [{hostname: 192.0.2.1}]\nsession_defaults: {max_extensions: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.SessionDefaults.Extensions() != 0 {
		t.Errorf("max_extensions 0 became %d", f.SessionDefaults.Extensions())
	}
}

// Each bad file must be refused with the file, the line and the key named.
func TestParseErrorsNameFileLineKey(t *testing.T) {
	host := "workspace_hosts:\n  - hostname: 192.0.2.1\n"
	cases := []struct {
		name, yml string
		line      int
		key, msg  string
	}{
		{"unknown top key", host + "colour: blue\n", 3, "colour", "unknown key"},
		{"unknown host key", "workspace_hosts:\n  - hostname: a\n    pasword: x\n", 3, "workspace_hosts[0].pasword", "unknown key"},
		{"wrong type", host + "session_defaults:\n  initial_duration: one hour\n", 4, "session_defaults.initial_duration", "want a whole number"},
		{"duration with unit", host + "session_defaults:\n  extension_duration: 20m\n", 4, "session_defaults.extension_duration", "want a whole number"},
		{"bad memory", host + "container_defaults:\n  memory_limit: 4x\n", 4, "container_defaults.memory_limit", `"4x" is not a size`},
		{"bad shm", host + "container_defaults:\n  shm_size: lots\n", 4, "container_defaults.shm_size", "is not a size"},
		{"bad resolution", host + "container_defaults:\n  resolution: 1920\n", 4, "container_defaults.resolution", "is not a resolution"},
		{"list for string", host + "container_defaults:\n  memory_limit: [4g]\n", 4, "container_defaults.memory_limit", "want a string"},
		{"negative initial", host + "session_defaults:\n  initial_duration: -5\n", 4, "session_defaults.initial_duration", "positive"},
		{"negative extension", host + "session_defaults:\n  extension_duration: -1\n", 4, "session_defaults.extension_duration", "positive"},
		{"negative max ext", host + "session_defaults:\n  max_extensions: -2\n", 4, "session_defaults.max_extensions", "negative"},
		{"zero cpu", host + "container_defaults:\n  cpu_limit: 0.0\n", 0, "", ""}, // 0 means default: accepted
		{"negative cpu", host + "container_defaults:\n  cpu_limit: -1\n", 4, "container_defaults.cpu_limit", "positive"},
		{"duplicate hostname", "workspace_hosts:\n  - hostname: 192.0.2.1\n  - hostname: 192.0.2.2\n  - hostname: 192.0.2.1\n", 4, "workspace_hosts[2].hostname", "already workspace_hosts[0]"},
		{"duplicate hostname case", "workspace_hosts:\n  - hostname: H.example\n    bind_address: 192.0.2.9\n  - hostname: h.EXAMPLE\n    bind_address: 192.0.2.9\n", 4, "workspace_hosts[1].hostname", "already"},
		{"empty host list", "workspace_hosts: []\n", 1, "workspace_hosts", "at least one"},
		{"no hosts key", "session_defaults:\n  initial_duration: 60\n", 0, "workspace_hosts", "at least one"},
		{"missing hostname", "workspace_hosts:\n  - user: root\n", 2, "workspace_hosts[0].hostname", "required"},
		{"host not a mapping", "workspace_hosts:\n  - 192.0.2.1\n", 2, "workspace_hosts[0]", "want a mapping"},
		{"hosts not a list", "workspace_hosts: 192.0.2.1\n", 1, "workspace_hosts", "want a list"},
		{"bad port", "workspace_hosts:\n  - hostname: 192.0.2.1\n    port: 70000\n", 3, "workspace_hosts[0].port", "not a TCP port"},
		{"bad bind", "workspace_hosts:\n  - hostname: 192.0.2.1\n    bind_address: everywhere\n", 3, "workspace_hosts[0].bind_address", "not an IP"},
		{"bad bool", host + "container_defaults:\n  publish_vnc: maybe\n", 4, "container_defaults.publish_vnc", "want true or false"},
		{"syntax", "workspace_hosts:\n  - hostname: a\n   user: b\n", 0, "", "did not find expected"},
		{"duplicate key", host + "session_defaults: {}\nsession_defaults: {}\n", 4, "session_defaults", "given twice (first on line 3)"},
		{"empty file", "", 0, "", "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("/etc/caddy/hosts.yml", []byte(c.yml))
			if c.msg == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("want *LoadError, got %v", err)
			}
			if le.File != "/etc/caddy/hosts.yml" || !strings.HasPrefix(err.Error(), "/etc/caddy/hosts.yml") {
				t.Errorf("file not named: %v", err)
			}
			if c.line != 0 && le.Line != c.line {
				t.Errorf("line = %d, want %d (%v)", le.Line, c.line, err)
			}
			if le.Key != c.key {
				t.Errorf("key = %q, want %q (%v)", le.Key, c.key, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yml"))
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
}

func TestLoadReadsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(p, []byte(seedFile), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil || len(f.WorkspaceHosts) != 1 {
		t.Fatalf("Load = %+v, %v", f, err)
	}
}

func TestLocalhostFallbackIsValid(t *testing.T) {
	f := LocalhostFallback()
	f.SetDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if !f.WorkspaceHosts[0].IsLocal() || f.WorkspaceHosts[0].BindAddress != "127.0.0.1" {
		t.Errorf("fallback host = %+v", f.WorkspaceHosts[0])
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4g": 4 << 30, "2gb": 2 << 30, "512m": 512 << 20, "1GiB": 1 << 30, "1.5g": 3 << 29, "8388608": 8 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "4x", "g", "-1g", "1k", "4 gigs"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
