package localsvc

import "syscall"

// sysProcAttr puts the child in its own process group (so Stop can signal
// the whole group and a terminal's Ctrl-C reaches only the parent) and has the
// kernel SIGKILL it when the parent dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
