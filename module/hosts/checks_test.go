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
