// Package proxy holds the parts of the desktop proxy that are not Caddy's
// reverse proxy itself: parsing /vnc/<user_id>/... paths, the per-request
// upstream source, what is stripped from requests to (and responses from)
// a player's container, and the watch that cuts a desktop's connection when
// its session or its viewer's login ends.
package proxy

import (
	"errors"
	"strings"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

// ErrBadPath is returned for malformed desktop paths: they get a 400 and
// never reach a backend.
var ErrBadPath = errors.New("malformed desktop path")

// ParsePath splits the escaped path after "<prefix>/vnc/" into the user id
// and the path to request from the container ("/vnc.html",
// "/websockify", ...). It refuses anything that could address something
// other than that user's container: dot segments, encoded slashes,
// backslashes, encoded dots, control characters.
func ParsePath(escapedPath, vncPrefix string) (user, rest string, err error) {
	tail, ok := strings.CutPrefix(escapedPath, vncPrefix)
	if !ok {
		return "", "", ErrBadPath
	}
	user, rest, _ = strings.Cut(tail, "/")
	if !identity.ValidID(user) {
		return "", "", ErrBadPath
	}
	rest = "/" + rest
	lower := strings.ToLower(rest)
	for _, bad := range []string{"%2f", "%5c", "%2e", "%00", "\\"} {
		if strings.Contains(lower, bad) {
			return "", "", ErrBadPath
		}
	}
	for _, seg := range strings.Split(rest, "/") {
		if seg == "." || seg == ".." {
			return "", "", ErrBadPath
		}
	}
	for _, c := range rest {
		if c < 0x20 || c == 0x7f {
			return "", "", ErrBadPath
		}
	}
	return user, rest, nil
}
