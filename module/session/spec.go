package session

import (
	"crypto/rand"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/isolation"
)

// Labels every managed container carries. The reaper touches only
// containers with LabelManaged.
const (
	LabelManaged = "io.ctf-remote-desktop.managed"
	LabelSession = "io.ctf-remote-desktop.session"
	LabelUser    = "io.ctf-remote-desktop.user"
	LabelCreated = "io.ctf-remote-desktop.created"
	// LabelHelper marks a short-lived container the module makes for its
	// own use (never a desktop): see Manager.HelperLabels.
	LabelHelper = "io.ctf-remote-desktop.helper"
	// LabelInstance names the deployment that owns the container, so that
	// two deployments (or test runs) sharing a host never reap each
	// other's containers.
	LabelInstance = "io.ctf-remote-desktop.instance"
)

// DefaultInstance is the instance name when none is configured.
const DefaultInstance = "default"

// Container ports of the image contract.
const (
	NoVNCPort = 6080
	VNCPort   = 5900
)

// SessionNetwork is the bridge network session containers join on each
// host, with inter-container traffic off and a fixed bridge name that the
// isolation rules match (package isolation).
const SessionNetwork = isolation.Network

// NetworkOptions are the bridge options of SessionNetwork.
var NetworkOptions = isolation.NetworkOptions

// containerSpec builds the container for a session: a pure function of the
// session, the host and the limits, so it is tested without Docker.
func containerSpec(s *Session, h config.Host, c config.ContainerDefaults, instance string, now time.Time) docker.RunSpec {
	mem, _ := config.ParseSize(c.MemoryLimit) // validated at provisioning
	shm, _ := config.ParseSize(c.ShmSize)
	tmp, _ := config.ParseSize(c.TmpSize)
	ports := []int{NoVNCPort}
	if c.PublishVNC {
		ports = append(ports, VNCPort)
	}
	spec := docker.RunSpec{
		Name:  ContainerName(instance, s.User, s.ID),
		Image: h.DockerImage,
		Env:   []string{"VNC_PASSWORD=" + s.Password, "RESOLUTION=" + c.Resolution},
		Labels: map[string]string{
			LabelManaged:  "true",
			LabelSession:  s.ID,
			LabelUser:     s.User,
			LabelCreated:  now.UTC().Format(time.RFC3339),
			LabelInstance: instance,
		},
		MemoryBytes: mem,
		ShmBytes:    shm,
		NanoCPUs:    int64(c.CPULimit * 1e9),
		PidsLimit:   int64(c.PidsLimit),
		BindAddress: h.BindAddress,
		Ports:       ports,
		Network:     SessionNetwork,
	}
	if !c.WritableRoot {
		// The image contract: everything written at run time goes below
		// /tmp (exec allowed: players run their tools from there).
		spec.ReadOnlyRoot = true
		spec.Tmpfs = map[string]string{"/tmp": "rw,exec,nosuid,nodev,mode=1777,size=" + strconv.FormatInt(tmp, 10)}
	}
	return spec
}

// ContainerName is "rd-[<instance>-]<user>-<first 8 of session id>", in
// Docker's name alphabet.
func ContainerName(instance, user, id string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '_'
	}, user)
	if len(id) > 8 {
		id = id[:8]
	}
	if instance != "" && instance != DefaultInstance {
		clean = instance + "-" + clean
	}
	return "rd-" + clean + "-" + id
}

const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// randomString returns n characters from a CSPRNG, in an alphabet that needs
// no escaping in a URL fragment.
func randomString(n int) string {
	var b strings.Builder
	max := big.NewInt(int64(len(alphabet)))
	for range n {
		i, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("crypto/rand failed: " + err.Error()) // the OS has no randomness: nothing is safe
		}
		b.WriteByte(alphabet[i.Int64()])
	}
	return b.String()
}

// NewPassword is a fresh VNC password: 24 characters, about 140 bits. VNC
// itself uses only the first 8; the proxy, not VNC, is the boundary.
func NewPassword() string { return randomString(24) }

func newID() string { return randomString(20) }

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
