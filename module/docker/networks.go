package docker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// EnsureNetwork creates a bridge network with the given driver options if
// none of that name exists. Concurrent callers are fine: a 409 (created
// meanwhile) is success.
func (c *Client) EnsureNetwork(ctx context.Context, name string, opts map[string]string) error {
	if name == "" {
		return errors.New("ensure network: empty name")
	}
	_, err := c.do(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, nil)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("inspect network %s: %w", name, err)
	}
	body := struct {
		Name           string
		Driver         string
		CheckDuplicate bool
		Options        map[string]string `json:",omitempty"`
	}{Name: name, Driver: "bridge", CheckDuplicate: true, Options: opts}
	_, err = c.do(ctx, http.MethodPost, "/networks/create", nil, body, nil)
	if err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("create network %s: %w", name, err)
	}
	return nil
}
