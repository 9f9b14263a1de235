package sshpool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultKeyFiles are the private keys OpenSSH tries by default, in its order
// of preference, relative to ~/.ssh.
var defaultKeyFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// DefaultAuth returns authentication the way OpenSSH does by default: the
// keys of the SSH agent at $SSH_AUTH_SOCK if it is set and answers, then the
// private key at keyPath if given, else those of ~/.ssh/id_ed25519, id_ecdsa
// and id_rsa that exist. Key files must be unencrypted (an encrypted one
// belongs in the agent): an encrypted default key is skipped with a warning,
// an encrypted or unreadable keyPath is an error. The closer closes the
// agent connection; close it after the pools using the methods. It is an
// error if no key at all is found.
//
// All keys go into a single public key method: x/crypto tries each method
// type once, so a second "publickey" method would never be tried.
func DefaultAuth(keyPath string, logger *zap.Logger) ([]ssh.AuthMethod, io.Closer, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	var closer io.Closer = nopCloser{}
	var agentSigners func() ([]ssh.Signer, error)
	var sources []string

	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			logger.Warn("ssh agent unreachable; not using it", zap.String("socket", sock), zap.Error(err))
		} else {
			closer = conn
			agentSigners = agent.NewClient(conn).Signers
			sources = append(sources, "agent")
		}
	}

	var fileSigners []ssh.Signer
	if keyPath != "" {
		s, err := loadKeyFile(keyPath)
		if err != nil {
			_ = closer.Close()
			return nil, nil, fmt.Errorf("load ssh key: %w", err)
		}
		fileSigners = append(fileSigners, s)
		sources = append(sources, keyPath)
	} else {
		home, err := os.UserHomeDir()
		if err != nil {
			logger.Warn("no home directory; not looking for default ssh keys", zap.Error(err))
		}
		for _, name := range defaultKeyFiles {
			if home == "" {
				break
			}
			path := filepath.Join(home, ".ssh", name)
			s, err := loadKeyFile(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				continue
			case err != nil:
				logger.Warn("skipping ssh key", zap.String("path", path), zap.Error(err))
				continue
			}
			fileSigners = append(fileSigners, s)
			sources = append(sources, path)
		}
	}

	if agentSigners == nil && len(fileSigners) == 0 {
		return nil, nil, errors.New("no ssh authentication available: no agent at $SSH_AUTH_SOCK and no usable key file (~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
	}
	logger.Info("ssh authentication", zap.Strings("sources", sources))

	method := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		var signers []ssh.Signer
		if agentSigners != nil {
			s, err := agentSigners()
			if err != nil {
				logger.Warn("ssh agent did not list its keys", zap.Error(err))
			}
			signers = append(signers, s...)
		}
		return append(signers, fileSigners...), nil
	})
	return []ssh.AuthMethod{method}, closer, nil
}

// loadKeyFile parses an unencrypted private key file.
func loadKeyFile(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("%s is encrypted; load it into ssh-agent instead", path)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
