package e2e

import "syscall"

// sysProcAttr puts Caddy in its own process group (so it can be killed as a
// group) and has the kernel kill it if the test process dies without running
// its cleanups (a test timeout, a crash).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
