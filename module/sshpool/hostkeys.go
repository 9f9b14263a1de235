package sshpool

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key verification errors. A dial that fails host key verification
// returns an error that wraps exactly one of these, so callers can tell the
// cases apart with errors.Is.
var (
	// ErrHostKeyUnknown: known_hosts holds no key for the host. Add the
	// host's key (ssh-keyscan, then verify it out of band) to proceed.
	ErrHostKeyUnknown = errors.New("host key is unknown: no entry for this host in known_hosts")

	// ErrHostKeyChanged: known_hosts holds a key for the host, but the host
	// offered a different one. Either the host was reinstalled or someone is
	// intercepting the connection.
	ErrHostKeyChanged = errors.New("host key CHANGED: it differs from the key in known_hosts (possible man-in-the-middle attack)")

	// ErrHostKeyRevoked: the host offered a key marked @revoked in known_hosts.
	ErrHostKeyRevoked = errors.New("host key is revoked in known_hosts")
)

// HostKeyChecker decides which host keys are accepted.
type HostKeyChecker interface {
	// Callback verifies the key a host offers during the handshake.
	Callback() ssh.HostKeyCallback

	// Algorithms returns the host key algorithms to offer when dialing addr
	// (host:port), most preferred first; nil means the library default.
	// Restricting them to what known_hosts holds for the host makes the
	// server present a key that can be verified, instead of one of a type
	// known_hosts does not record (which would fail as a mismatch).
	Algorithms(addr string) []string
}

// KnownHosts returns a checker backed by an OpenSSH known_hosts file. An
// empty path means ~/.ssh/known_hosts. Hashed host names, [host]:port entries
// for ports other than 22, @cert-authority and @revoked lines are honoured.
// The file is read once: after editing it, make a new checker (and pool).
func KnownHosts(path string) (HostKeyChecker, error) {
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find default known_hosts: %w", err)
		}
		path = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("load known_hosts %s: %w", path, err)
	}
	authorities, err := readAuthorityLines(path)
	if err != nil {
		return nil, fmt.Errorf("load known_hosts %s: %w", path, err)
	}
	probe, err := probeKey()
	if err != nil {
		return nil, err
	}
	return &knownHostsChecker{path: path, cb: cb, authorities: authorities, probe: probe}, nil
}

// InsecureIgnoreHostKeys accepts any host key. It exists only for an explicit
// operator opt-in (a throwaway lab); whoever selects it must log that loudly.
func InsecureIgnoreHostKeys() HostKeyChecker { return insecureChecker{} }

type insecureChecker struct{}

func (insecureChecker) Callback() ssh.HostKeyCallback { return ssh.InsecureIgnoreHostKey() } //nolint:gosec // explicit opt-in
func (insecureChecker) Algorithms(string) []string    { return nil }

type knownHostsChecker struct {
	path string
	cb   ssh.HostKeyCallback
	// authorities maps the line numbers of @cert-authority lines to their
	// CA keys. knownhosts reports matching CA lines among the "wanted" keys
	// of a KeyError and (as of v0.59) would accept a CA key offered as a
	// plain host key; both are corrected here.
	authorities map[int]ssh.PublicKey
	probe       ssh.PublicKey
}

func (k *knownHostsChecker) Callback() ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := k.cb(hostname, remote, key)
		if err == nil {
			if _, isCert := key.(*ssh.Certificate); !isCert && k.isAuthorityKey(key) {
				return fmt.Errorf("verify host key of %s: a CA key was offered as a plain host key: %w", hostname, ErrHostKeyChanged)
			}
			return nil
		}
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case errors.As(err, &revoked):
			return fmt.Errorf("verify host key of %s (%s): %w", hostname, ssh.FingerprintSHA256(key), ErrHostKeyRevoked)
		case errors.As(err, &keyErr):
			want := k.plainKeys(keyErr.Want)
			if len(want) == 0 {
				return fmt.Errorf("verify host key of %s: %s key %s is not in %s: %w",
					hostname, key.Type(), ssh.FingerprintSHA256(key), k.path, ErrHostKeyUnknown)
			}
			return fmt.Errorf("verify host key of %s: offered %s key %s, but %s:%d holds %s: %w",
				hostname, key.Type(), ssh.FingerprintSHA256(key), want[0].Filename, want[0].Line,
				ssh.FingerprintSHA256(want[0].Key), ErrHostKeyChanged)
		default:
			return fmt.Errorf("verify host key of %s: %w", hostname, err)
		}
	}
}

func (k *knownHostsChecker) Algorithms(addr string) []string {
	remote := remoteAddrOf(addr)
	err := k.cb(addr, remote, k.probe)
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return nil
	}
	var certs, plain []string
	for _, w := range keyErr.Want {
		if _, ok := k.authorities[w.Line]; ok {
			certs = certAlgorithms
			continue
		}
		for _, a := range algorithmsForKeyType(w.Key.Type()) {
			if !slices.Contains(plain, a) {
				plain = append(plain, a)
			}
		}
	}
	return append(slices.Clone(certs), plain...)
}

// plainKeys drops @cert-authority entries from a KeyError's wanted keys.
func (k *knownHostsChecker) plainKeys(want []knownhosts.KnownKey) []knownhosts.KnownKey {
	var out []knownhosts.KnownKey
	for _, w := range want {
		if _, ok := k.authorities[w.Line]; !ok {
			out = append(out, w)
		}
	}
	return out
}

func (k *knownHostsChecker) isAuthorityKey(key ssh.PublicKey) bool {
	for _, ca := range k.authorities {
		if bytes.Equal(ca.Marshal(), key.Marshal()) {
			return true
		}
	}
	return false
}

var certAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// algorithmsForKeyType maps a known_hosts key type to the host key
// algorithms that produce it: an RSA key signs with SHA-2 (or legacy SHA-1).
func algorithmsForKeyType(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// readAuthorityLines returns the @cert-authority lines of a known_hosts file
// by line number.
func readAuthorityLines(path string) (map[int]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[int]ssh.PublicKey)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 4 || string(fields[0]) != "@cert-authority" {
			continue
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey(bytes.Join(fields[2:], []byte(" ")))
		if err != nil {
			continue // knownhosts skips it too
		}
		out[n] = key
	}
	return out, sc.Err()
}

// remoteAddrOf gives knownhosts a remote address for a lookup that has no
// connection yet; the hostname argument takes precedence over it anyway.
func remoteAddrOf(addr string) net.Addr {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &net.TCPAddr{IP: net.IPv4zero, Port: 22}
	}
	tcp := &net.TCPAddr{IP: net.ParseIP(host)}
	if tcp.IP == nil {
		tcp.IP = net.IPv4zero
	}
	_, _ = fmt.Sscanf(port, "%d", &tcp.Port)
	return tcp
}

// probeKey is a fresh random key, never present in any known_hosts: looking
// it up makes knownhosts list the keys it holds for a host.
func probeKey() (ssh.PublicKey, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate probe key: %w", err)
	}
	return ssh.NewPublicKey(pub)
}

// Interface guards
var (
	_ HostKeyChecker = (*knownHostsChecker)(nil)
	_ HostKeyChecker = insecureChecker{}
)
