package localsvc

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// zooKeeperJar is where Debian's zookeeper package (libzookeeper-java) puts
// the server; its manifest's Class-Path names every library it needs but a
// logging backend: slf4jSimple (libslf4j-java, which it depends on) writes
// its warnings to the server's log file.
const (
	zooKeeperJar = "/usr/share/java/zookeeper.jar"
	slf4jSimple  = "/usr/share/java/slf4j-simple.jar"
)

// StartZooKeeper starts a standalone ZooKeeper (Debian's zookeeper package,
// run by java) on 127.0.0.1:port (0 picks a free port) with its data,
// config and output under dir, and waits until it serves clients.
// ClickHouse's replicated tables and ON CLUSTER DDL coordinate
// through it.
func StartZooKeeper(ctx context.Context, dir string, port int) (*Server, error) {
	java, err := lookPath("java", "zookeeper")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(zooKeeperJar); err != nil {
		return nil, fmt.Errorf("%w: %s not found; install it with `sudo apt-get install -y zookeeper`", ErrNotInstalled, zooKeeperJar)
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	return withAutoPort(port == 0, func() (*Server, error) {
		p, err := pickPorts(port)
		if err != nil {
			return nil, err
		}
		return startZooKeeper(ctx, java, dir, p[0])
	})
}

func startZooKeeper(ctx context.Context, java, dir string, port int) (*Server, error) {
	cfg := filepath.Join(dir, "zoo.cfg")
	// Standalone server: no quorum ports, no admin HTTP server (it would
	// take port 8080), and only the "ruok" and "srvr" four-letter words.
	conf := fmt.Sprintf(`tickTime=500
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
`, filepath.Join(dir, "data"), port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("localsvc: zookeeper config: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s, err := startProcess("zookeeper", dir, addr, java, []string{
		// A small heap (the JVM would reserve a quarter of the machine's
		// memory) and the serial collector (no GC threads per core): a test
		// coordinator holds a few thousand znodes.
		"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", zooKeeperJar + ":" + slf4jSimple, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"org.apache.zookeeper.server.ZooKeeperServerMain", cfg,
	})
	if err != nil {
		return nil, err
	}
	// "srvr", not "ruok": ruok answers imok while the server still loads its
	// database and drops session requests, and a clickhouse-server whose
	// first session failed does not run DDL ON CLUSTER until restarted.
	if err := s.waitReady(ctx, func(ctx context.Context) error {
		reply, err := fourLetterWord(ctx, addr, "srvr")
		if err == nil && !strings.Contains(reply, "Mode: ") {
			err = fmt.Errorf("srvr replied %q", reply)
		}
		return err
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// fourLetterWord sends one of ZooKeeper's four-letter commands and returns
// the whole reply (the server closes the connection after it).
func fourLetterWord(ctx context.Context, addr, cmd string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	return string(b), err
}
