//go:build !linux

package e2e

import "syscall"

// sysProcAttr puts Caddy in its own process group, so it can be killed as a
// group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
