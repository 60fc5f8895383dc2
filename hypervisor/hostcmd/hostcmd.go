// Package hostcmd ties the host tools the agent runs (qemu-img, mkfs) to
// the agent's life: a tool still running when the agent dies, even by
// SIGKILL, is killed with it, and leaves nothing half written behind a
// restart that would start the same work again.
package hostcmd

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Tie makes cmd, not yet started, get SIGKILL when the thread that starts
// it ends. Start and wait for it with Hold held, so that the thread is the
// goroutine's until the command has exited and ends only with the process.
func Tie(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// Hold keeps the calling goroutine on its OS thread until release is
// called: Linux sends a child its death signal when the thread that
// started it ends, and a thread another goroutine took could end early.
func Hold() (release func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// Tied reports whether cmd is tied to the agent's life.
func Tied(cmd *exec.Cmd) bool {
	return cmd.SysProcAttr != nil && cmd.SysProcAttr.Pdeathsig == syscall.SIGKILL
}
