// Package docker is a minimal client for the Docker Engine API, spoken as
// HTTP/1.1 over whatever connection a DialFunc opens: a channel of an SSH
// connection forwarding the remote daemon's unix socket (SSHDialer), or the
// local socket (UnixDialer).
//
// It covers what the project needs and no more: ping, image presence,
// container create/start/inspect/list/stop/remove, and bridge networks.
// The API version is negotiated per daemon (Negotiate): the highest one both
// the daemon and this client (MinAPIVersion–MaxAPIVersion) support.
//
// Why the Engine API and not the docker CLI over SSH exec:
//   - No shell strings: names, labels and environment travel as JSON, so
//     there is nothing to quote and nothing to inject.
//   - Structured results: errors are an HTTP status and Docker's message
//     (APIError; ErrNotFound and ErrConflict via errors.Is), and container
//     state comes back as JSON, not parsed CLI text.
//   - No MaxSessions cap: sshd allows 10 exec sessions per connection by
//     default, but a forwarded socket is a channel, not a session, so one
//     SSH connection carries many concurrent API calls.
//   - No docker CLI needed on the hosts, and no moby client (about 19 extra
//     modules) in the build.
//
// Each call is bounded by its context. HTTP keep-alive is off: every call
// opens its own channel and closes it, so a Client holds nothing open and
// may be made per operation, inside sshpool.Pool.Do:
//
//	err := pool.Do(ctx, func(ctx context.Context, c *ssh.Client) error {
//		return docker.New(docker.SSHDialer(c, docker.DefaultSocket)).Ping(ctx)
//	})
//
// The environment of a RunSpec carries secrets (the VNC password): this
// package never logs it and never puts it in an error.
package docker
