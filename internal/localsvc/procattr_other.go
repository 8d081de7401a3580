//go:build unix && !linux

package localsvc

import "syscall"

// sysProcAttr puts the child in its own process group so Stop can signal the
// whole group. Outside Linux there is no Pdeathsig: children outlive a parent
// that dies without calling Stop.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
