package docker

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
)

// RunSpec describes a container to run. Every container also gets, always:
// CapDrop ALL, SecurityOpt no-new-privileges:true, not privileged, restart
// policy "no", no auto-remove.
type RunSpec struct {
	// Name of the container. Required.
	Name string

	// Image reference. Required; it must be on the host (never pulled).
	Image string

	// Env is KEY=value pairs. It carries secrets: never logged.
	Env []string

	// Labels to set; List filters on them.
	Labels map[string]string

	// Resource limits; zero means no limit.
	MemoryBytes int64
	ShmBytes    int64
	NanoCPUs    int64
	PidsLimit   int64

	// BindAddress is the host IP the ports are published on. Required when
	// Ports is not empty: publishing on every interface must be explicit
	// ("0.0.0.0").
	BindAddress string

	// Ports are container TCP ports, each published on a host port the
	// daemon picks.
	Ports []int

	// Network to attach the container to (NetworkMode). Empty: the default
	// bridge.
	Network string

	// CapAdd lists the capabilities given back after all are dropped.
	CapAdd []string

	// ReadOnlyRoot makes the root filesystem read-only, so nothing is
	// written to the host's /var/lib/docker; Tmpfs mounts size-capped
	// memory filesystems (path → mount options) where the image writes.
	ReadOnlyRoot bool
	Tmpfs        map[string]string
}

// createRequest is the body of POST /containers/create.
type createRequest struct {
	Image        string
	Env          []string            `json:",omitempty"`
	Labels       map[string]string   `json:",omitempty"`
	ExposedPorts map[string]struct{} `json:",omitempty"`
	HostConfig   hostConfig
}

type hostConfig struct {
	Memory         int64                    `json:",omitempty"`
	ShmSize        int64                    `json:",omitempty"`
	NanoCPUs       int64                    `json:"NanoCpus,omitempty"`
	PidsLimit      *int64                   `json:",omitempty"`
	PortBindings   map[string][]portMapping `json:",omitempty"`
	NetworkMode    string                   `json:",omitempty"`
	CapAdd         []string                 `json:",omitempty"`
	ReadonlyRootfs bool                     `json:",omitempty"`
	Tmpfs          map[string]string        `json:",omitempty"`
	CapDrop        []string
	SecurityOpt    []string
	Privileged     bool
	RestartPolicy  restartPolicy
	AutoRemove     bool
}

type portMapping struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

type restartPolicy struct {
	Name string
}

// nameRE is Docker's rule for container names.
var nameRE = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// createBody builds the create request for spec, with the fixed hardening
// applied. It does no I/O.
func createBody(spec RunSpec) (createRequest, error) {
	if !nameRE.MatchString(spec.Name) {
		return createRequest{}, fmt.Errorf("invalid container name %q", spec.Name)
	}
	if spec.Image == "" {
		return createRequest{}, errors.New("no image")
	}
	if spec.MemoryBytes < 0 || spec.ShmBytes < 0 || spec.NanoCPUs < 0 || spec.PidsLimit < 0 {
		return createRequest{}, errors.New("negative resource limit")
	}
	req := createRequest{
		Image:  spec.Image,
		Env:    spec.Env,
		Labels: spec.Labels,
		HostConfig: hostConfig{
			Memory:         spec.MemoryBytes,
			ShmSize:        spec.ShmBytes,
			NanoCPUs:       spec.NanoCPUs,
			NetworkMode:    spec.Network,
			CapAdd:         spec.CapAdd,
			ReadonlyRootfs: spec.ReadOnlyRoot,
			Tmpfs:          spec.Tmpfs,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges:true"},
			Privileged:     false,
			RestartPolicy:  restartPolicy{Name: "no"},
			AutoRemove:     false,
		},
	}
	if spec.PidsLimit > 0 {
		req.HostConfig.PidsLimit = &spec.PidsLimit
	}
	if len(spec.Ports) > 0 {
		if net.ParseIP(spec.BindAddress) == nil {
			return createRequest{}, fmt.Errorf("ports to publish but bind address %q is not an IP", spec.BindAddress)
		}
		req.ExposedPorts = map[string]struct{}{}
		req.HostConfig.PortBindings = map[string][]portMapping{}
		for _, p := range spec.Ports {
			if p < 1 || p > 65535 {
				return createRequest{}, fmt.Errorf("invalid container port %d", p)
			}
			key := strconv.Itoa(p) + "/tcp"
			req.ExposedPorts[key] = struct{}{}
			req.HostConfig.PortBindings[key] = []portMapping{{HostIP: spec.BindAddress, HostPort: ""}}
		}
	}
	return req, nil
}
