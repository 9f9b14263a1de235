// Package e2e holds the helpers end-to-end tests share:
//
//   - NewCTFd, a stand-in for CTFd 3.8.7 on 127.0.0.1 that answers
//     /api/v1/users/me and /api/v1/users/<id> the way CTFd does (sessions,
//     API tokens, bans, password changes, logouts), records every request,
//     and can be switched into fault modes (down, 500, garbage, slow, wrong
//     shape);
//   - StartCaddy, which runs the real Caddy binary built from this
//     repository as a subprocess with an isolated data directory, and Do, a
//     loopback-only HTTP helper to talk to it.
//
// The files are not _test.go files so that any package's tests can import
// them; they use only the standard library.
package e2e
