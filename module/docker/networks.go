package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// EnsureNetwork creates a bridge network with the given driver options if
// none of that name exists. It is safe under races, including between
// processes: Docker's CheckDuplicate is best effort (concurrent creates of
// one name all succeed on Docker 20.10, seen on the test bed), so after
// creating, every caller keeps the oldest network of the name and removes
// the others; all callers agree on which one survives.
func (c *Client) EnsureNetwork(ctx context.Context, name string, opts map[string]string) error {
	if name == "" {
		return errors.New("ensure network: empty name")
	}
	_, err := c.do(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, nil)
	if err == nil {
		return nil
	}
	// "ambiguous" (several of the name) is a 400 on 20.10: settle it below.
	if !errors.Is(err, ErrNotFound) && !isAmbiguous(err) {
		return fmt.Errorf("inspect network %s: %w", name, err)
	}
	if errors.Is(err, ErrNotFound) {
		body := struct {
			Name           string
			Driver         string
			CheckDuplicate bool
			Options        map[string]string `json:",omitempty"`
		}{Name: name, Driver: "bridge", CheckDuplicate: true, Options: opts}
		_, err = c.do(ctx, http.MethodPost, "/networks/create", nil, body, nil)
		if err != nil && !errors.Is(err, ErrConflict) {
			// A racing create may have taken a fixed bridge name first.
			if _, ierr := c.do(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, nil); ierr != nil {
				return fmt.Errorf("create network %s: %w", name, err)
			}
		}
	}
	if err := c.dedupeNetwork(ctx, name); err != nil {
		return fmt.Errorf("ensure network %s: %w", name, err)
	}
	return nil
}

func isAmbiguous(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest
}

// dedupeNetwork removes every network called name but the oldest.
func (c *Client) dedupeNetwork(ctx context.Context, name string) error {
	filters, _ := json.Marshal(map[string][]string{"name": {name}})
	var nets []struct {
		ID      string `json:"Id"`
		Name    string
		Created string
	}
	if _, err := c.do(ctx, http.MethodGet, "/networks", url.Values{"filters": {string(filters)}}, nil, &nets); err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	type network struct {
		id      string
		created time.Time
	}
	var same []network
	for _, n := range nets {
		if n.Name == name { // the name filter matches substrings
			created, _ := time.Parse(time.RFC3339Nano, n.Created)
			same = append(same, network{n.ID, created})
		}
	}
	sort.Slice(same, func(i, k int) bool {
		if !same[i].created.Equal(same[k].created) {
			return same[i].created.Before(same[k].created)
		}
		return same[i].id < same[k].id
	})
	for _, n := range same[min(1, len(same)):] {
		_, err := c.do(ctx, http.MethodDelete, "/networks/"+n.id, nil, nil, nil)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove duplicate network %.12s: %w", n.id, err)
		}
	}
	return nil
}
