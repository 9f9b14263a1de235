// Package sshpool keeps a bounded pool of SSH clients to one host, shared by
// every operation on it: x/crypto/ssh multiplexes channels over one
// connection, so unlike the seed's paramiko pool nothing is checked out.
//
// Do runs an operation on the least-loaded live client; the operation opens
// its own channels there (the Docker socket forwarded with
// client.DialContext(ctx, "unix", "/var/run/docker.sock") is a channel, not
// a session, so sshd's MaxSessions (10) does not cap it). The pool dials
// another client only when those open (and being dialed) would carry more
// than Config.ChannelsPerConn operations each, never more than
// Config.MaxConns connections under any concurrency, and at most
// Config.MaxDialing handshakes at once (sshd drops surplus unauthenticated
// connections). An operation never waits for another one to finish: while a
// live client exists it runs at once (a new client is then dialed in the
// background), so a host check gets its answer however loaded the pool is.
//
// A client idle for Config.ProbeAfter is proven alive with a
// keepalive@openssh.com round trip before an operation runs on it; one whose
// transport closes is discarded at once. Do retries an operation once, on
// another client, when the transport died under it, so a restarted sshd or
// a dropped TCP connection costs a retry, not an error — for every operation
// that was on that client.
//
// The pool's TCP connections acknowledge what they receive at once
// (TCP_QUICKACK, Linux): sshd leaves Nagle on for forwarded channels, and
// against the client's delayed ACK that stalled 15–26 % of back-to-back
// operations by ~40 ms (see quickack.go).
//
// A request's context bounds only waiting and dialing. A client's lifetime
// belongs to the pool: it ends when it is found dead, or the pool is closed.
//
// Host keys are verified against known_hosts (KnownHosts); unknown and
// changed keys fail with ErrHostKeyUnknown and ErrHostKeyChanged.
// DefaultAuth authenticates like OpenSSH's defaults: the agent, then the
// default key files.
package sshpool
