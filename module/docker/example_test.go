package docker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/sshpool"
)

// A desktop container on a remote host, through a pooled SSH connection.
// Every call opens its own channel; the Client holds nothing open.
func Example() {
	hk, err := sshpool.KnownHosts("") // ~/.ssh/known_hosts
	if err != nil {
		panic(err)
	}
	auth, agentConn, err := sshpool.DefaultAuth("", nil)
	if err != nil {
		panic(err)
	}
	defer agentConn.Close()
	pool := sshpool.New(sshpool.Config{Addr: "172.30.77.11:22", User: "root", Auth: auth, HostKeys: hk})
	defer pool.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ctr docker.Container
	err = pool.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
		d := docker.New(docker.SSHDialer(c, docker.DefaultSocket))
		// Do may run this twice (after a lost connection): a retry finds
		// the container of the first attempt instead of failing on the name.
		existing, err := d.Inspect(ctx, "rd-alice")
		switch {
		case err == nil:
			ctr = existing
			return nil
		case !errors.Is(err, docker.ErrNotFound):
			return err
		}
		ctr, err = d.Run(ctx, docker.RunSpec{
			Name:        "rd-alice",
			Image:       "rd-desktop:latest",
			Env:         []string{"VNC_PASSWORD=..."},
			Labels:      map[string]string{"rd.user": "alice"},
			MemoryBytes: 4 << 30,
			BindAddress: "172.30.77.11",
			Ports:       []int{6080},
		})
		return err
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("noVNC on port", ctr.Ports[6080])
}
