// Package e2e proves the tracking surface with clients nobody here wrote:
// Debian's headless Chromium (driven by playwright-core) on the demo site of a
// real `leadstream dev` binary and running Segment's analytics.js (Analytics
// Next, from its npm package), Segment's analytics-node and analytics-go
// SDKs, kcat and clickhouse-client. The Node.js side lives in this folder
// (package.json, browser.mjs, analytics-next.mjs, segment.mjs); `make test`
// installs it with `npm ci` and chromium with deploy/install-deps.sh. Under
// CI=true a missing piece fails the test instead of skipping it.
package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
)

const (
	writeKey  = "dev-write-key"
	secretKey = "e2e-secret"
	// identityKey verifies the userHash of GET /v1/audiences (userHash).
	identityKey = "e2e-identity-key-0123456789"
	tokenKeys   = "e2e:e2e-token-secret-0123456789"
)

// dev is a running `leadstream dev` against the test services.
type dev struct {
	base     string // collector URL
	kafka    string // embedded broker address
	chPort   string
	db       string
	chromium string
	bin      string
	tokenEnv string
	logPath  string
}

func requireTools(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "kcat", "clickhouse-client"} {
		if _, err := exec.LookPath(tool); err != nil {
			testsvc.Required(t, tool, tool+" runs the real clients of this test")
		}
	}
	chromium := os.Getenv("LEADSTREAM_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		testsvc.Required(t, "chromium", "Debian's chromium is the browser of this test (deploy/install-deps.sh installs it)")
	}
	for _, mod := range []string{"playwright-core", "@segment/analytics-node", "@segment/analytics-next", "terser"} {
		if _, err := os.Stat(filepath.Join("node_modules", mod, "package.json")); err != nil {
			testsvc.Required(t, "npm package "+mod, "run `npm ci` in e2e/ (make test does)")
		}
	}
	return chromium
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startDev builds the leadstream binary and runs `leadstream dev` with its
// embedded Kafka broker and the test Redis and ClickHouse.
func startDev(t *testing.T) *dev {
	t.Helper()
	chromium := requireTools(t)
	redis, ch := testsvc.Redis(t), testsvc.ClickHouse(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "leadstream")
	build := exec.Command("go", "build", "-o", bin, "../cmd/leadstream")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpPort, kafkaPort := freePort(t), freePort(t)
	_, chPort, _ := net.SplitHostPort(ch)
	d := &dev{base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), kafka: fmt.Sprintf("127.0.0.1:%d", kafkaPort), chPort: chPort,
		db: fmt.Sprintf("e2e_browser_%d", rand.Uint32()), chromium: chromium, bin: bin, tokenEnv: "LEADSTREAM_TOKEN_KEYS=" + tokenKeys,
		logPath: filepath.Join(dir, "dev.log")}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEADSTREAM_") || strings.HasPrefix(kv, "LEADSTREAM_TEST_") {
			env = append(env, kv) // the caller's LEADSTREAM_* must not steer the binary
		}
	}
	env = append(env,
		"LEADSTREAM_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(httpPort),
		"LEADSTREAM_DEV_KAFKA_PORT="+strconv.Itoa(kafkaPort),
		"LEADSTREAM_REDIS_ADDR="+redis,
		"LEADSTREAM_CLICKHOUSE_ADDR="+ch,
		"LEADSTREAM_CLICKHOUSE_DATABASE="+d.db,
		"LEADSTREAM_DATA_DIR="+filepath.Join(dir, "data"),
		"LEADSTREAM_SECRET_KEY="+secretKey,
		"LEADSTREAM_IDENTITY_KEYS="+identityKey,
		"LEADSTREAM_SINK_FLUSH_INTERVAL=200ms",
		"LEADSTREAM_KAFKA_PARTITIONS=4",
		d.tokenEnv,
	)
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "dev")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("leadstream dev log (tail):\n%s", tail(string(b), 60))
		}
		_, _ = d.query("DROP DATABASE IF EXISTS " + d.db)
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		if res, err := http.Get(d.base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(d.logPath)
			t.Fatalf("leadstream dev exited: %v\n%s", err, tail(string(b), 60))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("leadstream dev not ready within 90 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// node runs a script of this folder, bounded in time, and decodes its JSON output.
func node(t *testing.T, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", args[0], err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("node %s printed no JSON: %v\n%s\n%s", args[0], err, stdout.String(), stderr.String())
	}
}

func (d *dev) query(q string) (string, error) {
	out, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", d.chPort, "-q", q).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// eventually polls f until it reports true.
func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	testsvc.Eventually(t, what, timeout, 200*time.Millisecond, f)
}

// rows waits until q returns want, then returns it.
func (d *dev) rows(t *testing.T, what, q, want string) {
	t.Helper()
	eventually(t, what, 30*time.Second, func() (bool, string) {
		got, err := d.query(q)
		return err == nil && got == want, got
	})
}

type leadView struct {
	raw    string
	Known  bool `json:"known"`
	Models map[string]struct {
		Score float64 `json:"score"`
		MQL   bool    `json:"mql"`
	} `json:"models"`
}

func (d *dev) lead(t *testing.T, id string) (int, leadView) {
	t.Helper()
	req, _ := http.NewRequest("GET", d.base+"/v1/leads/"+id, nil)
	req.SetBasicAuth(secretKey, "")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v leadView
	b, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(b, &v)
	v.raw = string(b)
	return res.StatusCode, v
}

// userHash is what a site's backend computes for its signed-in user: hex
// HMAC-SHA256 of the user id with an identity key.
func userHash(user string) string {
	m := hmac.New(sha256.New, []byte(identityKey))
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}
