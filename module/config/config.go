// Package config is the seed's hosts.yml model: the workspace hosts, the
// container limits and the session timers. The same struct is filled from
// hosts.yml, from the Caddyfile and from JSON, and validated in one place.
package config

import (
	"fmt"
	"net"
	"os/user"
	"strings"
)

// Defaults from the seed design.
const (
	DefaultImage             = "ctfd-remote-desktop:latest"
	DefaultMemoryLimit       = "4g"
	DefaultShmSize           = "2gb"
	DefaultResolution        = "1920x1080"
	DefaultCPULimit          = 2.0
	DefaultInitialDuration   = 3600
	DefaultExtensionDuration = 1200
	DefaultMaxExtensions     = 3
	DefaultSSHPort           = 22
	DefaultPidsLimit         = 512
	DefaultTmpSize           = "1g"
	DefaultMaxSessions       = 50
	DefaultDockerSocket      = "/var/run/docker.sock"
	DefaultDockerConcurrency = 8
)

// File is the content of hosts.yml. Its keys are the seed's; the keys the seed
// did not have are marked "beyond the seed" and all have defaults.
type File struct {
	// The Docker hosts sessions run on.
	WorkspaceHosts []Host `yaml:"workspace_hosts" json:"workspace_hosts,omitempty"`

	// Resource limits and settings applied to every session container.
	ContainerDefaults ContainerDefaults `yaml:"container_defaults" json:"container_defaults,omitzero"`

	// Session timer settings.
	SessionDefaults SessionDefaults `yaml:"session_defaults" json:"session_defaults,omitzero"`
}

// Host is one Docker host, reached over SSH.
type Host struct {
	// The address Caddy dials SSH on. Required. The special name
	// "localhost" with no user means the local Docker engine through its
	// unix socket, without SSH (the seed's single-machine fallback).
	Hostname string `yaml:"hostname" json:"hostname,omitempty"`

	// The SSH user. Default: the user Caddy runs as.
	User string `yaml:"user" json:"user,omitempty"`

	// The address Caddy uses to reach the session containers' published
	// ports. Default: hostname.
	PubHostname string `yaml:"pub_hostname" json:"pub_hostname,omitempty"`

	// The desktop image; it must already be on the host (it is never pulled).
	// Default: ctfd-remote-desktop:latest.
	DockerImage string `yaml:"docker_image" json:"docker_image,omitempty"`

	// Beyond the seed: the SSH port. Default: 22.
	Port int `yaml:"port" json:"port,omitempty"`

	// Beyond the seed: the most sessions this host runs at once; when
	// every host is full, creates wait in the queue. -1 means no limit.
	// Default: 50 (a desktop at rest uses about 150 MB of memory; size it
	// to the host: memory ÷ what your desktops really use).
	MaxSessions int `yaml:"max_sessions" json:"max_sessions,omitempty"`

	// Beyond the seed: the host address container ports are published on
	// (never all of the host's addresses), so that a desktop is reached only
	// where Caddy reaches it. Default: pub_hostname when it is an IP address,
	// 127.0.0.1 for localhost. When pub_hostname is a DNS name (the seed's
	// sample: host1.external.com) the default is the address that name
	// resolves to from Caddy, looked up as each container is made: the
	// address Caddy then dials, as the seed's nginx reached
	// pub_hostname:port. That address must be one of the host's (not a NAT
	// or load balancer in front of it) and should not be reachable by
	// players: if it is public, set bind_address to a private address of the
	// host and pub_hostname to match, or firewall the published port range
	// to Caddy's address. Caddy logs this choice once per host at start.
	BindAddress string `yaml:"bind_address" json:"bind_address,omitempty"`

	// Beyond the seed: the Docker daemon's unix socket on the host, reached
	// through SSH stream-local forwarding (sshd's AllowStreamLocalForwarding
	// must allow it, as it does by default). For rootless Docker it is
	// /run/user/<uid>/docker.sock of the user running dockerd (what
	// DOCKER_HOST says there). Default: /var/run/docker.sock.
	DockerSocket string `yaml:"docker_socket" json:"docker_socket,omitempty"`

	// Beyond the seed: the most container starts (create + start) Caddy
	// has in flight on this host at once, as JupyterHub's
	// concurrent_spawn_limit bounds spawns; removals have their own lane of
	// twice as many, so a rush of creates never holds them up. More creates
	// wait in the queue, in order, with their position shown to the
	// player; waiting there never counts against the host (its timeouts
	// start once a start is under way). When starts near their 60 s
	// timeout (over 30 s) the limit in use halves, and it grows back once
	// they take under 15 s.
	// -1 means no limit. Default: 8 (measured on a busy 2-core test-bed
	// host, 16 starts at once took 184 s one at a time, 44 s four at a
	// time, 31 s at 8 and 28 s at 16: past 8, more at once adds little).
	DockerConcurrency int `yaml:"docker_concurrency" json:"docker_concurrency,omitempty"`

	// Beyond the seed: how many desktops to keep on this host created,
	// started and answering, owned by nobody, so that a create claims one
	// and is ready at once (the warm pool). They count toward max_sessions,
	// are refilled in the background a few at a time, and are replaced
	// when the image or the container limits change. 0 turns the pool off.
	// Default: 0.
	Warm int `yaml:"warm" json:"warm,omitempty"`
}

