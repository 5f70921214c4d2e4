package devhost

import (
	"os/exec"
	"syscall"
)

// tieToParent makes cmd's process die with devhost and lead a process group of its own.
//
// Pdeathsig: the kernel sends SIGKILL to the handler when devhost dies, however it dies (a
// SIGKILL, a crash) — no cleanup code of ours has to run. (The signal follows the thread that
// started the child; Go starts children from threads that live as long as the process unless a
// goroutine locked to one exits, which devhost never does.)
//
// Setpgid: a handler started through a wrapper (`go run`, a shell script) is a grandchild the
// death signal does not reach; stopping and killing signal the whole group, so the wrapper's
// children go too.
func tieToParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// signalGroup sends sig to the process group cmd leads (tieToParent), falling back to the
// process itself.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process == nil {
		return
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		cmd.Process.Signal(sig)
	}
}
