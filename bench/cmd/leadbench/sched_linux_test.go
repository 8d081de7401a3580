package main

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Moving a process's threads to SCHED_IDLE and back reaches every thread,
// not only the main one.
func TestIdlePolicyEveryThread(t *testing.T) {
	pid := os.Getpid()
	if err := setIdlePolicy(pid, true); err != nil {
		t.Fatalf("to SCHED_IDLE: %v", err)
	}
	idle := threadPolicies(t, pid)
	back := canLeaveIdle()
	if err := setIdlePolicy(pid, false); err != nil {
		if back {
			t.Fatalf("back to SCHED_NORMAL: %v", err)
		}
		t.Logf("back to SCHED_NORMAL refused without CAP_SYS_NICE, as canLeaveIdle said (%v): the way there checked only", err)
	} else if !back {
		back = true // CAP_SYS_NICE without root: canLeaveIdle is conservative
	}
	if len(idle) < 2 {
		t.Fatalf("%d threads: a Go test process has several", len(idle))
	}
	for tid, p := range idle {
		if p != unix.SCHED_IDLE {
			t.Errorf("thread %d: policy %d after moving to SCHED_IDLE", tid, p)
		}
	}
	for tid, p := range threadPolicies(t, pid) {
		if back && p != unix.SCHED_NORMAL {
			t.Errorf("thread %d: policy %d after moving back", tid, p)
		}
	}
}

// threadPolicies returns the scheduling policy of each thread of pid.
func threadPolicies(t *testing.T, pid int) map[int]uint32 {
	t.Helper()
	tids, err := threadIDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint32{}
	for _, tid := range tids {
		a, err := unix.SchedGetAttr(tid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[tid] = a.Policy
	}
	return out
}
