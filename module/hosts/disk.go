package hosts

import (
	"context"
	"fmt"
	"sync"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
)

// diskCache keeps what a host's storage driver can do: it does not change
// while the daemon runs, and finding out may cost a container create.
type diskCache struct {
	mu sync.Mutex
	s  *docker.Storage
}

// diskCheck reports how a desktop's disk writes are bounded on h. It is
// informational (always OK): a desktop's root filesystem is read-only and
// /tmp a size-capped tmpfs whatever the driver (container_defaults
// tmp_size); a per-container size quota (StorageOpt size) exists only on
// some drivers, which matters to operators who set writable_root.
func diskCheck(ctx context.Context, h *Host, d *docker.Client) Check {
	c := Check{Name: "disk", OK: true}
	h.disk.mu.Lock()
	defer h.disk.mu.Unlock()
	if h.disk.s == nil {
		s, err := d.Storage(ctx, h.Config().DockerImage)
		if err != nil {
			c.Detail = "storage driver unknown: " + err.Error()
			return c
		}
		h.disk.s = &s
	}
	s := *h.disk.s
	on := s.Driver
	if s.BackingFS != "" {
		on += " on " + s.BackingFS
	}
	if s.Quota {
		c.Detail = fmt.Sprintf("storage driver %s caps container size (storage_opt size); desktops: read-only root, /tmp a capped tmpfs", on)
	} else {
		c.Detail = fmt.Sprintf("storage driver %s cannot cap container size (storage_opt size needs overlay2 on xfs with pquota, btrfs or zfs); "+
			"desktops are bounded by their read-only root and capped /tmp tmpfs, unless writable_root is set", on)
	}
	return c
}