// ContainerDefaults are the limits every session container gets.
type ContainerDefaults struct {
	// Memory limit, Docker's syntax (512m, 4g). Default: 4g.
	MemoryLimit string `yaml:"memory_limit" json:"memory_limit,omitempty"`

	// Size of /dev/shm, Docker's syntax. Default: 2gb.
	ShmSize string `yaml:"shm_size" json:"shm_size,omitempty"`

	// Desktop size, WIDTHxHEIGHT, passed as RESOLUTION. Default: 1920x1080.
	Resolution string `yaml:"resolution" json:"resolution,omitempty"`

	// CPUs (may be fractional). Default: 2.
	CPULimit float64 `yaml:"cpu_limit" json:"cpu_limit,omitempty"`

	// Beyond the seed: the most processes a container may run. Default: 512.
	PidsLimit int `yaml:"pids_limit" json:"pids_limit,omitempty"`

	// Beyond the seed: also publish the raw VNC port 5900 (noVNC on 6080 is
	// always published). Default: false.
	PublishVNC bool `yaml:"publish_vnc" json:"publish_vnc,omitempty"`

	// Beyond the seed: size of the memory filesystem (tmpfs) mounted on
	// /tmp, the only place a desktop can write: the root filesystem is
	// read-only, so a player cannot fill the host's /var/lib/docker. It
	// counts toward memory_limit. Default: 1g.
	TmpSize string `yaml:"tmp_size" json:"tmp_size,omitempty"`

	// Beyond the seed: leave the root filesystem writable, for images that
	// write outside /tmp. A player can then fill the host's disk unless
	// its storage driver caps containers (the host check says whether it
	// does). Default: false.
	WritableRoot bool `yaml:"writable_root" json:"writable_root,omitempty"`
}

// SessionDefaults are the session timers, in seconds as in the seed.
type SessionDefaults struct {
	// Seconds a session lives from its first status poll once ready.
	// Default: 3600.
	InitialDuration int `yaml:"initial_duration" json:"initial_duration,omitempty"`

	// Seconds one extension adds to the current expiry. Default: 1200.
	ExtensionDuration int `yaml:"extension_duration" json:"extension_duration,omitempty"`

	// How many times a session may be extended; 0 allows none. Default: 3.
	MaxExtensions *int `yaml:"max_extensions" json:"max_extensions,omitempty"`
}

// FieldError is a validation error on one key, named by its path in the file
// (workspace_hosts[1].hostname).
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

