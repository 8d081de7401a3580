// Package localsvc starts and stops local servers as child processes.
//
// It is used by `leadstream dev` (the embedded default mode) and by the test
// runner (cmd/withsvc, package testsvc) to run Debian's redis-server and
// clickhouse-server on loopback, with all data, configuration and logs under
// a caller-supplied directory.
//
// Children are started in their own process group and, on Linux, are killed
// by the kernel when the parent dies (Pdeathsig), so a crashed parent does
// not leave servers behind. Every Start function waits until the server
// answers (bounded by the caller's context and a 30 s timeout) and, on
// failure, includes the tail of the server's logs in the error.
package localsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables through which the test runner (cmd/withsvc) hands the
// addresses of the services it started to tests (see package testsvc).
const (
	EnvRedisAddr         = "LEADSTREAM_TEST_REDIS_ADDR"          // host:port
	EnvRedisClusterAddrs = "LEADSTREAM_TEST_REDIS_CLUSTER_ADDRS" // comma-separated host:port list
	EnvClickHouseAddr    = "LEADSTREAM_TEST_CLICKHOUSE_ADDR"     // native-protocol host:port
	// EnvClickHouseCluster describes a ClickHouse cluster (StartClickHouseCluster)
	// as NAME@HOST:PORT,HOST:PORT,…: its name and every node's native address.
	EnvClickHouseCluster = "LEADSTREAM_TEST_CLICKHOUSE_CLUSTER"
)

// ErrNotInstalled is returned (wrapped, naming the binary and the apt-get
// command that installs it) when a required binary is not in PATH.
var ErrNotInstalled = errors.New("localsvc: binary not installed")

const (
	// startTimeout bounds how long a Start function waits for readiness.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// autoPortAttempts is how often a server on an automatically chosen
	// port is retried when it dies during start-up (e.g. the port was taken
	// between FreePort and the server binding it).
	autoPortAttempts = 3
)

// errExited marks a server that exited before becoming ready.
var errExited = errors.New("exited before becoming ready")

// Server is a running local server process.
type Server struct {
	Name string // e.g. "redis", "clickhouse"
	Addr string // host:port of the main (Redis / ClickHouse native) port
	// HTTPAddr is the host:port of ClickHouse's HTTP interface; empty for
	// Redis.
	HTTPAddr string
	Dir      string // directory holding the server's data, config and logs

	cmd     *exec.Cmd
	logs    []string // log files whose tail is shown in errors
	logFile *os.File // the child's stdout/stderr
	done    chan struct{}
	waitErr error // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Pid is the server's process id (benchmarks read its CPU time from /proc).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM to the server's process group, waits up to 10 s for it
// to exit, then sends SIGKILL. It is idempotent and safe for concurrent use;
// every call returns the result of the first.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		defer s.logFile.Close()
		select {
		case <-s.done:
			return // already exited; nothing to stop
		default:
		}
		if err := signalGroup(s.cmd, syscall.SIGTERM); err != nil {
			s.stopErr = fmt.Errorf("localsvc: stop %s: %w", s.Name, err)
		}
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			_ = signalGroup(s.cmd, syscall.SIGKILL)
			<-s.done
			s.stopErr = fmt.Errorf("localsvc: stop %s (pid %d): did not exit within %v of SIGTERM; killed",
				s.Name, s.cmd.Process.Pid, stopTimeout)
		}
	})
	return s.stopErr
}

// signalGroup signals the process group led by cmd's process, falling back
// to the process itself.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	pid := cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free at the time of the
// call.
func FreePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free at the
// time of the call.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("localsvc: find free port: %w", err)
		}
		defer l.Close() // held until all ports are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lookPath resolves bin in PATH or returns an ErrNotInstalled error that names
// the Debian package providing it.
func lookPath(bin, pkg string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found in PATH; install it with `sudo apt-get install -y %s`",
			ErrNotInstalled, bin, pkg)
	}
	return p, nil
}

