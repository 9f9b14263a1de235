package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Storage is what a daemon says about where containers' writable layers
// live, and whether it can cap one (HostConfig.StorageOpt size).
type Storage struct {
	Driver    string // overlay2, btrfs, zfs, devicemapper, vfs...
	BackingFS string // extfs, xfs... ("" when the driver does not say)
	Quota     bool   // StorageOpt size is accepted
}

// Storage reads the storage driver from /info and finds out whether it
// caps a container's writable layer. Only overlay2 on xfs needs a trial
// (it also needs the pquota mount option, which /info does not show): a
// container of image is created with a size and removed, never started.
func (c *Client) Storage(ctx context.Context, image string) (Storage, error) {
	var info struct {
		Driver       string
		DriverStatus [][2]string
	}
	if _, err := c.do(ctx, http.MethodGet, "/info", nil, nil, &info); err != nil {
		return Storage{}, fmt.Errorf("docker info: %w", err)
	}
	s := Storage{Driver: info.Driver}
	for _, kv := range info.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			s.BackingFS = kv[1]
		}
	}
	switch {
	case s.Driver == "btrfs" || s.Driver == "zfs" || s.Driver == "devicemapper" || s.Driver == "windowsfilter":
		s.Quota = true
	case s.Driver == "overlay2" && s.BackingFS == "xfs":
		ok, err := c.tryStorageSize(ctx, image)
		if err != nil {
			return s, err
		}
		s.Quota = ok
	}
	return s, nil
}

func (c *Client) tryStorageSize(ctx context.Context, image string) (bool, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "rd-quota-probe-" + hex.EncodeToString(b[:])
	body := map[string]any{"Image": image, "HostConfig": map[string]any{"StorageOpt": map[string]string{"size": "1G"}}}
	var created struct {
		ID string `json:"Id"`
	}
	_, err := c.do(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, body, &created)
	var apiErr *APIError
	if errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Message), "storage") {
		return false, nil // "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
	}
	if err != nil {
		return false, fmt.Errorf("try storage_opt size: %w", err)
	}
	return true, c.Remove(ctx, created.ID, 0)
}