func fieldErr(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// LocalhostFallback is the configuration used when hosts.yml is missing: the
// local Docker engine, as in the seed.
func LocalhostFallback() File {
	return File{WorkspaceHosts: []Host{{Hostname: "localhost", PubHostname: "127.0.0.1"}}}
}

// SetDefaults fills every empty setting with its default.
func (f *File) SetDefaults() {
	for i := range f.WorkspaceHosts {
		h := &f.WorkspaceHosts[i]
		if h.User == "" && !h.IsLocal() {
			h.User = currentUser()
		}
		if h.PubHostname == "" {
			h.PubHostname = h.Hostname
		}
		if h.DockerImage == "" {
			h.DockerImage = DefaultImage
		}
		if h.Port == 0 {
			h.Port = DefaultSSHPort
		}
		if h.MaxSessions == 0 {
			h.MaxSessions = DefaultMaxSessions
		}
		if h.DockerSocket == "" {
			h.DockerSocket = DefaultDockerSocket
		}
		if h.DockerConcurrency == 0 {
			h.DockerConcurrency = DefaultDockerConcurrency
		}
		if h.BindAddress == "" {
			if h.IsLocal() || h.PubHostname == "localhost" {
				h.BindAddress = "127.0.0.1"
			} else if ip := net.ParseIP(h.PubHostname); ip != nil {
				h.BindAddress = ip.String()
			}
		}
	}
	c := &f.ContainerDefaults
	if c.MemoryLimit == "" {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.ShmSize == "" {
		c.ShmSize = DefaultShmSize
	}
	if c.Resolution == "" {
		c.Resolution = DefaultResolution
	}
	if c.CPULimit == 0 {
		c.CPULimit = DefaultCPULimit
	}
	if c.PidsLimit == 0 {
		c.PidsLimit = DefaultPidsLimit
	}
	if c.TmpSize == "" {
		c.TmpSize = DefaultTmpSize
	}
	s := &f.SessionDefaults
	if s.InitialDuration == 0 {
		s.InitialDuration = DefaultInitialDuration
	}
	if s.ExtensionDuration == 0 {
		s.ExtensionDuration = DefaultExtensionDuration
	}
	if s.MaxExtensions == nil {
		n := DefaultMaxExtensions
		s.MaxExtensions = &n
	}
}

// IsLocal reports whether the host is the local Docker engine reached through
// its unix socket rather than over SSH.
func (h Host) IsLocal() bool { return h.Hostname == "localhost" && h.User == "" }

// Validate checks every setting and returns the first problem found, as a
// *FieldError. Call SetDefaults first.
func (f *File) Validate() error {
	if len(f.WorkspaceHosts) == 0 {
		return fieldErr("workspace_hosts", "no hosts: at least one workspace host is required")
	}
	seen := make(map[string]int)
	for i, h := range f.WorkspaceHosts {
		p := fmt.Sprintf("workspace_hosts[%d]", i)
		if strings.TrimSpace(h.Hostname) == "" {
			return fieldErr(p+".hostname", "required")
		}
		if strings.ContainsAny(h.Hostname, " /\t@") {
			return fieldErr(p+".hostname", "%q is not a host name or address", h.Hostname)
		}
		key := strings.ToLower(h.Hostname)
		if j, dup := seen[key]; dup {
			return fieldErr(p+".hostname", "%q is already workspace_hosts[%d]", h.Hostname, j)
		}
		seen[key] = i
		if h.Port < 1 || h.Port > 65535 {
			return fieldErr(p+".port", "%d is not a TCP port", h.Port)
		}
		if h.MaxSessions < -1 {
			return fieldErr(p+".max_sessions", "must be -1 (no limit) or more, got %d", h.MaxSessions)
		}
		if h.DockerConcurrency < -1 {
			return fieldErr(p+".docker_concurrency", "must be -1 (no limit) or more, got %d", h.DockerConcurrency)
		}
		if h.Warm < 0 {
			return fieldErr(p+".warm", "must not be negative, got %d", h.Warm)
		}
		if h.MaxSessions > 0 && h.Warm > h.MaxSessions {
			return fieldErr(p+".warm", "%d warm desktops do not fit in max_sessions %d", h.Warm, h.MaxSessions)
		}
		if strings.ContainsAny(h.DockerImage, " \t") {
			return fieldErr(p+".docker_image", "%q is not an image reference", h.DockerImage)
		}
		if !strings.HasPrefix(h.DockerSocket, "/") || strings.ContainsAny(h.DockerSocket, " \t\n") {
			return fieldErr(p+".docker_socket", "%q is not an absolute path of a unix socket", h.DockerSocket)
		}
		if h.BindAddress != "" && net.ParseIP(h.BindAddress) == nil {
			return fieldErr(p+".bind_address", "%q is not an IP address", h.BindAddress)
		}
	}
	c := f.ContainerDefaults
	if _, err := ParseSize(c.MemoryLimit); err != nil {
		return fieldErr("container_defaults.memory_limit", "%v", err)
	}
	if _, err := ParseSize(c.ShmSize); err != nil {
		return fieldErr("container_defaults.shm_size", "%v", err)
	}
	if _, err := ParseSize(c.TmpSize); err != nil {
		return fieldErr("container_defaults.tmp_size", "%v", err)
	}
	if _, _, err := ParseResolution(c.Resolution); err != nil {
		return fieldErr("container_defaults.resolution", "%v", err)
	}
	if c.CPULimit <= 0 {
		return fieldErr("container_defaults.cpu_limit", "must be positive, got %v", c.CPULimit)
	}
	if c.PidsLimit < 0 {
		return fieldErr("container_defaults.pids_limit", "must not be negative, got %d", c.PidsLimit)
	}
	s := f.SessionDefaults
	if s.InitialDuration <= 0 {
		return fieldErr("session_defaults.initial_duration", "must be a positive number of seconds, got %d", s.InitialDuration)
	}
	if s.ExtensionDuration <= 0 {
		return fieldErr("session_defaults.extension_duration", "must be a positive number of seconds, got %d", s.ExtensionDuration)
	}
	if s.MaxExtensions != nil && *s.MaxExtensions < 0 {
		return fieldErr("session_defaults.max_extensions", "must not be negative, got %d", *s.MaxExtensions)
	}
	return nil
}

// Extensions is max_extensions, or its default when unset.
func (s SessionDefaults) Extensions() int {
	if s.MaxExtensions == nil {
		return DefaultMaxExtensions
	}
	return *s.MaxExtensions
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "root"
}
