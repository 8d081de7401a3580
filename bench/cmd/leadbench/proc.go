package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leadstream/leadstream/internal/localsvc"
)

// child is a running leadbench child process (see child.go).
type child struct {
	role    string
	cfg     childConfig
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error

	rssMu   sync.Mutex
	peakRSS int64 // bytes, highest VmRSS sampled
	samples []rssSample
	stopRSS chan struct{}
	rssDone chan struct{}

	stopOnce sync.Once
	stopErr  error
}

type rssSample struct {
	At  time.Duration `json:"at_seconds"`
	RSS int64         `json:"rss_bytes"`
}

// startChild starts a child with a fresh HTTP and admin port on 127.0.0.1
// and waits until it prints READY. A child that exits or stays silent for
// 60 s is an error carrying the tail of its log.
func startChild(ctx context.Context, dir string, c childConfig) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for _, p := range []*string{&c.httpAddr, &c.adminAddr} {
		port, err := localsvc.FreePort()
		if err != nil {
			return nil, err
		}
		*p = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	args := c.args()
	if c.exe != "" {
		// A leadstream binary serves /metrics on its HTTP port.
		exe, args, c.adminAddr = c.exe, c.externalArgs(), c.httpAddr
	}
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%d.log", c.role, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	if c.exe != "" {
		cmd.Env = append(os.Environ(), benchCollectorEnv...)
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = childProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s child: %w", c.role, err)
	}
	ch := &child{role: c.role, cfg: c, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	ready := make(chan struct{})
	if c.exe != "" {
		go func() {
			for {
				if _, err := httpGet(ctx, "http://"+c.httpAddr+"/readyz"); err == nil {
					close(ready)
					return
				}
				select {
				case <-ch.done:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && c.exe == "" && strings.TrimSpace(sc.Text()) == "READY" {
				close(ready)
				signalled = true
			}
		}
	}()
	go func() {
		ch.waitErr = cmd.Wait()
		logf.Close()
		close(ch.done)
	}()
	select {
	case <-ready:
		return ch, nil
	case <-ch.done:
		return nil, fmt.Errorf("%s child exited before it was ready (%v)%s", c.role, ch.waitErr, tail(logPath))
	case <-time.After(60 * time.Second):
		ch.stop()
		return nil, fmt.Errorf("%s child not ready within 60s%s", c.role, tail(logPath))
	case <-ctx.Done():
		ch.stop()
		return nil, ctx.Err()
	}
}

// failed reports an error when the child exited on its own.
func (c *child) failed() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s child exited unexpectedly (%v)%s", c.role, c.waitErr, tail(c.logPath))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to 20 s, then kills. It returns an error when
// the child had already died or did not exit cleanly. It is idempotent.
func (c *child) stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.terminate() })
	return c.stopErr
}

func (c *child) terminate() error {
	c.stopSampling()
	if err := c.failed(); err != nil {
		return err
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s child did not stop within 20s of SIGTERM%s", c.role, tail(c.logPath))
	}
	if c.waitErr != nil {
		return fmt.Errorf("%s child: %v%s", c.role, c.waitErr, tail(c.logPath))
	}
	return nil
}

// rss reads the child's resident set size from /proc.
func (c *child) rss() (int64, error) { return procStatusBytes(c.cmd.Process.Pid, "VmRSS:") }

// hwm reads the child's peak resident set size (VmHWM) from /proc.
func (c *child) hwm() (int64, error) { return procStatusBytes(c.cmd.Process.Pid, "VmHWM:") }

func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("%s not found in /proc/%d/status", field, pid)
}

