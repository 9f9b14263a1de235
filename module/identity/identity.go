// Package identity answers "who is this request?" for the remote desktop
// handler. CTFd is the authority in production (see CTFd); the demo uses the
// user Caddy's own authentication established.
package identity

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
)

// User is who a request belongs to.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Admin bool   `json:"admin"`
}

// Errors a Source returns. Anything else is treated like ErrUnavailable:
// never as permission.
var (
	// ErrUnauthenticated: no login (or an expired one). 401.
	ErrUnauthenticated = errors.New("not logged in")
	// ErrForbidden: logged in but not allowed at all (banned, unverified). 403.
	ErrForbidden = errors.New("account not allowed")
	// ErrUnavailable: the authority could not be asked or answered oddly. 503.
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrBanned: banned from the CTF; an ErrForbidden whose page says so.
	ErrBanned = fmt.Errorf("%w: banned from this CTF", ErrForbidden)
)

// Source identifies the user of a request.
type Source interface {
	Identify(r *http.Request) (User, error)
}

// validID is what a user id may look like: it is used in URL paths, storage
// keys and container labels, so it is kept to a safe alphabet.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ValidID reports whether id is a well-formed user id.
func ValidID(id string) bool { return validID.MatchString(id) }
