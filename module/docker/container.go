package docker

import (
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Container is what the project needs to know about a container, from
// either an inspect or a list answer.
type Container struct {
	ID      string
	Name    string // without Docker's leading "/"
	Image   string // the reference it was created from
	Labels  map[string]string
	State   string // created, running, paused, restarting, removing, exited, dead
	Running bool
	Created time.Time
	// Ports maps each published container TCP port to its host port.
	Ports map[int]int
	// HostIPs maps each published container TCP port to the host IP it is
	// bound to.
	HostIPs map[int]string
}

// inspectJSON is the part of GET /containers/{id}/json that is read.
type inspectJSON struct {
	ID      string `json:"Id"`
	Name    string
	Created string
	Config  struct {
		Image  string
		Labels map[string]string
	}
	State struct {
		Status  string
		Running bool
	}
	NetworkSettings struct {
		Ports map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
	}
}

func (j *inspectJSON) container() Container {
	c := Container{
		ID:      j.ID,
		Name:    strings.TrimPrefix(j.Name, "/"),
		Image:   j.Config.Image,
		Labels:  j.Config.Labels,
		State:   j.State.Status,
		Running: j.State.Running,
		Ports:   map[int]int{},
		HostIPs: map[int]string{},
	}
	c.Created, _ = time.Parse(time.RFC3339Nano, j.Created)
	var bindings []portBinding
	for key, bs := range j.NetworkSettings.Ports {
		port, proto, ok := strings.Cut(key, "/")
		if !ok || proto != "tcp" {
			continue
		}
		private, err := strconv.Atoi(port)
		if err != nil {
			continue
		}
		for _, b := range bs {
			public, err := strconv.Atoi(b.HostPort)
			if err != nil || public == 0 {
				continue
			}
			bindings = append(bindings, portBinding{private: private, public: public, ip: b.HostIP})
		}
	}
	c.addPorts(bindings)
	return c
}

// listJSON is one element of GET /containers/json.
type listJSON struct {
	ID      string `json:"Id"`
	Names   []string
	Image   string
	Labels  map[string]string
	State   string
	Created int64
	Ports   []struct {
		IP          string
		PrivatePort int
		PublicPort  int
		Type        string
	}
}

func (j *listJSON) container() Container {
	c := Container{
		ID:      j.ID,
		Image:   j.Image,
		Labels:  j.Labels,
		State:   j.State,
		Running: j.State == "running",
		Created: time.Unix(j.Created, 0),
		Ports:   map[int]int{},
		HostIPs: map[int]string{},
	}
	if len(j.Names) > 0 {
		c.Name = strings.TrimPrefix(j.Names[0], "/")
	}
	var bindings []portBinding
	for _, p := range j.Ports {
		if p.Type == "tcp" && p.PublicPort != 0 {
			bindings = append(bindings, portBinding{private: p.PrivatePort, public: p.PublicPort, ip: p.IP})
		}
	}
	c.addPorts(bindings)
	return c
}

type portBinding struct {
	private, public int
	ip              string
}

// addPorts records one binding per container port, deterministically: an
// IPv4 binding before an IPv6 one (Docker lists both for 0.0.0.0), then the
// lowest host port.
func (c *Container) addPorts(bs []portBinding) {
	sort.Slice(bs, func(i, k int) bool {
		a, b := bs[i], bs[k]
		if a.private != b.private {
			return a.private < b.private
		}
		if a4, b4 := isIPv4(a.ip), isIPv4(b.ip); a4 != b4 {
			return a4
		}
		return a.public < b.public
	})
	for _, b := range bs {
		if _, seen := c.Ports[b.private]; seen {
			continue
		}
		c.Ports[b.private] = b.public
		c.HostIPs[b.private] = b.ip
	}
}

func isIPv4(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.To4() != nil
}
