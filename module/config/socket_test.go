package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDockerSocket(t *testing.T) {
	f, err := Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n  - hostname: 192.0.2.2\n    docker_socket: /run/user/1000/docker.sock\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.WorkspaceHosts[0].DockerSocket; got != "/var/run/docker.sock" {
		t.Errorf("default docker_socket = %q", got)
	}
	if got := f.WorkspaceHosts[1].DockerSocket; got != "/run/user/1000/docker.sock" {
		t.Errorf("docker_socket = %q", got)
	}
	data, _ := json.Marshal(f.WorkspaceHosts[1])
	if !strings.Contains(string(data), `"docker_socket":"/run/user/1000/docker.sock"`) {
		t.Errorf("JSON %s lacks docker_socket", data)
	}

	_, err = Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n    docker_socket: run/docker.sock\n"))
	if err == nil || !strings.Contains(err.Error(), "workspace_hosts[0].docker_socket") || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative docker_socket: err = %v", err)
	}
}
