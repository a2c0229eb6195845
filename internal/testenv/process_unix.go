//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

// terminate sends SIGTERM to the process group of cmd. The service runs in
// its own group (Setpgid), so helpers it forks go too.
func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// kill sends SIGKILL to the process group of cmd.
func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
