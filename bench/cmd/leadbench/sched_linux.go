package main

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setIdlePolicy puts every thread of process pid under the SCHED_IDLE policy
// (idle true: it runs only on a core nothing else wants) or back under
// SCHED_NORMAL. The policy is per thread: the process's pid alone would move
// only its main thread, not the pools it already started.
func setIdlePolicy(pid int, idle bool) error {
	tids, err := threadIDs(pid)
	if err != nil {
		return err
	}
	policy := uint32(unix.SCHED_NORMAL)
	if idle {
		policy = unix.SCHED_IDLE
	}
	var first error
	for _, tid := range tids {
		err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
		if err != nil && !errors.Is(err, unix.ESRCH) && first == nil {
			first = err
		}
	}
	return first
}

// threadIDs lists the threads of process pid (a thread may end meanwhile:
// calls on it fail with ESRCH).
func threadIDs(pid int) ([]int, error) {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(tasks))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// canLeaveIdle reports whether this process may move threads from SCHED_IDLE
// back to SCHED_NORMAL at nice 0: with CAP_SYS_NICE (root), or where
// RLIMIT_NICE allows nice 0 (a limit of 20 or more).
func canLeaveIdle() bool {
	if os.Geteuid() == 0 {
		return true
	}
	var lim unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_NICE, &lim) == nil && lim.Cur >= 20
}
