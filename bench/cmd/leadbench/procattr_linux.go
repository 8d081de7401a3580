package main

import "syscall"

// childProcAttr makes the kernel kill a child when leadbench dies, so an
// interrupted run never leaves a collector or processor behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