// startProcess starts bin with args in dir, with stdout and stderr going to
// dir/<name>.log, and returns the (not yet ready) server.
func startProcess(name, dir, addr, bin string, args []string, extraLogs ...string) (*Server, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("localsvc: start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("localsvc: start %s: %w", name, err)
	}
	s := &Server{
		Name: name, Addr: addr, Dir: dir,
		cmd: cmd, logFile: f, done: make(chan struct{}),
		logs: append([]string{logPath}, extraLogs...),
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// waitReady polls ready until it succeeds, the server exits, or ctx (limited
// to startTimeout) ends. On failure it stops the server and returns an error
// carrying the tail of the server's logs.
func (s *Server) waitReady(ctx context.Context, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(ctx); last == nil {
			last = s.ownPorts()
			select {
			case <-s.done: // it answered, yet our server is gone: another one on its port
			default:
				if last == nil {
					return nil
				}
			}
		}
		select {
		case <-tick.C:
			continue
		case <-s.done:
			last = fmt.Errorf("%w (%v)", errExited, s.waitErr)
		case <-ctx.Done():
			last = fmt.Errorf("not ready: %w (last check: %v)", ctx.Err(), last)
		}
		_ = s.Stop()
		tail := s.logTail()
		if errors.Is(ctx.Err(), context.Canceled) {
			tail = "" // the caller gave up; the server did nothing wrong
		}
		return fmt.Errorf("localsvc: %s on %s: %w%s", s.Name, s.Addr, last, tail)
	}
}

// ownPorts checks that the server's own process listens on the ports the
// probe reached (Addr, HTTPAddr): until it does, whatever answered is
// another process that took a port between its choice and our bind, and ours
// will exit (withAutoPort then tries fresh ports) or never be ready.
func (s *Server) ownPorts() error {
	for _, a := range []string{s.Addr, s.HTTPAddr} {
		if p := portOf(a); p != 0 && !listensOn(s.cmd.Process.Pid, p) {
			return fmt.Errorf("port %d answers, but not from %s (pid %d)", p, s.Name, s.cmd.Process.Pid)
		}
	}
	return nil
}

// logTail returns the last lines of the server's log files, formatted for
// appending to an error message.
func (s *Server) logTail() string { return tailOf(s.logs...) }

// tailOf returns the last lines of each of the files, formatted for
// appending to an error message.
func tailOf(files ...string) string {
	const maxBytes, maxLines = 4096, 20
	var b strings.Builder
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > maxBytes {
			data = data[len(data)-maxBytes:]
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > maxLines {
			lines = lines[len(lines)-maxLines:]
		}
		fmt.Fprintf(&b, "\n--- tail of %s ---\n%s", p, strings.Join(lines, "\n"))
	}
	return b.String()
}

// withAutoPort runs start, retrying with freshly chosen ports when auto is
// set and the server died during start-up (most likely a port race).
func withAutoPort[T any](auto bool, start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || !auto || attempt == autoPortAttempts || !errors.Is(err, errExited) {
			return v, err
		}
	}
}

// prepareDir creates dir and returns its absolute path.
func prepareDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o755)
	}
	if err != nil {
		return "", fmt.Errorf("localsvc: data dir: %w", err)
	}
	return abs, nil
}

// pickPorts replaces the zero entries of ports with distinct free ports.
// A port given is checked free: a server that cannot bind it exits, and its
// readiness probe would otherwise succeed against whatever listens there.
func pickPorts(ports ...int) ([]int, error) {
	free, err := freePorts(len(ports))
	if err != nil {
		return nil, err
	}
	out := make([]int, len(ports))
	for i, p := range ports {
		if out[i] = p; p == 0 {
			out[i] = free[i]
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return nil, fmt.Errorf("%w: 127.0.0.1:%d (%v)", ErrPortInUse, p, err)
		}
		ln.Close()
	}
	return out, nil
}

// ErrPortInUse means a port asked for is taken, by another server maybe.
var ErrPortInUse = errors.New("localsvc: port in use")
