package localsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ClickHouseCluster is a ClickHouse cluster of local clickhouse-server
// processes coordinated by a local ZooKeeper: the setting of leadstream's
// clickhouse.cluster mode (replicated local tables, Distributed tables over
// them, DDL ON CLUSTER).
type ClickHouseCluster struct {
	Name      string // the cluster's name in every node's remote_servers
	ZooKeeper *Server
	Nodes     []*ClickHouseNode // shard by shard, replicas in order
}

// The ClickHouse cluster the tests run on (cmd/withsvc -cluster, package
// testsvc): two shards, so that the sharding of each table, FINAL per shard
// and joins between Distributed tables are exercised; the first shard has
// two replicas, so that replication and the loss of a replica are too.
const (
	TestClusterName = "lstest"
)

// TestClusterReplicas is the test cluster's replicas per shard.
var TestClusterReplicas = []int{2, 1}

// ClusterProfile is what the default user profile of every node holds, as
// leadstream's cluster mode requires of the profile of its users (README
// "ClickHouse cluster"): subqueries over Distributed tables inside queries
// over Distributed tables run GLOBAL.
const ClusterProfile = "<distributed_product_mode>global</distributed_product_mode>"

// ClickHouseNode is one clickhouse-server of a ClickHouseCluster. It can be
// stopped and started again with the same data and ports.
type ClickHouseNode struct {
	Shard, Replica int    // 1-based; the macros {shard} and {replica} are "1", "r1", …
	Addr, HTTPAddr string // native and HTTP host:port

	bin, dir, config         string
	tcpPort, httpPort, iPort int
	mu                       sync.Mutex
	server                   *Server // nil while stopped
}

// StartClickHouseCluster starts ZooKeeper and one clickhouse-server per
// replica, under dir/zookeeper and dir/node-S-R, on free loopback ports.
// replicas gives each shard's replica count: (2, 1) is two shards, the
// first with two replicas. Every node knows the cluster as name, with
// internal_replication (a Distributed table writes each shard's rows to one
// replica and the replicated table copies them), its {shard} and {replica}
// macros, and the distributed DDL queue. It returns once every node
// answers; Stop stops them all.
func StartClickHouseCluster(ctx context.Context, dir, name string, replicas ...int) (*ClickHouseCluster, error) {
	if len(replicas) == 0 {
		return nil, errors.New("localsvc: a clickhouse cluster needs at least one shard")
	}
	bin, err := lookPath("clickhouse-server", "clickhouse-server")
	if err != nil {
		return nil, err
	}
	zk, err := StartZooKeeper(ctx, filepath.Join(dir, "zookeeper"), 0)
	if err != nil {
		return nil, err
	}
	c := &ClickHouseCluster{Name: name, ZooKeeper: zk}
	for s, n := range replicas {
		for r := range n {
			nd, err := prepareDir(filepath.Join(dir, fmt.Sprintf("node-%d-%d", s+1, r+1)))
			if err != nil {
				_ = zk.Stop()
				return nil, err
			}
			c.Nodes = append(c.Nodes, &ClickHouseNode{Shard: s + 1, Replica: r + 1, bin: bin, dir: nd})
		}
	}
	// Ports are chosen free, then bound by the servers a second later: a
	// node that lost one to another process exits, and the whole cluster
	// starts again on fresh ports (every node's config names them all).
	for attempt := 1; ; attempt++ {
		err := c.start(ctx)
		if err == nil {
			return c, nil
		}
		if attempt == autoPortAttempts || !errors.Is(err, errExited) {
			_ = c.Stop()
			return nil, err
		}
	}
}

// start chooses the nodes' ports, writes their configs and starts them all
// (in parallel: each takes about a second); on failure it stops those that
// started.
func (c *ClickHouseCluster) start(ctx context.Context) error {
	ports, err := freePorts(3 * len(c.Nodes))
	if err != nil {
		return err
	}
	for i, n := range c.Nodes {
		n.tcpPort, n.httpPort, n.iPort = ports[3*i], ports[3*i+1], ports[3*i+2]
		n.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(n.tcpPort))
		n.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(n.httpPort))
	}
	for _, n := range c.Nodes {
		n.config = c.nodeConfig(n)
	}
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.stopNodes()
		return err
	}
	return nil
}

// nodeConfig is the cluster part of n's config.xml.
func (c *ClickHouseCluster) nodeConfig(n *ClickHouseNode) string {
	var shards strings.Builder
	for s := 1; ; s++ {
		var reps []string
		for _, o := range c.Nodes {
			if o.Shard == s {
				reps = append(reps, fmt.Sprintf("<replica><host>127.0.0.1</host><port>%d</port></replica>", o.tcpPort))
			}
		}
		if len(reps) == 0 {
			break
		}
		fmt.Fprintf(&shards, "      <shard><internal_replication>true</internal_replication>%s</shard>\n", strings.Join(reps, ""))
	}
	zkHost, zkPort, _ := net.SplitHostPort(c.ZooKeeper.Addr)
	// A short ZooKeeper session: a killed node's replicas are seen as gone,
	// and it may take them up again, after 5 s rather than 30.
	return fmt.Sprintf(`  <interserver_http_port>%d</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <zookeeper>
    <node><host>%s</host><port>%s</port></node>
    <session_timeout_ms>5000</session_timeout_ms>
  </zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <macros><shard>%d</shard><replica>r%d</replica></macros>
  <remote_servers>
    <%s>
%s    </%[6]s>
  </remote_servers>
`, n.iPort, xmlEscape(zkHost), zkPort, n.Shard, n.Replica, c.Name, shards.String())
}

// Addrs returns every node's native host:port.
func (c *ClickHouseCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// LogTail returns the tail of every node's and ZooKeeper's logs, for a test
// to show when the cluster fails it (a node that crashed or lost its
// ZooKeeper session says so there, not in the client's error).
func (c *ClickHouseCluster) LogTail() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n=== node shard %d replica %d (%s) ===", n.Shard, n.Replica, n.Addr)
		b.WriteString(tailOf(filepath.Join(n.dir, "clickhouse.log"), filepath.Join(n.dir, "err.log")))
	}
	b.WriteString("\n=== zookeeper ===")
	b.WriteString(c.ZooKeeper.logTail())
	return b.String()
}

// Stop stops every node, then ZooKeeper; it is idempotent.
func (c *ClickHouseCluster) Stop() error {
	return errors.Join(c.stopNodes(), c.ZooKeeper.Stop())
}

// stopNodes stops every node, in parallel.
func (c *ClickHouseCluster) stopNodes() error {
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Start starts the node (again, after Stop) with its data and ports, and
// returns once it answers. Starting a running node does nothing.
func (n *ClickHouseNode) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.server != nil {
		select {
		case <-n.server.done:
		default:
			return nil
		}
	}
	s, err := startClickHouse(ctx, n.bin, n.dir, clickHouseConfig{tcpPort: n.tcpPort, httpPort: n.httpPort, extra: n.config, profile: ClusterProfile})
	if err != nil {
		return fmt.Errorf("localsvc: clickhouse node shard %d replica %d: %w", n.Shard, n.Replica, err)
	}
	n.server = s
	return nil
}

// Stop stops the node (SIGTERM, then SIGKILL after 10 s); its data stays.
func (n *ClickHouseNode) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.server == nil {
		return nil
	}
	err := n.server.Stop()
	n.server = nil
	return err
}

// Pid is the node's process id, 0 while it is stopped (benchmarks read its
// CPU time from /proc).
func (n *ClickHouseNode) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.server == nil {
		return 0
	}
	return n.server.cmd.Process.Pid
}
