package sshpool

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestUnknownHostKeyRefused(t *testing.T) {
	srv := startTestServer(t)
	other := newKey(t)
	for name, lines := range map[string][]string{
		"empty file": nil,
		"other host": {knownHostsLine("127.0.0.2:22", other.PublicKey())},
		"other port": {knownHostsLine("127.0.0.1:1", srv.hostKey.PublicKey())},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := srv.Config(t)
			cfg.HostKeys = writeKnownHosts(t, lines...)
			p := New(cfg)
			defer p.Close()
			err := p.Do(context.Background(), noop)
			if !errors.Is(err, ErrHostKeyUnknown) || errors.Is(err, ErrHostKeyChanged) {
				t.Fatalf("Do = %v; want ErrHostKeyUnknown", err)
			}
			if !strings.Contains(err.Error(), "unknown") || !strings.Contains(err.Error(), "known_hosts") {
				t.Fatalf("error does not say the key is unknown to known_hosts: %v", err)
			}
			if st := p.Stats(); st.Open != 0 || st.DialFailures != 1 {
				t.Fatalf("pool %+v", st)
			}
		})
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.HostKeys = writeKnownHosts(t, knownHostsLine(srv.Addr(), newKey(t).PublicKey()))
	p := New(cfg)
	defer p.Close()
	err := p.Do(context.Background(), noop)
	if !errors.Is(err, ErrHostKeyChanged) || errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("Do = %v; want ErrHostKeyChanged", err)
	}
	if !strings.Contains(err.Error(), "CHANGED") || !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.hostKey.PublicKey())) {
		t.Fatalf("error does not say the key changed, with the offered fingerprint: %v", err)
	}
}

func TestRevokedHostKeyRefused(t *testing.T) {
	srv := startTestServer(t)
	cfg := srv.Config(t)
	cfg.HostKeys = writeKnownHosts(t,
		srv.KnownHostsLine(),
		"@revoked * "+string(ssh.MarshalAuthorizedKey(srv.hostKey.PublicKey())))
	p := New(cfg)
	defer p.Close()
	if err := p.Do(context.Background(), noop); !errors.Is(err, ErrHostKeyRevoked) {
		t.Fatalf("Do = %v; want ErrHostKeyRevoked", err)
	}
}

// The server offers the three key types OpenSSH generates; known_hosts holds
// only one of them. Without restricting the algorithms to what known_hosts
// holds, x/crypto negotiates ECDSA and fails with "key mismatch" when
// known_hosts holds the ed25519 key (seen on the test bed too).
func TestKnownHostsRestrictsHostKeyAlgorithms(t *testing.T) {
	ed := newKey(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewSignerFromKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTestServer(t, ed, ec, rs)

	// The failure this guards against.
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(knownHostsLine(srv.Addr(), ed.PublicKey())), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := knownhosts.New(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{User: "x", Auth: srv.Config(t).Auth, HostKeyCallback: raw})
	if err == nil || !strings.Contains(err.Error(), "key mismatch") {
		t.Logf("note: unrestricted dial no longer fails (%v); the restriction is still right", err)
	}

	for _, key := range []ssh.PublicKey{ed.PublicKey(), ec.PublicKey(), rs.PublicKey()} {
		t.Run(key.Type(), func(t *testing.T) {
			cfg := srv.Config(t)
			cfg.HostKeys = writeKnownHosts(t, knownHostsLine(srv.Addr(), key))
			p := New(cfg)
			defer p.Close()
			err := p.Do(context.Background(), noop)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
		})
	}
}

func TestAlgorithms(t *testing.T) {
	ed, ca := newKey(t), newKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	hk := writeKnownHosts(t,
		"# comment\n",
		knownHostsLine("127.0.0.1:2222", rs.PublicKey()),
		knownHostsLine("127.0.0.1:2222", ed.PublicKey()),
		"example.org "+string(ssh.MarshalAuthorizedKey(ed.PublicKey())),
		knownhosts.HashHostname("hashed.example")+" "+string(ssh.MarshalAuthorizedKey(rs.PublicKey())),
		"@cert-authority *.lab "+string(ssh.MarshalAuthorizedKey(ca.PublicKey())),
	)
	rsaAlgos := []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	for addr, want := range map[string][]string{
		"127.0.0.1:2222":    append(slices.Clone(rsaAlgos), ssh.KeyAlgoED25519),
		"127.0.0.1:22":      nil,
		"example.org:22":    {ssh.KeyAlgoED25519},
		"hashed.example:22": rsaAlgos,
		"h1.lab:22":         certAlgorithms,
		"unknown.host:22":   nil,
	} {
		if got := hk.Algorithms(addr); !slices.Equal(got, want) {
			t.Errorf("Algorithms(%q) = %v; want %v", addr, got, want)
		}
	}
}

func TestCertAuthorityHostKey(t *testing.T) {
	ca, hostKey := newKey(t), newKey(t)
	cert := &ssh.Certificate{
		Key:             hostKey.PublicKey(),
		CertType:        ssh.HostCert,
		KeyId:           "test host",
		ValidPrincipals: []string{"127.0.0.1"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTestServer(t, certSigner)
	host, port, _ := net.SplitHostPort(srv.Addr())
	caLine := fmt.Sprintf("@cert-authority [%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(ca.PublicKey()))

	cfg := srv.Config(t)
	cfg.HostKeys = writeKnownHosts(t, caLine)
	p := New(cfg)
	defer p.Close()
	err = p.Do(context.Background(), noop)
	if err != nil {
		t.Fatalf("Do from a host with a certificate signed by a known CA: %v", err)
	}

	// The CA key itself, offered as a plain host key, is not the host's key.
	// (knownhosts v0.59 alone accepts it.)
	err = cfg.HostKeys.Callback()(srv.Addr(), remoteAddrOf(srv.Addr()), ca.PublicKey())
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("CA key as plain host key: %v; want ErrHostKeyChanged", err)
	}
	// A plain key for a host known only through a CA is unknown, not changed.
	err = cfg.HostKeys.Callback()(srv.Addr(), remoteAddrOf(srv.Addr()), hostKey.PublicKey())
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("plain key for a CA-only host: %v; want ErrHostKeyUnknown", err)
	}
}

func TestKnownHostsMissingFile(t *testing.T) {
	if _, err := KnownHosts(t.TempDir() + "/nope"); err == nil {
		t.Fatal("KnownHosts on a missing file succeeded")
	}
}
