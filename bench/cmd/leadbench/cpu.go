package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The machine's cores are shared with other users, so every measured window
// also records how much CPU went elsewhere: machine-wide busy time from
// /proc/stat minus the CPU time of this run's own processes (the harness,
// its children and the servers it started, reaped ones included through the
// harness's cutime/cstime). A window where others used a noticeable share is
// flagged, because its figures are lower than on an idle machine.

// clockTick is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTick = 100

// cpuUse is the CPU spent during a window, in cores (1 = one core busy).
type cpuUse struct {
	Seconds float64 `json:"seconds"`
	Ours    float64 `json:"run_cores"`    // the harness, its children and servers
	Others  float64 `json:"others_cores"` // everything else on the machine
	Steal   float64 `json:"steal_cores"`  // taken by the hypervisor
}

type cpuSnapshot struct {
	at                time.Time
	busy, steal, ours float64 // clock ticks
}

func snapshotCPU() cpuSnapshot {
	s := cpuSnapshot{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		val := func(i int) float64 {
			if i < len(f) {
				v, _ := strconv.ParseFloat(f[i], 64)
				return v
			}
			return 0
		}
		// user + nice + system: irq and softirq are left out, as the
		// kernel does not charge loopback networking there to any process.
		s.busy, s.steal = val(1)+val(2)+val(3), val(8)
	}
	self := os.Getpid()
	s.ours = procTicks(self, true)
	for _, pid := range childPIDs(self) {
		s.ours += procTicks(pid, false)
	}
	return s
}

// procTicks returns utime+stime of pid, plus cutime+cstime (reaped children) when withReaped.
func procTicks(pid int, withReaped bool) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return 0
	}
	var t float64
	last := 12
	if withReaped {
		last = 14
	}
	for i := 11; i <= last; i++ {
		v, _ := strconv.ParseFloat(f[i], 64)
		t += v
	}
	return t
}

// childPIDs lists the live processes whose parent is ppid.
func childPIDs(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			if p, _ := strconv.Atoi(f[1]); p == ppid {
				out = append(out, pid)
			}
		}
	}
	return out
}

// since returns the CPU use from s to now.
func (s cpuSnapshot) since() cpuUse {
	now := snapshotCPU()
	sec := now.at.Sub(s.at).Seconds()
	if sec <= 0 {
		return cpuUse{}
	}
	u := cpuUse{Seconds: sec, Ours: (now.ours - s.ours) / clockTick / sec, Steal: (now.steal - s.steal) / clockTick / sec}
	u.Others = max(0, (now.busy-s.busy)/clockTick/sec-u.Ours)
	return u
}

// othersLimit is the share of a core other processes may use in a window
// before its figures are flagged.
const othersLimit = 0.25

// noteCPU records a window's CPU use under id and flags it when other
// processes took more than othersLimit cores.
func (h *harness) noteCPU(id string, u cpuUse) {
	if h.rep == nil {
		return
	}
	if h.rep.CPU == nil {
		h.rep.CPU = map[string]cpuUse{}
	}
	h.rep.CPU[id] = u
	if u.Others+u.Steal > othersLimit {
		msg := fmt.Sprintf("%s: other processes on the machine used %.2f cores (steal %.2f) during the window: its figures are lower than on an idle machine", id, u.Others, u.Steal)
		h.rep.Contended = append(h.rep.Contended, msg)
		h.logf("  WARNING: %s", msg)
	}
}

// runQueueWait is how long the threads of pid have waited, runnable, for a
// CPU so far (the kernel's schedstat, summed over threads alive now), in
// seconds. Its growth over a window divided by the window is the average
// number of the process's threads that wanted a CPU and had none.
func runQueueWait(pid int) float64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var ns float64
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, e.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			ns += v
		}
	}
	return ns / 1e9
}

// cpuPressure is the machine's "some" CPU pressure stall time so far
// (/proc/pressure/cpu): seconds in which at least one task waited for a CPU.
func cpuPressure() float64 {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	_, total, ok := strings.Cut(line, "total=")
	if !ok {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.TrimSpace(total), 64)
	return v / 1e6
}