// sampleRSS records VmRSS every interval until stopSampling.
func (c *child) sampleRSS(interval time.Duration) {
	c.stopRSS, c.rssDone = make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(c.rssDone)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v, err := c.rss(); err == nil {
				c.rssMu.Lock()
				c.peakRSS = max(c.peakRSS, v)
				c.samples = append(c.samples, rssSample{At: time.Since(start), RSS: v})
				c.rssMu.Unlock()
			}
			select {
			case <-c.stopRSS:
				return
			case <-c.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (c *child) stopSampling() {
	if c.stopRSS != nil {
		close(c.stopRSS)
		<-c.rssDone
		c.stopRSS = nil
	}
}

func (c *child) peak() int64 {
	c.rssMu.Lock()
	defer c.rssMu.Unlock()
	return c.peakRSS
}

// metrics scrapes the child's /metrics.
func (c *child) metrics(ctx context.Context) (promText, error) {
	b, err := httpGet(ctx, "http://"+c.cfg.adminAddr+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping %s metrics: %w", c.role, err)
	}
	return parseProm(b), nil
}

// profile saves a CPU profile over d and an allocation profile (delta over
// the same d) of the child under dir as NAME.cpu.pprof and NAME.allocs.pprof,
// and with trace an execution trace of the first 3 s as NAME.trace.
// It runs in the background; wait on the returned channel for the error.
func (c *child) profile(ctx context.Context, dir, name string, d time.Duration, trace bool) <-chan error {
	out := make(chan error, 1)
	if dir == "" {
		out <- nil
		return out
	}
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	go func() {
		var wg sync.WaitGroup
		profiles := []struct{ url, file string }{
			{"/debug/pprof/profile?seconds=" + secs, name + ".cpu.pprof"},
			{"/debug/pprof/allocs?seconds=" + secs, name + ".allocs.pprof"},
		}
		if trace {
			profiles = append(profiles, struct{ url, file string }{"/debug/pprof/trace?seconds=3", name + ".trace"})
		}
		errs := make([]error, len(profiles))
		for i, p := range profiles {
			wg.Go(func() {
				b, err := httpGet(ctx, "http://"+c.cfg.adminAddr+p.url)
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, p.file), b, 0o644)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		out <- errors.Join(errs...)
	}()
	return out
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, res.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return "\n--- tail of " + path + " ---\n" + strings.Join(lines, "\n")
}

// promText is a scraped Prometheus text exposition: series (name{labels}) -> value.
type promText map[string]float64

func parseProm(b []byte) promText {
	out := promText{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds every series of metric name whose labels include all of labels
// (each `key="value"`).
func (p promText) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range p {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// histBucket is one cumulative bucket of a Prometheus histogram.
type histBucket struct {
	le    float64
	count float64
}

// hist returns the buckets of histogram name (series whose labels include
// all of labels, summed) as observed between two scrapes, sorted by bound.
func hist(before, after promText, name string, labels ...string) []histBucket {
	sums := map[float64]float64{}
	for series, v := range after {
		n, rest, _ := strings.Cut(series, "{")
		if n != name+"_bucket" {
			continue
		}
		_, le, ok := strings.Cut(rest, `le="`)
		if !ok {
			continue
		}
		le, _, _ = strings.Cut(le, `"`)
		bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		ok = true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			sums[bound] += v - before[series]
		}
	}
	out := make([]histBucket, 0, len(sums))
	for le, c := range sums {
		out = append(out, histBucket{le, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out
}

// histQuantile returns the upper bound of the bucket holding the q-quantile
// (+Inf when it is in the last bucket; 0 without observations).
func histQuantile(b []histBucket, q float64) float64 {
	if len(b) == 0 || b[len(b)-1].count == 0 {
		return 0
	}
	rank := q * b[len(b)-1].count
	for _, x := range b {
		if x.count >= rank {
			return x.le
		}
	}
	return b[len(b)-1].le
}

// histOver returns the share of observations above bound (bound should be
// one of the bucket bounds; otherwise the next lower bound is used).
func histOver(b []histBucket, bound float64) float64 {
	if len(b) == 0 || b[len(b)-1].count == 0 {
		return 0
	}
	var below float64
	for _, x := range b {
		if x.le <= bound*(1+1e-9) {
			below = x.count
		}
	}
	return 1 - below/b[len(b)-1].count
}
