package config

import (
	"strings"
	"testing"
)

func TestWarmKey(t *testing.T) {
	f, err := Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n    warm: 3\n  - hostname: 192.0.2.2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.WorkspaceHosts[0].Warm != 3 || f.WorkspaceHosts[1].Warm != 0 {
		t.Errorf("warm: %d and %d, want 3 and 0 (off by default)", f.WorkspaceHosts[0].Warm, f.WorkspaceHosts[1].Warm)
	}
	for yml, msg := range map[string]string{
		"workspace_hosts:\n  - hostname: 192.0.2.1\n    warm: -1\n":                     "workspace_hosts[0].warm: must not be negative",
		"workspace_hosts:\n  - hostname: 192.0.2.1\n    max_sessions: 2\n    warm: 3\n": "do not fit in max_sessions 2",
		"workspace_hosts:\n  - hostname: 192.0.2.1\n    warm: many\n":                   "warm",
	} {
		if _, err := Parse("hosts.yml", []byte(yml)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want %q", yml, err, msg)
		}
	}
}
