// Package e2e holds the helpers end-to-end tests share:
//
//   - NewCTFd, a stand-in for CTFd 3.8.7 on 127.0.0.1 that answers
//     /api/v1/users/me and /api/v1/users/<id> the way CTFd does (sessions,
//     API tokens, bans, password changes, logouts), records every request,
//     and can be switched into fault modes (down, 500, garbage, slow, wrong
//     shape);
//   - StartCaddy, which runs the real Caddy binary built from this
//     repository as a subprocess with an isolated data directory, and Do, a
//     loopback-only HTTP helper to talk to it;
//   - the system-test fixture the system, faults, bench and browser tests
//     share: Caddyfile, a builder of the module's configuration on the test
//     bed (hosts, options, the stand-in as identity, ports); System, the
//     product running on the bed (Start, Caddy's Reload/Kill/Restart/Stop,
//     cleanup of its containers), its requests as a player or the admin
//     (Req, Try, Status, Create, Hosts, Events, Sessions ...) and its waits
//     (WaitReady, WaitHostsHealthy, WaitHealth, WaitEvent, WaitNoOrphans,
//     WaitSessionGone); and one websocket client, DialWS.
//
// The files are not _test.go files so that any package's tests can import
// them; they use only the standard library (and the testbed package).
package e2e
