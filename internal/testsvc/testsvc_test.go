package testsvc_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
)

// roundTrip sends an inline Redis command and returns the first reply line.
func roundTrip(t *testing.T, addr, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func TestRedis(t *testing.T) {
	addr := testsvc.Redis(t)
	if got := roundTrip(t, addr, "PING"); got != "+PONG" {
		t.Fatalf("PING = %q", got)
	}
	if again := testsvc.Redis(t); again != addr {
		t.Fatalf("second Redis() = %q; want the shared %q", again, addr)
	}
}

func TestRedisCluster(t *testing.T) {
	addrs := testsvc.RedisCluster(t)
	if len(addrs) != 3 {
		t.Fatalf("addrs = %v; want 3", addrs)
	}
	for _, a := range addrs {
		// A cluster node redirects keys it does not own, so any reply
		// (+OK or -MOVED) shows it is serving.
		if got := roundTrip(t, a, "SET testsvc-key 1"); got != "+OK" && !strings.HasPrefix(got, "-MOVED") {
			t.Fatalf("%s: SET = %q", a, got)
		}
	}
}

func TestClickHouse(t *testing.T) {
	addr := testsvc.ClickHouse(t)
	if _, err := exec.LookPath("clickhouse-client"); err != nil {
		testsvc.Required(t, "clickhouse-client", "it is not in PATH")
	}
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("clickhouse-client", "--host", host, "--port", port, "-q", "SELECT 1").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("SELECT 1 = %q, %v", out, err)
	}
}

func TestKafka(t *testing.T) {
	addrs := testsvc.Kafka(t, "leads")
	c, err := net.DialTimeout("tcp", addrs[0], time.Second)
	if err != nil {
		t.Fatalf("dial %v: %v", addrs, err)
	}
	c.Close()

	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("leads"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: "leads", Value: []byte("hello")}).First()
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	if r.Partition < 0 || r.Partition >= testsvc.KafkaPartitions {
		t.Errorf("partition %d outside the %d seeded", r.Partition, testsvc.KafkaPartitions)
	}
	fetches := cl.PollFetches(ctx)
	if err := fetches.Err(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	if recs := fetches.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %v", recs)
	}
}

func TestKafkaClusterClosedOnCleanup(t *testing.T) {
	var addrs []string
	t.Run("use", func(t *testing.T) { _, addrs = testsvc.KafkaCluster(t) })
	if c, err := net.DialTimeout("tcp", addrs[0], time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still listening after the test ended", addrs[0])
	}
}

// fakeTB records Skip and Fatal instead of acting on them.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed = fmt.Sprint(args...) }

func TestRequired(t *testing.T) {
	t.Setenv("CI", "")
	f := &fakeTB{TB: t}
	testsvc.Required(f, "kcat", "it is not in PATH")
	if f.failed != "" || !strings.Contains(f.skipped, "kcat is required") || !strings.Contains(f.skipped, "make test") {
		t.Errorf("without CI: skipped %q, failed %q", f.skipped, f.failed)
	}

	t.Setenv("CI", "true")
	f = &fakeTB{TB: t}
	testsvc.Required(f, "kcat", "it is not in PATH")
	if f.failed == "" {
		t.Errorf("with CI=true Required did not fail (skipped %q)", f.skipped)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv(localsvc.EnvRedisAddr, "10.0.0.1:6379")
	t.Setenv(localsvc.EnvRedisClusterAddrs, "10.0.0.1:7000,10.0.0.2:7000")
	t.Setenv(localsvc.EnvClickHouseAddr, "10.0.0.3:9000")
	if got := testsvc.Redis(t); got != "10.0.0.1:6379" {
		t.Errorf("Redis = %q", got)
	}
	if got := testsvc.RedisCluster(t); strings.Join(got, " ") != "10.0.0.1:7000 10.0.0.2:7000" {
		t.Errorf("RedisCluster = %q", got)
	}
	if got := testsvc.ClickHouse(t); got != "10.0.0.3:9000" {
		t.Errorf("ClickHouse = %q", got)
	}
}
