// Package sshpool keeps a bounded pool of SSH connections to one host, the
// Go counterpart of the seed's per-host paramiko pool.
//
// A Pool dials on demand up to Config.MaxConns connections and never more,
// under any concurrency, and at most Config.MaxDialing handshakes at once
// (sshd drops surplus unauthenticated connections). Get validates an idle
// connection with a keepalive@openssh.com round trip before handing it out
// (unless it was put back healthy less than Config.ProbeAfter ago) and
// replaces a dead one transparently; Put validates again on the way back.
// Do wraps Get/Put and retries an operation once, on a validated connection,
// when the transport died under it, so a restarted sshd or a dropped TCP
// connection costs a retry, not an error.
//
// A request's context bounds only waiting and dialing. A connection's
// lifetime belongs to the pool: it ends when it is found dead, reported
// broken, or the pool is closed.
//
// Host keys are verified against known_hosts (KnownHosts); unknown and
// changed keys fail with ErrHostKeyUnknown and ErrHostKeyChanged.
// DefaultAuth authenticates like OpenSSH's defaults: the agent, then the
// default key files.
//
// One connection carries many channels: the Docker socket forwarded with
// client.DialContext(ctx, "unix", "/var/run/docker.sock") is a channel, not
// a session, so sshd's MaxSessions (10) does not cap it.
package sshpool
