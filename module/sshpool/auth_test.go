package sshpool

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// fakeHome points $HOME at a fresh directory with a .ssh directory and
// unsets $SSH_AUTH_SOCK.
func fakeHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	return home
}

func newPrivateKey(t *testing.T) (ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, sshPub
}

func writeKey(t *testing.T, path string, key crypto.PrivateKey, passphrase string) {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(key, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(key, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

// connectWith dials srv with auth and reports the error.
func connectWith(t *testing.T, srv *testServer, auth []ssh.AuthMethod) error {
	t.Helper()
	cfg := srv.Config(t)
	cfg.Auth = auth
	p := New(cfg)
	defer p.Close()
	return p.Do(context.Background(), noop)
}

func TestDefaultAuthDefaultKeyFiles(t *testing.T) {
	home := fakeHome(t)
	srv := startTestServer(t)
	good, goodPub := newPrivateKey(t)
	enc, _ := newPrivateKey(t)
	writeKey(t, filepath.Join(home, ".ssh", "id_ecdsa"), good, "") // any name OpenSSH tries
	writeKey(t, filepath.Join(home, ".ssh", "id_ed25519"), enc, "secret")
	srv.Authorize(goodPub)

	core, logs := observer.New(zap.DebugLevel)
	auth, closer, err := DefaultAuth("", zap.New(core))
	if err != nil {
		t.Fatalf("DefaultAuth: %v", err)
	}
	defer closer.Close()
	if len(auth) != 1 {
		t.Fatalf("got %d auth methods; want one public key method", len(auth))
	}
	skipped := logs.FilterMessage("skipping ssh key").All()
	if len(skipped) != 1 || !strings.Contains(skipped[0].ContextMap()["error"].(string), "encrypted") {
		t.Fatalf("want one warning about the encrypted key, got %v", logs.All())
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "secret") {
			t.Fatalf("log mentions the passphrase: %v", e)
		}
	}
	if err := connectWith(t, srv, auth); err != nil {
		t.Fatalf("connect with the default key file: %v", err)
	}
}

func TestDefaultAuthAgentThenFiles(t *testing.T) {
	home := fakeHome(t)
	srv := startTestServer(t)

	// The agent holds a key the server does not accept; the file key is
	// accepted. Both must be tried in one publickey method.
	agentKey, _ := newPrivateKey(t)
	fileKey, filePub := newPrivateKey(t)
	writeKey(t, filepath.Join(home, ".ssh", "id_ed25519"), fileKey, "")
	srv.Authorize(filePub)
	sock := startAgent(t, agentKey)
	t.Setenv("SSH_AUTH_SOCK", sock)

	auth, closer, err := DefaultAuth("", nil)
	if err != nil {
		t.Fatalf("DefaultAuth: %v", err)
	}
	if err := connectWith(t, srv, auth); err != nil {
		t.Fatalf("connect with agent + file: %v", err)
	}
	if err := closer.Close(); err != nil {
		t.Fatalf("close agent connection: %v", err)
	}
}

func TestDefaultAuthAgentOnly(t *testing.T) {
	fakeHome(t)
	srv := startTestServer(t)
	agentKey, agentPub := newPrivateKey(t)
	srv.Authorize(agentPub)
	t.Setenv("SSH_AUTH_SOCK", startAgent(t, agentKey))

	auth, closer, err := DefaultAuth("", nil)
	if err != nil {
		t.Fatalf("DefaultAuth: %v", err)
	}
	defer closer.Close()
	if err := connectWith(t, srv, auth); err != nil {
		t.Fatalf("connect with the agent's key: %v", err)
	}
}

func TestDefaultAuthExplicitKeyPath(t *testing.T) {
	home := fakeHome(t)
	srv := startTestServer(t)
	key, pub := newPrivateKey(t)
	srv.Authorize(pub)
	path := filepath.Join(home, "deploy_key")
	writeKey(t, path, key, "")

	auth, closer, err := DefaultAuth(path, nil)
	if err != nil {
		t.Fatalf("DefaultAuth(%s): %v", path, err)
	}
	defer closer.Close()
	if err := connectWith(t, srv, auth); err != nil {
		t.Fatalf("connect with the explicit key: %v", err)
	}

	encPath := filepath.Join(home, "encrypted_key")
	writeKey(t, encPath, key, "secret")
	if _, _, err := DefaultAuth(encPath, nil); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("DefaultAuth(encrypted key) = %v; want an error saying it is encrypted", err)
	}
	if _, _, err := DefaultAuth(filepath.Join(home, "missing"), nil); err == nil {
		t.Fatal("DefaultAuth(missing key) succeeded")
	}
}

func TestDefaultAuthNothingAvailable(t *testing.T) {
	fakeHome(t)
	t.Setenv("SSH_AUTH_SOCK", filepath.Join(t.TempDir(), "no-agent.sock"))
	if _, _, err := DefaultAuth("", nil); err == nil {
		t.Fatal("DefaultAuth with no agent and no keys succeeded")
	}
}

// startAgent serves an in-memory ssh-agent holding key on a unix socket.
func startAgent(t *testing.T, key crypto.PrivateKey) string {
	t.Helper()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return sock
}
