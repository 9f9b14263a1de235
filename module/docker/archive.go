package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ContainerImage returns the ID (sha256:...) and the reference of the image
// a container was created from.
func (c *Client) ContainerImage(ctx context.Context, id string) (imageID, ref string, err error) {
	var out struct {
		Image  string
		Config struct{ Image string }
	}
	if _, err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &out); err != nil {
		return "", "", fmt.Errorf("inspect container %s: %w", id, err)
	}
	if out.Image == "" {
		return "", "", fmt.Errorf("inspect container %s: no image ID in the answer", id)
	}
	return out.Image, out.Config.Image, nil
}

// WithImageFiles creates a container from image that is never started
// (no network, an entrypoint that does not exist), runs fn with a function
// reading paths of the image's file system as tar streams (the Engine API's
// GET /containers/{id}/archive), and removes the container, even when ctx
// has ended. Nothing of the image runs: its files are only read.
func (c *Client) WithImageFiles(ctx context.Context, image string, labels map[string]string,
	fn func(ctx context.Context, archive func(ctx context.Context, path string) (io.ReadCloser, error)) error) error {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "rd-files-" + hex.EncodeToString(b)
	body := map[string]any{
		"Image":           image,
		"Entrypoint":      []string{"/rd-never-started"},
		"Cmd":             []string{},
		"Labels":          labels,
		"NetworkDisabled": true,
		"HostConfig":      map[string]any{"NetworkMode": "none", "CapDrop": []string{"ALL"}},
	}
	var created struct {
		ID string `json:"Id"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, body, &created); err != nil {
		return fmt.Errorf("create container from %s to read its files: %w", image, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_, _ = c.do(cctx, http.MethodDelete, "/containers/"+created.ID, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	}()
	return fn(ctx, func(ctx context.Context, path string) (io.ReadCloser, error) {
		return c.archive(ctx, created.ID, path)
	})
}

// archive streams path of a container's file system as a tar whose entries
// are named after path's last element. A last element that is a symlink is
// not followed (its entry is the link); symlinks before it are, inside the
// container's root. errors.Is(err, ErrNotFound) when path does not exist.
func (c *Client) archive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	u, err := c.versionedURL(ctx, "/containers/"+url.PathEscape(id)+"/archive?"+url.Values{"path": {path}}.Encode())
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, release, err := c.exchange(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		err := readAPIError(resp)
		release()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &releasingBody{ReadCloser: resp.Body, release: release}, nil
}

type releasingBody struct {
	io.ReadCloser
	release func()
	closed  bool
}

func (b *releasingBody) Close() error {
	if b.closed {
		return errors.New("already closed")
	}
	b.closed = true
	err := b.ReadCloser.Close()
	b.release()
	return err
}
