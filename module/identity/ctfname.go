package identity

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// nameRetry is how long a failed ctf_name lookup is remembered before CTFd
// is asked again, so a CTFd that is down costs pages no time.
const nameRetry = time.Minute

type nameCache struct {
	name    string
	err     error
	expires time.Time // zero: a good answer, kept for good
}

// CTFName is CTFd's own name for the event (its ctf_name config, set in
// CTFd's setup), asked once with the admin token — on the admin client,
// never together with a player's cookie — and cached: a good answer for
// good, a failure for a minute. "" with a nil error means CTFd has no
// ctf_name.
func (c *CTFd) CTFName(ctx context.Context) (string, error) {
	c.init()
	c.nameMu.Lock()
	defer c.nameMu.Unlock() // one question at a time; the rest wait for its answer
	if n := c.name; n != nil && (n.expires.IsZero() || c.now().Before(n.expires)) {
		return n.name, n.err
	}
	name, err := c.askName(ctx)
	n := &nameCache{name: name, err: err}
	if err != nil {
		n.expires = c.now().Add(nameRetry)
	}
	c.name = n
	return name, err
}

func (c *CTFd) askName(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var out struct {
		Success bool `json:"success"`
		Data    struct {
			Key   string  `json:"key"`
			Value *string `json:"value"`
		} `json:"data"`
	}
	req, err := c.request(ctx, "/api/v1/configs/ctf_name")
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Token "+c.AdminToken)
	status, _, err := c.do(c.admin, req, &out)
	switch {
	case err != nil:
		return "", err
	case status == http.StatusNotFound:
		return "", nil // never set
	case status != http.StatusOK:
		return "", fmt.Errorf("%w: CTFd answered %d to /api/v1/configs/ctf_name (is admin_token an admin's token?)", ErrUnavailable, status)
	case !out.Success || out.Data.Key != "ctf_name":
		return "", fmt.Errorf("%w: CTFd's /api/v1/configs/ctf_name answer is not the expected JSON", ErrUnavailable)
	case out.Data.Value == nil:
		return "", nil
	}
	return *out.Data.Value, nil
}
