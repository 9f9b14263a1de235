package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// maxOneShotOutput bounds what is kept of a one-shot container's output.
const maxOneShotOutput = 64 << 10

// OneShot is a throwaway container that runs one command to its end: the
// host-side helpers (installing firewall rules, probing from a desktop's
// network) that need nothing but the Engine API to reach the host.
type OneShot struct {
	Name  string
	Image string
	// User to run as ("0" for root). Empty: the image's.
	User       string
	Entrypoint []string
	// NetworkMode: "host", a network name, or empty for the default bridge.
	NetworkMode string
	// CapAdd is given back after every capability is dropped.
	CapAdd []string
	// Binds in Docker's "src:dst[:ro]" form.
	Binds  []string
	Labels map[string]string
}

type oneShotRequest struct {
	Image      string
	User       string            `json:",omitempty"`
	Entrypoint []string          `json:",omitempty"`
	Cmd        []string          // empty: the image's CMD is not used
	Labels     map[string]string `json:",omitempty"`
	HostConfig struct {
		NetworkMode string   `json:",omitempty"`
		Binds       []string `json:",omitempty"`
		CapAdd      []string `json:",omitempty"`
		CapDrop     []string
		SecurityOpt []string
	}
}

// RunOnce creates and starts spec, waits for it to exit, and returns its
// exit code and combined output (up to 64 KiB). The container is removed
// whatever happens, even when ctx has ended.
func (c *Client) RunOnce(ctx context.Context, spec OneShot) (exit int, output string, err error) {
	if !nameRE.MatchString(spec.Name) || spec.Image == "" || len(spec.Entrypoint) == 0 {
		return -1, "", fmt.Errorf("run %q: name, image and entrypoint are required", spec.Name)
	}
	body := oneShotRequest{Image: spec.Image, User: spec.User, Entrypoint: spec.Entrypoint, Cmd: []string{}, Labels: spec.Labels}
	body.HostConfig.NetworkMode = spec.NetworkMode
	body.HostConfig.Binds = spec.Binds
	body.HostConfig.CapAdd = spec.CapAdd
	body.HostConfig.CapDrop = []string{"ALL"}
	body.HostConfig.SecurityOpt = []string{"no-new-privileges:true"}
	var created struct {
		ID string `json:"Id"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/containers/create", url.Values{"name": {spec.Name}}, body, &created); err != nil {
		return -1, "", fmt.Errorf("create %s from %s: %w", spec.Name, spec.Image, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rmErr := c.Remove(cctx, created.ID, 0); rmErr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", spec.Name, rmErr)
		}
	}()
	if _, err := c.do(ctx, http.MethodPost, "/containers/"+created.ID+"/start", nil, nil, nil); err != nil {
		return -1, "", fmt.Errorf("start %s: %w", spec.Name, err)
	}
	var waited struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	if _, err := c.do(ctx, http.MethodPost, "/containers/"+created.ID+"/wait", nil, nil, &waited); err != nil {
		return -1, "", fmt.Errorf("wait for %s: %w", spec.Name, err)
	}
	if waited.Error != nil && waited.Error.Message != "" {
		return -1, "", fmt.Errorf("wait for %s: %s", spec.Name, waited.Error.Message)
	}
	out, err := c.logs(ctx, created.ID)
	if err != nil {
		return waited.StatusCode, "", fmt.Errorf("output of %s: %w", spec.Name, err)
	}
	return waited.StatusCode, out, nil
}

// logs reads a stopped container's stdout and stderr (no TTY: the answer
// is Docker's multiplexed stream of 8-byte-headed frames).
func (c *Client) logs(ctx context.Context, id string) (string, error) {
	u, err := c.versionedURL(ctx, "/containers/"+url.PathEscape(id)+"/logs?stdout=1&stderr=1")
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, release, err := c.exchange(ctx, req)
	if err != nil {
		return "", err
	}
	defer release()
	if resp.StatusCode != http.StatusOK {
		return "", readAPIError(resp)
	}
	return demux(io.LimitReader(resp.Body, maxOneShotOutput))
}

// demux joins the payloads of a multiplexed log stream.
func demux(r io.Reader) (string, error) {
	var out bytes.Buffer
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out.String(), nil // the end, or the 64 KiB bound
			}
			return out.String(), err
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.CopyN(&out, r, n); err != nil {
			return out.String(), nil
		}
	}
}

// NetworkInfo is what RunOnce's callers need to know about a network.
type NetworkInfo struct {
	ID      string
	Subnet  string            // first IPAM subnet, CIDR
	Gateway string            // its gateway address
	Options map[string]string // driver options
	// Containers attached, by container ID, with their IPv4 address.
	Containers map[string]string
}

// InspectNetwork returns a network by name or ID.
func (c *Client) InspectNetwork(ctx context.Context, name string) (NetworkInfo, error) {
	var out struct {
		ID   string `json:"Id"`
		IPAM struct {
			Config []struct{ Subnet, Gateway string }
		}
		Options    map[string]string
		Containers map[string]struct{ IPv4Address string }
	}
	if _, err := c.do(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return NetworkInfo{}, fmt.Errorf("inspect network %s: %w", name, err)
	}
	info := NetworkInfo{ID: out.ID, Options: out.Options, Containers: map[string]string{}}
	if len(out.IPAM.Config) > 0 {
		info.Subnet, info.Gateway = out.IPAM.Config[0].Subnet, out.IPAM.Config[0].Gateway
	}
	for id, ep := range out.Containers {
		info.Containers[id] = ep.IPv4Address
	}
	return info, nil
}

// Rootless reports whether the daemon runs rootless (it cannot change the
// host's firewall then).
func (c *Client) Rootless(ctx context.Context) (bool, error) {
	var info struct{ SecurityOptions []string }
	if _, err := c.do(ctx, http.MethodGet, "/info", nil, nil, &info); err != nil {
		return false, fmt.Errorf("docker info: %w", err)
	}
	for _, o := range info.SecurityOptions {
		if o == "name=rootless" {
			return true, nil
		}
	}
	return false, nil
}
