package hosts

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
)

func TestDescribeDockerError(t *testing.T) {
	// What OpenSSH 9.2 answers both with AllowStreamLocalForwarding no and
	// when nothing listens at the path.
	refused := fmt.Errorf("ping docker: open ssh channel to /run/user/1000/docker.sock: %w",
		&ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "open failed"})
	prohibited := &ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "open failed"}
	for _, tc := range []struct {
		err    error
		socket string
		want   []string
	}{
		{refused, "/run/user/1000/docker.sock", []string{"sshd refused", "AllowStreamLocalForwarding yes", "nothing listens at /run/user/1000/docker.sock (check docker_socket)"}},
		{prohibited, "", []string{"socket /var/run/docker.sock", "AllowStreamLocalForwarding"}},
		{fmt.Errorf("x: %w", docker.ErrNoCommonVersion), "", []string{"no common Docker Engine API version"}},
		{fmt.Errorf("read answer: EOF"), "", []string{"docker daemon not answering: read answer: EOF"}},
	} {
		got := describeDockerError(tc.err, tc.socket)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("describeDockerError(%v) = %q; want it to say %q", tc.err, got, w)
			}
		}
	}
}

// A failed check marked Warn (isolation under `isolation warn`) is
// reported but keeps the host in rotation; unmarked, it takes it out.
func TestWarnChecksKeepTheHostInRotation(t *testing.T) {
	checks := []Check{{Name: "ssh", OK: true}, {Name: "docker", OK: true}, {Name: "image", OK: true},
		{Name: "isolation", OK: false, Detail: "NOT isolated", Warn: true}}
	if ok, reason := summarize(checks); !ok || reason != "" {
		t.Errorf("warn: ok=%v reason=%q", ok, reason)
	}
	checks[3].Warn = false
	if ok, reason := summarize(checks); ok || reason != "isolation check failed: NOT isolated" {
		t.Errorf("enforce: ok=%v reason=%q", ok, reason)
	}
}
