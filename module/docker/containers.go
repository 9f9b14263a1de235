package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cleanupTimeout bounds the removal of a container Run created but could
// not start; it runs even if the caller's ctx has ended.
const cleanupTimeout = 30 * time.Second

// List returns the containers carrying all the given labels (an empty value
// matches any value of the key), running ones only unless all is set.
func (c *Client) List(ctx context.Context, labels map[string]string, all bool) ([]Container, error) {
	q := url.Values{}
	if all {
		q.Set("all", "1")
	}
	if len(labels) > 0 {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		filters := make([]string, 0, len(keys))
		for _, k := range keys {
			if v := labels[k]; v != "" {
				filters = append(filters, k+"="+v)
			} else {
				filters = append(filters, k)
			}
		}
		data, err := json.Marshal(map[string][]string{"label": filters})
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		q.Set("filters", string(data))
	}
	var out []listJSON
	if _, err := c.do(ctx, http.MethodGet, "/containers/json", q, nil, &out); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	cs := make([]Container, 0, len(out))
	for i := range out {
		cs = append(cs, out[i].container())
	}
	sort.Slice(cs, func(i, k int) bool { return cs[i].Name < cs[k].Name })
	return cs, nil
}

// Inspect returns a container by ID or name; errors.Is(err, ErrNotFound) if
// there is none.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	var out inspectJSON
	if _, err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &out); err != nil {
		return Container{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	return out.container(), nil
}

// Run creates and starts a container and returns it as inspected after the
// start, with its published ports. It never pulls: a missing image is an
// error (ErrNotFound). If the start or the inspect fails, Run removes what it
// created and returns that failure (a cleanup failure is only appended).
func (c *Client) Run(ctx context.Context, spec RunSpec) (Container, error) {
	body, err := createBody(spec)
	if err != nil {
		return Container{}, fmt.Errorf("run container %s: %w", spec.Name, err)
	}
	var created struct {
		ID string `json:"Id"`
	}
	q := url.Values{"name": {spec.Name}}
	if _, err := c.do(ctx, http.MethodPost, "/containers/create", q, body, &created); err != nil {
		return Container{}, fmt.Errorf("create container %s from %s: %w", spec.Name, spec.Image, err)
	}
	fail := func(err error) (Container, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rmErr := c.Remove(cctx, created.ID, 0); rmErr != nil {
			return Container{}, fmt.Errorf("%w (and removing it failed: %v)", err, rmErr)
		}
		return Container{}, err
	}
	if _, err := c.do(ctx, http.MethodPost, "/containers/"+created.ID+"/start", nil, nil, nil); err != nil {
		return fail(fmt.Errorf("start container %s: %w", spec.Name, err))
	}
	ctr, err := c.Inspect(ctx, created.ID)
	if err != nil {
		return fail(fmt.Errorf("run container %s: %w", spec.Name, err))
	}
	return ctr, nil
}

// Remove stops a container (waiting up to stopTimeout before the kill) and
// force-removes it with its anonymous volumes. It is idempotent: a container
// that is already gone, already stopped, or already being removed is success.
func (c *Client) Remove(ctx context.Context, id string, stopTimeout time.Duration) error {
	path := "/containers/" + url.PathEscape(id)
	q := url.Values{"t": {strconv.Itoa(int(stopTimeout.Round(time.Second) / time.Second))}}
	_, stopErr := c.do(ctx, http.MethodPost, path+"/stop", q, nil, nil)
	if errors.Is(stopErr, ErrNotFound) {
		return nil
	}
	// Any other stop failure is left to the forced removal, which kills.
	_, err := c.do(ctx, http.MethodDelete, path, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	switch {
	case err == nil, errors.Is(err, ErrNotFound):
		return nil
	case errors.Is(err, ErrConflict) && strings.Contains(err.Error(), "in progress"):
		return nil
	case stopErr != nil:
		return fmt.Errorf("remove container %s: %w (stop: %v)", id, err, stopErr)
	default:
		return fmt.Errorf("remove container %s: %w", id, err)
	}
}
