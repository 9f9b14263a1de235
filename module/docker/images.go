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
