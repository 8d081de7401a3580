//go:build !linux

package main

import "errors"

func setIdlePolicy(pid int, idle bool) error {
	return errors.New("the SCHED_IDLE policy exists on Linux only")
}

func canLeaveIdle() bool { return false }
