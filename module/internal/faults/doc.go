// Package faults holds the reliability tests: the real Caddy binary built
// from this repository, the CTFd stand-in and the real test bed, with faults
// injected into the hosts (frozen, partitioned, sshd or dockerd killed, a
// desktop container killed by hand, an image missing), into Caddy (reload
// mid-creation, SIGKILL) and into its storage (read-only). RELIABILITY.md at
// the repository's root lists every scenario, how it is provoked, the
// command that runs it and what was measured.
//
// The tests stop hosts on purpose: run this package on its own (`make test`
// runs packages one at a time). Every host is restored when a test ends.
package faults
