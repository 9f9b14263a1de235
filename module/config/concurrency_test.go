package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDockerConcurrency(t *testing.T) {
	f, err := Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n  - hostname: 192.0.2.2\n    docker_concurrency: 8\n  - hostname: 192.0.2.3\n    docker_concurrency: -1\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := []int{f.WorkspaceHosts[0].DockerConcurrency, f.WorkspaceHosts[1].DockerConcurrency, f.WorkspaceHosts[2].DockerConcurrency}
	if got[0] != DefaultDockerConcurrency || got[1] != 8 || got[2] != -1 {
		t.Errorf("docker_concurrency = %v; want the default %d, 8, -1", got, DefaultDockerConcurrency)
	}
	data, _ := json.Marshal(f.WorkspaceHosts[1])
	if !strings.Contains(string(data), `"docker_concurrency":8`) {
		t.Errorf("JSON %s lacks docker_concurrency", data)
	}
	_, err = Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n    docker_concurrency: -2\n"))
	if err == nil || !strings.Contains(err.Error(), "workspace_hosts[0].docker_concurrency") || !strings.Contains(err.Error(), "-1 (no limit) or more") {
		t.Errorf("docker_concurrency -2: err = %v", err)
	}
	_, err = Parse("hosts.yml", []byte("workspace_hosts:\n  - hostname: 192.0.2.1\n    docker_concurrency: many\n"))
	if err == nil || !strings.Contains(err.Error(), "docker_concurrency") {
		t.Errorf("docker_concurrency many: err = %v", err)
	}
}
