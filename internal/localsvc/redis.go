package localsvc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// StartRedis starts redis-server on 127.0.0.1:port (port 0 picks a free
// port) with its data under dir, and waits until it answers PING.
//
// The defaults suit tests (no persistence, no protected mode):
//
//	--bind 127.0.0.1 --port P --dir DIR --save "" --appendonly no --protected-mode no
//
// args are appended and so override them, e.g. "--appendonly", "yes" for dev
// mode or "--cluster-enabled", "yes". Output goes to dir/redis.log.
func StartRedis(ctx context.Context, dir string, port int, args ...string) (*Server, error) {
	bin, err := lookPath("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	return withAutoPort(port == 0, func() (*Server, error) {
		p, err := pickPorts(port)
		if err != nil {
			return nil, err
		}
		return startRedis(ctx, bin, dir, p[0], args)
	})
}

func startRedis(ctx context.Context, bin, dir string, port int, extra []string) (*Server, error) {
	args := append([]string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--dir", dir,
		"--daemonize", "no",
		"--logfile", "",
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
	}, extra...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s, err := startProcess("redis", dir, addr, bin, args)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, func(ctx context.Context) error {
		reply, err := redisCommand(ctx, addr, "PING")
		if err == nil && reply != "PONG" {
			err = fmt.Errorf("PING replied %q", reply)
		}
		return err
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Cluster is a running Redis Cluster of masters without replicas.
type Cluster struct {
	Addrs   []string // host:port of every master
	Servers []*Server

	nodeArgs [][]string // each node's redis-server arguments beside the defaults (Restart)
}

// Stop stops every node; it is idempotent.
func (c *Cluster) Stop() error {
	var errs []error
	for _, s := range c.Servers {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// StartRedisCluster starts masters (at least 3) cluster-enabled redis-server
// nodes on free ports, each under dir/node-N, joins them with
// `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok.
func StartRedisCluster(ctx context.Context, dir string, masters int) (*Cluster, error) {
	return StartRedisClusterWith(ctx, dir, masters)
}

// StartRedisClusterWith is StartRedisCluster with args appended to every
// node's redis-server arguments (e.g. "--cluster-require-full-coverage",
// "no"), for tests that take nodes away (Cluster.StopNode, Cluster.Restart).
func StartRedisClusterWith(ctx context.Context, dir string, masters int, args ...string) (*Cluster, error) {
	if masters < 3 {
		return nil, fmt.Errorf("localsvc: redis cluster needs at least 3 masters, got %d", masters)
	}
	bin, err := lookPath("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	cli, err := lookPath("redis-cli", "redis-tools")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	c := &Cluster{}
	fail := func(err error) (*Cluster, error) {
		_ = c.Stop()
		return nil, err
	}
	for i := range masters {
		nodeDir, err := prepareDir(filepath.Join(dir, fmt.Sprintf("node-%d", i)))
		if err != nil {
			return fail(err)
		}
		s, err := withAutoPort(true, func() (*Server, error) {
			p, err := freePorts(2) // client port, cluster bus port
			if err != nil {
				return nil, err
			}
			nargs := append([]string{
				"--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(p[1]),
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "5000",
			}, args...)
			s, err := startRedis(ctx, bin, nodeDir, p[0], nargs)
			if err == nil {
				c.nodeArgs = append(c.nodeArgs, nargs)
			}
			return s, err
		})
		if err != nil {
			return fail(fmt.Errorf("localsvc: redis cluster node %d: %w", i, err))
		}
		c.Servers = append(c.Servers, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}

	create := append([]string{"--cluster", "create"}, c.Addrs...)
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, create...)
	cmd.SysProcAttr = sysProcAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("localsvc: redis-cli --cluster create: %w\n%s", err, out))
	}

	for _, s := range c.Servers {
		if err := s.waitReady(ctx, func(ctx context.Context) error {
			info, err := redisCommand(ctx, s.Addr, "CLUSTER INFO")
			if err == nil && !strings.Contains(info, "cluster_state:ok") {
				err = errors.New("cluster_state is not ok yet")
			}
			return err
		}); err != nil {
			return fail(fmt.Errorf("localsvc: redis cluster: %w", err))
		}
	}
	return c, nil
}

// StopNode stops node i (SIGTERM), as Server.Stop does.
func (c *Cluster) StopNode(i int) error { return c.Servers[i].Stop() }

// Restart starts node i again after StopNode, on its ports and with its
// directory (its nodes.conf keeps its identity and slots), and waits until it
// answers PING; the cluster may take a moment longer to see it back.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	bin, err := lookPath("redis-server", "redis-server")
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(c.Addrs[i])
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	s, err := startRedis(ctx, bin, c.Servers[i].Dir, p, c.nodeArgs[i])
	if err != nil {
		return fmt.Errorf("localsvc: restarting redis cluster node %d: %w", i, err)
	}
	c.Servers[i] = s
	return nil
}

// redisCommand sends an inline command over a fresh connection and returns
// the reply of a simple-string or bulk-string response. Error replies (such
// as -LOADING) are returned as errors.
func redisCommand(ctx context.Context, addr, command string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, command+"\r\n"); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk reply %q", line)
		}
		buf := make([]byte, n+2) // payload + CRLF
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("%s replied %q", command, line)
	}
}
