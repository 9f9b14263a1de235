package hosts

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// DockerSocket is where the Docker engine listens on a host.
const DockerSocket = "/var/run/docker.sock"

// Engine is one host's Docker engine, however it is reached.
type Engine interface {
	// Do runs fn with a Docker client for the host. An error returned before
	// fn runs means the host could not be reached (SSH).
	Do(ctx context.Context, fn func(ctx context.Context, d *docker.Client) error) error
	// Close releases the engine's connections.
	Close() error
}

// SSHEngine reaches a host's Docker socket through the host's SSH pool: each
// Do runs on a client shared with the host's other operations, and each
// Engine API request is a forwarded channel of its own on it.
type SSHEngine struct {
	Pool   *sshpool.Pool
	Socket string // default DockerSocket
	// Host names the host in metrics (operation latency). Default: the
	// pool's address.
	Host string

	api apiVersion
}

// Do implements Engine.
func (e *SSHEngine) Do(ctx context.Context, fn func(context.Context, *docker.Client) error) error {
	socket := e.Socket
	if socket == "" {
		socket = DockerSocket
	}
	host := e.Host
	if host == "" {
		host = e.Pool.Addr()
	}
	start := time.Now()
	err := e.Pool.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		return e.api.run(ctx, docker.SSHDialer(c, socket), fn)
	})
	metrics.SSHOperation(host, time.Since(start), err)
	return err
}

// Close implements Engine.
func (e *SSHEngine) Close() error { return e.Pool.Close() }

// LocalEngine is the Docker engine on this machine, through its unix socket:
// the seed's localhost fallback, with no SSH.
type LocalEngine struct {
	Socket string // default DockerSocket

	api apiVersion
}

// Do implements Engine.
func (e *LocalEngine) Do(ctx context.Context, fn func(context.Context, *docker.Client) error) error {
	socket := e.Socket
	if socket == "" {
		socket = DockerSocket
	}
	// Fail like an unreachable SSH host would: before fn runs.
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("reach local docker socket: %w", err)
	}
	_ = c.Close()
	return e.api.run(ctx, docker.UnixDialer(socket), fn)
}

// Close implements Engine.
func (e *LocalEngine) Close() error { return nil }

// apiVersion is the Engine API version last negotiated with a host's daemon.
// Each operation's client starts from it instead of asking again; the host
// check renegotiates (docker.Client.Negotiate) every probe, so an upgraded
// daemon is followed within one interval.
type apiVersion struct {
	mu sync.Mutex
	v  string
}

func (a *apiVersion) run(ctx context.Context, dial docker.DialFunc, fn func(context.Context, *docker.Client) error) error {
	a.mu.Lock()
	d := docker.New(dial).WithVersion(a.v)
	a.mu.Unlock()
	err := fn(ctx, d)
	if v := d.Version(); v != "" {
		a.mu.Lock()
		a.v = v
		a.mu.Unlock()
	}
	return err
}
