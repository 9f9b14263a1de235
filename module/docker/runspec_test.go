package docker

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func testSpec() RunSpec {
	return RunSpec{
		Name:        "rd-alice-1",
		Image:       "rd-desktop:latest",
		Env:         []string{"VNC_PASSWORD=hunter22", "RESOLUTION=1920x1080"},
		Labels:      map[string]string{"rd.session": "s1", "rd.user": "alice"},
		MemoryBytes: 4 << 30,
		ShmBytes:    2 << 30,
		NanoCPUs:    2e9,
		PidsLimit:   512,
		BindAddress: "172.30.77.11",
		Ports:       []int{5900, 6080},
		Network:     "rd-net",
		CapAdd:      []string{"SETUID", "SETGID"},
	}
}

func TestCreateBody(t *testing.T) {
	req, err := createBody(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	hc := req.HostConfig
	if req.Image != "rd-desktop:latest" || !slices.Equal(req.Env, testSpec().Env) {
		t.Errorf("image/env: %+v", req)
	}
	if req.Labels["rd.session"] != "s1" || req.Labels["rd.user"] != "alice" {
		t.Errorf("labels: %v", req.Labels)
	}
	if hc.Memory != 4<<30 || hc.ShmSize != 2<<30 || hc.NanoCPUs != 2e9 || hc.PidsLimit == nil || *hc.PidsLimit != 512 {
		t.Errorf("limits: %+v", hc)
	}
	for _, port := range []string{"5900/tcp", "6080/tcp"} {
		if _, ok := req.ExposedPorts[port]; !ok {
			t.Errorf("%s not exposed", port)
		}
		b := hc.PortBindings[port]
		if len(b) != 1 || b[0].HostIP != "172.30.77.11" || (b[0].HostPort != "" && b[0].HostPort != "0") {
			t.Errorf("binding of %s: %+v; want one dynamic port on 172.30.77.11", port, b)
		}
	}
	if !slices.Equal(hc.CapDrop, []string{"ALL"}) || !slices.Equal(hc.CapAdd, []string{"SETUID", "SETGID"}) {
		t.Errorf("caps: drop %v add %v", hc.CapDrop, hc.CapAdd)
	}
	if !slices.Equal(hc.SecurityOpt, []string{"no-new-privileges:true"}) || hc.Privileged || hc.AutoRemove || hc.RestartPolicy.Name != "no" {
		t.Errorf("hardening: %+v", hc)
	}
	if hc.NetworkMode != "rd-net" {
		t.Errorf("network mode %q", hc.NetworkMode)
	}

	// The JSON uses the Engine API's field names.
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	h := raw["HostConfig"].(map[string]any)
	for key, want := range map[string]any{
		"Memory": float64(4 << 30), "ShmSize": float64(2 << 30), "NanoCpus": float64(2e9), "PidsLimit": float64(512),
		"Privileged": false, "AutoRemove": false, "NetworkMode": "rd-net",
	} {
		if h[key] != want {
			t.Errorf("HostConfig.%s = %v; want %v", key, h[key], want)
		}
	}
	pb := h["PortBindings"].(map[string]any)["6080/tcp"].([]any)[0].(map[string]any)
	if pb["HostIp"] != "172.30.77.11" || pb["HostPort"] != "" {
		t.Errorf("PortBindings JSON: %v", pb)
	}
	if rp := h["RestartPolicy"].(map[string]any); rp["Name"] != "no" {
		t.Errorf("RestartPolicy JSON: %v", rp)
	}
}

func TestCreateBodyZeroLimitsAreOmitted(t *testing.T) {
	req, err := createBody(RunSpec{Name: "rdtest-x", Image: "rd-tiny:latest"})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(req)
	for _, absent := range []string{"Memory", "ShmSize", "NanoCpus", "PidsLimit", "PortBindings", "NetworkMode", "CapAdd", "Env"} {
		if strings.Contains(string(data), `"`+absent+`"`) {
			t.Errorf("%s present in %s", absent, data)
		}
	}
	for _, present := range []string{`"CapDrop":["ALL"]`, `"SecurityOpt":["no-new-privileges:true"]`, `"Privileged":false`} {
		if !strings.Contains(string(data), present) {
			t.Errorf("%s missing in %s", present, data)
		}
	}
}

func TestCreateBodyRejects(t *testing.T) {
	for name, mutate := range map[string]func(*RunSpec){
		"no name":            func(s *RunSpec) { s.Name = "" },
		"bad name":           func(s *RunSpec) { s.Name = "a b; rm -rf" },
		"no image":           func(s *RunSpec) { s.Image = "" },
		"ports without bind": func(s *RunSpec) { s.BindAddress = "" },
		"bind not an IP":     func(s *RunSpec) { s.BindAddress = "host.example" },
		"port 0":             func(s *RunSpec) { s.Ports = []int{0} },
		"port too high":      func(s *RunSpec) { s.Ports = []int{70000} },
		"negative memory":    func(s *RunSpec) { s.MemoryBytes = -1 },
	} {
		spec := testSpec()
		mutate(&spec)
		if _, err := createBody(spec); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "hunter22") {
			t.Errorf("%s: error shows the environment: %v", name, err)
		}
	}
}
