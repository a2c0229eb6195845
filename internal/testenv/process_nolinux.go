//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr puts the service in its own process group, so that it can be
// stopped as a whole.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
