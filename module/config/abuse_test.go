package config

import (
	"strings"
	"testing"
)

func TestDiskAndMaxSessionsKeys(t *testing.T) {
	f, err := Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 10.0.0.5\n  - hostname: 10.0.0.6\n    max_sessions: -1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.WorkspaceHosts[0].MaxSessions != DefaultMaxSessions || f.WorkspaceHosts[1].MaxSessions != -1 {
		t.Errorf("max_sessions = %d, %d; want the default %d and -1 (no limit)", f.WorkspaceHosts[0].MaxSessions, f.WorkspaceHosts[1].MaxSessions, DefaultMaxSessions)
	}
	if c := f.ContainerDefaults; c.TmpSize != "1g" || c.WritableRoot {
		t.Errorf("defaults: tmp_size %q writable_root %v", c.TmpSize, c.WritableRoot)
	}
	f, err = Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 10.0.0.5\ncontainer_defaults:\n  tmp_size: 256m\n  writable_root: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := f.ContainerDefaults; c.TmpSize != "256m" || !c.WritableRoot {
		t.Errorf("set: tmp_size %q writable_root %v", c.TmpSize, c.WritableRoot)
	}
	for in, want := range map[string]string{
		"container_defaults:\n  tmp_size: 0\n":        "hosts.yml:4: container_defaults.tmp_size: \"0\" is too small",
		"container_defaults:\n  tmp_size: lots\n":     "hosts.yml:4: container_defaults.tmp_size: \"lots\" is not a size",
		"container_defaults:\n  writable_root: 1\n":   "hosts.yml:4: container_defaults.writable_root: want true or false",
		"container_defaults:\n  tmp_size: 1g\n  x: 1": "unknown key",
	} {
		_, err := Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 10.0.0.5\n"+in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
	_, err = Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 10.0.0.5\n    max_sessions: -2\n"))
	if err == nil || !strings.Contains(err.Error(), "max_sessions: must be -1 (no limit) or more") {
		t.Errorf("max_sessions -2: %v", err)
	}
}
