//go:build !linux

package devhost

import (
	"os/exec"
	"syscall"
)

// tieToParent: only Linux has a parent-death signal; elsewhere the handler is stopped by
// devhost's shutdown and may outlive a devhost killed by force.
func tieToParent(cmd *exec.Cmd) {}

// signalGroup signals the process itself.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}
