package docker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// ImagePresent reports whether the image is on the daemon's host. It never
// pulls.
func (c *Client) ImagePresent(ctx context.Context, ref string) (bool, error) {
	if ref == "" {
		return false, errors.New("inspect image: empty reference")
	}
	_, err := c.do(ctx, http.MethodGet, "/images/"+pathEscape(ref)+"/json", nil, nil, nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
}

// ImageID returns the ID of the image ref names on the daemon's host
// (ErrNotFound when it is not there). It never pulls.
func (c *Client) ImageID(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", errors.New("inspect image: empty reference")
	}
	var out struct {
		ID string `json:"Id"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/images/"+pathEscape(ref)+"/json", nil, nil, &out); err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if out.ID == "" {
		return "", fmt.Errorf("inspect image %s: no ID in the answer", ref)
	}
	return out.ID, nil
}
