package docker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The Engine API versions this client's requests are valid for. Checked
// against the Engine API changelog for every endpoint and field the client
// uses (ping, version, images/{name}/json, containers create/start/json/
// stop/delete and list with label filters, networks inspect/create/list/
// delete):
//   - MinAPIVersion is Docker 19.03's API, the oldest that current Engines
//     still serve by default (Engine 29.5+); every field sent exists since
//     1.25 (NanoCpus, AutoRemove).
//   - MaxAPIVersion is Engine 29.8's API, the newest checked: no change up to
//     it removes or alters what the client sends or reads (v1.44 ignores
//     CheckDuplicate, v1.52 drops NetworkSettings fields the client does not
//     read; NetworkSettings.Ports stays).
//
// A daemon newer than MaxAPIVersion is spoken to at MaxAPIVersion (Docker
// keeps serving older versions); one whose range does not reach this one
// is refused with ErrNoCommonVersion.
const (
	MinAPIVersion = "1.40"
	MaxAPIVersion = "1.56"
)

// ErrNoCommonVersion means the daemon and this client share no Engine API
// version.
var ErrNoCommonVersion = errors.New("no common Docker Engine API version")

// Negotiation is what Negotiate learned from a daemon.
type Negotiation struct {
	Version   string // the API version the client speaks to it
	DaemonMax string // the daemon's own (newest) API version
	DaemonMin string // the oldest it accepts; "" if it did not say
	Engine    string // the Engine's version (29.8.1); "" if it did not say
}

// String describes the negotiation for a host check:
// "API 1.44 (engine 29.8.1 serves 1.44–1.56)".
func (n Negotiation) String() string {
	var b strings.Builder
	b.WriteString("API " + n.Version + " (")
	if n.Engine != "" {
		b.WriteString("engine " + n.Engine + " ")
	} else {
		b.WriteString("daemon ")
	}
	if n.DaemonMin != "" {
		b.WriteString("serves " + n.DaemonMin + "–" + n.DaemonMax + ")")
	} else {
		b.WriteString("serves up to " + n.DaemonMax + ")")
	}
	return b.String()
}

// Negotiate asks the daemon which Engine API versions it serves and makes
// the client speak the highest one both sides support. It reads the
// API-Version header of an unversioned GET /_ping (which also proves the
// daemon answers), and ApiVersion and MinAPIVersion of an unversioned
// GET /version. Either is enough to learn the daemon's newest version;
// only /version says its oldest. With no overlap it returns an error
// matching ErrNoCommonVersion that names both ranges, and the client's
// version is left as it was.
func (c *Client) Negotiate(ctx context.Context) (Negotiation, error) {
	var n Negotiation
	resp, err := c.raw(ctx, "/_ping")
	if err != nil {
		return n, fmt.Errorf("ping docker: %w", err)
	}
	n.DaemonMax = resp.header.Get("API-Version")
	var ver struct {
		Version       string
		APIVersion    string `json:"ApiVersion"`
		MinAPIVersion string
	}
	resp, err = c.raw(ctx, "/version")
	switch {
	case err == nil:
		if json.Unmarshal(resp.body, &ver) == nil {
			n.Engine, n.DaemonMin = ver.Version, ver.MinAPIVersion
			if ver.APIVersion != "" {
				n.DaemonMax = ver.APIVersion
			}
		}
	case ctx.Err() != nil:
		return n, fmt.Errorf("docker version: %w", err)
	}
	// A /version that fails otherwise leaves the ping's header to go by.
	if n.DaemonMax == "" {
		return n, fmt.Errorf("%w: the daemon reports no API version (neither _ping's API-Version header nor /version's ApiVersion), so it predates API 1.25; this client speaks %s–%s",
			ErrNoCommonVersion, MinAPIVersion, MaxAPIVersion)
	}
	if _, _, ok := parseVersion(n.DaemonMax); !ok {
		return n, fmt.Errorf("docker reports API version %q, which is not MAJOR.MINOR", n.DaemonMax)
	}
	n.Version = MaxAPIVersion
	if compareVersions(n.DaemonMax, MaxAPIVersion) < 0 {
		n.Version = n.DaemonMax
	}
	if compareVersions(n.Version, MinAPIVersion) < 0 ||
		(n.DaemonMin != "" && compareVersions(n.Version, n.DaemonMin) < 0) {
		daemon := "up to " + n.DaemonMax
		if n.DaemonMin != "" {
			daemon = n.DaemonMin + "–" + n.DaemonMax
		}
		return n, fmt.Errorf("%w: the daemon serves API %s, this client %s–%s", ErrNoCommonVersion, daemon, MinAPIVersion, MaxAPIVersion)
	}
	c.mu.Lock()
	c.version = n.Version
	c.mu.Unlock()
	return n, nil
}

// Version is the API version the client speaks: set by New's caller
// (WithVersion) or by Negotiate; "" before either.
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// WithVersion makes the client speak v (a version negotiated earlier with
// the same daemon) without negotiating first, and returns it. An empty v
// leaves negotiation to the first request.
func (c *Client) WithVersion(v string) *Client {
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
	return c
}

// apiVersion returns the version to put in a request's path, negotiating
// first if there is none yet.
func (c *Client) apiVersion(ctx context.Context) (string, error) {
	if v := c.Version(); v != "" {
		return v, nil
	}
	n, err := c.Negotiate(ctx)
	if err != nil {
		return "", err
	}
	return n.Version, nil
}

// versionedURL is the request URL of path (with its query) at the API
// version the client speaks, negotiating first if need be.
func (c *Client) versionedURL(ctx context.Context, path string) (string, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return "", err
	}
	return "http://docker/v" + v + path, nil
}

type rawAnswer struct {
	header http.Header
	body   []byte
}

// raw GETs an unversioned path and returns a 2xx answer's header and body.
func (c *Client) raw(ctx context.Context, path string) (rawAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return rawAnswer{}, err
	}
	resp, release, err := c.exchange(ctx, req)
	if err != nil {
		return rawAnswer{}, err
	}
	defer release()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return rawAnswer{}, readAPIError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return rawAnswer{}, withCtx(ctx, fmt.Errorf("read answer: %w", err))
	}
	return rawAnswer{header: resp.Header, body: body}, nil
}

// parseVersion splits an API version "1.44" into its numbers.
func parseVersion(v string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if !found {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil && major >= 0 && minor >= 0
}

// compareVersions orders API versions numerically (1.9 < 1.41); an
// unparsable version counts as 0.0.
func compareVersions(a, b string) int {
	am, an, _ := parseVersion(a)
	bm, bn, _ := parseVersion(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(an, bn)
}
