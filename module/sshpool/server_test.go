package sshpool

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testServer is an in-process SSH server on 127.0.0.1 that speaks enough of
// OpenSSH for the pool: public key auth, keepalive@openssh.com (answered
// false, as OpenSSH does) and direct-streamlocal@openssh.com channels to a
// unix socket, where an HTTP server answers GET /_ping like dockerd.
type testServer struct {
	t        testing.TB
	ln       net.Listener
	hostKey  ssh.Signer
	config   *ssh.ServerConfig
	socket   string // unix socket serving /_ping
	clientSk ssh.Signer

	// muteKeepalive makes the server never answer keepalives.
	muteKeepalive atomic.Bool
	// authDelay slows every authentication down, to make handshakes overlap.
	authDelay atomic.Int64

	// handshaking counts authentications in progress (the client waits
	// for each answer, so they measure the client's handshakes in flight).
	handshaking, maxHandshaking atomic.Int64

	mu         sync.Mutex
	authorized [][]byte // client public keys accepted besides clientSk
	conns      map[net.Conn]struct{}
	open       int
	maxOpen    int
	accepted   int
	wg         sync.WaitGroup
}

func newKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startTestServer starts a server with the given host keys, or a fresh
// ed25519 one. hostKey is the first.
func startTestServer(t testing.TB, hostKeys ...ssh.Signer) *testServer {
	t.Helper()
	if len(hostKeys) == 0 {
		hostKeys = []ssh.Signer{newKey(t)}
	}
	s := &testServer{t: t, hostKey: hostKeys[0], clientSk: newKey(t), conns: map[net.Conn]struct{}{}}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			storeMax(&s.maxHandshaking, s.handshaking.Add(1))
			time.Sleep(time.Duration(s.authDelay.Load()))
			s.handshaking.Add(-1)
			if s.isAuthorized(key) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("unknown client key")
		},
	}
	for _, k := range hostKeys {
		s.config.AddHostKey(k)
	}
	s.socket = startPingSocket(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

// startPingSocket serves HTTP GET /_ping on a fresh unix socket.
func startPingSocket(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshpool") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/_ping" {
				http.NotFound(w, r)
				return
			}
			_, _ = io.WriteString(w, "OK")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return path
}

// Authorize makes the server accept key for client authentication.
func (s *testServer) Authorize(key ssh.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorized = append(s.authorized, key.Marshal())
}

func (s *testServer) isAuthorized(key ssh.PublicKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if bytes.Equal(key.Marshal(), s.clientSk.PublicKey().Marshal()) {
		return true
	}
	for _, k := range s.authorized {
		if bytes.Equal(k, key.Marshal()) {
			return true
		}
	}
	return false
}

func (s *testServer) Addr() string { return s.ln.Addr().String() }

// KnownHostsLine is the known_hosts line for this server's host key.
func (s *testServer) KnownHostsLine() string {
	return knownHostsLine(s.Addr(), s.hostKey.PublicKey())
}

func knownHostsLine(addr string, key ssh.PublicKey) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(key))
}

func (s *testServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.open++
		s.accepted++
		s.maxOpen = max(s.maxOpen, s.open)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.open--
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.serve(c)
		}()
	}
}

func (s *testServer) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	sconn, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for req := range reqs {
			if req.Type == "keepalive@openssh.com" && s.muteKeepalive.Load() {
				continue
			}
			if req.WantReply {
				_ = req.Reply(false, nil) // OpenSSH answers keepalives with "failure"
			}
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "direct-streamlocal@openssh.com" {
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
			continue
		}
		var msg struct {
			SocketPath string
			Reserved0  string
			Reserved1  uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "bad payload")
			continue
		}
		target, err := net.Dial("unix", msg.SocketPath)
		if err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			_ = target.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			go ssh.DiscardRequests(creqs)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(target, ch); done <- struct{}{} }()
			go func() { _, _ = io.Copy(ch, target); _ = ch.CloseWrite(); done <- struct{}{} }()
			<-done
			_ = ch.Close()
			_ = target.Close()
			<-done
		}()
	}
	_ = sconn.Close()
	wg.Wait()
}

// KillAll drops every client connection at the TCP level, like an sshd
// restart that kills its connection processes.
func (s *testServer) KillAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Counts returns the connections open now, the most ever open at once, and
// the total accepted.
func (s *testServer) Counts() (open, maxOpen, accepted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.maxOpen, s.accepted
}

// Close stops the server and waits for its goroutines.
func (s *testServer) Close() {
	_ = s.ln.Close()
	s.KillAll()
	s.wg.Wait()
}

// Config returns a pool config for this server with known_hosts holding its key.
func (s *testServer) Config(t testing.TB) Config {
	t.Helper()
	return Config{
		Addr:     s.Addr(),
		User:     "tester",
		Auth:     []ssh.AuthMethod{ssh.PublicKeys(s.clientSk)},
		HostKeys: writeKnownHosts(t, s.KnownHostsLine()),
	}
}

func writeKnownHosts(t testing.TB, lines ...string) HostKeyChecker {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	var data []byte
	for _, l := range lines {
		data = append(data, l...)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	hk, err := KnownHosts(path)
	if err != nil {
		t.Fatal(err)
	}
	return hk
}

// storeMax raises a to n if n is larger.
func storeMax(a *atomic.Int64, n int64) {
	for {
		m := a.Load()
		if n <= m || a.CompareAndSwap(m, n) {
			return
		}
	}
}
