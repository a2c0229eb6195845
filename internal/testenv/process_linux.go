package testenv

import "syscall"

// sysProcAttr puts the service in its own process group, so that it can be
// stopped as a whole, and has the kernel kill it should the test binary die
// without running its cleanups (a panic, or go test's -timeout). Pdeathsig
// follows the OS thread that started the child; Go only ends threads locked
// with runtime.LockOSThread, which these helpers never use.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
